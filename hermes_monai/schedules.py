"""Ramp schedules used by Hermes (HERMES.md §4-§5), every length a fraction of the run's length T.

* :func:`sigmoid_rampup` — the mean-teacher "sigmoid-shaped" ramp ``exp(-5 (1 - c)^2)`` with
  ``c = clip(current / length, 0, 1)``; it rises from ``exp(-5) ≈ 0.0067`` at ``c = 0`` to 1 at ``c = 1``.
* :func:`entropy_ratio` — the certainty bar ``γ(t) = start + (1 - start) · rampup(t, T)`` of the
  dual-threshold selector (the entropy test accepts ``H(p) < γ(t) · ln C``).
* :func:`consistency_weight` — ``λ(t) = weight · rampup(t, length · T)`` for the inter-task consistency
  loss; ``length = 4/3`` equals the paper's ``rampup(t / 100, 40)`` at its T = 3000 and keeps that shape
  for any T (it ends at ``exp(-5/16) ≈ 0.73``).
* :func:`contrast_weight` — the factor on the contrastive terms: 0 before ``warmup · T``, then
  ``rampup(t − warmup · T, rampup · T)``.

Expressing every ramp as a fraction of T makes a 500-iteration CPU run follow the same curve as the
paper's 3000-iteration run; fixed iteration counts (the paper's code) would leave a short run with its
ramps barely started. All functions return plain Python floats.
"""

from __future__ import annotations

import math

__all__ = ["sigmoid_rampup", "entropy_ratio", "consistency_weight", "contrast_weight"]

#: λ(t)'s ramp length as a fraction of T: the paper's rampup(t / 100, 40) at T = 3000.
PAPER_CONSISTENCY_RAMPUP = 4.0 / 3.0


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
    iteration: int, total: int, weight: float = 1.0, length: float = PAPER_CONSISTENCY_RAMPUP
) -> float:
    """Inter-task consistency weight ``λ(t) = weight · sigmoid_rampup(t, length · T)`` (HERMES §5)."""
    return float(weight * sigmoid_rampup(iteration, length * total))


def contrast_weight(iteration: int, total: int, warmup: float = 0.1, rampup: float = 0.0) -> float:
    """Factor on the contrastive terms: 0 for ``t < warmup · T``, then ``rampup(t − warmup · T, rampup · T)``.

    Args:
        iteration: t (0-based).
        total: T, the run's iterations.
        warmup: fraction of T before the terms switch on (HERMES §5: 10 unlabeled epochs of the paper's
            run, 0.1 of its T).
        rampup: fraction of T over which the factor rises from ``exp(-5)`` to 1 after the warm-up;
            0 switches the terms fully on at once.
    """
    if not 0.0 <= warmup <= 1.0 or rampup < 0.0:
        raise ValueError(f"need 0 <= warmup <= 1 and rampup >= 0, got {warmup}, {rampup}")
    start = warmup * total
    if iteration < start:
        return 0.0
    return sigmoid_rampup(iteration - start, rampup * total)
