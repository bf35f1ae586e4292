"""Memory banks of past (detached) embeddings for the contrastive losses (HERMES.md §5).

* :class:`FeatureQueue` — one ring buffer of ``size`` embeddings with their labels (image-level
  contrast). Slots are written at ``ptr``, ``ptr + 1``, ... modulo ``size``; :meth:`FeatureQueue.get`
  returns the filled slots in *slot order* (after a wrap-around the oldest entries have been
  overwritten in place, so slot order is not chronological — the contrastive loss does not care).
* :class:`ClassFeatureBank` — one ring buffer of ``size`` embeddings per class, kept in a single
  ``(num_classes, size, dim)`` buffer (pixel-level contrast), so a frequent class cannot push a rare
  one out of the bank.

Under ``torch.distributed`` every enqueue gathers the entries of all ranks (in rank order,
:func:`hermes_monai.distributed.all_gather_rows`), so every rank holds the same bank; ``enqueue`` is then a
collective that every rank must call, with any number of entries (zero included).

All state lives in registered buffers, so it moves with ``.to(device)`` and is saved in checkpoints.
Enqueued features are detached and cast to the bank dtype (float32 by default); rows holding NaN or inf are
dropped. When more entries than
``size`` arrive at once only the last ``size`` are kept.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hermes_monai.distributed import all_gather_rows

__all__ = ["FeatureQueue", "ClassFeatureBank"]


class FeatureQueue(nn.Module):
    """Ring buffer of ``size`` feature vectors of dimension ``dim`` with integer labels.

    Buffers: ``features (size, dim)``, ``labels (size,)`` long (−1 = empty), ``ptr`` (long scalar, next
    slot to write) and ``num_filled`` (long scalar).
    """

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        if dim <= 0 or size <= 0:
            raise ValueError(f"dim and size must be positive, got {dim}, {size}")
        self.dim = int(dim)
        self.size = int(size)
        self.register_buffer("features", torch.zeros(size, dim))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_filled", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, features: Tensor, labels: Tensor) -> None:
        """Write ``features (N, D)`` and ``labels (N,)`` into the next ``N`` slots (wrapping around)."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (N, {self.dim}), got {tuple(features.shape)}")
        if features.shape[0] != labels.shape[0]:
            raise ValueError("features and labels must have the same length")
        finite = torch.isfinite(features).all(dim=1)
        if not bool(finite.all()):  # a non-finite entry would poison every later contrast against the bank
            features, labels = features[finite], labels[finite.to(labels.device)]
        features, labels = features.detach().to(self.features), labels.detach().to(self.labels)
        features, labels = all_gather_rows(features, labels)
        n = features.shape[0]
        if n == 0:
            return
        if n > self.size:
            features, labels = features[-self.size :], labels[-self.size :]
            n = self.size
        slots = (self.ptr + torch.arange(n, device=self.ptr.device)) % self.size
        self.features[slots] = features.detach().to(self.features)
        self.labels[slots] = labels.detach().to(self.labels)
        self.ptr.copy_((self.ptr + n) % self.size)
        self.num_filled.clamp_(max=self.size - n).add_(n)

    def get(self) -> tuple[Tensor, Tensor]:
        """Return the filled slots: ``features (M, D)``, ``labels (M,)`` with ``M = min(#enqueued, size)``."""
        m = int(self.num_filled)
        return self.features[:m], self.labels[:m]


class ClassFeatureBank(nn.Module):
    """Per-class ring buffers in one tensor.

    Buffers: ``bank (num_classes, size, dim)``, ``ptr (num_classes,)`` and ``count (num_classes,)``.

    Labels outside ``[0, num_classes)`` (e.g. the ignore label −1) are dropped on :meth:`enqueue`.
    """

    def __init__(self, num_classes: int, dim: int, size: int) -> None:
        super().__init__()
        if num_classes <= 0 or dim <= 0 or size <= 0:
            raise ValueError(f"num_classes, dim and size must be positive, got {num_classes}, {dim}, {size}")
        self.num_classes = int(num_classes)
        self.dim = int(dim)
        self.size = int(size)
        self.register_buffer("bank", torch.zeros(num_classes, size, dim))
        self.register_buffer("ptr", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("count", torch.zeros(num_classes, dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, features: Tensor, labels: Tensor) -> None:
        """Append ``features (N, D)`` to the queue of their class ``labels (N,)`` (vectorised per class)."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (N, {self.dim}), got {tuple(features.shape)}")
        features = features.detach().to(self.bank)
        labels = labels.detach().to(self.ptr.device).long()
        features, labels = all_gather_rows(features, labels)
        finite = torch.isfinite(features).all(dim=1).to(labels.device)
        labels = torch.where(finite, labels, torch.full_like(labels, -1))  # non-finite entries are dropped
        for c in range(self.num_classes):
            chosen = features[labels == c]
            n = chosen.shape[0]
            if n == 0:
                continue
            if n > self.size:
                chosen, n = chosen[-self.size :], self.size
            slots = (self.ptr[c] + torch.arange(n, device=self.ptr.device)) % self.size
            self.bank[c, slots] = chosen
            self.ptr[c] = (self.ptr[c] + n) % self.size
            self.count[c] = torch.clamp(self.count[c] + n, max=self.size)

    def get(self) -> tuple[Tensor, Tensor]:
        """Return all filled entries, class by class: ``features (M, D)``, ``labels (M,)``."""
        filled = torch.arange(self.size, device=self.count.device)[None, :] < self.count[:, None]
        classes = torch.arange(self.num_classes, device=self.count.device)[:, None].expand(-1, self.size)
        return self.bank[filled], classes[filled]
