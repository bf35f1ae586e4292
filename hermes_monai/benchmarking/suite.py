"""A whole benchmark run: peak, every training step, the comparisons with the reference, inference and the
data pipeline, in one process (:func:`run_benchmark`, what ``scripts/benchmark.py`` runs)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from hermes_monai.benchmarking.flops import count_flops
from hermes_monai.benchmarking.inference import benchmark_inference
from hermes_monai.benchmarking.kernels import effective_peak, measure_matmul_peak
from hermes_monai.benchmarking.machine import machine_info
from hermes_monai.benchmarking.memory import release_memory
from hermes_monai.benchmarking.options import (
    NETWORK_TOLERANCE,
    REFERENCE,
    SCHEMA_VERSION,
    Options,
    bf16_supported,
    seed_everything,
    step_variants,
)
from hermes_monai.benchmarking.pipeline import benchmark_pipeline
from hermes_monai.benchmarking.steps import STEP_CONFIGS, make_parser
from hermes_monai.benchmarking.training import benchmark_compiled_step, benchmark_step, step_targets


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
