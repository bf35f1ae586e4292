"""Kernel-level ceilings: the matmul peak probe and the replay of a step's own matmul/conv calls.

- :func:`measure_matmul_peak`: the best ``torch.mm`` rate over square sizes.
- :func:`kernel_ceiling`: every matmul/convolution call of a function (forward and backward) is recorded
  with its shapes and strides, replayed alone on random tensors and timed. The summed time is what the
  function would take if everything else were free; the best single call's rate is a peak the workload
  itself demonstrably reaches (oneDNN convolutions can outrun the GEMM sizes probed), so
  :func:`effective_peak` takes the larger of the two as the peak to compare with.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hermes_monai.benchmarking.flops import GlobalFlopCounter, count_flops, matmul_flops
from hermes_monai.benchmarking.timing import median_seconds, synchronize

__all__ = ["KernelRecorder", "effective_peak", "kernel_ceiling", "measure_matmul_peak"]


def measure_matmul_peak(
    sizes: Sequence[int],
    repeats: int,
    device: torch.device,
    warmup: int = 1,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    """Best ``torch.mm`` rate over square sizes (float32 unless ``dtype`` says otherwise).

    Returns:
        ``{"gflops": best GFLOP/s, "by_size": {str(n): GFLOP/s}, "threads": int, "dtype": str, "repeats"}``.
    """
    gen = torch.Generator(device="cpu").manual_seed(0)
    by_size: dict[str, float] = {}
    for n in sizes:
        a = torch.rand(n, n, generator=gen).to(device, dtype)
        b = torch.rand(n, n, generator=gen).to(device, dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        times = median_seconds(lambda a=a, b=b, out=out: torch.mm(a, b, out=out), warmup, repeats, device)
        by_size[str(n)] = matmul_flops(n) / min(times) / 1e9
        del a, b, out
    return {
        "gflops": max(by_size.values()),
        "by_size": by_size,
        "threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."),
        "repeats": repeats,
    }


@dataclasses.dataclass(frozen=True)
class _TensorSpec:
    """Shape, strides and dtype of a recorded tensor argument (enough to rebuild one like it)."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    device: str


def _spec(obj: Any) -> Any:
    """A hashable description of an aten call argument: tensors -> :class:`_TensorSpec`, lists -> tuples."""
    if isinstance(obj, torch.Tensor):
        return _TensorSpec(tuple(obj.shape), tuple(obj.stride()), obj.dtype, str(obj.device))
    if isinstance(obj, (list, tuple)):
        return tuple(_spec(o) for o in obj)
    if isinstance(obj, dict):
        return tuple(sorted((k, _spec(v)) for k, v in obj.items()))
    return obj


def _materialize(spec: Any, gen: torch.Generator) -> Any:
    """Random tensors laid out as recorded (strides, zero strides of expanded tensors included)."""
    if isinstance(spec, _TensorSpec):
        extent = 1 + sum((n - 1) * st for n, st in zip(spec.shape, spec.stride)) if all(spec.shape) else 0
        base = torch.randn(extent, generator=gen, dtype=torch.float32).to(spec.device)
        base = base.to(spec.dtype) if spec.dtype.is_floating_point else base.zero_().to(spec.dtype)
        return base.as_strided(spec.shape, spec.stride)
    if isinstance(spec, tuple):
        return [_materialize(s, gen) for s in spec]
    return spec


class KernelRecorder(TorchDispatchMode):
    """Records every aten call that :class:`GlobalFlopCounter` counts FLOPs for (convolution and its
    backward, mm, addmm, bmm, ...) as (op, argument specs) with a call count. Everything else runs
    unrecorded."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = set(GlobalFlopCounter().flop_registry)
        self.calls: dict[tuple, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func.overloadpacket in self.ops:
            key = (func, _spec(args), _spec(kwargs))
            self.calls[key] = self.calls.get(key, 0) + 1
        return func(*args, **kwargs)


def kernel_ceiling(
    fn: Callable[[], Any], device: torch.device, peak_gflops: float, repeats: int = 3
) -> dict[str, Any]:
    """How fast ``fn`` could be if only its matmul/convolution kernels took time.

    ``fn`` runs once under :class:`KernelRecorder`; every distinct recorded call (same op, shapes, strides,
    dtypes, arguments) is then replayed alone on random tensors of the same layout, best of ``repeats``
    after one warm-up, and multiplied by its count. The sum is the time those kernels need at the speed
    this machine's libraries (oneDNN/cuBLAS/cuDNN) reach for exactly these shapes, so
    ``fraction_of_matmul_peak`` here is the highest fraction a whole step (or image) can reach when every
    other op (normalisation, activations, losses, optimiser) took no time at all.

    Returns:
        ``seconds``, ``flops``, ``achieved_gflops``, ``fraction_of_matmul_peak`` (against ``peak_gflops``),
        ``best_call_gflops`` (the fastest distinct call's own rate), ``calls``,
        ``distinct_calls`` and ``by_op`` (``{op: {"seconds", "flops", "calls"}}``).
    """
    recorder = KernelRecorder()
    with recorder:
        fn()
    synchronize(device)
    gen = torch.Generator().manual_seed(0)
    total_s, total_f, best_call = 0.0, 0, 0.0
    by_op: dict[str, dict[str, float]] = {}
    for (func, args_spec, kwargs_spec), count in recorder.calls.items():
        call = functools.partial(
            func, *_materialize(args_spec, gen), **{k: _materialize(v, gen) for k, v in kwargs_spec}
        )
        times = median_seconds(call, 1, repeats, device)
        flops, _ = count_flops(call)
        seconds = min(times) * count
        total_s += seconds
        total_f += flops * count
        best_call = max(best_call, flops / min(times) / 1e9)
        name = str(func.overloadpacket).split(".")[-1]
        op = by_op.setdefault(name, {"seconds": 0.0, "flops": 0, "calls": 0})
        op["seconds"] += seconds
        op["flops"] += flops * count
        op["calls"] += count
    achieved = total_f / total_s / 1e9 if total_s > 0 else float("nan")
    return {
        "seconds": total_s,
        "flops": total_f,
        "achieved_gflops": achieved,
        "fraction_of_matmul_peak": achieved / peak_gflops if peak_gflops > 0 else None,
        "best_call_gflops": best_call,
        "calls": sum(recorder.calls.values()),
        "distinct_calls": len(recorder.calls),
        "repeats": repeats,
        "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]["seconds"])),
    }


def effective_peak(matmul_peak_gflops: float, ceilings: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """The peak rate to compare with: the larger of the matmul probe and the fastest replayed kernel.

    A peak that the workload's own kernels beat is no ceiling, so every kernel call the ceilings replayed
    is a probe too. Returns ``{"gflops", "source" ("matmul" or "kernel"), "matmul_gflops",
    "best_kernel_gflops"}``.
    """
    best = max((c["best_call_gflops"] for c in ceilings if c), default=0.0)
    source = "kernel" if best > matmul_peak_gflops else "matmul"
    return {
        "gflops": max(best, matmul_peak_gflops),
        "source": source,
        "matmul_gflops": matmul_peak_gflops,
        "best_kernel_gflops": best,
    }
