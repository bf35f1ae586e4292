"""Label budgets of a comparison: class-balanced draws of N labeled images, nested across budgets.

HERMES.md §7's protocol trains every method on the same N labeled images (N/K per class for K classes).
:func:`class_balanced_indices` draws them with one seeded permutation per class, independent of N, so a
seed's 10-label subset lies inside its 20-label one; :func:`budget_splits` moves the labeled images left
out to ``unlabeled`` (without ``label``/``class``) and :func:`write_budget_datalist` writes the derived
datalist with its splits checked disjoint. (:mod:`.splits` is the other direction: assigning a raw
dataset's images to splits.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hermes_monai.data.datalist import check_disjoint, load_datalist, write_datalist

__all__ = ["budget_splits", "class_balanced_indices", "load_splits", "write_budget_datalist"]


def class_balanced_indices(classes: Sequence[Any], budget: int, seed: int) -> list[int]:
    """Indices of a class-balanced draw of ``budget`` items.

    Args:
        classes: the class of each labeled entry (any sortable values), length M.
        budget: N, a multiple of the number of distinct classes K; N/K are drawn per class.
        seed: seed of ``numpy.random.default_rng``; one permutation per class (classes in sorted order),
            independent of ``budget``, so draws of one seed are nested across budgets.

    Returns:
        The chosen indices into ``classes``, ascending (original order kept).
    """
    values = sorted(set(classes))
    if not values:
        raise ValueError("no labeled entries to draw a budget from")
    if budget <= 0 or budget % len(values):
        raise ValueError(
            f"budget {budget} must be a positive multiple of the number of classes ({len(values)})"
        )
    per_class = budget // len(values)
    labels = np.asarray([values.index(c) for c in classes])
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for k, value in enumerate(values):
        members = np.flatnonzero(labels == k)
        if len(members) < per_class:
            raise ValueError(
                f"budget {budget} needs {per_class} labeled entries of class {value!r}; "
                f"the dataset has {len(members)}"
            )
        chosen.append(members[rng.permutation(len(members))[:per_class]])
    return sorted(int(i) for i in np.concatenate(chosen))


def load_splits(datalist_path: Path, base_dir: Path | None = None) -> tuple[dict[str, list[dict]], Any]:
    """Every split of a datalist with absolute, existence-checked paths, and its ``meta`` (or None)."""
    data = json.loads(Path(datalist_path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"datalist {datalist_path} must hold a JSON object of splits")
    splits = {
        name: load_datalist(datalist_path, name, base_dir)
        for name, value in data.items()
        if isinstance(value, list)
    }
    return splits, data.get("meta")


def budget_splits(
    splits: Mapping[str, Sequence[Mapping[str, Any]]], budget: int, seed: int
) -> dict[str, list[dict]]:
    """The splits of one (budget, seed): N class-balanced labeled entries, the rest of them unlabeled.

    Args:
        splits: split name -> entries; must contain ``labeled`` (entries with ``class``) and may contain
            ``unlabeled``, ``validation``, ``test`` (copied unchanged) and others.
        budget / seed: see :func:`class_balanced_indices`.

    Returns:
        New splits: ``labeled`` the chosen entries, ``unlabeled`` the original unlabeled entries followed by
        the unchosen labeled ones stripped of ``label`` and ``class``; every other split unchanged.
    """
    if "labeled" not in splits:
        raise KeyError("the datalist has no 'labeled' split to draw label budgets from")
    labeled = [dict(e) for e in splits["labeled"]]
    missing = [e.get("image") for e in labeled if "class" not in e]
    if missing:
        raise ValueError(f"labeled entries without 'class' cannot be balanced, e.g. {missing[0]}")
    keep = set(class_balanced_indices([e["class"] for e in labeled], budget, seed))
    moved = [
        {k: v for k, v in e.items() if k not in ("label", "class")}
        for i, e in enumerate(labeled)
        if i not in keep
    ]
    out = {name: [dict(e) for e in entries] for name, entries in splits.items()}
    out["labeled"] = [e for i, e in enumerate(labeled) if i in keep]
    out["unlabeled"] = [*out.get("unlabeled", []), *moved]
    return out


def write_budget_datalist(
    splits: Mapping[str, Sequence[Mapping[str, Any]]],
    budget: int,
    seed: int,
    path: Path,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write the derived datalist of one (budget, seed) to ``path`` (atomic, disjointness checked).

    ``splits`` must hold absolute paths (see :func:`load_splits`); ``meta`` of the source is kept under
    ``meta.source`` together with ``budget`` and ``budget_seed``.
    """
    derived = budget_splits(splits, budget, seed)
    check_disjoint(derived)
    info = {"budget": budget, "budget_seed": seed, "source": meta}
    return write_datalist(path, derived, info)
