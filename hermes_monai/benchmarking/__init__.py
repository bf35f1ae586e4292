"""Measurement instruments of ``scripts/benchmark.py``: timing, peak memory, FLOPs, kernel ceilings,
graph breaks, the step's phases and the machine, and the bundle's training step built for measuring.

* :mod:`.timing`, :mod:`.memory`, :mod:`.flops`, :mod:`.kernels`, :mod:`.graphs` - the instruments.
* :mod:`.phases` - per-phase time of one step from the trainer's ``hermes::<phase>`` profiler scopes.
* :mod:`.machine` - CPU model, threads, versions, GPU of the run.
* :mod:`.steps` - a training step of a named configuration, built from the bundle configs on synthetic data.
"""

from hermes_monai.benchmarking.flops import GlobalFlopCounter, count_flops, matmul_flops
from hermes_monai.benchmarking.graphs import graph_breaks
from hermes_monai.benchmarking.kernels import (
    KernelRecorder,
    effective_peak,
    kernel_ceiling,
    measure_matmul_peak,
)
from hermes_monai.benchmarking.machine import cpu_model, machine_info
from hermes_monai.benchmarking.memory import (
    GB,
    PeakMemory,
    current_rss,
    release_memory,
    reset_rss_high_water_mark,
)
from hermes_monai.benchmarking.phases import PHASES, phase_breakdown, profile_phases
from hermes_monai.benchmarking.steps import (
    BUNDLE_CONFIG_DIR,
    PRESETS,
    STEP_CONFIGS,
    StepSetup,
    build_step,
    config_files,
    fill_memory_banks,
    make_parser,
    synthetic_batches,
)
from hermes_monai.benchmarking.timing import median_seconds, summarize_times, synchronize

__all__ = [
    "BUNDLE_CONFIG_DIR",
    "GB",
    "GlobalFlopCounter",
    "KernelRecorder",
    "PHASES",
    "PRESETS",
    "PeakMemory",
    "STEP_CONFIGS",
    "StepSetup",
    "build_step",
    "config_files",
    "count_flops",
    "cpu_model",
    "current_rss",
    "effective_peak",
    "fill_memory_banks",
    "graph_breaks",
    "kernel_ceiling",
    "machine_info",
    "make_parser",
    "matmul_flops",
    "measure_matmul_peak",
    "median_seconds",
    "phase_breakdown",
    "profile_phases",
    "release_memory",
    "reset_rss_high_water_mark",
    "summarize_times",
    "synchronize",
    "synthetic_batches",
]
