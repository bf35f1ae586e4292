"""Inter-task consistency loss (HERMES.md §5): ``L_itc = 1 − mean_b cos(seg_proj_b, cls_proj_b)``.

Both projections are L2-normalised first, so the loss lies in ``[0, 2]``: 0 for aligned vectors and 2
for opposite ones. It is weighted by ``λ(t)`` from :func:`hermes_monai.schedules.consistency_weight`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["inter_task_consistency"]


def inter_task_consistency(seg_proj: Tensor, cls_proj: Tensor) -> Tensor:
    """Args:
        seg_proj: ``(B, D)`` segmentation-branch consistency projection.
        cls_proj: ``(B, D)`` classification-branch consistency projection.

    Returns:
        scalar ``1 − mean_b <seg_b/|seg_b|, cls_b/|cls_b|>``.
    """
    if seg_proj.shape != cls_proj.shape:
        raise ValueError(f"shape mismatch: {tuple(seg_proj.shape)} vs {tuple(cls_proj.shape)}")
    cos = (F.normalize(seg_proj, dim=1) * F.normalize(cls_proj, dim=1)).sum(dim=1)
    return 1.0 - cos.mean()
