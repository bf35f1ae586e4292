"""Ramp schedules used by Hermes (HERMES.md §4-§5).

* :func:`sigmoid_rampup` — the mean-teacher "sigmoid-shaped" ramp ``exp(-5 (1 - c)^2)`` with
  ``c = clip(current / length, 0, 1)``; it rises from ``exp(-5) ≈ 0.0067`` at ``c = 0`` to 1 at ``c = 1``.
* :func:`entropy_ratio` — the certainty bar ``γ(t) = start + (1 - start) · rampup(t, T)`` of the
  dual-threshold selector (the entropy test accepts ``H(p) < γ(t) · ln C``).
* :func:`consistency_weight` — ``λ(t) = weight · rampup(t / scale, length)`` for the inter-task
  consistency loss (paper default ``rampup(t / 100, 40)``).

All functions are pure Python floats so they can be called from the engine or from handlers.
"""

from __future__ import annotations

import math

__all__ = ["sigmoid_rampup", "entropy_ratio", "consistency_weight"]


def sigmoid_rampup(current: float, length: float) -> float:
    """Return ``exp(-5 (1 - c)^2)`` with ``c = clip(current / length, 0, 1)``; 1.0 when ``length == 0``."""
    if length == 0:
        return 1.0
    c = min(max(float(current) / float(length), 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - c) ** 2))


def entropy_ratio(iteration: int, total: int, start: float = 0.75) -> float:
    """Entropy-threshold fraction ``γ(t) = start + (1 - start) · sigmoid_rampup(t, T)`` (HERMES §4)."""
    return float(start + (1.0 - start) * sigmoid_rampup(iteration, total))


def consistency_weight(
    iteration: int, weight: float = 1.0, scale: float = 100.0, length: float = 40.0
) -> float:
    """Inter-task consistency weight ``λ(t) = weight · sigmoid_rampup(t / scale, length)`` (HERMES §5)."""
    return float(weight * sigmoid_rampup(iteration / scale, length))
