"""What one benchmark run measures and against what: its options, the reference's figures, the variants.

:class:`Options` holds every setting of a run (``scripts/benchmark.py`` fills it from its command line,
:func:`quick_options` gives the ``--quick`` smoke settings); :data:`REFERENCE` is the public reference
implementation measured side by side on a 2-core AMD EPYC (issue 12); :func:`step_variants` says which
autocast variants this device runs natively.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from hermes_monai.benchmarking.machine import cpu_has_bf16
from hermes_monai.benchmarking.steps import STEP_CONFIGS

SCHEMA_VERSION = 2

#: Inference networks of each preset: all IAS switches on, as deployed.
INFERENCE_OVERRIDES: dict[str, Any] = {"use_attention": True, "use_saliency": True}

#: The public reference implementation, measured side by side with this project on a 2-core AMD EPYC at
#: 224², batch 8 + 8, fp32, 2 threads (issue 12): seconds and GFLOP per training step (11 s of its step is
#: one slow indexing line), forward GFLOP per 224² image of its seg network (Res2Net-101-d U-Net) and its
#: classifier (stock ResNet-18), and its peak RSS (issue 3's measurement).
REFERENCE = {
    "step_seconds": 31.9,
    "step_seconds_without_slow_indexing": 31.9 - 11.0,
    "step_gflop": 6169.0,
    "seg_forward_gflop": 103.0,
    "cls_forward_gflop": 3.6,
    "peak_rss_gb": 10.8,
    "machine": "2-core AMD EPYC, 2 threads, fp32",
}
#: Relative tolerance within which a network's forward FLOPs count as the reference's (issue 12).
NETWORK_TOLERANCE = 0.05

QUICK_OVERRIDES: dict[str, Any] = {"image_size": 64, "labeled_batch_size": 2, "unlabeled_batch_size": 2}


@dataclasses.dataclass
class Options:
    """Everything a benchmark run depends on (the CLI fills it; tests build small ones)."""

    configs: tuple[str, ...] = tuple(STEP_CONFIGS)
    inference_presets: tuple[str, ...] | None = None  # None: the presets of ``configs``
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    warmup: int = 1
    iters: int = 3
    seed: int = 0
    late_fraction: float = 0.9
    extra_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    matmul_sizes: tuple[int, ...] = (2048, 4096, 6144)
    matmul_repeats: int = 3
    inference_batch: int = 8
    pipeline_labeled: int = 16
    pipeline_unlabeled: int = 48
    pipeline_image_size: int = 128
    pipeline_workers: tuple[int | None, ...] = (None, 2)  # None: the configured num_workers
    pipeline_passes: int = 2
    variants: bool = True
    ceiling_repeats: int = 3  # 0 skips the kernel-ceiling measurement
    network_check: bool = True  # paper networks' parameters and forward FLOPs against the reference's
    compiled: bool = False  # also time each step configuration with the network compiled (torch.compile)
    mode: str = "full"


def quick_options(**changes: Any) -> Options:
    """The ``--quick`` smoke settings: 64x64, batch 2+2, 1 warm-up + 2 timed iterations, small matmuls."""
    base = Options(
        warmup=1,
        iters=2,
        extra_overrides=dict(QUICK_OVERRIDES),
        matmul_sizes=(256, 512),
        matmul_repeats=3,
        inference_batch=4,
        pipeline_labeled=8,
        pipeline_unlabeled=8,
        pipeline_image_size=64,
        pipeline_workers=(None,),
        pipeline_passes=1,
        ceiling_repeats=1,
        mode="quick",
    )
    return dataclasses.replace(base, **changes)


# ---------------------------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    """Seed torch / numpy / random the way the bundle's ``initialize`` does."""
    from monai.utils import set_determinism

    set_determinism(seed=seed)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively: any CUDA device, or a CPU whose oneDNN has bf16 kernels
    (AVX512-BF16 / AMX, e.g. Sapphire Rapids)."""
    if device.type == "cuda":
        return True
    return cpu_has_bf16()


def step_variants(device: torch.device, variants: bool) -> list[tuple[str, torch.dtype | None]]:
    """(variant name, autocast dtype) measured per step configuration and inference preset: fp32 always,
    bf16 autocast where :func:`bf16_supported`. The memory layout is the bundle's ``channels_last``."""
    out: list[tuple[str, torch.dtype | None]] = [("fp32", None)]
    if variants and bf16_supported(device):
        out.append(("bf16", torch.bfloat16))
    return out
