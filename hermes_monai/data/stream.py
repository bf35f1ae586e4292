"""Resumable data streams: the data order of a run is a function of (seed, pass, position), so a run resumed
from a checkpoint reads exactly the batches an uninterrupted run would have read.

* :class:`StreamSampler` — a :class:`torch.utils.data.DistributedSampler` (one replica when
  ``torch.distributed`` is not initialised) whose shuffle of pass ``k`` is seeded by ``seed + k`` (its
  ``set_epoch``), and which can start a pass part-way through (``start``: number of this replica's
  indices to skip), without loading the skipped images.
* :class:`ResumableStream` — cycles a :class:`~torch.utils.data.DataLoader` forever (a new pass, new
  shuffle, whenever it runs out) and counts the passes and the batches taken from the current pass. Its
  ``state_dict`` is saved with the trainer; after ``load_state_dict`` the next ``iter()`` continues from
  the same batch. Iterator creation does not touch the global torch RNG: each pass's
  ``DataLoader.generator`` (which seeds the worker processes) is seeded from ``seed`` and the pass number.

The random transforms of the data pipeline keep their own ``numpy.random.RandomState`` (set by MONAI's
``DataLoader``); :func:`random_states` / :func:`set_random_states` read and restore them, so with
``num_workers=0`` a resumed run also draws the same augmentations. With worker processes the transforms
run in the workers, re-seeded from the pass's generator at the start of every pass: the order stays
exact, augmentation draws after a mid-pass resume differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["ResumableStream", "StreamSampler", "random_states", "set_random_states"]


class StreamSampler(DistributedSampler):
    """``DistributedSampler`` that defaults to one replica without ``torch.distributed`` and can start a
    pass at position ``start`` (in this replica's indices; reset to 0 once the pass has begun).

    Args:
        dataset: the dataset to sample.
        shuffle: shuffle each pass (seeded by ``seed + pass``).
        seed: shuffle seed; must be the same on every rank.
        drop_last: as for ``DistributedSampler`` (drop the tail instead of padding to equal shards).
        num_replicas / rank: default: world size / rank when ``torch.distributed`` is initialised, else 1 / 0.
    """

    def __init__(
        self,
        dataset: Dataset,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=int(seed),
            drop_last=drop_last,
        )
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Ignored: the pass number comes from :class:`ResumableStream` (:meth:`set_pass`), not from the
        engine's epoch (MONAI's ``Workflow`` calls ``set_epoch(engine.state.epoch)`` on a
        ``DistributedSampler``)."""

    def set_pass(self, index: int) -> None:
        """Shuffle of pass ``index``: seeded by ``seed + index`` as ``DistributedSampler.set_epoch`` does."""
        self.epoch = int(index)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start, self.start = self.start, 0
        return iter(indices[start:])


def _loader_sampler(loader: DataLoader) -> Any:
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is not None and hasattr(batch_sampler, "sampler"):
        sampler = batch_sampler.sampler
    return sampler


class ResumableStream:
    """An endless, resumable stream of batches from ``loader`` (see the module docstring).

    Args:
        loader: a ``DataLoader``; for an exact resume its sampler is a :class:`StreamSampler`
            (anything with ``set_epoch`` gets a per-pass shuffle; other samplers are skipped through
            batch by batch on resume, and their shuffle is not reproduced).
        seed: seeds the per-pass ``DataLoader.generator``.
        name: used in error messages ("labeled", "unlabeled").
    """

    def __init__(self, loader: DataLoader, seed: int = 0, name: str = "data") -> None:
        self.loader = loader
        self.seed = int(seed)
        self.name = name
        self.passes = 0
        self.consumed = 0

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    @property
    def dataset(self) -> Any:
        return getattr(self.loader, "dataset", None)

    def __iter__(self) -> Iterator:
        while True:
            try:
                length = len(self.loader)  # type: ignore[arg-type]
            except TypeError:
                length = None
            if length is not None and self.consumed >= length > 0:  # saved right at the end of a pass
                self.passes += 1
                self.consumed = 0
            sampler = _loader_sampler(self.loader)
            if isinstance(sampler, StreamSampler):
                sampler.set_pass(self.passes)
            elif hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.passes)
            skip = self.consumed
            if skip and isinstance(sampler, StreamSampler):
                sampler.start = skip * int(getattr(self.loader, "batch_size", 1) or 1)
                skip = 0
            if isinstance(self.loader, DataLoader):
                gen = torch.Generator()
                gen.manual_seed(self.seed * 1_000_003 + self.passes)
                self.loader.generator = gen
            empty = self.consumed == 0
            for batch in self.loader:
                empty = False  # (a resumed pass may have nothing left; only a fresh empty pass is an error)
                if skip:
                    skip -= 1
                    continue
                self.consumed += 1
                yield batch
            if empty:
                raise ValueError(
                    f"the {self.name} data loader yields no batch: "
                    f"fewer {self.name} images than the batch size?"
                )
            self.passes += 1
            self.consumed = 0

    def state_dict(self) -> dict[str, int]:
        return {"passes": self.passes, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.passes = int(state["passes"])
        self.consumed = int(state["consumed"])


def _randomizables(obj: Any, seen: set[int], depth: int = 0) -> list[Any]:
    """Objects holding a ``numpy.random.RandomState`` ``R`` reachable from a dataset/transform."""
    if depth > 6 or id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, torch.Tensor)):
        return []
    seen.add(id(obj))
    found: list[Any] = []
    if isinstance(getattr(obj, "R", None), np.random.RandomState):
        found.append(obj)
    if isinstance(obj, (list, tuple)):
        children: list[Any] = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, (np.ndarray, torch.nn.Module)):
        # cached data (lists of dicts/arrays) is not searched: only transform-like attributes
        children = [v for k, v in vars(obj).items() if not k.startswith("_") and k not in ("data", "R")]
        children = [c for c in children if hasattr(c, "__dict__") or isinstance(c, (list, tuple))]
        children = [c for c in children if not (isinstance(c, list) and c and isinstance(c[0], dict))]
    else:
        children = []
    for child in children:
        found.extend(_randomizables(child, seen, depth + 1))
    return found


def random_states(dataset: Any) -> list[dict[str, Any]]:
    """The ``RandomState`` of every random transform reachable from ``dataset`` (``weights_only``-safe)."""
    out = []
    for obj in _randomizables(dataset, set()):
        name, keys, pos, has_gauss, cached = obj.R.get_state()
        out.append(
            {
                "keys": torch.as_tensor(np.asarray(keys, dtype=np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached),
            }
        )
    return out


def set_random_states(dataset: Any, states: list[dict[str, Any]]) -> None:
    """Restore what :func:`random_states` returned (same pipeline structure required)."""
    objs = _randomizables(dataset, set())
    if len(objs) != len(states):
        raise ValueError(
            f"the checkpoint holds {len(states)} random transform states, the data pipeline has {len(objs)}: "
            "was it built from a different config?"
        )
    for obj, st in zip(objs, states):
        obj.R.set_state(
            (
                "MT19937",
                st["keys"].numpy().astype(np.uint32),
                int(st["pos"]),
                int(st["has_gauss"]),
                float(st["cached_gaussian"]),
            )
        )
