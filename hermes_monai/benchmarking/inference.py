"""Inference measured: batch-1 latency and batch throughput of the eval-mode network, its FLOPs and kernel
floor, the gain of folding batch norm, and the network ``inference.yaml`` serves (``HermesDeployNet``)."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from hermes_monai.benchmarking.flops import count_flops
from hermes_monai.benchmarking.kernels import kernel_ceiling
from hermes_monai.benchmarking.memory import PeakMemory, release_memory
from hermes_monai.benchmarking.options import INFERENCE_OVERRIDES, Options, seed_everything
from hermes_monai.benchmarking.steps import config_files, make_parser
from hermes_monai.benchmarking.timing import median_seconds, summarize_times, synchronize
from hermes_monai.networks.fusion import fold_batch_norm


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
