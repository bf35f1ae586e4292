"""Supervised segmentation loss for the labeled batch (HERMES.md §5): ``L_seg^l = (0.5·CE + Dice_fg) / 2``.

``Dice_fg`` is MONAI's soft Dice on softmax probabilities against the one-hot mask, background excluded
(per image and class, then averaged — MONAI's defaults). The classification supervised loss is plain
``torch.nn.CrossEntropyLoss`` and needs no class here.
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from torch import Tensor, nn

__all__ = ["SegSupervisedLoss"]


class SegSupervisedLoss(nn.Module):
    """``(ce_weight · CE + Dice_fg) / 2`` on segmentation logits.

    Args:
        ce_weight: weight of the cross-entropy term (paper: 0.5).
    """

    def __init__(self, ce_weight: float = 0.5) -> None:
        super().__init__()
        self.ce_weight = float(ce_weight)
        self.ce = nn.CrossEntropyLoss()
        self.dice = DiceLoss(include_background=False, to_onehot_y=True, softmax=True)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Args:
            logits: ``(B, C, H, W)`` raw scores.
            target: ``(B, 1, H, W)`` or ``(B, H, W)`` class indices (integer or float-valued).

        Returns:
            scalar loss.
        """
        if target.dim() == logits.dim():
            target = target[:, 0]
        target = target.round().long() if torch.is_floating_point(target) else target.long()
        ce = self.ce(logits, target)
        dice = self.dice(logits, target.unsqueeze(1))
        return (self.ce_weight * ce + dice) / 2.0
