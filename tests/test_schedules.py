"""Tests for the ramp schedules (HERMES.md §4-§5); expected values computed by hand in comments."""

import math

import pytest

from hermes_monai.schedules import consistency_weight, contrast_weight, entropy_ratio, sigmoid_rampup


def test_sigmoid_rampup_points():
    # t=0: exp(-5 * 1^2) = exp(-5) = 0.0067379
    assert sigmoid_rampup(0, 10) == pytest.approx(0.0067379, abs=1e-6)
    # t=T/2: exp(-5 * 0.5^2) = exp(-1.25) = 0.2865048
    assert sigmoid_rampup(5, 10) == pytest.approx(0.2865048, abs=1e-6)
    # t=T: exp(0) = 1
    assert sigmoid_rampup(10, 10) == pytest.approx(1.0)
    # clipped outside [0, T]
    assert sigmoid_rampup(25, 10) == pytest.approx(1.0)
    assert sigmoid_rampup(-3, 10) == pytest.approx(math.exp(-5))
    # length 0 -> no ramp
    assert sigmoid_rampup(0, 0) == 1.0


def test_entropy_ratio_endpoints():
    # 0.75 + 0.25 * exp(-5) = 0.75 + 0.0016845 = 0.7516845
    assert entropy_ratio(0, 100) == pytest.approx(0.7516845, abs=1e-6)
    # 0.75 + 0.25 * exp(-1.25) = 0.75 + 0.0716262 = 0.8216262
    assert entropy_ratio(50, 100) == pytest.approx(0.8216262, abs=1e-6)
    assert entropy_ratio(100, 100) == pytest.approx(1.0)
    # custom start: 0.5 + 0.5 * 1 = 1 at the end, 0.5 + 0.5*exp(-5) = 0.503369 at the start
    assert entropy_ratio(0, 10, start=0.5) == pytest.approx(0.503369, abs=1e-6)


def test_consistency_weight_is_a_fraction_of_t():
    # default length 4/3 T equals the paper's rampup(t / 100, 40) at T = 3000
    for t in (0, 500, 2000, 2999):
        paper = sigmoid_rampup(t / 100, 40)
        assert consistency_weight(t, 3000) == pytest.approx(paper, rel=1e-9)
    # same shape for a short run: at the end c = 3/4 -> exp(-5/16) = 0.7316156
    assert consistency_weight(300, 300) == pytest.approx(0.7316156, abs=1e-6)
    assert consistency_weight(3000, 3000) == pytest.approx(0.7316156, abs=1e-6)
    # half-way through a 300-iteration run: c = 150 / 400 = 0.375
    # -> exp(-5 * 0.625^2) = exp(-1.953125) = 0.1418302
    assert consistency_weight(150, 300) == pytest.approx(0.1418302, abs=1e-6)
    # weight scales; length 1 reaches the full weight at T
    assert consistency_weight(40, 40, weight=2.5, length=1.0) == pytest.approx(2.5)


def test_contrast_weight_warmup_then_ramp():
    # warm-up 0.1 of T=200 -> off for t < 20
    assert contrast_weight(0, 200, warmup=0.1, rampup=0.2) == 0.0
    assert contrast_weight(19, 200, warmup=0.1, rampup=0.2) == 0.0
    # at the switch-on: rampup(0, 40) = exp(-5)
    assert contrast_weight(20, 200, warmup=0.1, rampup=0.2) == pytest.approx(math.exp(-5))
    # half-way up the ramp: rampup(20, 40) = exp(-1.25)
    assert contrast_weight(40, 200, warmup=0.1, rampup=0.2) == pytest.approx(0.2865048, abs=1e-6)
    assert contrast_weight(60, 200, warmup=0.1, rampup=0.2) == pytest.approx(1.0)
    # no ramp: a step at the warm-up
    assert contrast_weight(20, 200, warmup=0.1, rampup=0.0) == 1.0
    with pytest.raises(ValueError):
        contrast_weight(0, 10, warmup=1.5)
