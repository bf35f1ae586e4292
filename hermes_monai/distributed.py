"""torch.distributed helpers for ``bundle/configs/multi_gpu_train.yaml`` (torchrun, DDP).

* :func:`init_distributed` — joins the process group torchrun describes (``RANK``, ``WORLD_SIZE``,
  ``MASTER_ADDR``/``MASTER_PORT`` or a rendezvous endpoint): NCCL when CUDA is available, gloo otherwise.
* :func:`local_device` — ``cuda:<LOCAL_RANK>`` on GPUs, else the CPU.
* :func:`all_gather_rows` — gathers tensors whose first dimension differs between ranks (padded to the
  largest, trimmed back), in rank order. The memory banks of the contrastive losses enqueue through it,
  so every rank holds the same bank, with every rank's entries.
* :func:`all_reduce_sum` — sums a tensor over ranks (the dual-threshold selector's class counts, so every
  rank selects with the same class-adaptive thresholds).

Each is a no-op in a single process, so the same code runs with and without torchrun.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_rows",
    "all_reduce_sum",
    "cleanup",
    "get_rank",
    "init_distributed",
    "is_distributed",
    "is_rank_zero",
    "local_device",
]


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0))


def is_rank_zero() -> bool:
    return get_rank() == 0


def local_device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` when CUDA is available, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def init_distributed(backend: str | None = None, timeout_minutes: float = 30) -> torch.device:
    """Join torchrun's process group (once): ``nccl`` with CUDA, ``gloo`` without; return the local device.

    Raises:
        RuntimeError: not launched by torchrun (no ``RANK`` / ``WORLD_SIZE`` in the environment).
    """
    if not (dist.is_available() and dist.is_initialized()):
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise RuntimeError(
                "multi_gpu_train.yaml needs torchrun: torchrun --nproc_per_node=N -m monai.bundle run "
                "training --config_file "
                "\"['bundle/configs/train.yaml','bundle/configs/multi_gpu_train.yaml']\""
            )
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        device = local_device()
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_minutes))
    return local_device()


def cleanup() -> None:
    """Leave the process group (after a barrier, so no rank exits while another still talks to it)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_gather_rows(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Concatenate ``tensors`` (same first-dimension size on a rank, any size across ranks) from every rank,
    in rank order. Single process: returned as given. Every rank must call it (a collective)."""
    if not is_distributed():
        return tensors
    world = dist.get_world_size()
    device = tensors[0].device
    n = torch.tensor([tensors[0].shape[0]], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    counts = [int(s) for s in sizes]
    most = max(counts)
    if most == 0:
        return tensors
    out = []
    for t in tensors:
        padded = torch.cat([t, t.new_zeros((most - t.shape[0], *t.shape[1:]))]).contiguous()
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        out.append(torch.cat([p[:c] for p, c in zip(parts, counts)]))
    return tuple(out)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over ranks (a new tensor; ``t`` itself in a single process)."""
    if not is_distributed():
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
