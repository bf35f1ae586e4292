"""Peak memory of a block of work: process RSS on CPU (VmHWM), the caching allocator's peaks on CUDA."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import threading
from pathlib import Path
from typing import Any

import torch

__all__ = ["GB", "PeakMemory", "current_rss", "release_memory", "reset_rss_high_water_mark"]

GB = 1e9


def release_memory() -> None:
    """Free the previous configuration's objects and return freed heap to the OS (between configs only)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _proc_status_bytes(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``) in bytes, or None without procfs."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def current_rss() -> int | None:
    """Resident set size of this process in bytes (None without procfs)."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def reset_rss_high_water_mark() -> bool:
    """Reset VmHWM by writing ``5`` to /proc/self/clear_refs; True when the reset took effect."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    hwm, rss = _proc_status_bytes("VmHWM"), _proc_status_bytes("VmRSS")
    # after a reset the high-water mark is the current RSS (allow for pages touched in between)
    return hwm is not None and rss is not None and hwm <= rss + 64 * 2**20


class PeakMemory:
    """Context manager measuring the peak memory of a block of work.

    CPU: process peak RSS (VmHWM after a reset, else a sampling thread, else the lifetime
    ``ru_maxrss``). CUDA: also the caching allocator's peak allocated / reserved bytes.
    """

    def __init__(self, device: torch.device, sample_interval: float = 0.005) -> None:
        self.device = device
        self.sample_interval = sample_interval
        self.method = ""
        self.baseline_rss: int | None = None
        self.peak_rss: int | None = None
        self.peak_cuda_allocated: int | None = None
        self.peak_cuda_reserved: int | None = None
        self._sampled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sampled = max(self._sampled, current_rss() or 0)
            self._stop.wait(self.sample_interval)

    def __enter__(self) -> PeakMemory:
        self.baseline_rss = current_rss()
        if reset_rss_high_water_mark():
            self.method = "clear_refs+VmHWM"
        elif self.baseline_rss is not None:
            self.method = "sampling"
            self._sampled = self.baseline_rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        else:
            self.method = "ru_maxrss (process lifetime, not reset)"
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_cuda_allocated = torch.cuda.max_memory_allocated(self.device)
            self.peak_cuda_reserved = torch.cuda.max_memory_reserved(self.device)
        if self.method.startswith("clear_refs"):
            self.peak_rss = _proc_status_bytes("VmHWM")
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_rss = max(self._sampled, current_rss() or 0)
        else:
            self.peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (bytes, plus GB for reading)."""
        out: dict[str, Any] = {
            "method": self.method,
            "peak_rss_bytes": self.peak_rss,
            "peak_rss_gb": None if self.peak_rss is None else self.peak_rss / GB,
            "baseline_rss_bytes": self.baseline_rss,
        }
        if self.peak_cuda_allocated is not None:
            out["peak_cuda_allocated_bytes"] = self.peak_cuda_allocated
            out["peak_cuda_allocated_gb"] = self.peak_cuda_allocated / GB
            out["peak_cuda_reserved_bytes"] = self.peak_cuda_reserved
        return out
