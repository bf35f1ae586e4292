"""Evaluation metrics on hand-computed cases, and checkpoints that are written atomically."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine, Events

from hermes_monai.handlers import AtomicCheckpointSaver, compute_metrics


def _onehot(mask: torch.Tensor) -> torch.Tensor:
    """(N, H, W) {0,1} -> (N, 2, H, W)."""
    return torch.stack([1 - mask, mask], dim=1).float()


def test_dice_iou_per_image_and_pooled() -> None:
    pred = torch.zeros(2, 4, 4)
    true = torch.zeros(2, 4, 4)
    pred[0, 0, :4] = 1  # 4 predicted pixels
    true[0, 0, :2] = 1
    true[0, 1, 0] = 1  # 3 true pixels, 2 shared: Dice 2*2/(4+3) = 4/7, IoU 2/5
    pred[1, 2, 1:3] = 1
    true[1, 2, 1:3] = 1  # identical: Dice 1, IoU 1
    m = compute_metrics(_onehot(pred), _onehot(true))
    assert m["dice"] == pytest.approx((4 / 7 + 1) / 2)
    assert m["iou"] == pytest.approx((2 / 5 + 1) / 2)
    # pooled: intersection 2 + 2 = 4, |pred| 6, |true| 5 -> Dice 8/11, IoU 4/7
    assert m["dice_pooled"] == pytest.approx(8 / 11)
    assert m["iou_pooled"] == pytest.approx(4 / 7)
    assert "accuracy" not in m


def test_hd95_of_shifted_square() -> None:
    pred = torch.zeros(1, 6, 6)
    true = torch.zeros(1, 6, 6)
    pred[0, 0:2, 0:2] = 1
    true[0, 0:2, 2:4] = 1  # shifted by 2 columns: distances {1, 1, 2, 2} each way -> 95th pct = 2
    m = compute_metrics(_onehot(pred), _onehot(true))
    assert m["hd95"] == pytest.approx(2.0)
    assert m["dice"] == pytest.approx(0.0)
    assert m["hd95_count"] == 1


def test_unknown_classes_are_left_out_of_classification_metrics() -> None:
    seg = _onehot(torch.zeros(3, 4, 4, dtype=torch.long))
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]])
    m = compute_metrics(seg, seg, probs, torch.tensor([1, -1, 0]))  # the middle image has no class
    assert m["num_classified"] == 2 and m["accuracy"] == 1.0 and m["auc"] == 1.0
    none = compute_metrics(seg, seg, probs, torch.full((3,), -1))
    assert none["num_classified"] == 0 and "accuracy" not in none


def test_classification_metrics() -> None:
    seg = _onehot(torch.ones(4, 2, 2))
    p1 = torch.tensor([0.9, 0.2, 0.6, 0.4])
    probs = torch.stack([1 - p1, p1], dim=1)
    y = torch.tensor([1, 0, 0, 1])
    m = compute_metrics(seg, seg, probs, y)
    # predictions [1, 0, 1, 0]: TP 1, TN 1, FP 1, FN 1
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["sensitivity"] == pytest.approx(0.5)
    assert m["specificity"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    # AUC: positive scores {0.9, 0.4} vs negative {0.2, 0.6}: 3 of 4 pairs ordered -> 0.75
    assert m["auc"] == pytest.approx(0.75)


def test_auc_is_nan_with_one_class() -> None:
    seg = _onehot(torch.ones(2, 2, 2))
    m = compute_metrics(seg, seg, torch.tensor([[0.2, 0.8], [0.6, 0.4]]), torch.tensor([1, 1]))
    assert math.isnan(m["auc"]) and math.isnan(m["specificity"])


def _engine_with_metric(values: list[float]) -> Engine:
    def step(engine: Engine, batch: int) -> None:
        engine.state.metrics["score"] = values[engine.state.iteration - 1]

    return Engine(step)


def test_best_checkpoint_is_replaced_in_place_not_deleted(tmp_path) -> None:
    net = torch.nn.Linear(2, 1)
    saver = AtomicCheckpointSaver(
        save_dir=str(tmp_path),
        save_dict={"model": net},
        save_key_metric=True,
        key_metric_name="score",
        key_metric_filename="model.pt",
        epoch_level=False,
    )
    scores = [0.1, 0.5, 0.3, 0.9]
    weights = []
    engine = _engine_with_metric(scores)

    def bump(e: Engine) -> None:
        with torch.no_grad():
            net.weight.add_(1.0)
        weights.append(net.weight.clone())

    engine.add_event_handler(Events.ITERATION_STARTED, bump)
    saver.attach(engine)
    engine.run(range(4), max_epochs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temp files left behind
    best = torch.load(tmp_path / "model.pt", weights_only=True)
    assert torch.equal(best["weight"], weights[3])  # the best score (0.9) was the 4th step
