"""Summaries of a comparison: per-method test metrics over seeds, paired differences, plateau checks.

Every function takes run *records* (dicts as ``scripts/compare.py`` writes them to ``results.json``:
``method``, ``budget``, ``seed``, ``metrics`` / ``final_metrics`` (test metrics in [0, 1]) and ``curves``
(``{key: [[iteration, value], ...]}``)) and returns rows in percent, or Markdown tables of those rows.
Standard deviations are sample std over seeds (ddof 1, NaN with one seed); difference rows are paired per
seed on the seeds both methods have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

CURVE_KEYS: tuple[str, ...] = ("val_mean_dice", "val_accuracy")
CURVE_TITLES: dict[str, str] = {
    "val_mean_dice": "validation lesion Dice",
    "val_accuracy": "validation accuracy",
}
TABLE_METRICS: tuple[tuple[str, str], ...] = (
    ("dice", "Dice"),
    ("iou", "IoU"),
    ("accuracy", "Acc"),
    ("auc", "AUC"),
)


def _mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean and sample std (ddof 1; NaN for one value) of the finite values, and their count."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan, 0
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return float(arr.mean()), std, int(arr.size)


def _metric(record: Mapping[str, Any], key: str, source: str = "metrics") -> float:
    value = (record.get(source) or {}).get(key)
    return math.nan if value is None else float(value)


def summarise(
    records: Sequence[Mapping[str, Any]],
    methods: Sequence[str],
    budgets: Sequence[int],
    reference: str | None,
    source: str = "metrics",
) -> list[dict[str, Any]]:
    """Rows of the comparison table, in %: one per (budget, method), then ``method - reference`` rows.

    Each row: ``budget``, ``method`` (``"A - B"`` for a difference row), ``seeds`` (count) and, per table
    metric, ``<metric>_mean`` / ``<metric>_std`` (percent; std is NaN with one seed). Difference rows are
    paired over the seeds both methods have. ``source``: the record entry holding the test metrics,
    ``"metrics"`` (best validation checkpoint) or ``"final_metrics"`` (weights at the end of training);
    records without it are left out.
    """
    rows: list[dict[str, Any]] = []
    for budget in budgets:
        by_method = {
            m: {
                int(r["seed"]): r
                for r in records
                if r["method"] == m and int(r["budget"]) == budget and r.get(source)
            }
            for m in methods
        }
        for m in methods:
            runs = list(by_method[m].values())
            if not runs:
                continue
            row: dict[str, Any] = {"budget": budget, "method": m, "seeds": len(runs)}
            for key, _ in TABLE_METRICS:
                mean, std, _n = _mean_std([100.0 * _metric(r, key, source) for r in runs])
                row[f"{key}_mean"], row[f"{key}_std"] = mean, std
            rows.append(row)
        if reference is None or not by_method.get(reference):
            continue
        for m in methods:
            seeds = sorted(set(by_method[m]) & set(by_method[reference]))
            if m == reference or not seeds:
                continue
            row = {"budget": budget, "method": f"{m} - {reference}", "seeds": len(seeds)}
            for key, _ in TABLE_METRICS:
                mine, ref = by_method[m], by_method[reference]
                diffs = [
                    100.0 * (_metric(mine[s], key, source) - _metric(ref[s], key, source)) for s in seeds
                ]
                row[f"{key}_mean"], row[f"{key}_std"], _n = _mean_std(diffs)
            rows.append(row)
    return rows


def plateau_change(curve: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(mean of the last quarter, last-quarter mean minus third-quarter mean) of a learning curve.

    ``curve``: ``[(iteration, value), ...]``; the quarters are of the last iteration logged (points with
    ``3T/4 < x <= T`` against ``T/2 < x <= 3T/4``). A change near zero says the curve has flattened;
    NaN when a quarter holds no point.
    """
    if not curve:
        return math.nan, math.nan
    end = max(float(x) for x, _ in curve)
    last = [float(y) for x, y in curve if 0.75 * end < float(x) <= end]
    third = [float(y) for x, y in curve if 0.5 * end < float(x) <= 0.75 * end]
    if not last or not third:
        return math.nan, math.nan
    return float(np.mean(last)), float(np.mean(last) - np.mean(third))


def plateau_rows(
    records: Sequence[Mapping[str, Any]], methods: Sequence[str], budgets: Sequence[int]
) -> list[dict[str, Any]]:
    """Per (budget, method), in %: each validation curve's last-quarter level and its change from the
    third quarter (:func:`plateau_change`), mean ± sample std over seeds (``<curve>_level_*``,
    ``<curve>_change_*``)."""
    rows: list[dict[str, Any]] = []
    for budget in budgets:
        for m in methods:
            runs = [r for r in records if r["method"] == m and int(r["budget"]) == budget]
            if not runs:
                continue
            row: dict[str, Any] = {"budget": budget, "method": m, "seeds": len(runs)}
            for key in CURVE_KEYS:
                pairs = [plateau_change(r.get("curves", {}).get(key, [])) for r in runs]
                for i, part in enumerate(("level", "change")):
                    mean, std, _n = _mean_std([100.0 * p[i] for p in pairs])
                    row[f"{key}_{part}_mean"], row[f"{key}_{part}_std"] = mean, std
            rows.append(row)
    return rows


def format_plateau_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`plateau_rows`."""
    head = ["labels", "method", "seeds"]
    for key in CURVE_KEYS:
        head += [f"{CURVE_TITLES[key]}, last quarter %", "change from third quarter"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = []
        for key in CURVE_KEYS:
            cells.append(_cell(row[f"{key}_level_mean"], row[f"{key}_level_std"], False))
            cells.append(_cell(row[f"{key}_change_mean"], row[f"{key}_change_std"], True))
        lines.append("| " + " | ".join([str(row["budget"]), row["method"], str(row["seeds"]), *cells]) + " |")
    return "\n".join(lines) + "\n"


def _cell(mean: float, std: float, signed: bool) -> str:
    if not math.isfinite(mean):
        return "n/a"
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text if not math.isfinite(std) else f"{text} ± {std:.2f}"


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`summarise` rows (difference rows signed, in bold method name)."""
    head = ["labels", "method", "seeds", *[f"{label} %" for _, label in TABLE_METRICS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        diff = " - " in row["method"]
        name = f"**{row['method']}**" if diff else row["method"]
        cells = [_cell(row[f"{k}_mean"], row[f"{k}_std"], diff) for k, _ in TABLE_METRICS]
        lines.append("| " + " | ".join([str(row["budget"]), name, str(row["seeds"]), *cells]) + " |")
    return "\n".join(lines) + "\n"


def mean_curves(
    records: Iterable[Mapping[str, Any]], key: str
) -> dict[tuple[int, str], list[tuple[int, float]]]:
    """(budget, method) -> ``[(iteration, mean over seeds), ...]`` of the learning curve ``key``."""
    pooled: dict[tuple[int, str], dict[int, list[float]]] = {}
    for r in records:
        points = pooled.setdefault((int(r["budget"]), r["method"]), {})
        for x, y in r.get("curves", {}).get(key, []):
            points.setdefault(int(x), []).append(float(y))
    return {k: [(x, float(np.mean(ys))) for x, ys in sorted(v.items())] for k, v in pooled.items() if v}


def report_markdown(
    rows: Sequence[Mapping[str, Any]],
    final_rows: Sequence[Mapping[str, Any]],
    plateau: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    test_name: str = "Test split",
) -> str:
    """The comparison's ``table.md``: a header, the best-checkpoint table (:func:`summarise` rows), the
    final-weights table when ``final_rows`` is not empty, and the plateau table (:func:`plateau_rows`)."""
    text = (
        f"{test_name}, mean ± sample std over seeds {list(seeds)} (%); labels = N labeled images "
        "(N/K per class). Difference rows are paired per seed.\n\n"
        f"Best validation checkpoint (`models/model.pt`):\n\n{format_table(rows)}"
    )
    if final_rows:
        text += (
            "\nFinal weights (`models/model_final.pt`, the end of training; no selection on validation):\n\n"
            + format_table(final_rows)
        )
    return text + (
        "\nValidation curves, last quarter of training and its change from the third quarter "
        "(near 0: flattened):\n\n" + format_plateau_table(plateau)
    )
