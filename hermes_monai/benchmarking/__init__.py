"""Measurement instruments of ``scripts/benchmark.py``: timing, peak memory, FLOPs, kernel ceilings,
graph breaks, the step's phases and the machine, and the bundle's training step built for measuring.

* :mod:`.timing`, :mod:`.memory`, :mod:`.flops`, :mod:`.kernels`, :mod:`.graphs` - the instruments.
* :mod:`.phases` - per-phase time of one step from the trainer's ``hermes::<phase>`` profiler scopes.
* :mod:`.machine` - CPU model, threads, versions, GPU of the run.
* :mod:`.steps` - a training step of a named configuration, built from the bundle configs on synthetic data.
* :mod:`.options` - a run's settings (:class:`Options`), the reference's figures, the autocast variants.
* :mod:`.training`, :mod:`.inference`, :mod:`.pipeline` - the step, inference and the data pipeline measured.
* :mod:`.suite` - a whole run (:func:`run_benchmark`); :mod:`.report` - its plain-text report.
"""

from hermes_monai.benchmarking.flops import GlobalFlopCounter, count_flops, matmul_flops
from hermes_monai.benchmarking.graphs import graph_breaks
from hermes_monai.benchmarking.inference import benchmark_deploy, benchmark_inference
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
from hermes_monai.benchmarking.options import (
    INFERENCE_OVERRIDES,
    NETWORK_TOLERANCE,
    QUICK_OVERRIDES,
    REFERENCE,
    SCHEMA_VERSION,
    Options,
    bf16_supported,
    quick_options,
    seed_everything,
    step_variants,
)
from hermes_monai.benchmarking.phases import PHASES, phase_breakdown, profile_phases
from hermes_monai.benchmarking.pipeline import benchmark_pipeline
from hermes_monai.benchmarking.report import format_report
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
from hermes_monai.benchmarking.suite import apply_effective_peak, network_compute, run_benchmark
from hermes_monai.benchmarking.timing import median_seconds, summarize_times, synchronize
from hermes_monai.benchmarking.training import benchmark_compiled_step, benchmark_step, step_targets

__all__ = [
    "BUNDLE_CONFIG_DIR",
    "GB",
    "GlobalFlopCounter",
    "INFERENCE_OVERRIDES",
    "KernelRecorder",
    "NETWORK_TOLERANCE",
    "Options",
    "PHASES",
    "PRESETS",
    "PeakMemory",
    "QUICK_OVERRIDES",
    "REFERENCE",
    "SCHEMA_VERSION",
    "STEP_CONFIGS",
    "StepSetup",
    "apply_effective_peak",
    "benchmark_compiled_step",
    "benchmark_deploy",
    "benchmark_inference",
    "benchmark_pipeline",
    "benchmark_step",
    "bf16_supported",
    "build_step",
    "config_files",
    "count_flops",
    "cpu_model",
    "current_rss",
    "effective_peak",
    "fill_memory_banks",
    "format_report",
    "graph_breaks",
    "kernel_ceiling",
    "machine_info",
    "make_parser",
    "matmul_flops",
    "measure_matmul_peak",
    "median_seconds",
    "network_compute",
    "phase_breakdown",
    "profile_phases",
    "quick_options",
    "release_memory",
    "reset_rss_high_water_mark",
    "run_benchmark",
    "seed_everything",
    "step_targets",
    "step_variants",
    "summarize_times",
    "synchronize",
    "synthetic_batches",
]
