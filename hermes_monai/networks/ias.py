"""Inter-task Attention and Saliency (IAS), HERMES.md §2.

- :class:`InterTaskAttention` (seg → cls): modulates one cls stage feature with the seg decoder
  feature of the same resolution.
- :func:`saliency_map` (cls → seg): the classifier's input-gradient map that the seg decoder reads.

Choices where the spec is silent:

- The channel-attention conv3×3 on concat(cls, seg) maps 2c → c channels and has a bias, no
  BN/activation (the spec lists conv3×3 → GAP → FC directly). The channel MLP's hidden width is
  ``max(c // 4, 1)``. The spatial attention is a 7×7 conv (2 → 1, padding 3) over the channel-max
  and channel-mean of the channel-attended feature (CBAM order: channel first, then spatial).
- Saliency maps are normalised to [0, 1] by each image's own maximum; an all-zero gradient map
  stays all zero (the divisor is clamped to ``eps``).
- The saliency forward pass runs the model in whatever mode it is in; in training mode its
  BatchNorm layers therefore see the batch (and update running statistics) once more, and the
  per-image top logits are summed before differentiation, so batch statistics couple the images'
  maps slightly (exactly independent in eval mode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hermes_monai.networks.segmentation import ConvBlock

__all__ = ["InterTaskAttention", "frozen_norm_statistics", "saliency_map"]


class InterTaskAttention(nn.Module):
    """Fuse a seg feature into a cls feature by channel and spatial attention.

    Args:
        cls_channels: channels c of the cls feature.
        seg_channels: channels of the seg decoder feature.

    ``forward(cls_feat (B, c, h, w), seg_feat (B, c_s, h', w')) -> (B, c, h, w)``; the seg feature
    is bilinearly resized to (h, w) when its size differs.
    """

    def __init__(self, cls_channels: int, seg_channels: int) -> None:
        super().__init__()
        c = cls_channels
        self.seg_proj = ConvBlock(seg_channels, c)
        self.fuse = nn.Conv2d(2 * c, c, kernel_size=3, padding=1)
        hidden = max(c // 4, 1)
        self.channel_mlp = nn.Sequential(
            nn.Linear(c, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, c),
            nn.Sigmoid(),
        )
        self.spatial_conv = nn.Conv2d(2, 1, kernel_size=7, padding=3)

    def forward(self, cls_feat: Tensor, seg_feat: Tensor) -> Tensor:
        if seg_feat.shape[-2:] != cls_feat.shape[-2:]:
            seg_feat = F.interpolate(seg_feat, size=cls_feat.shape[-2:], mode="bilinear", align_corners=False)
        seg = self.seg_proj(seg_feat)
        channel_weights = self.channel_mlp(self.fuse(torch.cat([cls_feat, seg], dim=1)).mean(dim=(2, 3)))
        out = cls_feat * channel_weights[:, :, None, None]
        pooled = torch.cat([out.amax(dim=1, keepdim=True), out.mean(dim=1, keepdim=True)], dim=1)
        return out * torch.sigmoid(self.spatial_conv(pooled))


def saliency_map(logit_fn: Callable[[Tensor], Tensor], x: Tensor, eps: float = 1e-12) -> Tensor:
    """Input-gradient saliency of a classifier's top logit, one map per image.

    ``s = max_c |d z_top / d x_c|`` where ``z_top`` is each image's largest logit, divided by its
    per-image maximum so that every map lies in [0, 1]. The gradient is taken with
    :func:`torch.autograd.grad` with respect to a detached copy of ``x`` only, so no parameter
    ``.grad`` is written and no gradient flows back into ``x`` or the classifier. Works when called
    under :func:`torch.no_grad` or :func:`torch.inference_mode`.

    Args:
        logit_fn: maps (B, C, H, W) images to (B, K) logits.
        x: images (B, C, H, W).
        eps: guard for the normalisation of all-zero maps.

    Returns:
        A detached (B, 1, H, W) tensor with values in [0, 1].
    """
    with torch.inference_mode(False), torch.enable_grad():
        x_in = x.detach().clone().requires_grad_(True)
        logits = logit_fn(x_in)
        top = logits.max(dim=1).values.sum()
        (grad,) = torch.autograd.grad(top, x_in)
        sal = grad.abs().amax(dim=1, keepdim=True)
        peak = sal.amax(dim=(2, 3), keepdim=True).clamp_min(eps)
        return (sal / peak).detach()


@contextmanager
def frozen_norm_statistics(module: nn.Module) -> Iterator[None]:
    """Run ``module`` without updating its batch-norm running statistics.

    In training mode batch norm still normalises with the batch's own statistics; only the
    running-average update is suppressed (momentum 0). The saliency pass runs the classifier
    without inter-task attention, so its activations after stage 1 follow a different distribution
    from the attention-modulated ones the classifier is evaluated with; letting that pass update
    the running statistics would leave them a mixture of the two and break evaluation-mode
    predictions.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    try:
        for m in norms:
            m.momentum = 0.0
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
