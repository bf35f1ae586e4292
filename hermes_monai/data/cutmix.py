"""CutMix for the strong view (HERMES.md §3, "optional CutMix"): each unlabeled image may take a box of
pixels from another image of its batch, and everything pixel-aligned with it takes the same box.

Why it is here: photometric jitter and blur leave the lesion's shape and position unchanged, so the
strong view asks the student for little it cannot already do from the weak one; a box pasted from
another image moves lesion borders and context, the perturbation that semi-supervised segmentation
needs to gain from unlabeled images (French et al., BMVC 2020; used by UniMatch and U2PL, whose
anchor sampling the pixel contrast follows).

Boxes are drawn on a grid of ``cell``-pixel cells (default 8, the stride of the seg contrast
embedding), so the same box cuts the images (H, W), the pseudo-labels and selection masks (H, W) and the
1/8-scale teacher embeddings exactly: :meth:`MixBoxes.apply` works on any tensor whose last two sizes
divide the image's by a whole number.

Per image ``i`` of a batch of ``B`` (``B ≥ 2``), with probability ``prob``: the partner is image
``(i + 1) mod B``; the box covers a share ``a ~ U[area]`` of the grid with aspect ``h/w = e^u``,
``u ~ U[ln r, −ln r]`` for ``r = aspect_min``, its sides rounded to whole cells (at least one, at most
the grid) and its corner uniform over the positions where it fits. All draws come from ``generator``
in a fixed order, so a seeded generator reproduces the boxes; no Python loop over images.

Which image-level losses a mixed image may enter is the trainer's decision: a mixed image has no
single class, so :class:`~hermes_monai.engines.HermesTrainer` leaves it out of the image-level
pseudo-label terms (:attr:`MixBoxes.mixed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CutMix", "MixBoxes"]


@dataclass
class MixBoxes:
    """The boxes of one CutMix draw over a batch.

    Attributes:
        partner: (B,) long, the image each one takes its box from.
        boxes: (B, 4) long, ``(y0, x0, y1, x1)`` in grid cells, end exclusive; an empty box (``y1 == y0``)
            for images that are not mixed.
        grid: (gh, gw), the grid size in cells.
    """

    partner: Tensor
    boxes: Tensor
    grid: tuple[int, int]

    @property
    def mixed(self) -> Tensor:
        """(B,) bool, True for the images that took a box."""
        return (self.boxes[:, 2] > self.boxes[:, 0]) & (self.boxes[:, 3] > self.boxes[:, 1])

    def masks(self, size: tuple[int, int]) -> Tensor:
        """(B, h, w) bool, True inside each image's box, at spatial size ``size`` (a multiple of the grid)."""
        h, w = int(size[0]), int(size[1])
        gh, gw = self.grid
        if h % gh or w % gw:
            raise ValueError(f"spatial size {(h, w)} is not a whole multiple of the CutMix grid {self.grid}")
        ys = torch.arange(gh, device=self.boxes.device)
        xs = torch.arange(gw, device=self.boxes.device)
        y0, x0, y1, x1 = (self.boxes[:, k, None] for k in range(4))
        rows = (ys[None] >= y0) & (ys[None] < y1)  # (B, gh)
        cols = (xs[None] >= x0) & (xs[None] < x1)  # (B, gw)
        cells = rows[:, :, None] & cols[:, None, :]  # (B, gh, gw)
        return cells.repeat_interleave(h // gh, dim=1).repeat_interleave(w // gw, dim=2)

    def apply(self, t: Tensor) -> Tensor:
        """Paste each image's box from its partner: ``t`` (B, ..., h, w) → the same shape and dtype."""
        if t.shape[0] != self.partner.shape[0]:
            raise ValueError(f"batch of {t.shape[0]} does not match the {self.partner.shape[0]} boxes")
        m = self.masks(t.shape[-2:])
        m = m.view(m.shape[0], *([1] * (t.ndim - 3)), *m.shape[1:])
        return torch.where(m, t[self.partner], t)


class CutMix:
    """Draw CutMix boxes for a batch; see the module docstring.

    Args:
        prob: probability that an image takes a box (0 switches CutMix off).
        area: range of the box's share of the image.
        aspect_min: the box's height/width ratio lies in ``[aspect_min, 1 / aspect_min]``.
        cell: box sides are whole multiples of this many pixels.
    """

    def __init__(
        self,
        prob: float = 0.5,
        area: tuple[float, float] = (0.1, 0.4),
        aspect_min: float = 0.5,
        cell: int = 8,
    ) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"CutMix prob must be in [0, 1], got {prob}")
        if not 0.0 < area[0] <= area[1] <= 1.0:
            raise ValueError(f"CutMix area must satisfy 0 < min <= max <= 1, got {area}")
        if not 0.0 < aspect_min <= 1.0:
            raise ValueError(f"CutMix aspect_min must be in (0, 1], got {aspect_min}")
        if int(cell) < 1:
            raise ValueError(f"CutMix cell must be a positive number of pixels, got {cell}")
        self.prob = float(prob)
        self.area = (float(area[0]), float(area[1]))
        self.aspect_min = float(aspect_min)
        self.cell = int(cell)

    def sample(
        self,
        batch_size: int,
        size: tuple[int, int],
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> MixBoxes:
        """Boxes for ``batch_size`` images of spatial ``size`` (H, W), both multiples of ``cell``."""
        h, w = int(size[0]), int(size[1])
        if h % self.cell or w % self.cell:
            raise ValueError(f"image size {(h, w)} is not a multiple of the CutMix cell ({self.cell} px)")
        gh, gw = h // self.cell, w // self.cell
        b = int(batch_size)

        def uniform(lo: float, hi: float) -> Tensor:
            return lo + (hi - lo) * torch.rand(b, generator=generator, device=device)

        take = torch.rand(b, generator=generator, device=device) < self.prob
        share = uniform(*self.area)
        log_r = math.log(self.aspect_min)
        aspect = torch.exp(uniform(log_r, -log_r))
        bh = torch.sqrt(share * aspect) * gh
        bw = torch.sqrt(share / aspect) * gw
        bh = bh.round().long().clamp(1, gh)
        bw = bw.round().long().clamp(1, gw)
        y0 = (torch.rand(b, generator=generator, device=device) * (gh - bh + 1)).floor().long()
        x0 = (torch.rand(b, generator=generator, device=device) * (gw - bw + 1)).floor().long()
        take = take & (b > 1)
        y1 = torch.where(take, y0 + bh, y0)
        x1 = torch.where(take, x0 + bw, x0)
        partner = (torch.arange(b, device=device) + 1) % b
        return MixBoxes(partner=partner, boxes=torch.stack([y0, x0, y1, x1], dim=1), grid=(gh, gw))
