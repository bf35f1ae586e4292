"""Hermes segmentation branch: a U-Net on a swappable timm encoder (HERMES.md §1–2).

Two decoder layouts (``decoder_layout``), for an input of shape (B, C_in, H, W), H and W divisible by
16, and encoder features f1..f4 at strides 2, 4, 8, 16 with channels c1..c4:

``"paper"`` — the public reference's U-Net decoder (HERMES.md §1), ``decoder_channels`` = (d8, d4, d2),
(512, 256, 64) in the paper preset. At each scale an up-block on the up-sampled coarser feature whose
middle width is its input width, then a block on it concatenated with the skip:

- ``a8 = block(up(f4); mid=c4) ; dec8 = block(cat(a8, f3))``                      (B, d8, H/8, W/8)
- ``a4 = block(up(dec8); mid=d8) ; dec4 = block(cat(a4, f2[, saliency@1/4]))``      (B, d4, H/4, W/4)
- ``a2 = block(up(dec4); mid=d4) ; dec2 = block(cat(a2, f1))``                      (B, d2, H/2, W/2)
- ``logits = up_to_input(conv1x1(dec2))``; the 1/16 feature handed to attention is f4 itself.

With Res2Net-101-d that is 1024→1024→512, 1024→512→512 at 1/8, 512→512→256, 513→256→256 at 1/4,
256→256→64, 128→64→64 at 1/2: about 103 GFLOP per 224² forward for the whole network.

``"light"`` — a lighter decoder (one block per scale, the CPU preset's), ``decoder_channels`` =
(d0, d1, d2, d3):

- ``dec16 = block(f4)``                                   (B, d0, H/16, W/16)
- ``dec8  = block(cat(up(dec16), f3))``                   (B, d1, H/8,  W/8)
- ``dec4  = block(cat(up(dec8), f2[, saliency@1/4]))``    (B, d2, H/4,  W/4)
- ``dec2  = block(cat(up(dec4), f1))``                    (B, d3, H/2,  W/2)
- ``logits = up_to_input(conv1x1(dec2))``                 (B, num_classes, H, W)

``block`` is conv3×3-BN-ReLU ×2; ``up`` is bilinear ×2 up-sampling.

Choices where the spec is silent:

- The final 1×1 output conv is applied at 1/2 resolution and its logits are then bilinearly
  up-sampled to (H, W). Bilinear interpolation is a convex combination of neighbours and a 1×1 conv
  is per-pixel affine, so this equals "up-sample then 1×1 conv" exactly, while using
  ``num_classes`` instead of d3 channels at full resolution.
- The saliency map (B, 1, H, W) is reduced to 1/4 scale by area averaging (``mode="area"``), not
  point sampling, because input-gradient maps are spatially sparse and point sampling would alias.
- With ``use_saliency=True`` and no saliency given, a zero map is used so the branch runs alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hermes_monai.networks.encoders import create_encoder
from hermes_monai.networks.heads import PixelContrastHead, ProjectionMLP

__all__ = ["DECODER_LAYOUTS", "ConvBlock", "HermesSegNet"]


#: Decoder layouts of :class:`HermesSegNet` and the number of ``decoder_channels`` entries each takes.
DECODER_LAYOUTS: dict[str, int] = {"paper": 3, "light": 4}


class ConvBlock(nn.Sequential):
    """(conv3×3-BN-ReLU) ×2: (B, in_ch, h, w) → (B, mid_ch, h, w) → (B, out_ch, h, w); mid_ch None: out_ch."""

    def __init__(self, in_ch: int, out_ch: int, mid_ch: int | None = None) -> None:
        mid = out_ch if mid_ch is None else mid_ch
        super().__init__(
            nn.Conv2d(in_ch, mid, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_ch, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


def _up_to(x: Tensor, ref: Tensor) -> Tensor:
    """Bilinearly resize ``x`` (B, C, h, w) to the spatial size of ``ref``."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class HermesSegNet(nn.Module):
    """U-Net segmentation branch with pixel-contrast and consistency-projection heads.

    Args:
        encoder: timm model name or preset (see :func:`create_encoder`).
        in_channels: image channels.
        num_classes: segmentation classes (2: background, lesion).
        decoder_channels: output channels of the decoder blocks: at 1/8, 1/4, 1/2 for the ``"paper"``
            layout, at 1/16, 1/8, 1/4, 1/2 for the ``"light"`` one.
        decoder_layout: ``"paper"`` (the reference's two blocks per scale) or ``"light"`` (see module doc).
        contrast_dim: pixel embedding size (``"embed"``).
        proj_dim: consistency projection size (``"proj"``).
        use_saliency: feed a 1-channel saliency map into the 1/4-scale decoder block.
        weights_path: optional local encoder checkpoint.

    Attributes:
        feature_channels: channels of ``forward(...)["features"]``, ordered [1/2, 1/4, 1/8, 1/16].
    """

    def __init__(
        self,
        encoder: str = "resnet18",
        in_channels: int = 1,
        num_classes: int = 2,
        decoder_channels: Sequence[int] = (256, 128, 64, 32),
        contrast_dim: int = 256,
        proj_dim: int = 256,
        use_saliency: bool = True,
        weights_path: str | None = None,
        decoder_layout: str = "light",
    ) -> None:
        super().__init__()
        if decoder_layout not in DECODER_LAYOUTS:
            layouts = sorted(DECODER_LAYOUTS)
            raise ValueError(f"decoder_layout must be one of {layouts}, got {decoder_layout!r}.")
        n_entries = DECODER_LAYOUTS[decoder_layout]
        if len(decoder_channels) != n_entries:
            scales = "1/8, 1/4, 1/2" if decoder_layout == "paper" else "1/16, 1/8, 1/4, 1/2"
            raise ValueError(
                f"decoder_channels of the {decoder_layout!r} layout needs {n_entries} entries ({scales}), "
                f"got {decoder_channels}."
            )
        self.use_saliency = use_saliency
        self.paper_layout = decoder_layout == "paper"
        self.encoder = create_encoder(encoder, in_channels=in_channels, weights_path=weights_path)
        c1, c2, c3, c4 = self.encoder.feature_info.channels()
        sal_ch = 1 if use_saliency else 0
        if self.paper_layout:
            d8, d4, d2 = (int(c) for c in decoder_channels)
            d16 = c4
            self.block16 = nn.Identity()  # the 1/16 feature handed on is f4 itself
            self.up8 = ConvBlock(c4, d8, mid_ch=c4)
            self.block8 = ConvBlock(d8 + c3, d8)
            self.up4 = ConvBlock(d8, d4, mid_ch=d8)
            self.block4 = ConvBlock(d4 + c2 + sal_ch, d4)
            self.up2 = ConvBlock(d4, d2, mid_ch=d4)
            self.block2 = ConvBlock(d2 + c1, d2)
        else:
            d16, d8, d4, d2 = (int(c) for c in decoder_channels)
            self.block16 = ConvBlock(c4, d16)
            self.up8 = nn.Identity()  # the light layout has no up-blocks
            self.block8 = ConvBlock(d16 + c3, d8)
            self.up4 = nn.Identity()
            self.block4 = ConvBlock(d8 + c2 + sal_ch, d4)
            self.up2 = nn.Identity()
            self.block2 = ConvBlock(d4 + c1, d2)
        self.out_conv = nn.Conv2d(d2, num_classes, kernel_size=1)

        self.contrast_head = PixelContrastHead(c3, contrast_dim)
        self.projection = ProjectionMLP(c4, hidden=256, out_dim=proj_dim)
        self.feature_channels: list[int] = [d2, d4, d8, d16]

    def forward(self, x: Tensor, saliency: Tensor | None = None) -> dict[str, Tensor | list[Tensor]]:
        """Segment ``x``.

        Args:
            x: images (B, C_in, H, W), H and W divisible by 16.
            saliency: optional (B, 1, H, W) map, used only when ``use_saliency``.

        Returns:
            ``"logits"`` (B, num_classes, H, W); ``"embed"`` (B, contrast_dim, H/8, W/8), unit norm
            per pixel; ``"proj"`` (B, proj_dim); ``"features"`` the decoder features
            [(B, d3, H/2, W/2), (B, d2, H/4, W/4), (B, d1, H/8, W/8), (B, d0, H/16, W/16)].
        """
        h, w = x.shape[-2:]
        if h % 16 or w % 16:
            raise ValueError(f"HermesSegNet needs input height and width divisible by 16, got {h}×{w}.")
        if self.use_saliency and saliency is not None:
            if list(saliency.shape) != [x.shape[0], 1, h, w]:
                expected = [x.shape[0], 1, h, w]
                raise ValueError(f"saliency must have shape {expected}, got {list(saliency.shape)}.")
        logits, features, encoded = self.decode(x, saliency)
        f3, f4 = encoded[2], encoded[3]

        return {
            "logits": logits,
            "embed": self.contrast_head(f3),
            "proj": self.projection(f4.mean(dim=(2, 3))),
            "features": features,
        }

    def decode(self, x: Tensor, saliency: Tensor | None = None) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """The U-Net alone, written so that TorchScript can compile it (no shape checks: see ``forward``).

        Returns:
            ``(logits, [dec2, dec4, dec8, dec16], [f1, f2, f3, f4])``: the seg logits (B, num_classes,
            H, W), the decoder features and the encoder features.
        """
        h, w = x.shape[-2], x.shape[-1]
        feats = self.encoder(x)
        f1, f2, f3, f4 = feats[0], feats[1], feats[2], feats[3]
        # one path for both layouts: the paper layout's block16 and the light one's up-blocks are identities
        dec16 = self.block16(f4)
        dec8 = self.block8(torch.cat([self.up8(_up_to(dec16, f3)), f3], dim=1))
        skips4 = [self.up4(_up_to(dec8, f2)), f2]
        if self.use_saliency:
            if saliency is None:
                skips4.append(f2.new_zeros(f2.shape[0], 1, f2.shape[2], f2.shape[3]))
            else:
                skips4.append(F.interpolate(saliency.to(f2.dtype), size=f2.shape[-2:], mode="area"))
        dec4 = self.block4(torch.cat(skips4, dim=1))
        dec2 = self.block2(torch.cat([self.up2(_up_to(dec4, f1)), f1], dim=1))
        logits = F.interpolate(self.out_conv(dec2), size=[h, w], mode="bilinear", align_corners=False)
        return logits, [dec2, dec4, dec8, dec16], [f1, f2, f3, f4]
