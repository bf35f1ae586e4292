"""Facts about the machine a measurement ran on: CPU model, threads, versions, GPU."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any

import torch


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_signature() -> str:
    """``"family/model/stepping"`` from /proc/cpuinfo (``"unknown"`` elsewhere): virtual machines often
    report a generic model name ("AMD EPYC"), and results differ between CPU generations of one name."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("cpu family", "model", "stepping") and key not in fields:
                fields[key] = value.strip()
            if not line.strip() and fields:
                break
    if not fields:
        return "unknown"
    return "/".join(fields.get(k, "?") for k in ("cpu family", "model", "stepping"))


def cpu_has_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX)."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def machine_info(device: torch.device) -> dict[str, Any]:
    """Versions, CPU model, threads and (on GPU) the GPU name of this run."""
    import monai

    info: dict[str, Any] = {
        "device": str(device),
        "cpu_model": cpu_model(),
        "cpu_signature": cpu_signature(),
        # the vector ISA torch's CPU kernels dispatch to, and whether oneDNN has native bf16 kernels here
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": cpu_has_bf16(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "monai_version": monai.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu_name"] = torch.cuda.get_device_name(device)
        info["cuda_version"] = torch.version.cuda
    return info
