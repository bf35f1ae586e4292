"""Building the bundle's datalist from a dataset folder: layout -> samples -> splits -> ``datalist.json``.

:func:`prepare_dataset` is the whole of ``python -m hermes_monai.prepare``: it finds the samples of a known
layout (:mod:`.layouts`), merges multi-lesion masks, groups images by patient, by identical pixels and by
equal :func:`~hermes_monai.data.checks.near_hash` (so a duplicate or a re-encoded / rescaled copy never
sits on both sides of a split; a rare chance match only keeps two images in one split), assigns the
splits (:mod:`.splits`) and writes the datalist atomically with a ``meta`` block recording every setting.
The same inputs and seed give a byte-identical file: entries are sorted, nothing depends on time or on
the order the disk lists files.

Paths in the datalist are relative to its folder when the files lie inside it, else absolute. Merged
masks (BUSI's ``_mask_1.png`` ...) are written as PNG (0 / 255) under ``<datalist folder>/masks_merged``.

Presets: ``"paper"`` = HERMES.md section 7 (benign + malignant, 30 % test per class, an ``N``-label
budget drawn as N/2 per class from the train part) plus this project's validation hold-out
(``val_fraction`` of the train part, default 10 %) - never select models on the test split.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from PIL import Image

from hermes_monai.data.checks import content_hash, near_hash
from hermes_monai.data.datalist import write_datalist
from hermes_monai.data.layouts import KNOWN_CLASS_ORDER, LayoutError, Sample, discover, is_dicom_file
from hermes_monai.data.splits import SPLITS, Record, assign_splits

__all__ = ["DEFAULT_BUDGET", "PRESETS", "PrepareResult", "class_order", "format_summary", "prepare_dataset"]

DEFAULT_BUDGET: float = 0.3
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"classes": ("benign", "malignant"), "test_fraction": 0.3},
}
MERGED_DIR = "masks_merged"


@dataclass
class PrepareResult:
    """What :func:`prepare_dataset` wrote and counted."""

    path: Path
    layout: str
    counts: dict[str, dict[str, int]]
    dropped: dict[str, int]
    duplicate_groups: int


def class_order(names: Sequence[str]) -> list[str]:
    """Class names in index order: benign, malignant, normal first when they are all among those; else
    numeric order when all are integers; else sorted."""
    found = sorted(set(names))
    if set(found) <= set(KNOWN_CLASS_ORDER):
        return [c for c in KNOWN_CLASS_ORDER if c in found]
    if all(n.lstrip("-").isdigit() for n in found):
        return sorted(found, key=int)
    return found


def _default_classes(layout: str, names: list[str]) -> list[str]:
    order = class_order(names)
    if (
        layout == "busi"
    ):  # the paper drops BUSI's lesion-free class; --classes benign,malignant,normal keeps it
        return [c for c in order if c != "normal"]
    return order


def _relative(path: Path, out_dir: Path | None) -> str:
    p = Path(os.path.abspath(path))
    if out_dir is None:
        return p.as_posix()
    try:
        return p.relative_to(out_dir).as_posix()
    except ValueError:
        return p.as_posix()


def _merge_masks(sample: Sample, root: Path, out_dir: Path) -> Path:
    """One mask file for a sample: its only mask, or the union of several written under ``masks_merged``."""
    from hermes_monai.data.transforms import read_ultrasound

    if len(sample.masks) == 1:
        return sample.masks[0]
    arrays = [read_ultrasound(m, mask=True) for m in sample.masks]
    for m, a in zip(sample.masks[1:], arrays[1:]):
        if a.shape != arrays[0].shape:
            raise LayoutError(
                f"{m}: mask size {a.shape} differs from {sample.masks[0].name} {arrays[0].shape}"
            )
    merged = np.any(np.stack(arrays) > 0, axis=0).astype(np.uint8) * 255
    try:
        rel = sample.masks[0].resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(sample.masks[0].name)
    target = out_dir / MERGED_DIR / rel.with_suffix(".png")
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(merged).save(target)
    return target


def _fingerprints(path: Path) -> tuple[str, str]:
    """(exact content hash, near-duplicate hash) of an image; a cine DICOM is fingerprinted by frame 0.

    Raises ``ValueError`` naming the file when it cannot be decoded, so a bad file stops preparation."""
    from hermes_monai.data.reader import UltrasoundReader

    pixels = UltrasoundReader(frame=0, modalities=None).load(path).array
    exact = content_hash(path) if is_dicom_file(path) else content_hash(path, pixels)
    return exact, near_hash(pixels)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def prepare_dataset(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    layout: str | None = None,
    budget: int | float = DEFAULT_BUDGET,
    classes: Sequence[str] | None = None,
    test_fraction: float = 0.3,
    val_fraction: float = 0.1,
    seed: int = 0,
    preset: str | None = None,
    stream: TextIO | None = None,
    relative: bool = True,
) -> PrepareResult:
    """Write the datalist of the dataset in ``root`` and print a per-split, per-class summary.

    Args:
        root: the dataset folder (BUSI, UDIAT, BUS-BRA, TN3K, generic or DICOM layout).
        out: datalist path (default ``<root>/datalist.json``); a folder means ``<folder>/datalist.json``.
        layout: force a layout instead of detecting it.
        budget: labeled images: a total count (spread evenly over the classes) or a fraction of each
            class's train part.
        classes: class names to keep, in index order (default: all found; BUSI: benign, malignant).
        test_fraction, val_fraction: test share of each class; validation share of each train part.
        seed: fixes every random choice.
        preset: ``"paper"`` (see the module docstring); explicit arguments other than the defaults win.
        stream: where the summary goes (default stdout).
        relative: write paths relative to the datalist's folder where the files lie inside it (else all
            paths are absolute).

    Raises:
        LayoutError: the folder is not a known layout or its files are inconsistent (names the file).
        ValueError: the budget cannot be met, or an image cannot be decoded (names the file).
    """
    root = Path(os.path.abspath(root))
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset '{preset}'; choose one of {sorted(PRESETS)}")
        classes = classes if classes is not None else PRESETS[preset]["classes"]
        test_fraction = PRESETS[preset]["test_fraction"] if test_fraction == 0.3 else test_fraction
    name, samples = discover(root, layout)
    path = Path(out) if out is not None else root / "datalist.json"
    if path.is_dir() or (out is not None and path.suffix.lower() != ".json"):
        path = path / "datalist.json"
    path = Path(os.path.abspath(path))
    out_dir = path.parent

    found = sorted({s.cls for s in samples if s.cls is not None})
    names = list(classes) if classes is not None else _default_classes(name, found)
    unknown = [c for c in names if c not in found]
    if unknown and found:
        raise ValueError(f"{root}: classes {unknown} not found in the dataset (found: {found})")
    dropped = Counter(s.cls for s in samples if s.cls is not None and s.cls not in names)
    kept = [s for s in samples if s.cls is None or s.cls in names]
    if found:
        for s in kept:
            if s.masks and s.cls is None:
                raise LayoutError(f"{s.image}: has a mask but no class while the dataset has classes")

    hashes = [_fingerprints(s.image) for s in kept]
    uf = _UnionFind(len(kept))
    first_of: dict[str, int] = {}
    for i, s in enumerate(kept):
        exact, near = hashes[i]
        for key in ([f"patient:{s.patient}"] if s.patient else []) + [f"hash:{exact}", f"near:{near}"]:
            j = first_of.setdefault(key, i)
            uf.union(i, j)
    duplicate_groups = sum(1 for n in Counter(near for _, near in hashes).values() if n > 1)
    records = [
        Record(
            key=str(s.image),
            cls=names.index(s.cls) if s.cls is not None else None,
            has_mask=bool(s.masks),
            group=str(kept[uf.find(i)].image),
            fixed_split=s.split,
        )
        for i, s in enumerate(kept)
    ]
    assigned = assign_splits(
        records, budget, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed
    )

    splits: dict[str, list[dict[str, Any]]] = {k: [] for k in SPLITS}
    counts: dict[str, dict[str, int]] = {k: {} for k in SPLITS}
    lost_no_mask = 0
    for s, rec, split in zip(kept, records, assigned):
        if split is None:
            lost_no_mask += 1
            continue
        rel_dir = out_dir if relative else None
        entry: dict[str, Any] = {"image": _relative(s.image, rel_dir)}
        if split != "unlabeled":
            entry["label"] = _relative(_merge_masks(s, root, out_dir), rel_dir)
            if rec.cls is not None:
                entry["class"] = rec.cls
        splits[split].append(entry)
        label = names[rec.cls] if rec.cls is not None else ("(no class)" if s.masks else "(no mask)")
        counts[split][label] = counts[split].get(label, 0) + 1
    for entries in splits.values():
        entries.sort(key=lambda e: e["image"])
    drop = {f"class '{c}'": n for c, n in sorted(dropped.items())}
    if lost_no_mask:
        drop["unmasked image of a validation/test patient"] = lost_no_mask
    meta = {
        "layout": name,
        "source": root.as_posix(),
        "class_names": names,
        "lesion_classes": [i for i, c in enumerate(names) if c.lower() != "normal"],
        "seed": seed,
        "budget": budget,
        "test_fraction": test_fraction,
        "val_fraction": val_fraction,
        "preset": preset,
        "grouped_by_patient": any(s.patient for s in kept),
        "duplicate_groups": duplicate_groups,
        "dropped": drop,
        "counts": counts,
    }
    write_datalist(path, splits, meta=meta)
    result = PrepareResult(path, name, counts, drop, duplicate_groups)
    print(format_summary(result), file=stream if stream is not None else sys.stdout)
    return result


def format_summary(result: PrepareResult) -> str:
    """A table of images per split and class, plus what was dropped or grouped."""
    labels = sorted({c for per in result.counts.values() for c in per})
    width = max([10] + [len(c) for c in labels])
    lines = [
        f"{result.layout} datalist written: {result.path}",
        f"{'split':<11}" + "".join(f"{c:>{width + 2}}" for c in labels) + f"{'total':>8}",
    ]
    for split, per in result.counts.items():
        lines.append(
            f"{split:<11}"
            + "".join(f"{per.get(c, 0):>{width + 2}}" for c in labels)
            + f"{sum(per.values()):>8}"
        )
    for what, n in result.dropped.items():
        lines.append(f"dropped: {n} image(s) of {what}")
    if result.duplicate_groups:
        lines.append(
            f"{result.duplicate_groups} set(s) of identical or near-identical images kept in one split"
        )
    return "\n".join(lines)
