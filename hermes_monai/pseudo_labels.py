"""Dual-threshold pseudo-label selection (HERMES.md §4), for image-level and pixel-level predictions.

Given softmax probabilities ``p`` of shape ``(B, C)`` (one prediction per image) or ``(B, C, *spatial)``
(one per pixel), the pseudo-label is ``ŷ = argmax_c p_c`` and an element is *selected* when both

1. the **class-adaptive confidence** test ``p_ŷ > τ_ŷ`` holds, with
   ``τ_c = τ_max − (τ_max − τ_min) · (1 − r_c)`` and ``r_c`` the share of the current pseudo-labels that
   equal ``c`` (pooled over every element of the batch: all images, and all pixels at pixel level), and
2. the **certainty** test ``H(p) = −Σ_c p_c log p_c < γ · ln C`` holds (``γ`` comes from
   :func:`hermes_monai.schedules.entropy_ratio`).

What each loss uses (HERMES §4): the unsupervised segmentation loss ignores only the pixels that fail
**both** tests (:attr:`Selection.mask_any`); the certainty labels of the pixel contrast and the image-level
losses keep only the elements that pass both (:attr:`Selection.mask`).

Design choices where the specification is silent:

* ``ratio_momentum=m`` switches on an EMA of the class ratio, ``r ← m · r_prev + (1 − m) · r_batch``,
  stored in the ``class_ratio`` buffer so it travels with checkpoints. The first update (tracked with the
  ``num_updates`` buffer) copies the batch ratio instead of blending with an arbitrary initial value.
  The EMA is only updated while the module is in training mode; in eval mode the stored ratio is used
  as is (a fresh module in eval mode with no history falls back to the batch ratio).
* The thresholds of the current call already use the ratio updated with the current batch.
* Under ``torch.distributed`` the class counts are summed over ranks (the ratio of the global batch), so
  every rank uses the same thresholds; the call is then a collective.
* ``log p`` is taken of ``p`` clamped to ``[1e-12, 1]`` so exact zeros contribute ``0 · log(1e-12) = 0``.
* Everything runs under ``torch.no_grad()`` on ``probs.detach().float()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hermes_monai.distributed import all_reduce_sum
from hermes_monai.overrides import as_bool

__all__ = ["Selection", "DualThresholdSelector"]

IGNORE_INDEX = -1


@dataclass
class Selection:
    """Result of a dual-threshold selection.

    Attributes:
        pseudo_label: ``argmax`` class per element, LongTensor of shape ``(B,)`` or ``(B, *spatial)``.
        mask: BoolTensor of the same shape, True where both tests pass.
        mask_any: BoolTensor of the same shape, True where at least one test passes (a switched-off
            test counts as passed, so with one test off this is all True).
        certainty_label: ``pseudo_label`` where ``mask`` else ``-1`` (ignore), same shape.
        thresholds: the class-adaptive thresholds ``τ_c`` used, shape ``(C,)``.
        rate: fraction of selected elements (0.0 for an empty batch).
    """

    pseudo_label: Tensor
    mask: Tensor
    mask_any: Tensor
    certainty_label: Tensor
    thresholds: Tensor
    rate: float


class DualThresholdSelector(nn.Module):
    """Select reliable pseudo-labels with a class-adaptive confidence test and an entropy test.

    Args:
        num_classes: number of classes ``C``.
        tau_max: threshold of a class that owns (nearly) all pseudo-labels.
        tau_min: threshold of a class that owns none.
        use_confidence: when False the confidence test always passes.
        use_entropy: when False the entropy test always passes.
        ratio_momentum: EMA momentum ``m`` in ``[0, 1)`` for the class ratio; None = per batch (paper).
    """

    def __init__(
        self,
        num_classes: int,
        tau_max: float = 0.95,
        tau_min: float = 0.5,
        use_confidence: bool = True,
        use_entropy: bool = True,
        ratio_momentum: float | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0.0 <= tau_min <= tau_max <= 1.0:
            raise ValueError(f"need 0 <= tau_min <= tau_max <= 1, got {tau_min}, {tau_max}")
        if ratio_momentum is not None and not 0.0 <= ratio_momentum < 1.0:
            raise ValueError(f"ratio_momentum must be in [0, 1), got {ratio_momentum}")
        self.num_classes = int(num_classes)
        self.tau_max = float(tau_max)
        self.tau_min = float(tau_min)
        self.use_confidence = as_bool(use_confidence, "use_confidence_threshold")
        self.use_entropy = as_bool(use_entropy, "use_entropy_threshold")
        self.ratio_momentum = ratio_momentum
        self.register_buffer("class_ratio", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def thresholds_from_ratio(self, ratio: Tensor) -> Tensor:
        """``τ_c = τ_max − (τ_max − τ_min)(1 − r_c)`` for a ratio vector of shape ``(C,)``."""
        return self.tau_max - (self.tau_max - self.tau_min) * (1.0 - ratio)

    def _ratio(self, pseudo_label: Tensor) -> Tensor:
        # summed over ranks under torch.distributed: every rank selects with the same thresholds
        counts = all_reduce_sum(torch.bincount(pseudo_label.reshape(-1), minlength=self.num_classes).float())
        batch_ratio = counts / counts.sum().clamp_min(1.0)
        if self.ratio_momentum is None:
            return batch_ratio
        if self.training:
            m = self.ratio_momentum if int(self.num_updates) > 0 else 0.0
            self.class_ratio.mul_(m).add_((1.0 - m) * batch_ratio.to(self.class_ratio))
            self.num_updates += 1
        elif int(self.num_updates) == 0:
            return batch_ratio
        return self.class_ratio.to(batch_ratio)

    @torch.no_grad()
    def forward(self, probs: Tensor, gamma: float) -> Selection:
        """Select pseudo-labels.

        Args:
            probs: softmax probabilities, ``(B, C)`` or ``(B, C, *spatial)``.
            gamma: entropy-bar fraction ``γ``; the entropy test is ``H(p) < γ · ln C``.

        Returns:
            :class:`Selection` with element tensors of shape ``(B,)`` or ``(B, *spatial)``.
        """
        if probs.dim() < 2 or probs.shape[1] != self.num_classes:
            raise ValueError(
                f"expected probs of shape (B, {self.num_classes}, ...), got {tuple(probs.shape)}"
            )
        p = probs.detach().float()
        confidence, pseudo_label = p.max(dim=1)
        thresholds = self.thresholds_from_ratio(self._ratio(pseudo_label))

        passed = torch.ones_like(pseudo_label, dtype=torch.bool)
        confident = confidence > thresholds[pseudo_label] if self.use_confidence else passed
        if self.use_entropy:
            entropy = -(p * p.clamp(1e-12, 1.0).log()).sum(dim=1)
            certain = entropy < gamma * math.log(self.num_classes)
        else:
            certain = passed
        mask = confident & certain
        mask_any = confident | certain

        certainty_label = torch.where(mask, pseudo_label, torch.full_like(pseudo_label, IGNORE_INDEX))
        rate = float(mask.float().mean()) if mask.numel() > 0 else 0.0
        return Selection(pseudo_label, mask, mask_any, certainty_label, thresholds, rate)
