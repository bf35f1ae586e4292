"""The plain-text report of a benchmark run's results (what ``scripts/benchmark.py`` prints)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


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
    parity = results.get("bf16_parity")
    if parity:
        from hermes_monai.comparison.parity import format_parity_table

        seconds = ", ".join(f"{m} {_fmt(v, '.0f')} s" for m, v in parity["train_seconds"].items())
        lines += ["", f"bf16 parity (from {parity['source']}; mean training time {seconds or '-'}):"]
        lines.append(format_parity_table(parity).rstrip("\n"))
    return "\n".join(lines)
