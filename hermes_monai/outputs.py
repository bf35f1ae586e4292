"""Turning the network's output dict into the keys MONAI post-processing, metrics and writers expect.

:class:`~hermes_monai.networks.HermesNet` returns a dict (``seg_logits``, ``cls_logits``, embeddings,
projections). Evaluators store it under ``pred``; after decollation each item's ``pred`` is that dict
for one image. :class:`SplitHermesOutputd` replaces it with the segmentation logits (C, H, W) under
``pred`` and puts the class probabilities (num_cls_classes,) under ``cls_prob``, dropping the training-only
embeddings, so the rest of a standard MONAI post-processing chain (``AsDiscreted``, ``SaveImaged``,
metrics) works unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.transforms import MapTransform


class SplitHermesOutputd(MapTransform):
    """Split a per-image Hermes output dict into ``pred`` (seg logits) and ``cls_prob`` (softmax).

    Args:
        pred_key: key holding the network's output dict.
        prob_key: key to write the class probabilities (num_cls_classes,) to.
    """

    def __init__(self, pred_key: str = "pred", prob_key: str = "cls_prob") -> None:
        super().__init__(keys=[pred_key])
        self.pred_key = pred_key
        self.prob_key = prob_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        out = d[self.pred_key]
        if not isinstance(out, Mapping):
            return d  # already split (e.g. a network built with output="pred")
        d[self.prob_key] = torch.softmax(torch.as_tensor(out["cls_logits"]).float(), dim=-1)
        d[self.pred_key] = out["seg_logits"]
        return d
