"""Where a training step's time goes: the trainer's ``record_function("hermes::<phase>")`` scopes summed
under ``torch.profiler``."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from hermes_monai.benchmarking.timing import synchronize

#: Phases of one training step, as named in the trainer's ``record_function("hermes::<phase>")`` scopes.
PHASES = (
    "strong_view",
    "forward_teacher",
    "pseudo_labels",
    "cutmix",
    "forward_student",
    "losses",
    "contrast",
    "backward",
    "optimizer",
)


def phase_breakdown(phase_us: Mapping[str, float], step_seconds: float) -> dict[str, dict[str, float]]:
    """Seconds and fraction of the step per phase, plus ``unattributed`` (the rest of the step).

    Args:
        phase_us: microseconds per ``hermes::<phase>`` event name (missing phases count 0).
        step_seconds: wall time of the profiled step.
    """
    out: dict[str, dict[str, float]] = {}
    for name in PHASES:
        sec = float(phase_us.get(f"hermes::{name}", 0.0)) / 1e6
        out[name] = {"seconds": sec, "fraction": sec / step_seconds if step_seconds > 0 else 0.0}
    attributed = sum(v["seconds"] for v in out.values())
    rest = max(step_seconds - attributed, 0.0)
    out["unattributed"] = {"seconds": rest, "fraction": rest / step_seconds if step_seconds > 0 else 0.0}
    return out


def profile_phases(fn: Callable[[], Any], device: torch.device) -> tuple[float, dict[str, float], str]:
    """Run ``fn`` once under ``torch.profiler``; sum the time of the ``hermes::*`` scopes.

    Returns:
        (wall seconds of the profiled call, microseconds per ``hermes::<phase>``, which time it is:
        ``"cpu"`` = wall time of the CPU range, ``"device"`` = GPU kernel time launched inside the range).
    """
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        wall = time.perf_counter() - t0
    kind = "device" if device.type == "cuda" else "cpu"
    phase_us: dict[str, float] = {}
    for evt in prof.events():
        # CPU-side ranges only: on GPU the same name also appears as a device-side annotation.
        if not evt.name.startswith("hermes::") or evt.device_type != torch.autograd.DeviceType.CPU:
            continue
        value = evt.device_time_total if kind == "device" else evt.cpu_time_total
        phase_us[evt.name] = phase_us.get(evt.name, 0.0) + float(value)
    return wall, phase_us, kind
