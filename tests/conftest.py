"""Shared fixtures: one tiny trained bundle per test session (for inference, export and MONAI Label tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundle"
TINY_SIZE = 64  # image size of the tiny training (the network itself takes any multiple of 16)


def tiny_train_overrides(root: Path) -> dict:
    """Overrides for a seconds-long CPU training of train.yaml into ``root`` (synthetic data, 64 px)."""
    return {
        "bundle_root": str(root),
        "synthetic_dir": str(root / "data"),
        "synthetic": {
            "image_size": TINY_SIZE,
            "num_labeled": 8,
            "num_unlabeled": 8,
            "num_validation": 4,
            "num_test": 4,
        },
        "image_size": TINY_SIZE,
        "labeled_batch_size": 2,
        "unlabeled_batch_size": 2,
        "max_epochs": 2,
        "epoch_length": 2,
        "val_interval": 1,
        "contrast_warmup": 0,
        "pixel_contrast_loss#min_pixels": 4,
        "pixel_contrast_loss#max_per_group": 8,
        "use_mlflow": False,
        "channels_last": False,
        "device": "$torch.device('cpu')",
    }


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``bundle/`` (configs, docs) whose ``models/model.pt`` comes from a 4-iteration training.

    The synthetic data it was trained on is under ``<bundle>/data`` (``images/``, ``datalist.json``).
    """
    from monai.bundle import run

    root = tmp_path_factory.mktemp("bundle")
    shutil.copytree(BUNDLE / "configs", root / "configs")
    run("training", config_file=str(root / "configs" / "train.yaml"), **tiny_train_overrides(root))
    assert (root / "models" / "model.pt").is_file()
    return root
