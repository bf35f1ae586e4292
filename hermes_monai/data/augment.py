"""Strong view for unlabeled images: per-sample intensity jitter and Gaussian blur on a batch.

Runs on the training device inside the engine, on the already-augmented weak view. Geometry
is untouched, so pseudo-labels computed on the weak view stay pixel-aligned with the strong one.

Per sample ``i`` of a batch ``x`` (B, C, H, W):

* colour jitter, applied with probability ``jitter_prob``: brightness
  ``x <- clamp(f_b * x)`` with ``f_b ~ U[1 - brightness, 1 + brightness]``, then contrast
  ``x <- clamp(f_c * x + (1 - f_c) * mean_i(x))`` with ``f_c ~ U[1 - contrast, 1 + contrast]``
  and ``mean_i`` the image's mean over (C, H, W). This mirrors torchvision's ``ColorJitter``
  for a grey image but in a fixed order (brightness, then contrast) so results are reproducible
  from the sampled factors. The spec's saturation (0.5) and hue (0.25) are no-ops on grey input
  and are therefore not implemented.
* Gaussian blur, applied with probability ``blur_prob``: ``sigma_i ~ U[sigma_min, sigma_max] · S / S_ref``
  for images of side ``S = min(H, W)`` (HERMES §3: the range ``[0.1, 2]`` px is meant for
  ``S_ref = 224``; a 96 px image gets ``[0.043, 0.86]``, the same blur relative to the anatomy, where
  the unscaled range would wipe out a small lesion's border); ``blur_reference_size=None`` keeps the
  range in pixels. One odd kernel size ``k = 2 * ceil(3 * sigma_max · S / S_ref) + 1`` for the whole
  batch, a (B, k) batch
  of 1D kernels (a unit impulse for samples not blurred), applied separably (rows, then
  columns) with one grouped ``conv2d`` each and reflect padding (replicate padding when the
  image is too small for reflect). No Python loop over samples.

All random numbers come from ``generator`` (which must live on ``x``'s device) or, when it is
``None``, from torch's global RNG; the draw order is fixed (jitter mask, brightness, contrast,
blur mask, sigma), so a seeded generator reproduces the output exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["StrongAugment"]


class StrongAugment(nn.Module):
    """Strong photometric augmentation of a (B, C, H, W) batch; see the module docstring.

    Use :meth:`sample_params` + :meth:`apply` to inspect or force the per-sample factors;
    ``forward`` is the two in sequence.
    """

    def __init__(
        self,
        brightness: float = 0.5,
        contrast: float = 0.5,
        jitter_prob: float = 0.8,
        blur_prob: float = 0.5,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        blur_reference_size: float | None = 224.0,
        clamp: tuple[float, float] | None = (0.0, 1.0),
    ) -> None:
        super().__init__()
        if not (0.0 <= brightness <= 1.0 and 0.0 <= contrast <= 1.0):
            raise ValueError(f"brightness and contrast must be in [0, 1], got {brightness}, {contrast}")
        if not (0.0 <= jitter_prob <= 1.0 and 0.0 <= blur_prob <= 1.0):
            raise ValueError(f"probabilities must be in [0, 1], got {jitter_prob}, {blur_prob}")
        if not (0.0 < blur_sigma[0] <= blur_sigma[1]):
            raise ValueError(f"blur_sigma must satisfy 0 < min <= max, got {blur_sigma}")
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.jitter_prob = float(jitter_prob)
        self.blur_prob = float(blur_prob)
        if blur_reference_size is not None and blur_reference_size <= 0:
            raise ValueError(f"blur_reference_size must be positive or None, got {blur_reference_size}")
        self.blur_sigma = (float(blur_sigma[0]), float(blur_sigma[1]))
        self.blur_reference_size = None if blur_reference_size is None else float(blur_reference_size)
        self.clamp = None if clamp is None else (float(clamp[0]), float(clamp[1]))
        self.kernel_size = self.kernel_size_for(None)

    def sigma_range(self, image_size: float | None) -> tuple[float, float]:
        """The blur sigma range in pixels for images of side ``image_size`` (None: the configured range)."""
        if image_size is None or self.blur_reference_size is None:
            return self.blur_sigma
        scale = float(image_size) / self.blur_reference_size
        return (self.blur_sigma[0] * scale, self.blur_sigma[1] * scale)

    def kernel_size_for(self, image_size: float | None) -> int:
        """Odd blur kernel size ``2 * ceil(3 * sigma_max) + 1`` for images of side ``image_size``."""
        return 2 * math.ceil(3.0 * self.sigma_range(image_size)[1]) + 1

    def sample_params(
        self,
        batch_size: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
        image_size: float | None = None,
    ) -> dict[str, Tensor]:
        """Draw per-sample factors; ``image_size`` (the side S) scales the blur sigma range.

        Returns:
            ``brightness`` (B,), ``contrast`` (B,): multiplicative factors, exactly 1 where jitter
            is not applied; ``sigma`` (B,): blur sigma, 0 where blur is not applied.
        """

        def uniform(lo: float, hi: float) -> Tensor:
            return lo + (hi - lo) * torch.rand(batch_size, generator=generator, device=device)

        jitter = torch.rand(batch_size, generator=generator, device=device) < self.jitter_prob
        fb = uniform(1.0 - self.brightness, 1.0 + self.brightness)
        fc = uniform(1.0 - self.contrast, 1.0 + self.contrast)
        blur = torch.rand(batch_size, generator=generator, device=device) < self.blur_prob
        sigma = uniform(*self.sigma_range(image_size))
        one = torch.ones_like(fb)
        return {
            "brightness": torch.where(jitter, fb, one),
            "contrast": torch.where(jitter, fc, one),
            "sigma": torch.where(blur, sigma, torch.zeros_like(sigma)),
        }

    def _clamp(self, x: Tensor) -> Tensor:
        return x if self.clamp is None else x.clamp(*self.clamp)

    def gaussian_kernels(self, sigma: Tensor, kernel_size: int | None = None) -> Tensor:
        """(B,) sigmas -> (B, k) normalised 1D Gaussian kernels; sigma <= 0 gives a unit impulse.

        ``k`` is ``kernel_size`` (default :attr:`kernel_size`, that of the configured sigma range)."""
        half = (self.kernel_size if kernel_size is None else int(kernel_size)) // 2
        t = torch.arange(-half, half + 1, device=sigma.device, dtype=torch.float32)
        s = sigma.to(torch.float32).clamp_min(1e-6)[:, None]
        kernels = torch.exp(-0.5 * (t[None, :] / s) ** 2)
        kernels = kernels / kernels.sum(dim=1, keepdim=True)
        impulse = (t == 0).to(kernels.dtype).expand_as(kernels)
        return torch.where((sigma > 0)[:, None], kernels, impulse)

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Apply given factors (see :meth:`sample_params`) to ``x`` (B, C, H, W); returns the same shape."""
        if x.ndim != 4:
            raise ValueError(f"StrongAugment expects (B, C, H, W), got shape {tuple(x.shape)}")
        b, c, h, w = x.shape
        dtype = x.dtype
        x = x.as_subclass(torch.Tensor).to(torch.float32)
        fb = params["brightness"].to(x.device, torch.float32).view(b, 1, 1, 1)
        fc = params["contrast"].to(x.device, torch.float32).view(b, 1, 1, 1)
        x = self._clamp(x * fb)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = self._clamp(fc * x + (1.0 - fc) * mean)

        # Always convolve (unit impulse where sigma == 0, which is exact): avoids a host sync on GPU.
        sigma = params["sigma"].to(x.device)
        k = self.kernel_size_for(min(h, w))
        pad = k // 2
        mode = "reflect" if pad < min(h, w) else "replicate"
        kernels = self.gaussian_kernels(sigma, k).repeat_interleave(c, dim=0)  # (B*C, k)
        y = x.reshape(1, b * c, h, w)
        y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode=mode), kernels.view(b * c, 1, 1, k), groups=b * c)
        y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode=mode), kernels.view(b * c, 1, k, 1), groups=b * c)
        x = self._clamp(y.reshape(b, c, h, w))
        return x.to(dtype)

    @torch.no_grad()
    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Strong view of ``x`` (B, C, H, W) with fresh per-sample randomness.

        Returns a plain ``torch.Tensor`` of the same shape and dtype (MetaTensor metadata is dropped).
        """
        params = self.sample_params(x.shape[0], x.device, generator, image_size=min(x.shape[-2:]))
        return self.apply(x, params)
