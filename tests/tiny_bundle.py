"""Overrides that make a real bundle run tiny (64 px synthetic data, batch 2+2, a few iterations on CPU),
shared by the tests that train through ``bundle/configs/train.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The run settings every tiny bundle run shares (small batches, every epoch validated and logged, the
#: contrastive terms on from the first iteration with few anchors).
TINY_RUN: dict[str, Any] = {
    "image_size": 64,
    "labeled_batch_size": 2,
    "unlabeled_batch_size": 2,
    "val_interval": 1,
    "log_interval": 1,
    "contrast_warmup": 0,
    "pixel_contrast_loss#min_pixels": 4,
    "pixel_contrast_loss#max_per_group": 8,
}


def tiny_overrides(
    root: Path,
    num_labeled: int = 8,
    num_unlabeled: int = 8,
    num_validation: int = 4,
    num_test: int = 6,
    **extra: Any,
) -> dict[str, Any]:
    """Bundle overrides for a run under ``root`` (bundle root and synthetic data); ``extra`` wins."""
    o: dict[str, Any] = {
        "bundle_root": str(root),
        "synthetic_dir": str(root / "data"),
        "synthetic": {
            "image_size": 64,
            "num_labeled": num_labeled,
            "num_unlabeled": num_unlabeled,
            "num_validation": num_validation,
            "num_test": num_test,
        },
        **TINY_RUN,
        "max_epochs": 2,
        "epoch_length": 2,
        "device": "$torch.device('cpu')",
    }
    o.update(extra)
    return o
