"""Measurement instruments of ``scripts/benchmark.py``: timing, peak memory, FLOPs, kernel ceilings and
graph breaks."""

from hermes_monai.benchmarking.flops import GlobalFlopCounter, count_flops, matmul_flops
from hermes_monai.benchmarking.graphs import graph_breaks
from hermes_monai.benchmarking.kernels import (
    KernelRecorder,
    effective_peak,
    kernel_ceiling,
    measure_matmul_peak,
)
from hermes_monai.benchmarking.memory import (
    GB,
    PeakMemory,
    current_rss,
    release_memory,
    reset_rss_high_water_mark,
)
from hermes_monai.benchmarking.timing import median_seconds, summarize_times, synchronize

__all__ = [
    "GB",
    "GlobalFlopCounter",
    "KernelRecorder",
    "PeakMemory",
    "count_flops",
    "current_rss",
    "effective_peak",
    "graph_breaks",
    "kernel_ceiling",
    "matmul_flops",
    "measure_matmul_peak",
    "median_seconds",
    "release_memory",
    "reset_rss_high_water_mark",
    "summarize_times",
    "synchronize",
]
