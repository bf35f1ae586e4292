"""Wall-clock timing of repeated calls, synchronised with the GPU where there is one."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["median_seconds", "summarize_times", "synchronize"]


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock timings cover it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], warmup: int, iters: int, device: torch.device) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``iters`` times timed; return the timed seconds."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def summarize_times(times: Sequence[float]) -> dict[str, Any]:
    """Median / min / max / all of a list of seconds."""
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "all": list(times),
    }
