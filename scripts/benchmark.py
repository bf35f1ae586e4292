"""Speed and memory benchmark of Hermes training and inference, in one process, one run.

Run from the repository root::

    python scripts/benchmark.py                       # full run (paper presets: minutes per config)
    python scripts/benchmark.py --quick               # smoke run: 64x64, batch 2+2, < 1 min on 2 cores
    python scripts/benchmark.py --configs cpu_full --warmup 1 --iters 3 --output /tmp/bench.json

What is measured (see docs/benchmarks.md for every JSON field and the targets):

1. **Peak**: the best float32 ``torch.mm`` rate (GFLOP/s, ``2 n^3`` FLOPs per product) on square
   matrices up to 6144 after warm-up, with ``torch.get_num_threads()`` threads; after every measurement
   the peak used (``results["peak"]``) is the larger of that and the fastest kernel any kernel ceiling
   replayed (:func:`~hermes_monai.benchmarking.effective_peak`), so the workload never beats its peak.
   Efficiency is first reported against the kernel ceiling (item 6).
2. **Training step** of each configuration (:data:`STEP_CONFIGS`), built from the bundle config
   (``bundle/configs/train.yaml``, plus ``paper.yaml`` for the paper preset when that file exists) with
   :class:`monai.bundle.ConfigParser` and a few overrides, so network, optimisers, selectors,
   contrastive losses and loss weights are exactly those a bundle run gets. Only the data is replaced:
   in-memory synthetic batches (``image`` (B,1,S,S) in [0, 1] with a bright disc, ``label`` the disc,
   ``class`` (B,)). One step is one call of the trainer's ignite process function
   (``HermesTrainer._iteration``), i.e. teacher pass, strong view, selection, student pass, all losses,
   backward and both optimiser steps. Reported: median seconds/step after warm-up, samples/s (labeled +
   unlabeled), FLOPs of one separate un-timed step, achieved GFLOP/s (= FLOPs / median) and its
   fraction of the matmul peak, peak memory, and a per-phase breakdown from one extra step under
   ``torch.profiler`` (the ``hermes::*`` ``record_function`` scopes of the trainer).
3. **Inference**: the network in eval mode under ``torch.no_grad()`` (not ``inference_mode``: the
   saliency map needs autograd internally): median latency of one image, images/s at batch 8, FLOPs of
   one image and ``latency / (FLOPs / matmul peak)`` (1.0 = the network runs at matmul peak).
4. **Data pipeline**: images/s of the bundle's ``train#preprocessing`` (MONAI transforms) over a small
   generated synthetic dataset with a MONAI ``DataLoader`` (no caching: the worst case; the bundle caches
   the deterministic load + resize), compared with the samples/s the training step consumes.
5. **bf16 variants**: where bf16 runs natively (any GPU; a CPU whose oneDNN has bf16 kernels, i.e.
   AVX512-BF16/AMX) every step and inference measurement is repeated with bf16 autocast (the trainer's
   ``amp=True, amp_kwargs={"dtype": torch.bfloat16}``); the bf16 matmul peak is measured too, and each
   variant's fraction of peak is against the bf16 peak. The memory layout is the bundle's
   ``channels_last`` (default true); ``--override channels_last=false`` measures NCHW.
6. **Kernel ceiling** of every step and inference measurement: each matmul/convolution call of one
   step (the ops the FLOP counter counts, forward and backward) is recorded with its shapes and
   strides, replayed alone on random tensors and timed (:func:`kernel_ceiling`). Their summed time is
   what the step would take if everything else (normalisation, activations, losses, optimiser) were
   free, so its fraction of the matmul peak is the most this network, at these shapes, can reach with
   this machine's convolution/matmul libraries.
7. **Compiled step** (``--compiled``): each step configuration once more with the network compiled
   (``torch.compile``, the bundle's ``compile`` switch), timed only, its efficiency against the eager
   step's kernel ceiling (:func:`benchmark_compiled_step`).

How to read it: the step time is what one training iteration costs; the phase table says where it goes
(``unattributed`` = loss computation and glue outside the scopes). ``fraction_of_matmul_peak`` near 1
means the step is compute-bound and efficient; a low value points at memory-bound or Python-bound work.
FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` formulas (matmul, conv, their
backward): element-wise work counts zero, so the FLOPs are a lower bound of the real work and the
achieved rate is a rate of *useful* (matmul/conv) work.

Choices where the brief/spec is silent:

- The schedules are put "late in training": the trainer's iteration counter starts at
  ``late_fraction`` (0.9) of ``T = max_epochs x epoch_length`` (the bundle's T), so the entropy bar
  ``gamma(t)`` is near 1 and the consistency weight is on; ``contrast_warmup`` is 0 so both contrastive
  terms run. The memory banks are pre-filled with random unit vectors, as they are full after warm-up in
  a real run, so the contrastive terms pay their full bank size. Weights are random (no checkpoint), so
  pseudo-label selection rates differ from a trained model's; the anchor count of the pixel contrast is
  capped (``max_anchors``), which bounds that effect. The rates are recorded in the JSON.
- The trainer is driven by calling its process function directly (no ignite loop, no handlers: LR
  schedulers, logging and checkpointing are per-iteration bookkeeping, not part of the step). The GradScaler
  is set as ``HermesTrainer.run`` sets it (only for float16 autocast; bf16 needs none).
- Seeding mirrors the bundle's ``initialize`` (``monai.utils.set_determinism(seed)``), which on GPU also
  makes cuDNN deterministic (no autotuning), as in a user's bundle run.
- Peak memory per configuration: CPU peak RSS of the whole process (VmHWM, reset by writing ``5`` to
  ``/proc/self/clear_refs`` before the configuration is built; a 5 ms sampling thread where that file is not
  writable), so it includes the ~0.5 GB of imported libraries; ``baseline_rss_bytes`` is the RSS at the
  start. Between configurations the previous one's objects are released with one ``gc.collect()`` (ignite
  engines hold reference cycles) and ``malloc_trim`` (glibc), never inside a timed step.
  On GPU, ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` as well.
- FLOPs use ``FlopCounterMode`` with its per-module tracker replaced by a global-only one: the module
  tracker's backward hooks fail inside the saliency map's ``torch.autograd.grad``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from hermes_monai.benchmarking import (
    PRESETS,
    STEP_CONFIGS,
    PeakMemory,
    build_step,
    config_files,
    count_flops,
    effective_peak,
    graph_breaks,
    kernel_ceiling,
    machine_info,
    make_parser,
    measure_matmul_peak,
    median_seconds,
    phase_breakdown,
    profile_phases,
    release_memory,
    summarize_times,
    synchronize,
)
from hermes_monai.io import write_json_atomic
from hermes_monai.networks.fusion import fold_batch_norm
from hermes_monai.overrides import parse_override

REPO = Path(__file__).resolve().parents[1]
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


# ---------------------------------------------------------------------------------------------- step
def benchmark_step(
    name: str,
    opts: Options,
    peak_gflops: float,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Time, count and profile the training step of configuration ``name`` (one variant)."""
    device = torch.device(opts.device)
    release_memory()
    seed_everything(opts.seed)
    eager = {**opts.extra_overrides, "compile": False}  # the instruments cannot see inside compiled graphs
    with PeakMemory(device) as mem:
        setup = build_step(name, device, eager, opts.seed, opts.late_fraction, amp_dtype)
        times = median_seconds(setup.step, opts.warmup, opts.iters, device)
    settings = setup.settings
    n_samples = settings["labeled_batch_size"] + settings["unlabeled_batch_size"]
    output = setup.trainer.state.output or {}
    flops, by_op = count_flops(setup.step)
    prof_wall, phase_us, phase_kind = profile_phases(setup.step, device)
    ceiling = None
    if opts.ceiling_repeats:
        ceiling = kernel_ceiling(setup.step, device, peak_gflops, opts.ceiling_repeats)
    med = statistics.median(times)
    achieved = flops / med / 1e9
    result: dict[str, Any] = {
        "settings": settings,
        "step_seconds": summarize_times(times),
        "samples_per_step": n_samples,
        "samples_per_second": n_samples / med,
        "flops_per_step": flops,
        "gflops_per_step": flops / 1e9,
        "flops_by_op": by_op,
        "achieved_gflops": achieved,
        "fraction_of_matmul_peak": achieved / peak_gflops if peak_gflops > 0 else None,
        "memory": mem.as_dict(),
        "kernel_ceiling": ceiling,
        "fraction_of_kernel_ceiling": None if ceiling is None else ceiling["seconds"] / med,
        "phases": phase_breakdown(phase_us, prof_wall),
        "phase_time_kind": phase_kind,
        "profiled_step_seconds": prof_wall,
        "profiler_overhead": prof_wall / med - 1.0,
        "selection_rate_image": output.get("select_rate_image"),
        "selection_rate_pixel": output.get("select_rate_pixel"),
        "loss": float(output["loss"]) if "loss" in output else None,
    }
    return result


def benchmark_compiled_step(name: str, opts: Options, eager: Mapping[str, Any]) -> dict[str, Any]:
    """The fp32 step of configuration ``name`` with the network compiled (the bundle's ``compile: true``, its
    ``compile_options`` from ``opts.extra_overrides``), timed against ``eager`` (:func:`benchmark_step`'s
    result for the same configuration).

    The first step compiles (its time is reported; ``compile_seconds`` is that time less one compiled step),
    then ``opts.warmup`` untimed and ``opts.iters`` timed steps. The FLOP counter and the kernel recorder do
    not see inside compiled graphs, so the efficiency is against the eager step's kernel ceiling: inductor
    leaves convolutions and matmuls to the same library kernels (extern calls) and fuses the element-wise
    work around them, so that ceiling bounds the compiled step as well. ``break_even_iterations``: steps
    after which the compilation has paid for itself (``None`` when the compiled step is not faster).
    ``graph_breaks``: :func:`~hermes_monai.benchmarking.graph_breaks` of the network's training-mode forward
    on one labeled batch (each break is a separately compiled piece with eager Python between).
    """
    device = torch.device(opts.device)
    release_memory()
    seed_everything(opts.seed)
    with PeakMemory(device) as mem:
        setup = build_step(
            name, device, {**opts.extra_overrides, "compile": True}, opts.seed, opts.late_fraction
        )
        t0 = time.perf_counter()
        setup.step()
        first = time.perf_counter() - t0
        times = median_seconds(setup.step, opts.warmup, opts.iters, device)
    network = getattr(setup.trainer.network, "module", setup.trainer.network)
    breaks = graph_breaks(network, setup.labeled_batches[0]["image"].to(device))
    med = statistics.median(times)
    eager_med = eager["step_seconds"]["median"]
    ceiling = eager.get("kernel_ceiling")
    compile_s = max(first - med, 0.0)
    saving = eager_med - med
    output = setup.trainer.state.output or {}
    return {
        "compile_options": dict(opts.extra_overrides.get("compile_options") or {}),
        "first_step_seconds": first,
        "compile_seconds": compile_s,
        "step_seconds": summarize_times(times),
        "speedup_vs_eager": eager_med / med,
        "fraction_of_kernel_ceiling": None if ceiling is None else ceiling["seconds"] / med,
        "break_even_iterations": math.ceil(compile_s / saving) if saving > 0 else None,
        "memory": mem.as_dict(),
        "loss": float(output["loss"]) if "loss" in output else None,
        "graph_breaks": breaks,
    }


def step_targets(name: str, result: Mapping[str, Any], device: torch.device) -> dict[str, dict[str, Any]]:
    """Targets of issues 3 and 12 for the paper preset's method-equal step (2 CPU cores; else informational).

    The step-time target is against the reference's side-by-side 31.9 s; the efficiency target is the
    fraction of the step's own kernel ceiling (the time its matmul/conv calls take replayed alone).
    """
    if name != "paper_method_equal":
        return {}
    peak_gb = result["memory"]["peak_rss_gb"]
    limit_s = 0.6 * REFERENCE["step_seconds"]
    targets: dict[str, dict[str, Any]] = {
        "step_seconds_max": {"target": limit_s, "value": result["step_seconds"]["median"]},
        "peak_rss_gb_max": {"target": 8.0, "value": peak_gb},
    }
    targets["step_seconds_max"]["met"] = targets["step_seconds_max"]["value"] <= limit_s
    targets["peak_rss_gb_max"]["met"] = peak_gb is not None and peak_gb < 8.0
    frac = result.get("fraction_of_kernel_ceiling")
    if frac is not None:
        targets["fraction_of_kernel_ceiling_min"] = {"target": 0.85, "value": frac, "met": frac >= 0.85}
    frac = (result.get("compiled") or {}).get("fraction_of_kernel_ceiling")
    if frac is not None:  # the same target for the compiled step (the bundle's compile: true)
        targets["fraction_of_kernel_ceiling_min_compiled"] = {
            "target": 0.85,
            "value": frac,
            "met": frac >= 0.85,
        }
    if device.type != "cpu":
        for t in targets.values():
            t["note"] = "target is defined for 2 CPU cores"
    return targets


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively: any CUDA device, or a CPU whose oneDNN has bf16 kernels
    (AVX512-BF16 / AMX, e.g. Sapphire Rapids)."""
    if device.type == "cuda":
        return True
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def step_variants(device: torch.device, variants: bool) -> list[tuple[str, torch.dtype | None]]:
    """(variant name, autocast dtype) measured per step configuration and inference preset: fp32 always,
    bf16 autocast where :func:`bf16_supported`. The memory layout is the bundle's ``channels_last``."""
    out: list[tuple[str, torch.dtype | None]] = [("fp32", None)]
    if variants and bf16_supported(device):
        out.append(("bf16", torch.bfloat16))
    return out


# ---------------------------------------------------------------------------------------------- inference
def _inference_fn(
    network: torch.nn.Module, device: torch.device, amp_dtype: torch.dtype | None
) -> Callable[[torch.Tensor], None]:
    """``infer(x)``: one forward of ``network`` under ``torch.no_grad()`` (and autocast when ``amp_dtype``),
    synchronised on GPU."""

    def infer(x: torch.Tensor) -> None:
        ctx = (
            torch.autocast(device_type=device.type, dtype=amp_dtype)
            if amp_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.no_grad(), ctx:
            network(x)
        synchronize(device)

    return infer


def _flops_and_floor(
    infer: Callable[[torch.Tensor], None], x1: torch.Tensor, opts: Options, peak_gflops: float
) -> tuple[int, dict[str, int], dict[str, Any] | None]:
    """FLOPs of ``infer(x1)`` (total, by operator) and its kernel ceiling (None without ceiling repeats)."""
    flops, by_op = count_flops(lambda: infer(x1))
    ceiling = None
    if opts.ceiling_repeats:
        ceiling = kernel_ceiling(lambda: infer(x1), x1.device, peak_gflops, opts.ceiling_repeats)
    return flops, by_op, ceiling


def benchmark_inference(
    preset: str,
    opts: Options,
    peak_gflops: float,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Latency (batch 1), throughput (batch ``opts.inference_batch``) and FLOPs of the eval-mode network."""
    device = torch.device(opts.device)
    release_memory()
    seed_everything(opts.seed)
    with PeakMemory(device) as mem:
        parser = make_parser(preset, {**INFERENCE_OVERRIDES, **opts.extra_overrides}, device)
        network = parser.get_parsed_content("network").eval()
        size = int(parser.get_parsed_content("image_size"))
        gen = torch.Generator().manual_seed(opts.seed)
        x1 = torch.rand(1, 1, size, size, generator=gen).to(device)
        xb = torch.rand(opts.inference_batch, 1, size, size, generator=gen).to(device)

        infer = _inference_fn(network, device, amp_dtype)
        lat = median_seconds(lambda: infer(x1), opts.warmup, max(opts.iters, 1), device)
        thr = median_seconds(lambda: infer(xb), opts.warmup, max(opts.iters, 1), device)
    flops, by_op, ceiling = _flops_and_floor(infer, x1, opts, peak_gflops)
    latency = statistics.median(lat)
    bound = flops / (peak_gflops * 1e9) if peak_gflops > 0 else float("nan")
    deploy = benchmark_deploy(preset, opts, peak_gflops, amp_dtype, network.state_dict(), x1)
    # batch norm folded into the seg convolutions (the autograd saliency of HermesNet keeps the classifier's)
    n_folded = fold_batch_norm(network.seg, x1)
    lat_folded = median_seconds(lambda: infer(x1), opts.warmup, max(opts.iters, 1), device)
    latency_folded = statistics.median(lat_folded)
    result = {
        "settings": {
            "preset": preset,
            "config_files": [str(Path(*f.parts[-3:])) for f in config_files(preset)],
            "encoder": parser.get_parsed_content("encoder"),
            "image_size": size,
            "use_attention": True,
            "use_saliency": True,
            "amp_dtype": None if amp_dtype is None else str(amp_dtype),
            "channels_last": bool(parser.get_parsed_content("channels_last")),
        },
        "latency_seconds_batch1": summarize_times(lat),
        "batch_size": opts.inference_batch,
        "batch_seconds": summarize_times(thr),
        "images_per_second": opts.inference_batch / statistics.median(thr),
        "flops_per_image": flops,
        "gflops_per_image": flops / 1e9,
        "flops_by_op": by_op,
        "flops_over_peak_seconds": bound,
        "latency_over_flops_bound": latency / bound if bound > 0 else None,
        "kernel_ceiling": ceiling,
        "kernel_floor_over_flops_bound": (
            ceiling["seconds"] / bound if ceiling is not None and bound > 0 else None
        ),
        "latency_over_kernel_floor": None if ceiling is None else latency / ceiling["seconds"],
        "bn_folded": {
            "batch_norms_folded": n_folded,
            "latency_seconds_batch1": summarize_times(lat_folded),
            "speedup": latency / latency_folded,
            "latency_over_kernel_floor": None if ceiling is None else latency_folded / ceiling["seconds"],
        },
        "deploy": deploy,
        "memory": mem.as_dict(),
    }
    return result


def benchmark_deploy(
    preset: str,
    opts: Options,
    peak_gflops: float,
    amp_dtype: torch.dtype | None,
    state: Mapping[str, torch.Tensor],
    x1: torch.Tensor,
) -> dict[str, Any]:
    """Batch-1 latency of the network ``inference.yaml`` serves: :class:`HermesDeployNet` (explicit saliency
    backward, the classifier's stem shared by its two passes) with ``state``'s weights and every batch norm
    folded (``FoldBatchNorm``), in NCHW as that config builds it, against its own kernel floor."""
    device = x1.device
    parser = make_parser(
        preset,
        {
            **INFERENCE_OVERRIDES,
            **opts.extra_overrides,
            "network_def#_target_": "hermes_monai.networks.HermesDeployNet",
        },
        device,
    )
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(state)
    net = net.to(device).eval()
    n_folded = net.fold_batch_norm(image_size=int(x1.shape[-1]))
    infer = _inference_fn(net, device, amp_dtype)
    lat = median_seconds(lambda: infer(x1), opts.warmup, max(opts.iters, 1), device)
    flops, _, ceiling = _flops_and_floor(infer, x1, opts, peak_gflops)
    latency = statistics.median(lat)
    return {
        "network": type(net).__name__,
        "batch_norms_folded": n_folded,
        "latency_seconds_batch1": summarize_times(lat),
        "flops_per_image": flops,
        "kernel_ceiling": ceiling,
        "latency_over_kernel_floor": None if ceiling is None else latency / ceiling["seconds"],
    }


# ---------------------------------------------------------------------------------------------- pipeline
def _timed_pass(loader: Iterable) -> tuple[int, float]:
    """Images and seconds of one full pass over a loader (iterator creation, i.e. worker start, included)."""
    t0 = time.perf_counter()
    n = 0
    for batch in loader:
        n += int(batch["image"].shape[0])
    return n, time.perf_counter() - t0


def benchmark_pipeline(preset: str, opts: Options, dataset_dir: Path) -> dict[str, Any]:
    """Images/s of ``train#preprocessing`` over the synthetic dataset, for each worker count."""
    from monai.data import DataLoader, Dataset

    from hermes_monai.data import load_datalist

    device = torch.device(opts.device)
    parser = make_parser(preset, dict(opts.extra_overrides), device)
    transform = parser.get_parsed_content("train#preprocessing")
    configured_workers = int(parser.get_parsed_content("num_workers"))
    n_l = int(parser.get_parsed_content("labeled_batch_size"))
    n_u = int(parser.get_parsed_content("unlabeled_batch_size"))
    datalist = dataset_dir / "datalist.json"
    splits = {
        "labeled": (load_datalist(datalist, "labeled"), n_l),
        "unlabeled": (load_datalist(datalist, "unlabeled"), n_u),
    }
    by_workers: dict[str, Any] = {}
    for workers in dict.fromkeys(configured_workers if w is None else w for w in opts.pipeline_workers):
        seed_everything(opts.seed)
        loaders = [
            DataLoader(
                Dataset(items, transform=transform),
                batch_size=bs,
                shuffle=True,
                drop_last=True,
                num_workers=workers,
            )
            for items, bs in splits.values()
        ]
        for loader in loaders:  # warm-up pass: file cache, lazy imports
            _timed_pass(loader)
        images, seconds = 0, 0.0
        for _ in range(opts.pipeline_passes):
            for loader in loaders:
                n, s = _timed_pass(loader)
                images, seconds = images + n, seconds + s
        by_workers[str(workers)] = {
            "images": images,
            "seconds": seconds,
            "images_per_second": images / seconds,
        }
    return {
        "settings": {
            "preset": preset,
            "image_size": int(parser.get_parsed_content("image_size")),
            "source_image_size": opts.pipeline_image_size,
            "labeled_images": len(splits["labeled"][0]),
            "unlabeled_images": len(splits["unlabeled"][0]),
            "configured_num_workers": configured_workers,
            "caching": False,
        },
        "by_num_workers": by_workers,
        "configured_images_per_second": by_workers[str(configured_workers)]["images_per_second"],
    }


# ---------------------------------------------------------------------------------------------- run
def _presets_of(configs: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(STEP_CONFIGS[c][0] for c in configs))


def network_compute(preset: str, opts: Options) -> dict[str, Any]:
    """Parameters and forward FLOPs of the preset's seg network and classifier (method-equal switches,
    eval mode, one image at the preset's size) against the reference's forward GFLOP (:data:`REFERENCE`)."""
    device = torch.device(opts.device)
    release_memory()
    parser = make_parser(preset, {**STEP_CONFIGS["paper_method_equal"][1], **opts.extra_overrides}, device)
    net = parser.get_parsed_content("network_def").eval()
    size = int(parser.get_parsed_content("image_size"))
    x = torch.rand(1, 1, size, size)
    out: dict[str, Any] = {"image_size": size}
    for name, module, ref in (("seg", net.seg, "seg_forward_gflop"), ("cls", net.cls, "cls_forward_gflop")):
        with torch.no_grad():
            flops, _ = count_flops(lambda module=module: module(x))
        gflop = flops / 1e9
        out[name] = {
            "parameters": sum(p.numel() for p in module.parameters()),
            "forward_gflop": gflop,
            "reference_forward_gflop": REFERENCE[ref],
            "ratio_to_reference": gflop / REFERENCE[ref],
        }
        if size == 224:  # the reference figures are per 224² image
            out[name]["within_tolerance"] = abs(gflop / REFERENCE[ref] - 1) <= NETWORK_TOLERANCE
    out["seg"]["encoder_parameters"] = sum(p.numel() for p in net.seg.encoder.parameters())
    return out


def apply_effective_peak(results: dict[str, Any]) -> dict[str, Any]:
    """Per dtype, the peak to compare with (:func:`effective_peak`: the matmul probe or, when faster, the
    fastest kernel any ceiling replayed); adds ``fraction_of_peak`` to every step and inference result."""
    runs: dict[str, list[dict[str, Any]]] = {"fp32": [], "bf16": []}
    for section in ("steps", "inference"):
        for r in results[section].values():
            runs["fp32"].append(r)
            runs["bf16"].extend(v for k, v in r.get("variants", {}).items() if k == "bf16")
    peaks: dict[str, Any] = {}
    for variant, key in (("fp32", "matmul_peak"), ("bf16", "matmul_peak_bf16")):
        if key not in results:
            continue
        peak = effective_peak(results[key]["gflops"], [r.get("kernel_ceiling") for r in runs[variant]])
        peaks[variant] = peak
        for r in runs[variant]:
            rate = r.get("achieved_gflops")
            if rate is None and "flops_per_image" in r:
                rate = r["flops_per_image"] / r["latency_seconds_batch1"]["median"] / 1e9
            r["fraction_of_peak"] = rate / peak["gflops"] if rate and peak["gflops"] > 0 else None
    return peaks


def run_benchmark(opts: Options, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every measurement of ``opts`` and return the JSON-ready result dict."""
    unknown = [c for c in opts.configs if c not in STEP_CONFIGS]
    if unknown:
        raise ValueError(f"unknown config(s) {unknown}; known: {sorted(STEP_CONFIGS)}")
    device = torch.device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but CUDA is not available")
    seed_everything(opts.seed)
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "mode": opts.mode,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "options": {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("extra_overrides",)}
        | {"extra_overrides": dict(opts.extra_overrides)},
        "machine": machine_info(device),
    }
    log(f"matmul peak (sizes {list(opts.matmul_sizes)}) ...")
    peak = measure_matmul_peak(opts.matmul_sizes, opts.matmul_repeats, device)
    results["matmul_peak"] = peak
    peak_gflops = {None: peak["gflops"]}
    if opts.variants and bf16_supported(device):
        peak_bf16 = measure_matmul_peak(opts.matmul_sizes, opts.matmul_repeats, device, dtype=torch.bfloat16)
        results["matmul_peak_bf16"] = peak_bf16
        peak_gflops[torch.bfloat16] = peak_bf16["gflops"]

    steps: dict[str, Any] = {}
    for name in opts.configs:
        entry: dict[str, Any] = {}
        for variant, dtype in step_variants(device, opts.variants):
            log(f"step {name} [{variant}] ...")
            entry[variant] = benchmark_step(name, opts, peak_gflops[dtype], dtype)
        main = entry.pop("fp32")
        if opts.compiled:
            log(f"step {name} [compiled] ...")
            main["compiled"] = benchmark_compiled_step(name, opts, main)
        main["targets"] = step_targets(name, main, device)
        if entry:
            for v in entry.values():
                v["speedup_vs_fp32"] = main["step_seconds"]["median"] / v["step_seconds"]["median"]
            main["variants"] = entry
        steps[name] = main
    results["steps"] = steps

    comparisons: dict[str, Any] = {}
    if "cpu_full" in steps and "paper_full" in steps:
        cpu, paper = steps["cpu_full"], steps["paper_full"]
        time_ratio = paper["step_seconds"]["median"] / cpu["step_seconds"]["median"]
        flops_ratio = paper["flops_per_step"] / max(cpu["flops_per_step"], 1)
        comparisons["paper_full_over_cpu_full"] = {
            "time_ratio": time_ratio,
            "flops_ratio": flops_ratio,
            "target_min": 10.0,
            "met": time_ratio >= 10.0,
        }
    if "paper_method_equal" in steps:
        s = steps["paper_method_equal"]
        med = s["step_seconds"]["median"]
        comparisons["paper_method_equal_vs_reference"] = {
            "reference": dict(REFERENCE),
            "time_fraction_of_reference": med / REFERENCE["step_seconds"],
            "time_fraction_of_reference_without_slow_indexing": (
                med / REFERENCE["step_seconds_without_slow_indexing"]
            ),
            "gflop_per_step": s["gflops_per_step"],
            "gflop_fraction_of_reference": s["gflops_per_step"] / REFERENCE["step_gflop"],
            "achieved_gflops": s["achieved_gflops"],
            "reference_achieved_gflops_without_slow_indexing": (
                REFERENCE["step_gflop"] / REFERENCE["step_seconds_without_slow_indexing"]
            ),
            "rss_fraction_of_reference": (
                (s["memory"]["peak_rss_gb"] or float("nan")) / REFERENCE["peak_rss_gb"]
            ),
            "note": "the reference figures were taken on a 2-core AMD EPYC; compare only on such a machine",
        }
    if any(STEP_CONFIGS[n][0] == "paper" for n in opts.configs) and opts.network_check:
        log("paper networks vs the reference ...")
        comparisons["paper_networks_vs_reference"] = network_compute("paper", opts)
    results["comparisons"] = comparisons

    inference: dict[str, Any] = {}
    presets = (
        list(opts.inference_presets) if opts.inference_presets is not None else _presets_of(opts.configs)
    )
    for preset in presets:
        entry = {}
        for variant, dtype in step_variants(device, opts.variants):
            log(f"inference {preset} [{variant}] ...")
            entry[variant] = benchmark_inference(preset, opts, peak_gflops[dtype], dtype)
        main = entry.pop("fp32")
        ratio = main["deploy"]["latency_over_kernel_floor"]  # what inference.yaml and the export run
        if preset == "paper" and ratio is not None:
            main["targets"] = {
                "latency_over_kernel_floor_max": {"target": 1.10, "value": ratio, "met": ratio <= 1.10},
            }
        if entry:
            main["variants"] = entry
        inference[preset] = main
    results["inference"] = inference
    results["peak"] = apply_effective_peak(results)

    pipeline: dict[str, Any] = {}
    from hermes_monai.data import generate_synthetic_dataset

    with tempfile.TemporaryDirectory(prefix="hermes_bench_") as tmp:
        generate_synthetic_dataset(
            tmp,
            num_labeled=opts.pipeline_labeled,
            num_unlabeled=opts.pipeline_unlabeled,
            num_validation=0,
            num_test=0,
            image_size=opts.pipeline_image_size,
            seed=opts.seed,
        )
        for preset in _presets_of(opts.configs):
            log(f"data pipeline {preset} ...")
            entry = benchmark_pipeline(preset, opts, Path(tmp))
            rate = entry["configured_images_per_second"]
            entry["ratio_to_step_consumption"] = {
                name: rate / s["samples_per_second"]
                for name, s in steps.items()
                if s["settings"]["preset"] == preset
            }
            entry["targets"] = {
                name: {"target_min": 1.0, "value": r, "met": r > 1.0}
                for name, r in entry["ratio_to_step_consumption"].items()
            }
            pipeline[preset] = entry
    results["data_pipeline"] = pipeline
    return results


# ---------------------------------------------------------------------------------------------- output
def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return format(value, spec)


def format_report(results: Mapping[str, Any]) -> str:
    """A readable plain-text summary of ``results``."""
    lines: list[str] = []
    m = results["machine"]
    lines.append(
        f"Hermes benchmark ({results['mode']}) on {m['device']}: {m['cpu_model']}, "
        f"{m['torch_threads']} threads, torch {m['torch_version']}"
        + (f", {m['gpu_name']}" if "gpu_name" in m else "")
    )
    for key in ("matmul_peak", "matmul_peak_bf16"):
        if key in results:
            p = results[key]
            sizes = ", ".join(f"{k}: {_fmt(v, '.1f')}" for k, v in p["by_size"].items())
            lines.append(f"{p['dtype']} matmul peak: {_fmt(p['gflops'], '.1f')} GFLOP/s  (by size: {sizes})")
    for variant, p in results.get("peak", {}).items():
        lines.append(
            f"{variant} peak used for '% peak': {_fmt(p['gflops'], '.1f')} GFLOP/s ({p['source']}; fastest "
            f"replayed kernel {_fmt(p['best_kernel_gflops'], '.1f')}, "
            f"matmul probe {_fmt(p['matmul_gflops'], '.1f')})"
        )
    lines.append("")
    head = (
        f"{'step config':<24}{'s/iter':>9}{'samples/s':>11}{'GFLOP/step':>12}{'GFLOP/s':>9}"
        f"{'%peak':>7}{'peak GB':>9}"
    )
    lines.append(head)
    lines.append("-" * len(head))
    for name, s in results["steps"].items():
        rows = [(name, s)] + [(f"  {name} {v}", r) for v, r in s.get("variants", {}).items()]
        for label, r in rows:
            mem = r["memory"]
            gb = mem.get("peak_cuda_allocated_gb", mem["peak_rss_gb"])
            frac = r.get("fraction_of_peak", r["fraction_of_matmul_peak"])
            lines.append(
                f"{label:<24}{_fmt(r['step_seconds']['median'], '.3f'):>9}"
                f"{_fmt(r['samples_per_second'], '.2f'):>11}{_fmt(r['gflops_per_step'], '.1f'):>12}"
                f"{_fmt(r['achieved_gflops'], '.1f'):>9}"
                f"{_fmt(None if frac is None else 100 * frac, '.0f'):>7}"
                f"{_fmt(gb, '.2f'):>9}"
            )
    for name, s in results["steps"].items():
        lines.append("")
        lines.append(
            f"phases of {name} (profiled step {_fmt(s['profiled_step_seconds'], '.3f')} s, "
            f"profiler overhead {_fmt(100 * s['profiler_overhead'], '+.0f')} %, "
            f"{s['phase_time_kind']} time):"
        )
        for phase, v in s["phases"].items():
            lines.append(
                f"  {phase:<18}{_fmt(v['seconds'], '.3f'):>9} s {_fmt(100 * v['fraction'], '.1f'):>6} %"
            )
        for label, r in [("", s)] + [(f" [{v}]", x) for v, x in s.get("variants", {}).items()]:
            c = r.get("kernel_ceiling")
            if c:
                share = 100 * c["seconds"] / r["step_seconds"]["median"]
                lines.append(
                    f"  step at {_fmt(share, '.0f')} % of its kernel ceiling{label}: "
                    f"{c['calls']} matmul/conv calls replayed alone take "
                    f"{_fmt(c['seconds'], '.3f')} s = {_fmt(c['achieved_gflops'], '.1f')} GFLOP/s "
                    f"(fastest call {_fmt(c['best_call_gflops'], '.1f')} GFLOP/s)"
                )
        comp = s.get("compiled")
        if comp:
            frac = comp["fraction_of_kernel_ceiling"]
            lines.append(
                f"  compiled: {_fmt(comp['step_seconds']['median'], '.3f')} s/step "
                f"({_fmt(comp['speedup_vs_eager'], '.2f')}x eager), "
                f"{'-' if frac is None else _fmt(100 * frac, '.0f')} % of the eager kernel ceiling; "
                f"first step {_fmt(comp['first_step_seconds'], '.1f')} s (compilation), break-even after "
                f"{_fmt(comp['break_even_iterations'])} iterations; "
                f"{comp['graph_breaks']['graphs']} graph(s), {comp['graph_breaks']['breaks']} break(s)"
            )
        for tname, t in s.get("targets", {}).items():
            lines.append(
                f"  target {tname}: {_fmt(t['value'])} vs {t['target']} -> {'MET' if t['met'] else 'NOT MET'}"
            )
    for cname, c in results["comparisons"].items():
        lines.append("")
        lines.append(
            f"{cname}: " + ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in c.items())
        )
    lines.append("")
    head = (
        f"{'inference':<24}{'latency s':>10}{'img/s':>9}{'GFLOP/img':>11}{'FLOP-bound s':>13}{'ratio':>7}"
        f"{'kernel floor s':>15}{'lat/floor':>10}"
    )
    lines.append(head)
    lines.append("-" * len(head))
    for preset, r in results["inference"].items():
        rows = [(preset, r)] + [(f"  {preset} {v}", x) for v, x in r.get("variants", {}).items()]
        for label, x in rows:
            lines.append(
                f"{label:<24}{_fmt(x['latency_seconds_batch1']['median'], '.4f'):>10}"
                f"{_fmt(x['images_per_second'], '.2f'):>9}{_fmt(x['gflops_per_image'], '.2f'):>11}"
                f"{_fmt(x['flops_over_peak_seconds'], '.4f'):>13}"
                f"{_fmt(x['latency_over_flops_bound'], '.2f'):>7}"
                f"{_fmt((x.get('kernel_ceiling') or {}).get('seconds'), '.4f'):>15}"
                f"{_fmt(x.get('latency_over_kernel_floor'), '.2f'):>10}"
            )
            d = x.get("deploy")
            if d:  # the served network: batch 1 only, GFLOP and floor of its own kernels
                lines.append(
                    f"{'    deploy, BN folded':<24}{_fmt(d['latency_seconds_batch1']['median'], '.4f'):>10}"
                    f"{'-':>9}{_fmt(d['flops_per_image'] / 1e9, '.2f'):>11}{'-':>13}{'-':>7}"
                    f"{_fmt((d.get('kernel_ceiling') or {}).get('seconds'), '.4f'):>15}"
                    f"{_fmt(d.get('latency_over_kernel_floor'), '.2f'):>10}"
                )
    lines.append("")
    for preset, p in results["data_pipeline"].items():
        rates = ", ".join(
            f"{w} workers: {_fmt(v['images_per_second'], '.1f')} img/s"
            for w, v in p["by_num_workers"].items()
        )
        ratios = ", ".join(f"{k}: {_fmt(v, '.1f')}x" for k, v in p["ratio_to_step_consumption"].items())
        lines.append(
            f"data pipeline {preset} ({p['settings']['image_size']}px, no cache): {rates}; "
            f"vs step consumption: {ratios or '-'}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line interface (see the module docstring)."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 64x64, batch 2+2, 1 warm-up + 2 timed iterations, small matmuls",
    )
    p.add_argument(
        "--configs",
        default=",".join(STEP_CONFIGS),
        help=f"comma-separated step configurations, from {', '.join(STEP_CONFIGS)}",
    )
    p.add_argument(
        "--inference",
        default=None,
        help="comma-separated inference presets (paper, cpu); default: those of --configs; 'none' to skip",
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations (default 1)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default 3; quick 2)")
    p.add_argument("--output", default=str(REPO / "docs" / "benchmark_results.json"), help="JSON output path")
    p.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available, else cpu"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--matmul-sizes", default=None, help="square sizes (default 2048,4096,6144)")
    p.add_argument("--no-variants", action="store_true", help="skip the bf16 repetitions")
    p.add_argument(
        "--compiled",
        action="store_true",
        help="also time every step with the network compiled (torch.compile; minutes of compilation each)",
    )
    p.add_argument(
        "--ceiling-repeats",
        type=int,
        default=None,
        help="repeats per replayed kernel of the kernel-ceiling measurement (default 3, quick 1; 0 skips it)",
    )
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="bundle override for every configuration, repeatable; VALUE as on the monai.bundle command line "
        "(channels_last=false)",
    )
    return p.parse_args(argv)


def options_from_args(args: argparse.Namespace) -> Options:
    """Turn parsed CLI arguments into :class:`Options`."""
    opts = quick_options() if args.quick else Options()
    changes: dict[str, Any] = {
        "configs": tuple(c.strip() for c in args.configs.split(",") if c.strip()),
        "seed": args.seed,
        "variants": not args.no_variants,
        "compiled": args.compiled,
    }
    if args.inference is not None:
        changes["inference_presets"] = (
            ()
            if args.inference.strip().lower() == "none"
            else tuple(p.strip() for p in args.inference.split(",") if p.strip())
        )
        bad = [p for p in changes["inference_presets"] if p not in PRESETS]
        if bad:
            raise SystemExit(f"unknown inference preset(s) {bad}; known: {sorted(PRESETS)}")
    if args.warmup is not None:
        changes["warmup"] = args.warmup
    if args.iters is not None:
        changes["iters"] = args.iters
    if args.device is not None:
        changes["device"] = args.device
    if args.matmul_sizes:
        changes["matmul_sizes"] = tuple(int(s) for s in args.matmul_sizes.split(","))
    if args.ceiling_repeats is not None:
        changes["ceiling_repeats"] = args.ceiling_repeats
    if args.override:
        user = dict(parse_override(o) for o in args.override)
        changes["extra_overrides"] = {**opts.extra_overrides, **user}
    opts = dataclasses.replace(opts, **changes)
    if opts.iters < 1 or opts.warmup < 0:
        raise SystemExit("--iters must be >= 1 and --warmup >= 0")
    return opts


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the report, write the JSON; return the results."""
    args = parse_args(argv)
    opts = options_from_args(args)
    t0 = time.perf_counter()
    results = run_benchmark(opts, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    results["total_seconds"] = time.perf_counter() - t0
    write_json_atomic(args.output, results)
    print(format_report(results))
    print(f"\nwritten {args.output} ({results['total_seconds']:.1f} s)")
    return results


if __name__ == "__main__":
    main()
