"""Hermes losses (HERMES.md §5): supervised, unsupervised (pseudo-label), contrastive and consistency terms.

* :class:`SegSupervisedLoss` — ``(0.5·CE + Dice_fg) / 2`` on labeled masks.
* :func:`masked_cross_entropy`, :class:`IgnoreDiceLoss` — pseudo-label losses on the strong view.
* :func:`supervised_contrastive_loss`, :class:`ImageContrastLoss` — image-level dual-threshold contrast.
* :func:`sample_pixel_anchors`, :class:`PixelContrastLoss` — pixel-level dual-threshold contrast.
* :class:`FeatureQueue`, :class:`ClassFeatureBank` — memory banks.
* :func:`inter_task_consistency` — seg/cls projection agreement.
"""

from .consistency import inter_task_consistency
from .contrast import ImageContrastLoss, supervised_contrastive_loss
from .memory_bank import ClassFeatureBank, FeatureQueue
from .pixel_contrast import PixelContrastLoss, sample_pixel_anchors
from .supervised import SegSupervisedLoss
from .unsupervised import IgnoreDiceLoss, masked_cross_entropy

__all__ = [
    "SegSupervisedLoss",
    "masked_cross_entropy",
    "IgnoreDiceLoss",
    "supervised_contrastive_loss",
    "ImageContrastLoss",
    "sample_pixel_anchors",
    "PixelContrastLoss",
    "FeatureQueue",
    "ClassFeatureBank",
    "inter_task_consistency",
]
