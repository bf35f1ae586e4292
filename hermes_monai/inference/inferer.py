"""The inference-time inferer: both heads of the network, optional flip TTA and sliding windows.

:class:`HermesInferer` calls ``network.predict(x)`` (:class:`~hermes_monai.networks.HermesDeployNet`,
or its TorchScript export) and returns a dict ``{"seg_logits", "cls_logits", "saliency"}``, which
the evaluator stores under ``pred`` and :class:`~hermes_monai.outputs.SplitHermesOutputd` splits
after decollation. A :class:`~hermes_monai.networks.HermesNet` (dict output) works too.

- ``flip_tta``: the logits are averaged over the image and its horizontal mirror (the mirror's
  segmentation and saliency are flipped back first). Ultrasound has no left/right convention, so
  the mirror is a plausible image; vertical flips (probe at the bottom) are not used.
- ``roi_size``: when given, the segmentation logits come from MONAI's
  :class:`~monai.inferers.SlidingWindowInferer` over windows of that size (Gaussian blending, so
  an image much larger than the training size is segmented at its own resolution), and the class
  logits from the whole image resized (area) to ``roi_size``, the size the classifier was trained at.

Choices where the spec is silent: the window overlap is 0.25; the saliency returned with sliding
windows is the classifier's map of the resized image, resized back (bilinear).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer, SlidingWindowInferer
from torch import Tensor

__all__ = ["HermesInferer", "predict_all"]


def predict_all(network: Callable[..., Any], x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(seg_logits, cls_logits, saliency)`` of a deploy network, its TorchScript file or a HermesNet."""
    predict = getattr(network, "predict", None)
    if predict is not None:
        seg, cls, sal = predict(x)
        return seg, cls, sal
    out = network(x)
    if isinstance(out, dict):
        sal = out.get("saliency")
        return out["seg_logits"], out["cls_logits"], sal if sal is not None else torch.zeros_like(x[:, :1])
    raise TypeError(
        f"network {type(network).__name__} gives neither predict() nor a dict of seg/cls logits; "
        "use hermes_monai.networks.HermesDeployNet"
    )


class HermesInferer(Inferer):
    """Segmentation and class logits of a Hermes network for a batch (B, C, H, W).

    Args:
        flip_tta: average with the horizontally mirrored image.
        roi_size: sliding-window size (H, W) or ``None`` for one pass over the whole image (which
            must then have sides divisible by 16).
        sw_batch_size: windows per network call.
        overlap: window overlap.
    """

    def __init__(
        self,
        flip_tta: bool = False,
        roi_size: Sequence[int] | None = None,
        sw_batch_size: int = 4,
        overlap: float = 0.25,
    ) -> None:
        super().__init__()
        self.flip_tta = flip_tta
        self.roi_size = None if roi_size is None else tuple(int(r) for r in roi_size)
        self.window = (
            None
            if roi_size is None
            else SlidingWindowInferer(
                roi_size=self.roi_size, sw_batch_size=sw_batch_size, overlap=overlap, mode="gaussian"
            )
        )

    def _once(self, x: Tensor, network: Callable[..., Any]) -> tuple[Tensor, Tensor, Tensor]:
        if self.window is None:
            return predict_all(network, x)
        small = F.interpolate(x, size=self.roi_size, mode="area")
        _, cls, sal = predict_all(network, small)
        seg = self.window(x, lambda patch: predict_all(network, patch)[0])
        sal = F.interpolate(sal, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.as_tensor(seg), cls, sal

    def __call__(
        self, inputs: Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> dict[str, Tensor]:
        x = inputs.as_tensor() if isinstance(inputs, MetaTensor) else torch.as_tensor(inputs)
        seg, cls, sal = self._once(x, network)
        if self.flip_tta:
            seg_f, cls_f, sal_f = self._once(torch.flip(x, dims=[-1]), network)
            seg = (seg + torch.flip(seg_f, dims=[-1])) / 2
            cls = (cls + cls_f) / 2
            sal = (sal + torch.flip(sal_f, dims=[-1])) / 2
        return {"seg_logits": seg, "cls_logits": cls, "saliency": sal}
