"""FLOP counting with ``torch.utils.flop_counter.FlopCounterMode`` formulas (2 FLOPs per multiply-add;
matmul, convolution and their backward; element-wise work counts zero)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.flop_counter import FlopCounterMode

__all__ = ["GlobalFlopCounter", "count_flops", "matmul_flops"]


def matmul_flops(n: int) -> int:
    """FLOPs of one (n x n) @ (n x n) product: n^2 outputs x n multiply-adds x 2."""
    return 2 * n**3


class _GlobalOnlyTracker:
    """Stand-in for FlopCounterMode's ModuleTracker: attributes every FLOP to "Global", installs no hooks."""

    parents = ("Global",)

    def __enter__(self) -> _GlobalOnlyTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class GlobalFlopCounter(FlopCounterMode):
    """``FlopCounterMode`` without per-module attribution.

    The stock module tracker registers backward hooks that raise inside ``torch.autograd.grad`` (used by
    the saliency map), so it is replaced by a tracker that counts everything under ``"Global"``.
    """

    def __init__(self) -> None:
        super().__init__(display=False)
        self.mod_tracker = _GlobalOnlyTracker()

    def flops_by_op(self) -> dict[str, int]:
        """FLOPs per aten op (e.g. ``convolution``, ``convolution_backward``, ``mm``), largest first."""
        counts = self.get_flop_counts().get("Global", {})
        named = {str(k).split(".")[-1] if "." in str(k) else str(k): int(v) for k, v in counts.items()}
        return dict(sorted(named.items(), key=lambda kv: -kv[1]))


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """Run ``fn`` once under :class:`GlobalFlopCounter`; return total FLOPs and FLOPs per op."""
    with GlobalFlopCounter() as counter:
        fn()
    return int(counter.get_total_flops()), counter.flops_by_op()
