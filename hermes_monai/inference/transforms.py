"""Post-processing transforms of the inference pipeline that MONAI does not have.

- :class:`SegEntropyd`: per-pixel entropy of the segmentation probabilities, divided by
  ``log(num_classes)`` so that it lies in [0, 1] (0: certain, 1: uniform), under ``entropy_key``.
- :class:`ClassResultd`: the class probabilities as MONAI Label's result JSON (``data["result"]``):
  ``{"class_probabilities": {name: p}, "predicted_class": name, "predicted_index": k}``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.transforms import MapTransform

__all__ = ["ClassResultd", "SegEntropyd"]


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
