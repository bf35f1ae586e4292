"""The evaluation report of HERMES.md §6: segmentation and classification metrics in one JSON.

:func:`compute_metrics` is the arithmetic (MONAI's metric functions for Dice, IoU, HD95 and AUC;
confusion counts for the rest). :class:`MetricsReport` is an ignite handler for an evaluator: it
gathers every image's prediction during the run and, when the run completes, computes the metrics,
puts them in ``engine.state.metrics`` (so ``MLFlowHandler``/``StatsHandler`` attached afterwards log
them), logs them and writes them to a JSON file, written atomically.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou, compute_roc_auc

from hermes_monai.io import write_json_atomic

logger = logging.getLogger(__name__)


def _mean_std(values: torch.Tensor) -> tuple[float, float, int]:
    finite = values[torch.isfinite(values)]
    if finite.numel() == 0:
        return math.nan, math.nan, 0
    std = float(finite.std(unbiased=False)) if finite.numel() > 1 else 0.0
    return float(finite.mean()), std, int(finite.numel())


def compute_metrics(
    seg_pred: torch.Tensor,
    seg_true: torch.Tensor,
    cls_prob: torch.Tensor | None = None,
    cls_true: torch.Tensor | None = None,
    positive_class: int = 1,
) -> dict[str, Any]:
    """Lesion segmentation and classification metrics.

    Args:
        seg_pred: (N, C, H, W) one-hot predicted masks (channel 0 = background).
        seg_true: (N, C, H, W) one-hot ground-truth masks.
        cls_prob: (N, K) class probabilities, or None to skip classification metrics.
        cls_true: (N,) true class indices.
        positive_class: the class counted as positive for sensitivity/specificity/F1/AUC
            (1 = malignant).

    Returns:
        ``dice``/``iou`` (per-image mean over the lesion class, images with an empty ground truth and
        an empty prediction skipped) with ``*_std``; ``dice_pooled``/``iou_pooled`` (all pixels of all
        images as one); ``hd95`` (pixels; mean over images where both masks are non-empty) with
        ``hd95_count``; and ``accuracy``, ``auc``, ``sensitivity``, ``specificity``, ``f1`` when
        classification inputs are given; ``num_images``.
    """
    seg_pred = seg_pred.float()
    seg_true = seg_true.float()
    dice = compute_dice(seg_pred, seg_true, include_background=False, ignore_empty=True)[:, 0]
    iou = compute_iou(seg_pred, seg_true, include_background=False, ignore_empty=True)[:, 0]
    hd = compute_hausdorff_distance(seg_pred, seg_true, include_background=False, percentile=95)[:, 0]
    res: dict[str, Any] = {"num_images": int(seg_pred.shape[0])}
    res["dice"], res["dice_std"], _ = _mean_std(dice)
    res["iou"], res["iou_std"], _ = _mean_std(iou)
    res["hd95"], res["hd95_std"], res["hd95_count"] = _mean_std(hd)
    inter = (seg_pred[:, 1:] * seg_true[:, 1:]).sum()
    p_sum, t_sum = seg_pred[:, 1:].sum(), seg_true[:, 1:].sum()
    res["dice_pooled"] = float(2 * inter / (p_sum + t_sum)) if p_sum + t_sum > 0 else math.nan
    res["iou_pooled"] = float(inter / (p_sum + t_sum - inter)) if p_sum + t_sum > 0 else math.nan
    if cls_prob is not None and cls_true is not None:
        cls_true = cls_true.long().view(-1)
        known = cls_true >= 0  # -1: class unknown (segmentation-only data)
        cls_prob, cls_true = cls_prob[known], cls_true[known]
        res["num_classified"] = int(known.sum())
    if cls_prob is not None and cls_true is not None and cls_true.numel() > 0:
        pred = cls_prob.argmax(1)
        pos_t, pos_p = cls_true == positive_class, pred == positive_class
        tp = int((pos_t & pos_p).sum())
        tn = int((~pos_t & ~pos_p).sum())
        fp = int((~pos_t & pos_p).sum())
        fn = int((pos_t & ~pos_p).sum())
        res["accuracy"] = float((pred == cls_true).float().mean())
        res["sensitivity"] = tp / (tp + fn) if tp + fn else math.nan
        res["specificity"] = tn / (tn + fp) if tn + fp else math.nan
        res["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
        both = bool(pos_t.any()) and bool((~pos_t).any())
        res["auc"] = float(compute_roc_auc(cls_prob[:, positive_class], pos_t.long())) if both else math.nan
    return res


class MetricsReport:
    """Collects an evaluator's per-image outputs and writes the HERMES §6 metrics at the end.

    Args:
        output_file: JSON file to write (parent folders are created).
        pred_key / label_key: one-hot (C, H, W) masks in each decollated output item.
        prob_key / class_key: class probabilities (K,) and true class in each output item
            (``class_key`` is read from the item, falling back to the engine's batch).
        positive_class: class counted as positive (1 = malignant).
        prefix: prefix for the keys added to ``engine.state.metrics`` (e.g. ``"test_"``).
    """

    def __init__(
        self,
        output_file: str | os.PathLike,
        pred_key: str = "pred",
        label_key: str = "label",
        prob_key: str = "cls_prob",
        class_key: str = "class",
        positive_class: int = 1,
        prefix: str = "",
    ) -> None:
        self.output_file = Path(output_file)
        self.keys = (pred_key, label_key, prob_key, class_key)
        self.positive_class = positive_class
        self.prefix = prefix
        self._items: list[tuple] = []
        self.results: dict[str, Any] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._report)

    def _reset(self, engine: Engine) -> None:
        self._items = []

    def _collect(self, engine: Engine) -> None:
        pred_key, label_key, prob_key, class_key = self.keys
        for batch_item, item in zip(engine.state.batch, engine.state.output):
            cls = item.get(class_key, batch_item.get(class_key))
            self._items.append(
                (
                    torch.as_tensor(item[pred_key]).detach().cpu(),
                    torch.as_tensor(item[label_key]).detach().cpu(),
                    None if item.get(prob_key) is None else torch.as_tensor(item[prob_key]).detach().cpu(),
                    None if cls is None else torch.as_tensor(cls).detach().cpu().view(-1)[0],
                )
            )

    def _report(self, engine: Engine) -> None:
        if not self._items:
            raise RuntimeError("MetricsReport: the evaluator produced no output to report on")
        preds, labels, probs, classes = zip(*self._items)
        have_cls = all(p is not None for p in probs) and all(c is not None for c in classes)
        self.results = compute_metrics(
            torch.stack(preds),
            torch.stack(labels),
            torch.stack(probs) if have_cls else None,
            torch.stack(classes) if have_cls else None,
            self.positive_class,
        )
        for k, v in self.results.items():
            engine.state.metrics[self.prefix + k] = v
        lines = ", ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in self.results.items()
        )
        logger.info("evaluation metrics: %s", lines)
        write_json_atomic(self.output_file, self.results)
