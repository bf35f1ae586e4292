"""HermesNet: the segmentation and classification branches wired together by IAS (HERMES.md §1–2).

One forward pass on images x (B, C_in, H, W), H and W divisible by 16:

1. saliency (if ``use_saliency``): ``saliency_map(self.cls.forward_logits, x)`` → (B, 1, H, W).
   The saliency pass uses the classifier *without* inter-task attention: attention needs the seg
   features and the seg features need the saliency, so the attention-free classifier breaks that
   cycle. The map is detached (no gradient reaches the classifier through it), and the pass does
   not update the classifier's batch-norm running statistics (:func:`frozen_norm_statistics`).
2. ``seg_out = self.seg(x, saliency)``.
3. ``cls_out = self.cls(x, seg_out["features"] if use_attention else None)``.

The two branches keep separate parameters (the attention modules live in ``self.cls``), so each can
have its own optimiser; :meth:`HermesNet.parameter_groups` splits them.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from hermes_monai.networks.classification import HermesClsNet
from hermes_monai.networks.ias import frozen_norm_statistics, saliency_map
from hermes_monai.networks.segmentation import HermesSegNet
from hermes_monai.overrides import as_bool

__all__ = ["HermesNet"]

_OUTPUTS = ("dict", "pred")


class HermesNet(nn.Module):
    """Both Hermes branches with inter-task attention (seg → cls) and saliency (cls → seg).

    Args:
        encoder: seg encoder, a timm name or preset (``"resnet18"``, ``"res2net101d"``, ``"paper"``).
        in_channels: image channels.
        num_seg_classes: segmentation classes.
        num_cls_classes: classification classes.
        decoder_channels: seg decoder channels (1/8, 1/4, 1/2 for the ``"paper"`` layout; 1/16, 1/8, 1/4,
            1/2 for ``"light"``).
        decoder_layout: ``"paper"`` (the public reference's U-Net decoder) or ``"light"`` (one block
            per scale), see :class:`HermesSegNet`.
        cls_stem_pool: keep the classifier's ResNet-18 stem max-pool (stock stage resolutions 1/4 … 1/32,
            about a quarter of the FLOPs), see :class:`HermesClsNet`.
        use_attention: IAS seg → cls switch.
        use_saliency: IAS cls → seg switch.
        detach_seg_features: stop the cls loss from reaching the seg branch through attention
            (default, HERMES §2: the public reference trains its seg results this way; False is the
            ablation in which the classification loss also trains the segmentation encoder).
        seg_weights_path: optional local checkpoint for the seg encoder.
        cls_weights_path: optional local ResNet-18 checkpoint for the classifier.
        output: ``"dict"`` (all outputs) or ``"pred"`` (only the seg logits, e.g. for MONAI's
            ``verify_net_in_out``).
    """

    def __init__(
        self,
        encoder: str = "resnet18",
        in_channels: int = 1,
        num_seg_classes: int = 2,
        num_cls_classes: int = 2,
        decoder_channels: Sequence[int] = (256, 128, 64, 32),
        use_attention: bool = True,
        use_saliency: bool = True,
        detach_seg_features: bool = True,
        seg_weights_path: str | None = None,
        cls_weights_path: str | None = None,
        output: str = "dict",
        decoder_layout: str = "light",
        cls_stem_pool: bool = True,
    ) -> None:
        super().__init__()
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}.")
        self.output = output
        use_attention = as_bool(use_attention, "use_attention")
        use_saliency = as_bool(use_saliency, "use_saliency")
        detach_seg_features = as_bool(detach_seg_features, "detach_seg_features")
        self.use_attention = use_attention
        self.use_saliency = use_saliency
        self.seg = HermesSegNet(
            encoder=encoder,
            in_channels=in_channels,
            num_classes=num_seg_classes,
            decoder_channels=decoder_channels,
            decoder_layout=decoder_layout,
            use_saliency=use_saliency,
            weights_path=seg_weights_path,
        )
        self.cls = HermesClsNet(
            in_channels=in_channels,
            num_classes=num_cls_classes,
            seg_channels=self.seg.feature_channels,
            use_attention=use_attention,
            detach_seg=detach_seg_features,
            weights_path=cls_weights_path,
            stem_pool=as_bool(cls_stem_pool, "cls_stem_pool"),
        )

    def forward(self, x: Tensor) -> dict[str, Tensor] | Tensor:
        """Run both branches on x (B, C_in, H, W).

        Returns:
            For ``output="dict"``: ``"seg_logits"`` (B, num_seg_classes, H, W), ``"seg_embed"``
            (B, 256, H/8, W/8), ``"seg_proj"`` (B, 256), ``"cls_logits"`` (B, num_cls_classes),
            ``"cls_embed"`` (B, 128), ``"cls_proj"`` (B, 256), and ``"saliency"`` (B, 1, H, W) when
            saliency is on. For ``output="pred"``: the seg logits tensor only.
        """
        sal = None
        if self.use_saliency:
            with frozen_norm_statistics(self.cls):
                sal = saliency_map(self.cls.forward_logits, x)
        seg_out = self.seg(x, sal)
        if self.output == "pred":
            return seg_out["logits"]
        cls_out = self.cls(x, seg_out["features"] if self.use_attention else None)
        out = {f"seg_{k}": seg_out[k] for k in ("logits", "embed", "proj")}
        out.update({f"cls_{k}": v for k, v in cls_out.items()})
        if sal is not None:
            out["saliency"] = sal
        return out

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Split the parameters by branch: ``"seg"`` (all of ``self.seg``), ``"cls"`` (all of
        ``self.cls``, attention included). Every parameter is in exactly one group."""
        return {"seg": list(self.seg.parameters()), "cls": list(self.cls.parameters())}
