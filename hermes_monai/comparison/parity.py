"""Numerical parity of a faster arithmetic against fp32: the bf16 parity table (issue 12).

bf16 autocast becomes the documented fast path once Dice and accuracy stay within :data:`TOLERANCE` points
of fp32, paired per seed. Three comparisons answer different questions, each a set of paired per-seed
differences from the fp32 Hermes run (``reference``):

* ``training``: Hermes trained *and* evaluated under bf16 (method ``bf16``) against Hermes in fp32. It holds
  the numerical effect plus the spread any change of rounding causes in a chaotic training run;
* ``control``: Hermes in fp32 with the NCHW layout (method ``fp32_nchw``): the same arithmetic in another
  rounding order, so its differences *are* that run-to-run spread, the yardstick for ``training``;
* ``inference``: the fp32-trained weights of each ``reference`` run evaluated under bf16 autocast
  (record entries ``bf16_inference_metrics`` / ``bf16_inference_final_metrics``, written by
  ``scripts/compare.py --bf16_inference``): the effect of bf16 arithmetic on the same weights, no training
  spread at all.

Every function takes run records as ``results.json`` holds them (``method``, ``budget``, ``seed``,
``metrics`` / ``final_metrics``: test metrics in [0, 1]) and returns percentage points.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Dice and accuracy within this many points of fp32 (paired mean over seeds) is parity (issue 12).
TOLERANCE = 0.5
#: Metrics the criterion reads (key, label).
METRICS: tuple[tuple[str, str], ...] = (("dice", "Dice"), ("accuracy", "accuracy"))
#: Weight sets: the shipped best-validation checkpoint and the weights at the end of training.
WEIGHTS: tuple[tuple[str, str], ...] = (("metrics", "best checkpoint"), ("final_metrics", "final weights"))
#: bf16 autocast settings of the evaluators (the bundle's ``amp`` / ``amp_dtype``).
BF16_EVAL: dict[str, Any] = {"amp": True, "amp_dtype": "bfloat16"}
#: The record entry holding a run's test metrics under bf16 evaluation, per weight set.
INFERENCE_ENTRY: dict[str, str] = {
    "metrics": "bf16_inference_metrics",
    "final_metrics": "bf16_inference_final_metrics",
}


def _value(metrics: Mapping[str, Any] | None, key: str) -> float:
    value = (metrics or {}).get(key)
    return math.nan if value is None else float(value)


def paired(
    candidate: Mapping[int, Mapping[str, Any] | None],
    reference: Mapping[int, Mapping[str, Any] | None],
    key: str,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Per-seed ``candidate - reference`` of metric ``key`` in points, over the seeds where both are finite.

    Returns ``seeds``, ``per_seed`` (points), ``mean``, ``std`` (sample, NaN for one seed), ``max_abs`` and
    ``within`` (``|mean| <= tolerance``; ``None`` without a pair).
    """
    seeds, diffs = [], []
    for seed in sorted(set(candidate) & set(reference)):
        a, b = _value(candidate[seed], key), _value(reference[seed], key)
        if math.isfinite(a) and math.isfinite(b):
            seeds.append(seed)
            diffs.append(100.0 * (a - b))
    if not diffs:
        return {"seeds": [], "per_seed": [], "mean": None, "std": None, "max_abs": None, "within": None}
    arr = np.asarray(diffs)
    mean = float(arr.mean())
    return {
        "seeds": seeds,
        "per_seed": [float(d) for d in diffs],
        "mean": mean,
        "std": float(arr.std(ddof=1)) if arr.size > 1 else math.nan,
        "max_abs": float(np.abs(arr).max()),
        "within": bool(abs(mean) <= tolerance),
    }


def parity(
    records: Sequence[Mapping[str, Any]],
    budget: int | None = None,
    reference: str = "hermes",
    candidate: str = "bf16",
    control: str = "fp32_nchw",
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """The bf16 parity table of one label budget (the only one in ``records`` when ``budget`` is None).

    Returns ``budget``, ``reference``, ``candidate``, ``control``, ``tolerance`` and ``comparisons``:
    ``{"training" | "control" | "inference": {weights entry: {metric: paired(...)}}}`` (a comparison is
    left out when its runs or entries are missing), ``train_seconds`` (mean per method) and ``met``: every
    metric of the shipped checkpoint within tolerance in ``training`` (``None`` when it is missing).
    """
    budgets = sorted({int(r["budget"]) for r in records})
    if budget is None:
        if len(budgets) != 1:
            raise ValueError(f"records hold budgets {budgets}: name one")
        budget = budgets[0]
    runs = [r for r in records if int(r["budget"]) == budget]

    def by_seed(method: str, entry: str) -> dict[int, Mapping[str, Any] | None]:
        return {int(r["seed"]): r.get(entry) for r in runs if r["method"] == method}

    comparisons: dict[str, Any] = {}
    for name, method, entries in (
        ("training", candidate, {w: w for w, _ in WEIGHTS}),
        ("control", control, {w: w for w, _ in WEIGHTS}),
        ("inference", reference, INFERENCE_ENTRY),
    ):
        table = {}
        for weights, _ in WEIGHTS:
            mine, ref = by_seed(method, entries[weights]), by_seed(reference, weights)
            rows = {key: paired(mine, ref, key, tolerance) for key, _ in METRICS}
            if any(row["seeds"] for row in rows.values()):
                table[weights] = rows
        if table:
            comparisons[name] = table
    seconds = {
        m: float(np.mean(t))
        for m in (reference, candidate, control)
        if (t := [float(r["train_seconds"]) for r in runs if r["method"] == m and r.get("train_seconds")])
    }
    shipped = comparisons.get("training", {}).get("metrics")
    return {
        "budget": budget,
        "reference": reference,
        "candidate": candidate,
        "control": control,
        "tolerance": tolerance,
        "comparisons": comparisons,
        "train_seconds": seconds,
        "met": None if shipped is None else all(row["within"] for row in shipped.values()),
    }


def load_parity(results_json: str | Path, **kwargs: Any) -> dict[str, Any]:
    """:func:`parity` of the runs in a ``scripts/compare.py`` ``results.json`` (``kwargs`` as for it); the
    file's path is kept as ``source``."""
    path = Path(results_json)
    try:
        records = json.loads(path.read_text())["runs"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: not a compare.py results.json ({err})") from err
    return {"source": str(path), **parity(records, **kwargs)}


def _signed(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:+.2f}"


def format_parity_table(table: Mapping[str, Any]) -> str:
    """Markdown table of :func:`parity`: one row per (comparison, weights, metric) with the per-seed
    differences, their mean ± std and whether the mean is within the tolerance."""
    names = {
        "training": f"{table['candidate']} - {table['reference']} (trained with bf16 autocast)",
        "control": f"{table['control']} - {table['reference']} (fp32, other rounding order: the spread)",
        "inference": f"{table['reference']} weights evaluated in bf16 - in fp32",
    }
    tol = table["tolerance"]
    lines = [
        f"| comparison ({table['budget']} labels) | weights | metric | per seed | mean ± std "
        f"| within ±{tol:g} |",
        "|---|---|---|---|---|---|",
    ]
    for name, weights_rows in table["comparisons"].items():
        for weights, label in WEIGHTS:
            for key, metric in METRICS:
                row = weights_rows.get(weights, {}).get(key)
                if not row or not row["seeds"]:
                    continue
                per_seed = ", ".join(f"{d:+.2f}" for d in row["per_seed"])
                spread = "" if not math.isfinite(row["std"]) else f" ± {row['std']:.2f}"
                lines.append(
                    f"| {names[name]} | {label} | {metric} | {per_seed} | {_signed(row['mean'])}{spread} | "
                    f"{'yes' if row['within'] else 'no'} |"
                )
    verdict = {None: "not measured", True: "met", False: "not met"}[table["met"]]
    shipped = f"Parity of the shipped checkpoint (training, Dice and accuracy): {verdict}."
    return "\n".join(lines) + f"\n\n{shipped}\n"
