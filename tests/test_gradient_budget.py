"""GradientBudget: factors from hand-computed ratios, the running mean, and its use in the trainer."""

from __future__ import annotations

import math

import pytest
import torch
from test_engine import _trainer, _unlabeled

from hermes_monai.engines import GradientBudget


def _shares(seg_l: float, **terms: float) -> dict[str, float]:
    return {"grad_norm_seg_l": seg_l, **{f"grad_norm_{k}": v for k, v in terms.items()}}


def test_a_term_above_budget_is_scaled_to_it_and_one_below_is_left_alone() -> None:
    budget = GradientBudget(1.0, momentum=0.0)
    assert budget.factor("loss_contrast_seg") == 1.0  # nothing measured yet
    budget.update(_shares(0.2, contrast_seg=0.6, itc=0.1, seg_u=0.0))
    assert budget.factor("loss_contrast_seg") == pytest.approx(1 / 3)  # ratio 3 -> 1/3
    assert budget.factor("loss_itc") == 1.0  # ratio 0.5, within budget
    assert "loss_seg_u" not in budget.log_ratio  # zero gradient (switched off): not measured
    # the next measurement is taken on the already scaled term: 0.2 scaled = 0.6 unscaled, factor stays
    budget.update(_shares(0.2, contrast_seg=0.2))
    assert budget.factor("loss_contrast_seg") == pytest.approx(1 / 3)
    half = GradientBudget(0.5, momentum=0.0)
    half.update(_shares(1.0, itc=2.0))
    assert half.factor("loss_itc") == pytest.approx(0.25)


def test_the_running_ratio_is_a_geometric_mean() -> None:
    budget = GradientBudget(1.0, momentum=0.5)
    budget.update(_shares(1.0, itc=3.0))
    budget.update(_shares(1.0, itc=1.5 / 3.0 * 3.0 * budget.factor("loss_itc")))  # unscaled ratio 1.5
    # exp((ln 3 + ln 1.5) / 2) = sqrt(4.5)
    assert budget.factor("loss_itc") == pytest.approx(1 / math.sqrt(4.5))


def test_disabled_and_invalid_budgets() -> None:
    off = GradientBudget(None)
    off.update(_shares(0.1, contrast_seg=10.0))
    assert not off.enabled and off.factor("loss_contrast_seg") == 1.0
    assert not GradientBudget("null").enabled  # as the bundle command line passes it
    assert GradientBudget("0.5").budget == 0.5
    for bad in (0.0, -1.0, "x"):
        with pytest.raises(ValueError, match="grad_budget"):
            GradientBudget(bad)
    with pytest.raises(ValueError, match="grad_monitor_interval"):
        _trainer(_unlabeled(1), grad_budget=1.0)  # a budget needs the monitor


def test_trainer_applies_the_factors_and_keeps_them_across_a_resume() -> None:
    trainer = _trainer(
        _unlabeled(1), contrast_warmup=0, epoch_length=2, grad_monitor_interval=1, grad_budget=1e-3
    )
    trainer.run()
    o = trainer.state.output
    f_u, f_c, f_itc = (o[f"grad_scale_{k}"] for k in ("seg_u", "contrast_seg", "itc"))
    # iteration 1 measured the terms far above a 1e-3 budget, so iteration 2 scaled them down
    assert f_c < 1.0 and f_itc < 1.0
    w = trainer.weights
    seg = (
        w["seg_total"]
        * (
            o["loss_seg_l"]
            + f_u * w["seg_unsup"] * o["loss_seg_u"]
            + f_c * w["seg_contrast"] * o["contrast_weight"] * o["loss_contrast_seg"]
        )
        + f_itc * o["itc_weight"] * o["loss_itc"]
    )
    assert o["loss_seg"] == pytest.approx(seg, rel=1e-5)
    # the measured ratio (on the scaled term) is now near the budget, not far above it
    assert o["grad_norm_contrast_seg"] / o["grad_norm_seg_l"] < 0.1
    saved = trainer.hermes_state_dict()["grad_budget"]
    fresh = _trainer(_unlabeled(1), grad_monitor_interval=1, grad_budget=1e-3)
    fresh.load_hermes_state_dict(trainer.hermes_state_dict())
    assert fresh.grad_budget.state_dict() == saved and set(saved) >= {"loss_contrast_seg", "loss_itc"}
    assert fresh.grad_budget.factor("loss_itc") == trainer.grad_budget.factor("loss_itc")
    assert torch.isfinite(o["loss"])
