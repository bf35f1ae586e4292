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
8. **bf16 parity** (``--parity RESULTS_JSON``): the accuracy side of the bf16 fast path, from a
   ``scripts/compare.py`` run of ``--methods hermes bf16 fp32_nchw --reference hermes --bf16_inference``:
   per-seed Dice and accuracy differences from fp32 (:mod:`hermes_monai.comparison.parity`), recorded beside
   the speed they buy.

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
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hermes_monai.benchmarking import (
    PRESETS,
    STEP_CONFIGS,
    Options,
    format_report,
    quick_options,
    run_benchmark,
)
from hermes_monai.comparison.parity import load_parity
from hermes_monai.io import write_json_atomic
from hermes_monai.overrides import parse_override

REPO = Path(__file__).resolve().parents[1]


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
        "--parity",
        default=None,
        metavar="RESULTS_JSON",
        help="a compare.py results.json of the bf16 parity runs (--methods hermes bf16 fp32_nchw "
        "--bf16_inference): its parity table goes into the JSON (bf16_parity) and the report",
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
    parity = None if args.parity is None else load_parity(args.parity)  # a bad file fails before measuring
    t0 = time.perf_counter()
    results = run_benchmark(opts, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    if parity is not None:
        results["bf16_parity"] = parity
    results["total_seconds"] = time.perf_counter() - t0
    write_json_atomic(args.output, results)
    print(format_report(results))
    print(f"\nwritten {args.output} ({results['total_seconds']:.1f} s)")
    return results


if __name__ == "__main__":
    main()
