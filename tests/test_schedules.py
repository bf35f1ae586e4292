"""Tests for the ramp schedules (HERMES.md §4-§5); expected values computed by hand in comments."""

import math

import pytest

from hermes_monai.schedules import consistency_weight, entropy_ratio, sigmoid_rampup


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


def test_consistency_weight():
    # rampup(0 / 100, 40) = exp(-5)
    assert consistency_weight(0) == pytest.approx(math.exp(-5))
    # rampup(2000 / 100 = 20, 40) = exp(-1.25) = 0.2865048
    assert consistency_weight(2000) == pytest.approx(0.2865048, abs=1e-6)
    # t/100 = 40 -> 1; weight scales it
    assert consistency_weight(4000) == pytest.approx(1.0)
    assert consistency_weight(4000, weight=2.5) == pytest.approx(2.5)
    # custom scale/length: rampup(30 / 10 = 3, 6) = exp(-1.25)
    assert consistency_weight(30, scale=10.0, length=6.0) == pytest.approx(0.2865048, abs=1e-6)
