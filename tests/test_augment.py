"""Tests for hermes_monai.data.augment.StrongAugment (batched strong view)."""

from __future__ import annotations

import math

import pytest
import torch

from hermes_monai.data.augment import StrongAugment


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _hf_energy(x: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared difference between neighbouring pixels: (B,)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean(dim=(1, 2, 3))
    dy = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean(dim=(1, 2, 3))
    return dx + dy


def _params(b: int, brightness: float = 1.0, contrast: float = 1.0, sigma: float = 0.0) -> dict:
    return {
        "brightness": torch.full((b,), brightness),
        "contrast": torch.full((b,), contrast),
        "sigma": torch.full((b,), sigma),
    }


def test_shape_dtype_and_clamp_range() -> None:
    aug = StrongAugment()
    x = torch.rand(6, 1, 20, 24, generator=_gen(0))
    y = aug(x, generator=_gen(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    wide = StrongAugment(clamp=(0.2, 0.7))(x * 3 - 1, generator=_gen(2))  # out-of-range input
    assert float(wide.min()) >= 0.2 and float(wide.max()) <= 0.7
    assert not y.requires_grad


def test_blur_smooths_every_sample() -> None:
    aug = StrongAugment(jitter_prob=0.0, blur_prob=1.0, blur_sigma=(0.8, 2.0), blur_reference_size=None)
    x = torch.rand(5, 1, 32, 32, generator=_gen(0))
    y = aug(x, generator=_gen(3))
    assert torch.all(_hf_energy(y) < 0.5 * _hf_energy(x))
    # a normalised kernel with reflect padding leaves each image's mean nearly unchanged
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=0.02, rtol=0)


def test_no_jitter_no_blur_is_identity() -> None:
    aug = StrongAugment(jitter_prob=0.0, blur_prob=0.0)
    x = torch.rand(4, 2, 9, 11, generator=_gen(0))
    params = aug.sample_params(4, generator=_gen(1))
    assert torch.all(params["brightness"] == 1) and torch.all(params["contrast"] == 1)
    assert torch.all(params["sigma"] == 0)
    torch.testing.assert_close(aug(x, generator=_gen(1)), x, atol=0, rtol=0)


def test_seeded_generator_is_reproducible() -> None:
    aug = StrongAugment()
    x = torch.rand(8, 1, 16, 16, generator=_gen(0))
    a, b = aug(x, generator=_gen(42)), aug(x, generator=_gen(42))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a, aug(x, generator=_gen(43)))
    torch.manual_seed(7)
    c = aug(x)
    torch.manual_seed(7)
    torch.testing.assert_close(aug(x), c, atol=0, rtol=0)  # generator=None -> global RNG


def test_forced_brightness_and_contrast() -> None:
    aug = StrongAugment(clamp=None)
    # brightness 1.5 on a constant 0.4 image -> 0.6
    const = torch.full((1, 1, 4, 4), 0.4)
    torch.testing.assert_close(aug.apply(const, _params(1, brightness=1.5)), torch.full_like(const, 0.6))
    # contrast 0.5 on an image of 0.2 / 0.6 halves (mean 0.4): 0.5*0.2 + 0.5*0.4 = 0.3, 0.5*0.6 + 0.2 = 0.5
    x = torch.tensor([0.2, 0.6]).repeat(8).view(1, 1, 4, 4)
    y = aug.apply(x, _params(1, contrast=0.5))
    torch.testing.assert_close(y, torch.where(x < 0.4, 0.3, 0.5))
    assert math.isclose(float(y.mean()), 0.4, abs_tol=1e-6)
    assert math.isclose(float(y.std()), 0.5 * float(x.std()), rel_tol=1e-5)
    # brightness 0.5 then contrast 2: mean 0.4 -> 0.2, values 0.1 / 0.3 -> 2*0.1 - 0.2 = 0.0, 0.4
    z = aug.apply(x, _params(1, brightness=0.5, contrast=2.0))
    torch.testing.assert_close(z, torch.where(x < 0.4, 0.0, 0.4))
    # contrast is about each image's own mean: constant images 0.2 and 0.6 in one batch stay put
    # (a batch-wide mean of 0.4 would give 0.5*0.2 + 0.5*0.4 = 0.3 and 0.5)
    pair = torch.tensor([0.2, 0.6]).view(2, 1, 1, 1).expand(2, 1, 4, 4)
    torch.testing.assert_close(aug.apply(pair, _params(2, contrast=0.5)), pair)


def test_gaussian_kernel_matches_formula() -> None:
    aug = StrongAugment(blur_sigma=(0.1, 2.0), blur_reference_size=None, clamp=None)
    assert aug.kernel_size == 13  # 2 * ceil(3 * 2.0) + 1
    k = aug.gaussian_kernels(torch.tensor([1.0, 0.0]))
    assert k.shape == (2, 13)
    # sigma 1: k[t] = exp(-t^2 / 2) / sum_{t=-6..6} exp(-t^2 / 2)
    norm = sum(math.exp(-(t**2) / 2) for t in range(-6, 7))
    assert math.isclose(float(k[0, 6]), 1 / norm, rel_tol=1e-5)
    assert math.isclose(float(k[0, 7]), math.exp(-0.5) / norm, rel_tol=1e-5)
    assert torch.equal(k[1], (torch.arange(13) == 6).float())  # sigma 0 -> unit impulse
    # separable blur of a centred impulse: peak = k0^2, neighbour = k0 * k1
    img = torch.zeros(1, 1, 31, 31)
    img[0, 0, 15, 15] = 1.0
    out = aug.apply(img, _params(1, sigma=1.0))
    assert math.isclose(float(out[0, 0, 15, 15]), (1 / norm) ** 2, rel_tol=1e-5)
    assert math.isclose(float(out[0, 0, 15, 16]), math.exp(-0.5) / norm**2, rel_tol=1e-5)
    assert math.isclose(float(out.sum()), 1.0, rel_tol=1e-5)


def test_blur_sigma_scales_with_image_size() -> None:
    """HERMES §3: sigma in [0.1, 2] * S / 224 px; the kernel follows the scaled bound."""
    aug = StrongAugment(jitter_prob=0.0, blur_prob=1.0)
    assert aug.sigma_range(224) == (0.1, 2.0)
    lo, hi = aug.sigma_range(96)
    assert math.isclose(lo, 0.1 * 96 / 224) and math.isclose(hi, 2.0 * 96 / 224)  # 0.0429, 0.857
    assert aug.kernel_size_for(224) == 13 and aug.kernel_size_for(96) == 7  # 2 * ceil(3 * 0.857) + 1
    for size in (96, 224):
        s = aug.sample_params(500, generator=_gen(4), image_size=size)["sigma"]
        assert float(s.min()) >= 0.1 * size / 224 and float(s.max()) <= 2.0 * size / 224
        assert float(s.max()) > 0.9 * 2.0 * size / 224  # the bound is reached, not just respected
    # the same draw blurs a 96 px image less than an unscaled augmenter would
    x = torch.rand(6, 1, 96, 96, generator=_gen(0))
    scaled = aug(x, generator=_gen(7))
    unscaled = StrongAugment(jitter_prob=0.0, blur_prob=1.0, blur_reference_size=None)(x, generator=_gen(7))
    assert torch.all(_hf_energy(scaled) > _hf_energy(unscaled))


def test_constant_image_survives_blur_and_tiny_images_work() -> None:
    aug = StrongAugment(jitter_prob=0.0, blur_prob=1.0, clamp=None)
    const = torch.full((3, 1, 16, 16), 0.37)
    torch.testing.assert_close(aug(const, generator=_gen(0)), const)  # reflect padding, normalised kernel
    tiny = torch.rand(2, 1, 4, 5, generator=_gen(1))  # smaller than the 6-pixel pad: replicate fallback
    out = aug(tiny, generator=_gen(2))
    assert out.shape == tiny.shape and torch.isfinite(out).all()


def test_per_sample_independence() -> None:
    aug = StrongAugment(jitter_prob=0.8, blur_prob=0.5)
    params = aug.sample_params(400, generator=_gen(5))
    jittered = (params["brightness"] != 1) | (params["contrast"] != 1)
    blurred = params["sigma"] > 0
    assert 0.72 < float(jittered.float().mean()) < 0.88  # Binomial(400, 0.8): sd = 0.02
    assert 0.42 < float(blurred.float().mean()) < 0.58  # Binomial(400, 0.5): sd = 0.025
    s = params["sigma"][blurred]
    assert float(s.min()) >= 0.1 and float(s.max()) <= 2.0 and s.unique().numel() == s.numel()
    b = params["brightness"][jittered]
    assert float(b.min()) >= 0.5 and float(b.max()) <= 1.5 and b.unique().numel() == b.numel()

    # identical images in one batch get different strong views
    x = torch.rand(1, 1, 24, 24, generator=_gen(0)).expand(4, 1, 24, 24).contiguous()
    y = StrongAugment(jitter_prob=0.0, blur_prob=1.0, blur_reference_size=None)(x, generator=_gen(9))
    energy = _hf_energy(y)
    assert energy.unique().numel() == 4


def test_rejects_non_batch_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        StrongAugment()(torch.rand(1, 8, 8))
    with pytest.raises(ValueError):
        StrongAugment(blur_sigma=(0.0, 1.0))
