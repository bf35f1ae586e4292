"""Tests for the dual-threshold selector (HERMES.md §4); expected values computed by hand in comments."""

import math

import pytest
import torch

from hermes_monai.pseudo_labels import DualThresholdSelector, Selection


def _probs(*p1):
    """C=2 probabilities from the class-1 probability of each sample."""
    p1 = torch.tensor(p1)
    return torch.stack([1 - p1, p1], dim=1)


def test_class_adaptive_thresholds_and_selection():
    # pseudo-labels 0,0,0,1 -> r = (0.75, 0.25)
    # tau_0 = 0.95 - 0.45 * (1 - 0.75) = 0.8375 ; tau_1 = 0.95 - 0.45 * (1 - 0.25) = 0.6125
    probs = _probs(0.1, 0.15, 0.2, 0.7)
    sel = DualThresholdSelector(2, use_entropy=False)(probs, gamma=1.0)
    assert isinstance(sel, Selection)
    assert torch.allclose(sel.thresholds, torch.tensor([0.8375, 0.6125]))
    assert sel.pseudo_label.tolist() == [0, 0, 0, 1]
    # confidences 0.9 > 0.8375, 0.85 > 0.8375, 0.8 < 0.8375, 0.7 > 0.6125
    assert sel.mask.tolist() == [True, True, False, True]
    assert sel.certainty_label.tolist() == [0, 0, -1, 1]
    assert sel.rate == pytest.approx(0.75)


def test_both_tests_combined():
    probs = _probs(0.1, 0.15, 0.2, 0.7)
    selector = DualThresholdSelector(2)
    # gamma=1: bar ln2 = 0.6931; H(0.3, 0.7) = 0.6109 passes -> same as confidence alone
    assert selector(probs, gamma=1.0).mask.tolist() == [True, True, False, True]
    # gamma=0.75: bar 0.5199; H(0.3, 0.7) = 0.6109 fails, H(0.85, 0.15) = 0.4227 passes
    sel = selector(probs, gamma=0.75)
    assert sel.mask.tolist() == [True, True, False, False]
    assert sel.certainty_label.tolist() == [0, 0, -1, -1]
    assert sel.rate == pytest.approx(0.5)


def test_mask_any_rejects_only_elements_failing_both_tests():
    # pseudo-labels 0,0,0,1,0 -> r = (0.8, 0.2)
    # tau_0 = 0.95 - 0.45 * 0.2 = 0.86, tau_1 = 0.95 - 0.45 * 0.8 = 0.59
    # gamma = 0.75: entropy bar 0.75 * ln 2 = 0.5199
    #   (0.9, 0.1):   conf 0.9 > 0.86 yes, H 0.3251 yes -> both
    #   (0.85, 0.15): conf no,  H 0.4227 yes            -> one
    #   (0.8, 0.2):   conf no,  H 0.5004 yes            -> one
    #   (0.3, 0.7):   conf 0.7 > 0.59 yes, H 0.6109 no  -> one
    #   (0.55, 0.45): conf no,  H 0.55*0.59784 + 0.45*0.79851 = 0.6881 no -> neither
    sel = DualThresholdSelector(2)(_probs(0.1, 0.15, 0.2, 0.7, 0.45), gamma=0.75)
    assert torch.allclose(sel.thresholds, torch.tensor([0.86, 0.59]))
    assert sel.mask.tolist() == [True, False, False, False, False]
    assert sel.mask_any.tolist() == [True, True, True, True, False]
    # a test switched off counts as passed: nothing fails both
    assert DualThresholdSelector(2, use_entropy=False)(_probs(0.45), gamma=0.0).mask_any.all()


def test_entropy_test_alone():
    # bar = 0.75 * ln 2 = 0.5199
    # H(0.9,0.1) = 0.9*0.10536 + 0.1*2.30259 = 0.3251 -> pass
    # H(0.8,0.2) = 0.8*0.22314 + 0.2*1.60944 = 0.5004 -> pass
    # H(0.7,0.3) = 0.7*0.35667 + 0.3*1.20397 = 0.6109 -> fail
    probs = _probs(0.1, 0.8, 0.3)
    sel = DualThresholdSelector(2, use_confidence=False)(probs, gamma=0.75)
    assert sel.mask.tolist() == [True, True, False]
    assert 0.75 * math.log(2) == pytest.approx(0.5199, abs=1e-4)


def test_switches_off_select_everything():
    probs = _probs(0.5, 0.45, 0.3)
    sel = DualThresholdSelector(2, use_confidence=False, use_entropy=False)(probs, gamma=0.0)
    assert sel.mask.all()
    assert sel.rate == 1.0
    # with only the confidence test the (0.5, 0.5) sample fails: 0.5 < tau
    sel = DualThresholdSelector(2, use_entropy=False)(probs, gamma=0.0)
    assert not sel.mask[0]


def test_pixel_level_shapes_and_selection():
    # fg probabilities of a 2x2 image: pseudo-labels [[1,1],[0,0]] -> r = (0.5, 0.5)
    # tau = 0.95 - 0.45 * 0.5 = 0.725 for both classes
    fg = torch.tensor([[0.95, 0.7], [0.2, 0.05]])
    probs = torch.stack([1 - fg, fg])[None]  # (1, 2, 2, 2)
    sel = DualThresholdSelector(2)(probs, gamma=0.75)
    assert sel.pseudo_label.shape == (1, 2, 2) and sel.pseudo_label.dtype == torch.long
    assert sel.mask.dtype == torch.bool
    assert torch.allclose(sel.thresholds, torch.tensor([0.725, 0.725]))
    # 0.7 < 0.725 fails; 0.95/0.8/0.95 pass confidence, entropies 0.1985/0.5004/0.1985 < 0.5199
    assert sel.mask[0].tolist() == [[True, False], [True, True]]
    assert sel.certainty_label[0].tolist() == [[1, -1], [0, 0]]
    assert sel.rate == pytest.approx(0.75)


def test_ema_class_ratio():
    selector = DualThresholdSelector(2, ratio_momentum=0.9)
    all_zero = _probs(0.01, 0.01, 0.01, 0.01)
    all_one = _probs(0.99, 0.99, 0.99, 0.99)
    # first update copies the batch ratio (1, 0): tau = (0.95, 0.5)
    sel = selector(all_zero, gamma=1.0)
    assert torch.allclose(sel.thresholds, torch.tensor([0.95, 0.5]))
    # r = 0.9 * (1, 0) + 0.1 * (0, 1) = (0.9, 0.1)
    # tau_0 = 0.95 - 0.45 * 0.1 = 0.905 ; tau_1 = 0.95 - 0.45 * 0.9 = 0.545
    sel = selector(all_one, gamma=1.0)
    assert torch.allclose(selector.class_ratio, torch.tensor([0.9, 0.1]))
    assert torch.allclose(sel.thresholds, torch.tensor([0.905, 0.545]))
    assert "class_ratio" in selector.state_dict()
    # eval mode: the ratio is frozen
    selector.eval()
    selector(all_zero, gamma=1.0)
    assert torch.allclose(selector.class_ratio, torch.tensor([0.9, 0.1]))
    # per-batch (paper) mode for comparison: all ones -> r = (0, 1) -> tau = (0.5, 0.95)
    sel = DualThresholdSelector(2)(all_one, gamma=1.0)
    assert torch.allclose(sel.thresholds, torch.tensor([0.5, 0.95]))


def test_no_gradient_and_shape_check():
    logits = torch.randn(3, 2, requires_grad=True)
    sel = DualThresholdSelector(2)(logits.softmax(1), gamma=1.0)
    assert not sel.thresholds.requires_grad
    with pytest.raises(ValueError):
        DualThresholdSelector(3)(logits.softmax(1), gamma=1.0)
