"""Post-processing transforms of the inference pipeline that MONAI does not have.

- :class:`SegEntropyd`: per-pixel entropy of the segmentation probabilities, divided by
  ``log(num_classes)`` so that it lies in [0, 1] (0: certain, 1: uniform), under ``entropy_key``.
- :class:`ClassResultd`: the class probabilities as MONAI Label's result JSON (``data["result"]``):
  ``{"class_probabilities": {name: p}, "predicted_class": name, "predicted_index": k}``.
- :class:`ToXYOrderd`: the final label in MONAI's (x, y) axis order, for MONAI Label's writer.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform

__all__ = ["ClassResultd", "SegEntropyd", "ToXYOrderd"]


class SegEntropyd(MapTransform):
    """Add the normalised entropy (1, H, W) of the probabilities (C, H, W) under ``prob_key``."""

    def __init__(self, prob_key: str = "pred", entropy_key: str = "entropy", eps: float = 1e-8) -> None:
        super().__init__(keys=[prob_key])
        self.prob_key = prob_key
        self.entropy_key = entropy_key
        self.eps = eps

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        p = d[self.prob_key]
        ent = -(p * torch.log(p.clamp_min(self.eps))).sum(dim=0, keepdim=True) / math.log(p.shape[0])
        d[self.entropy_key] = ent.clamp(0.0, 1.0)
        return d


class ClassResultd(MapTransform):
    """Write the class probabilities under ``prob_key`` as a result dict under ``result_key``."""

    def __init__(
        self, class_names: Sequence[str], prob_key: str = "cls_prob", result_key: str = "result"
    ) -> None:
        super().__init__(keys=[prob_key])
        self.class_names = list(class_names)
        self.prob_key = prob_key
        self.result_key = result_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        prob = torch.as_tensor(d[self.prob_key]).float().flatten()
        if prob.numel() != len(self.class_names):
            raise ValueError(f"{prob.numel()} class probabilities for {len(self.class_names)} class names")
        k = int(prob.argmax())
        result = dict(d.get(self.result_key) or {})
        result.update(
            {
                "class_probabilities": {n: float(p) for n, p in zip(self.class_names, prob.tolist())},
                "predicted_class": self.class_names[k],
                "predicted_index": k,
            }
        )
        d[self.result_key] = result
        return d


class ToXYOrderd(MapTransform):
    """Transpose the 2D label under ``keys`` from rows-first (H, W) to MONAI's (x, y) = (W, H) order.

    This project's loader keeps arrays as displayed (rows first); MONAI's image readers and MONAI Label
    use (x, y). MONAI Label's result writer transposes every 2D label before writing it, and its
    ``Restored`` step (appended after the bundle's post-processing) resizes the label to the reference
    image's ``meta["spatial_shape"]`` whenever the two differ. So the label is transposed here and the
    reference image's ``spatial_shape`` is set to the transposed (x, y) size, which makes ``Restored`` a
    no-op and the written file the input's orientation. Run it last.
    """

    def __init__(self, keys: str | Sequence[str] = "pred", ref_key: str = "image") -> None:
        super().__init__(keys=keys)
        self.ref_key = ref_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if d[key].ndim != 2:
                raise ValueError(f"{key}: expected a (H, W) label, got shape {tuple(d[key].shape)}")
            d[key] = d[key].T.contiguous() if isinstance(d[key], torch.Tensor) else d[key].T.copy()
            ref = d.get(self.ref_key)
            meta = getattr(ref, "meta", None)
            if meta is not None:
                meta["spatial_shape"] = np.asarray(d[key].shape)
        return d
