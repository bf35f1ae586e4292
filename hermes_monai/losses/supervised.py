"""Supervised segmentation loss for the labeled batch (HERMES.md §5): ``L_seg^l = (0.5·CE + Dice_fg) / 2``.

That is MONAI's :class:`~monai.losses.DiceCELoss` with ``lambda_ce = 0.25`` and ``lambda_dice = 0.5``:
soft Dice on softmax probabilities against the one-hot mask, background excluded from the Dice (per
image and class, then averaged — MONAI's defaults), and cross-entropy over all classes.
:class:`SegSupervisedLoss` only fixes those weights and accepts ``(B, H, W)`` or ``(B, 1, H, W)``
targets, integer or float-valued. The classification supervised loss is plain cross-entropy.
"""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss
from torch import Tensor

__all__ = ["SegSupervisedLoss"]


class SegSupervisedLoss(DiceCELoss):
    """``(ce_weight · CE + Dice_fg) / 2`` on segmentation logits.

    Args:
        ce_weight: weight of the cross-entropy term inside the bracket (paper: 0.5).
    """

    def __init__(self, ce_weight: float = 0.5) -> None:
        super().__init__(
            include_background=False,
            to_onehot_y=True,
            softmax=True,
            lambda_dice=0.5,
            lambda_ce=float(ce_weight) / 2.0,
        )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        """Args:
            logits: ``(B, C, H, W)`` raw scores.
            target: ``(B, 1, H, W)`` or ``(B, H, W)`` class indices (integer or float-valued).

        Returns:
            scalar loss.
        """
        if target.dim() == logits.dim() - 1:
            target = target.unsqueeze(1)
        target = target.round().long() if torch.is_floating_point(target) else target.long()
        return super().forward(logits, target)
