"""Seeded, stratified, patient-grouped assignment of samples to labeled / unlabeled / validation / test.

:func:`assign_splits` takes one record per image (its class index or None, whether it has a mask, a
group key, and a split fixed by the dataset) and returns the split of each record:

1. records sharing a group (same patient, or (nearly) the same picture) form one unit that is never cut;
2. per class (stratum), the units are shuffled by one ``numpy`` generator seeded with ``seed`` and
   taken in that order: ``test_fraction`` of the stratum's images to ``test`` (unless the dataset
   fixes its own test split), then ``val_fraction`` of the remaining train part to ``validation``,
   then the label budget to ``labeled``, the rest to ``unlabeled``;
3. images without a mask only ever go to ``unlabeled``; such an image whose group went to validation /
   test is dropped (keeping it would put one patient in two splits).

The label budget is an ``int`` (a total count, spread evenly over the classes: the paper's "N labels =
N/2 per class") or a ``float`` in (0, 1] (that fraction of each class's train part). Units are taken
whole, so a split can exceed its target by the rest of one patient's images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Record", "assign_splits", "per_class_budget", "SPLITS"]

SPLITS: tuple[str, ...] = ("labeled", "unlabeled", "validation", "test")


@dataclass(frozen=True)
class Record:
    """What the split assignment needs to know about one image."""

    key: str  # a stable, unique sort key (the image path)
    cls: int | None
    has_mask: bool
    group: str
    fixed_split: str | None = None


def per_class_budget(budget: int | float, train_counts: Sequence[int]) -> list[int]:
    """Labeled images per stratum: a count split evenly (remainder to the first strata) or a fraction."""
    k = len(train_counts)
    if isinstance(budget, bool) or budget < 0:
        raise ValueError(f"label budget must be a count >= 0 or a fraction in (0, 1], got {budget!r}")
    if isinstance(budget, int):
        return [budget // k + (1 if i < budget % k else 0) for i in range(k)]
    if not 0 < budget <= 1:
        raise ValueError(f"a fractional label budget must lie in (0, 1], got {budget}")
    return [max(1, round(budget * n)) if n else 0 for n in train_counts]


def _groups(records: Sequence[Record]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        out.setdefault(r.group, []).append(i)
    return out


def _stratum(records: Sequence[Record], members: list[int]) -> int | None:
    """Majority class of a group's masked images (ties -> smallest index); None when it has no class."""
    classes = [records[i].cls for i in members if records[i].has_mask and records[i].cls is not None]
    if not classes:
        return None
    values, counts = np.unique(classes, return_counts=True)
    return int(values[np.argmax(counts)])


def assign_splits(
    records: Sequence[Record],
    budget: int | float,
    test_fraction: float = 0.3,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> list[str | None]:
    """The split of each record (``None`` = dropped, see the module docstring).

    Raises:
        ValueError: the budget asks for more labeled images of a class than its train part holds,
            or a fraction is outside [0, 1).
    """
    for name, f in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0 <= f < 1:
            raise ValueError(f"{name} must lie in [0, 1), got {f}")
    groups = _groups(records)
    out: list[str | None] = [None] * len(records)
    fixed_test = any(r.fixed_split == "test" for r in records)
    strata: dict[int | None, list[list[int]]] = {}
    for _, members in sorted(groups.items(), key=lambda kv: min(records[i].key for i in kv[1])):
        fixed = sorted({records[i].fixed_split for i in members if records[i].fixed_split})
        if fixed:
            for i in members:
                out[i] = fixed[0] if records[i].has_mask or fixed[0] in ("labeled", "unlabeled") else None
            continue
        if not any(records[i].has_mask for i in members):
            for i in members:
                out[i] = "unlabeled"
            continue
        strata.setdefault(_stratum(records, members), []).append(members)

    rng = np.random.default_rng(seed)
    order = sorted(strata, key=lambda c: -1 if c is None else c)
    shuffled = {c: [strata[c][j] for j in rng.permutation(len(strata[c]))] for c in order}

    def masked(members: list[int]) -> int:
        return sum(records[i].has_mask for i in members)

    train_parts: dict[int | None, list[list[int]]] = {}
    for c in order:
        units = shuffled[c]
        n = sum(masked(u) for u in units)
        target = 0 if fixed_test else round(test_fraction * n)
        taken, rest = 0, []
        for u in units:
            if taken < target:
                taken += masked(u)
                for i in u:
                    out[i] = "test" if records[i].has_mask else None
            else:
                rest.append(u)
        n_train = sum(masked(u) for u in rest)
        target = round(val_fraction * n_train)
        if val_fraction > 0 and n_train >= 2:
            target = max(1, target)
        taken, train = 0, []
        for u in rest:
            if taken < target:
                taken += masked(u)
                for i in u:
                    out[i] = "validation" if records[i].has_mask else None
            else:
                train.append(u)
        train_parts[c] = train

    counts = [sum(masked(u) for u in train_parts[c]) for c in order]
    wanted = per_class_budget(budget, counts)
    for c, n_train, want in zip(order, counts, wanted):
        if want > n_train:
            name = "images without a class" if c is None else f"class {c}"
            raise ValueError(
                f"label budget {budget!r} asks for {want} labeled images of {name}, but its train part "
                f"holds only {n_train}; lower the budget"
            )
        taken = 0
        for u in train_parts[c]:
            split = "labeled" if taken < want else "unlabeled"
            if split == "labeled":
                taken += masked(u)
            for i in u:
                out[i] = split if records[i].has_mask else "unlabeled"
    return out
