"""Small heads shared by the Hermes branches: contrast embeddings and consistency projections.

- :class:`PixelContrastHead`: per-pixel 256-d embedding of the seg encoder's 1/8 features
  (1×1 conv-BN-ReLU-1×1 conv), L2-normalised over channels (HERMES.md §1).
- :class:`ProjectionMLP`: Linear-BN-ReLU-Linear-BN-ReLU, the inter-task consistency projection of
  both branches. It uses BatchNorm1d, so in training mode it needs batches of at least 2.
- :class:`ImageContrastHead`: Linear-LeakyReLU(0.1)-Linear, L2-normalised image embedding of the cls
  branch (512 → 256 → 128).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ImageContrastHead", "PixelContrastHead", "ProjectionMLP"]


class PixelContrastHead(nn.Module):
    """(B, in_ch, h, w) → (B, dim, h, w) with unit L2 norm over the channel axis at every pixel."""

    def __init__(self, in_ch: int, dim: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, in_ch, kernel_size=1, bias=False),
            nn.BatchNorm2d(in_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_ch, dim, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.net(x), dim=1)


class ProjectionMLP(nn.Module):
    """(B, in_dim) → (B, out_dim): Linear-BN-ReLU-Linear-BN-ReLU (not normalised)."""

    def __init__(self, in_dim: int, hidden: int = 256, out_dim: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim, bias=False),
            nn.BatchNorm1d(out_dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ImageContrastHead(nn.Module):
    """(B, in_dim) → (B, out_dim) with unit L2 norm per row: Linear-LeakyReLU(0.1)-Linear."""

    def __init__(self, in_dim: int = 512, hidden: int = 256, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.net(x), dim=1)
