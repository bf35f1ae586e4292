"""Hermes classification branch: a ResNet-18 whose stages can be modulated by the seg branch.

Two stem choices (``stem_pool``). Without the stem max-pool (``stem_pool=False``, the CPU preset's before
0.4.0) the four stage outputs (64, 128, 256, 512 channels) sit at strides 2, 4, 8, 16 and meet the seg decoder
features of the same resolution (HERMES.md §2). With it (default: the stock ResNet-18, both presets' since
0.4.0) they sit at strides 4, 8, 16, 32 and the classifier costs about a quarter (3.6 instead of 13.6
GFLOP per 224² forward); stage k then meets the seg feature of its own resolution, [1/4, 1/8, 1/16, 1/16]: the
deepest stage takes the 1/16 seg feature, which the attention module's bilinear resize halves (on even
sizes exactly a 2×2 average). After each stage k, when attention is on and seg features are given, the stage
output is replaced by ``InterTaskAttention_k(cls_feat, seg_features[k])``. The 512-d global
average pooled feature feeds three heads: a linear classifier, the image contrast embedding
(512 → 256 → 128, L2-normalised) and the consistency projection (512 → 256 → 256).

Choices where the spec is silent:

- ``seg_channels=None`` means the channels of the default seg decoder features,
  ``(32, 64, 128, 256)`` ([1/2, 1/4, 1/8, 1/16]); :class:`HermesNet` passes the real ones.
- Removing the max-pool makes each stage 4× larger in area than in a stock ResNet-18; ImageNet
  weights still load (the max-pool has no parameters).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hermes_monai.networks.encoders import create_timm_model
from hermes_monai.networks.heads import ImageContrastHead, ProjectionMLP
from hermes_monai.networks.ias import InterTaskAttention

__all__ = ["DEFAULT_SEG_CHANNELS", "HermesClsNet"]

#: Channels of the default HermesSegNet decoder features, ordered [1/2, 1/4, 1/8, 1/16].
DEFAULT_SEG_CHANNELS: tuple[int, int, int, int] = (32, 64, 128, 256)


class HermesClsNet(nn.Module):
    """ResNet-18 classifier with optional inter-task attention after each of its four stages.

    Args:
        in_channels: image channels.
        num_classes: classification classes.
        seg_channels: channels of the seg features that will be passed to ``forward``.
        use_attention: build and apply the four :class:`InterTaskAttention` modules.
        detach_seg: detach the seg features before attention (no cls → seg gradient).
        weights_path: optional local ImageNet ResNet-18 checkpoint (see :func:`create_timm_model`).
        stem_pool: keep ResNet-18's stem max-pool (stages at 1/4 … 1/32) instead of removing it (1/2 … 1/16).

    Attributes:
        stage_channels: channels of the four stage outputs, (64, 128, 256, 512).
        seg_shift: 0 without the stem pool, 1 with it; stage k attends to seg feature
            ``min(k + seg_shift, 3)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        seg_channels: Sequence[int] | None = None,
        use_attention: bool = True,
        detach_seg: bool = True,
        weights_path: str | None = None,
        stem_pool: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = create_timm_model("resnet18", weights_path, num_classes=0, in_chans=in_channels)
        self.stem_pool = bool(stem_pool)
        self.seg_shift = 1 if self.stem_pool else 0
        if not self.stem_pool:
            self.backbone.maxpool = nn.Identity()
        self.stages = [self.backbone.layer1, self.backbone.layer2, self.backbone.layer3, self.backbone.layer4]
        self.stage_channels: tuple[int, ...] = tuple(s[-1].conv2.out_channels for s in self.stages)
        feat_dim = self.stage_channels[-1]

        self.use_attention = use_attention
        self.detach_seg = detach_seg
        self.attention: nn.ModuleList | None = None
        if use_attention:
            seg_channels = tuple(DEFAULT_SEG_CHANNELS if seg_channels is None else seg_channels)
            if len(seg_channels) != 4:
                raise ValueError(f"seg_channels needs 4 entries (1/2, 1/4, 1/8, 1/16), got {seg_channels}.")
            self.attention = nn.ModuleList(
                InterTaskAttention(c, seg_channels[min(k + self.seg_shift, 3)])
                for k, c in enumerate(self.stage_channels)
            )

        self.classifier = nn.Linear(feat_dim, num_classes)
        self.contrast_head = ImageContrastHead(feat_dim, hidden=256, out_dim=128)
        self.projection = ProjectionMLP(feat_dim, hidden=256, out_dim=256)

    def _pooled(self, x: Tensor, seg_features: Sequence[Tensor] | None) -> Tensor:
        """(B, C_in, H, W) → (B, 512) pooled feature, with attention when seg features are given."""
        b = self.backbone
        h = b.maxpool(b.act1(b.bn1(b.conv1(x))))
        attend = self.attention is not None and seg_features is not None
        if attend and len(seg_features) != 4:
            raise ValueError(f"seg_features needs 4 tensors (1/2, 1/4, 1/8, 1/16), got {len(seg_features)}.")
        for k, stage in enumerate(self.stages):
            h = stage(h)
            if attend:
                seg = seg_features[min(k + self.seg_shift, 3)]
                seg = seg.detach() if self.detach_seg else seg
                h = self.attention[k](h, seg)
        return h.mean(dim=(2, 3))

    @torch.jit.unused  # TorchScript: HermesDeployNet.predict runs the stages with literal indices instead
    def forward(self, x: Tensor, seg_features: Sequence[Tensor] | None = None) -> dict[str, Tensor]:
        """Classify ``x`` (B, C_in, H, W), optionally attending to seg features [1/2, 1/4, 1/8, 1/16].

        Returns:
            ``"logits"`` (B, num_classes); ``"embed"`` (B, 128) unit norm; ``"proj"`` (B, 256).
        """
        pooled = self._pooled(x, seg_features)
        return {
            "logits": self.classifier(pooled),
            "embed": self.contrast_head(pooled),
            "proj": self.projection(pooled),
        }

    def forward_logits(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) → (B, num_classes) logits without attention (used for saliency)."""
        return self.classifier(self._pooled(x, None))
