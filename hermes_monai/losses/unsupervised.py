"""Unsupervised (pseudo-label) losses for the strong view (HERMES.md §5).

* :func:`masked_cross_entropy` — ``L_cls^u``: cross-entropy against image-level pseudo-labels, each term
  multiplied by the dual-threshold selection mask, summed and divided by the *whole* batch size ``B``
  (not by the number of selected images), so few selections mean a small loss.
* :class:`IgnoreDiceLoss` — ``L_seg^u``: foreground soft Dice against pixel pseudo-labels where rejected
  pixels contribute to neither the prediction nor the target sums.

Design choice where the specification is silent: :class:`IgnoreDiceLoss` pools the Dice sums over the
whole batch by default (``batch=True``, one Dice per foreground class). Per-image Dice with an ignore
mask is unstable: an image with only a handful of valid pixels, or with no selected foreground, would
weigh as much as a fully selected one. ``batch=False`` gives MONAI's per-image behaviour.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import Tensor, nn

__all__ = ["masked_cross_entropy", "IgnoreDiceLoss"]


def masked_cross_entropy(logits: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``Σ_i CE(logits_i, target_i) · mask_i / B``.

    Args:
        logits: ``(B, C)`` raw scores.
        target: ``(B,)`` class indices (values at unselected positions are not used).
        mask: ``(B,)`` bool, True where the pseudo-label was selected.

    Returns:
        scalar loss (0, graph-connected, for an empty batch).
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    safe_target = torch.where(mask, target.long(), torch.zeros_like(target, dtype=torch.long))
    ce = F.cross_entropy(logits, safe_target, reduction="none")
    return (ce * mask.to(ce.dtype)).sum() / logits.shape[0]


class IgnoreDiceLoss(nn.Module):
    """Foreground soft Dice with ignored pixels removed from both prediction and target.

    Args:
        smooth: ``smooth_nr`` and ``smooth_dr`` of the Dice ratio.
        batch: pool the sums over the batch (default) instead of per image.
    """

    def __init__(self, smooth: float = 1e-5, batch: bool = True) -> None:
        super().__init__()
        self.dice = DiceLoss(
            include_background=False, softmax=False, smooth_nr=smooth, smooth_dr=smooth, batch=batch
        )

    def forward(self, logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        """Args:
            logits: ``(B, C, H, W)`` raw scores.
            target: ``(B, H, W)`` long pseudo-labels (negative values are treated as invalid).
            valid: ``(B, H, W)`` bool, True for pixels that count.

        Returns:
            scalar loss; 0 (graph-connected) when no pixel is valid.
        """
        valid = valid.bool() & (target >= 0)
        if not bool(valid.any()):
            return logits.sum() * 0.0
        num_classes = logits.shape[1]
        weight = valid.unsqueeze(1).to(logits.dtype)
        probs = torch.softmax(logits, dim=1) * weight
        onehot = F.one_hot(target.long().clamp_min(0), num_classes).permute(0, 3, 1, 2).to(logits.dtype)
        return self.dice(probs, onehot * weight)
