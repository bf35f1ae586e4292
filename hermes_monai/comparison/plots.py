"""Plots of a comparison: validation learning curves and gradient shares, written atomically as PNG.

matplotlib is imported on first use (Agg back end): plotting is optional for the rest of the package.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hermes_monai.comparison.summary import CURVE_KEYS, CURVE_TITLES, mean_curves
from hermes_monai.io import atomic_path

#: Loss terms whose gradient norm on the shared seg encoder the trainer logs (``grad_norm_<term>``, at
#: ``grad_monitor_interval`` iterations) and ``grad_shares.png`` plots as a ratio to ``seg_l``'s
GRAD_TERMS: tuple[str, ...] = ("seg_u", "contrast_seg", "itc", "cls_l", "cls_u", "contrast_cls")


def _pyplot() -> Any:
    """pyplot on the non-interactive Agg backend (imported on first use: plotting is optional)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig: Any, path: Path) -> None:
    """Lay out ``fig``, write it atomically as PNG to ``path`` and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)


def grad_share_curves(
    records: Iterable[Mapping[str, Any]],
) -> dict[tuple[int, str], dict[str, list[tuple[int, float]]]]:
    """(budget, method) -> term -> ``[(iteration, mean over seeds of norm_term / norm_seg_l), ...]``.

    Reads each record's ``grad_curves`` (``grad_norm_<term>`` as ``[iteration, value]``); an iteration
    counts for a seed when both norms were logged there and ``seg_l``'s is positive. Terms whose norm is 0
    throughout (off, or detached from the encoder) are left out, and so are runs without a monitor.
    """
    pooled: dict[tuple[int, str], dict[str, dict[int, list[float]]]] = {}
    for r in records:
        grads = r.get("grad_curves", {})
        ref = {int(x): float(y) for x, y in grads.get("grad_norm_seg_l", [])}
        for term in GRAD_TERMS:
            points = grads.get(f"grad_norm_{term}", [])
            if not any(float(y) > 0 for _, y in points):
                continue
            per_it = pooled.setdefault((int(r["budget"]), r["method"]), {}).setdefault(term, {})
            for x, y in points:
                if ref.get(int(x), 0.0) > 0:
                    per_it.setdefault(int(x), []).append(float(y) / ref[int(x)])
    return {
        key: {t: [(x, float(np.mean(v))) for x, v in sorted(its.items())] for t, its in terms.items() if its}
        for key, terms in pooled.items()
    }


def plot_grad_shares(records: Sequence[Mapping[str, Any]], path: Path) -> bool:
    """Each auxiliary term's encoder-gradient norm over the supervised seg term's, against iteration: one
    panel per (method, budget), mean over seeds, a dashed line at 1 (the gradient budget's bound). Written
    atomically as PNG; returns False (nothing written) when no run logged gradient shares."""
    curves = grad_share_curves(records)
    if not curves:
        return False
    plt = _pyplot()
    keys = sorted(curves)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, (budget, method) in zip(axes[0], keys):
        for i, term in enumerate(GRAD_TERMS):
            if term in curves[(budget, method)]:
                xs, ys = zip(*curves[(budget, method)][term])
                ax.plot(xs, ys, color=plt.get_cmap("tab10")(i), marker="o", markersize=3, label=term)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("encoder gradient norm / seg_l's")
        ax.set_title(f"{method}, N={budget}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save_png(fig, path)
    return True


def plot_curves(records: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Validation Dice and accuracy against iteration, one line per (method, budget), mean over seeds.

    Colour encodes the method, line style the budget. Written atomically as PNG.
    """
    plt = _pyplot()
    methods = sorted({r["method"] for r in records})
    budgets = sorted({int(r["budget"]) for r in records})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, len(CURVE_KEYS), figsize=(6 * len(CURVE_KEYS), 4.5), squeeze=False)
    for ax, key in zip(axes[0], CURVE_KEYS):
        for (budget, method), points in sorted(mean_curves(records, key).items()):
            xs, ys = zip(*points)
            ax.plot(
                xs,
                [100.0 * y for y in ys],
                color=colours[method],
                linestyle=styles[budgets.index(budget) % len(styles)],
                marker="o",
                markersize=3,
                label=f"{method}, N={budget}",
            )
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{key} (%)")
        ax.set_title(CURVE_TITLES.get(key, key))
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    _save_png(fig, path)
