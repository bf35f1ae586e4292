"""What MONAI Label can do with this bundle: inference yes, training no (a clear refusal).

MONAI Label 0.8.5's ``BundleInferTask`` runs ``configs/inference.yaml`` unchanged (see the model card).
Its ``BundleTrainTask`` replaces ``train#dataset#data`` with the annotated images of its datastore —
image and mask only. Hermes trains its classifier on the labeled images' benign/malignant ``class``
(and the semi-supervised losses need the unlabeled split), so a datalist without classes cannot train
it; :func:`require_class_labels`, the first step of ``train.yaml``'s ``run``, stops such a run with a
message saying so, instead of an error deep inside the loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["require_class_labels"]


def require_class_labels(entries: Sequence[Mapping[str, Any]], split: str = "labeled") -> None:
    """Raise ``ValueError`` unless every entry of the labeled training data has a ``class``."""
    missing = [e for e in entries if e.get("class") is None]
    if missing:
        example = missing[0].get("image", missing[0])
        raise ValueError(
            f"{len(missing)} of {len(entries)} '{split}' training entries have no 'class' (benign or "
            "malignant), "
            f"e.g. {example}. Hermes trains segmentation and classification together and needs a class for "
            "every labeled image. Training from MONAI Label (BundleTrainTask sends image + mask only) is "
            "therefore not supported: train with `python -m monai.bundle run training --config_file "
            "bundle/configs/train.yaml` on a datalist with classes, then copy models/model.pt into the "
            "bundle MONAI Label serves."
        )
