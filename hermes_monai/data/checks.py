"""Checking a datalist before training: every problem found, each with the file and the reason.

:func:`check_datalist` reads every image and mask the datalist lists (once each) and returns a list of
:class:`Problem` (errors and warnings); :func:`validate_datalist` is what training runs at start-up: it
prints the report to stderr and raises :class:`DatasetError`, whose message starts with the first bad
file and its reason, when any error was found.

Errors: the datalist itself unreadable; a split missing or empty (``labeled``, ``validation``, and
``unlabeled`` when semi-supervised); an entry without ``image``; a missing or unreadable file (a
truncated PNG, a text file named ``.png``, a DICOM without pixel data, a DICOM SEG, a non-ultrasound
DICOM, NaN / infinite pixels - the reader's own errors); a mask whose size differs from its image's;
an empty mask in a lesion class; a class that is not an integer in ``[0, num_cls_classes)``; a missing
class where the split's other entries have one; an image in two splits, by path or by content.

Warnings (reported once per file, never fatal): a mask whose stored values are not binary (the values
found are listed; every value > 0 is taken as lesion), an empty mask of an entry without a class, an
image whose :func:`near_hash` equals that of an image in another split (a likely near-duplicate).

Messages name files and reasons only: nothing from a DICOM header (patient, UIDs) is printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hermes_monai.data.layouts import is_dicom_file

__all__ = [
    "DatasetError",
    "Problem",
    "check_datalist",
    "content_hash",
    "near_hash",
    "format_problems",
    "validate_datalist",
]

LESION_FREE_NAMES = frozenset({"normal"})


class DatasetError(ValueError):
    """A dataset / datalist problem; the message starts with ``<file>: <reason>``."""


@dataclass(frozen=True)
class Problem:
    """One finding of the check: the file (or datalist) concerned, why, and how bad."""

    file: str
    reason: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else "warning: "
        return f"{self.file}: {tag}{self.reason}"


def content_hash(path: str | os.PathLike, pixels: np.ndarray | None = None) -> str:
    """SHA-256 of an image's pixels (decoded ``pixels`` when given, else a DICOM's PixelData bytes or the
    decoded grey image), so one picture stored twice under two names has one hash."""
    h = hashlib.sha256()
    if pixels is None and is_dicom_file(Path(path)):
        import pydicom

        ds = pydicom.dcmread(path, force=True)
        data = ds.get("PixelData")
        if data is None:
            raise ValueError(f"{path}: DICOM without pixel data")
        h.update(f"{ds.get('Rows')}x{ds.get('Columns')}".encode())
        h.update(bytes(data))
        return h.hexdigest()
    if pixels is None:
        from hermes_monai.data.transforms import read_ultrasound

        pixels = read_ultrasound(path)
    arr = np.ascontiguousarray(pixels, dtype=np.float32)
    h.update(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def near_hash(pixels: np.ndarray) -> str:
    """A 64-bit difference hash of a grey image (block means on an 8 x 9 grid, then "is each block brighter
    than its left neighbour"): the same for a picture re-encoded, rescaled or slightly re-toned, so BUSI's
    near-duplicates share it. Only the first frame of a stack is used."""
    arr = np.asarray(pixels, dtype=np.float32)
    while arr.ndim > 2:
        arr = arr[0]
    small = np.asarray(Image.fromarray(arr, mode="F").resize((9, 8), Image.Resampling.BOX))
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def _raw_mask_values(path: Path) -> np.ndarray:
    """The distinct stored values of a mask file (all colour channels, alpha dropped)."""
    from hermes_monai.data.reader import raw_pixels

    return np.unique(raw_pixels(path))


def _strip_path(message: str, path: str) -> str:
    """An error message without its leading ``<path>:`` (the Problem names the file already)."""
    for prefix in (f"{path}: ", f"cannot read image {path}: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _lesion_classes(meta: Mapping[str, Any], num_cls_classes: int | None) -> set[int] | None:
    if isinstance(meta.get("lesion_classes"), list):
        return {int(c) for c in meta["lesion_classes"]}
    names = meta.get("class_names")
    if isinstance(names, list):
        return {i for i, n in enumerate(names) if str(n).lower() not in LESION_FREE_NAMES}
    return set(range(num_cls_classes)) if num_cls_classes else None


def check_datalist(
    datalist_path: str | os.PathLike,
    base_dir: str | os.PathLike | None = None,
    num_cls_classes: int | None = None,
    require_unlabeled: bool = True,
    required_splits: Iterable[str] = ("labeled", "validation"),
    reader_kwargs: Mapping[str, Any] | None = None,
) -> list[Problem]:
    """Every problem of a datalist and the files it lists (see the module docstring).

    Args:
        datalist_path: the JSON datalist.
        base_dir: folder for relative paths (default: the datalist's folder).
        num_cls_classes: classes the classifier has; class labels must lie in ``[0, num_cls_classes)``.
        require_unlabeled: an empty or missing ``unlabeled`` split is an error (semi-supervised training).
        required_splits: splits that must exist and be non-empty.
        reader_kwargs: passed to :class:`hermes_monai.data.reader.UltrasoundReader` (e.g. ``modalities``).
    """
    from hermes_monai.data.reader import UltrasoundReader

    path = Path(datalist_path)
    problems: list[Problem] = []
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return [Problem(str(path), "datalist not found")]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return [Problem(str(path), f"datalist is not valid JSON: {err}")]
    if not isinstance(data, dict):
        return [Problem(str(path), "datalist must hold a JSON object of splits")]
    base = Path(os.path.abspath(base_dir if base_dir is not None else path.parent))
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    splits = {k: v for k, v in data.items() if isinstance(v, list)}
    required = list(required_splits) + (["unlabeled"] if require_unlabeled else [])
    for name in required:
        if not splits.get(name):
            hint = (
                "; semi-supervised training needs unlabeled images (add some, or train with "
                "bundle/configs/supervised_only.yaml)"
                if name == "unlabeled"
                else ""
            )
            problems.append(
                Problem(str(path), f"split '{name}' is {'empty' if name in splits else 'missing'}{hint}")
            )

    lesion = _lesion_classes(meta, num_cls_classes)
    reader = UltrasoundReader(**dict(reader_kwargs or {}))
    seen_path: dict[str, str] = {}
    seen_hash: dict[str, tuple[str, str]] = {}
    seen_near: dict[str, tuple[str, str]] = {}
    checked_masks: set[str] = set()
    for split, entries in splits.items():
        has_class = any(isinstance(e, Mapping) and "class" in e for e in entries)
        for i, entry in enumerate(entries):
            where = f"entry {i} of split '{split}'"
            if not isinstance(entry, Mapping) or "image" not in entry:
                problems.append(Problem(str(path), f"{where} has no 'image'"))
                continue
            image = os.path.abspath(base / os.path.expanduser(str(entry["image"])))
            first = seen_path.setdefault(image, split)
            if first != split:
                problems.append(Problem(image, f"listed in two splits: '{first}' and '{split}' (leak)"))
                continue
            if not os.path.isfile(image):
                problems.append(Problem(image, f"file not found ({where})"))
                continue
            try:
                img = reader.load(image)
            except Exception as err:  # noqa: BLE001 - every decoder failure is a finding, named by file
                problems.append(Problem(image, _strip_path(str(err), image)))
                continue
            digest = content_hash(image, img.array)
            other = seen_hash.setdefault(digest, (split, image))
            near = seen_near.setdefault(near_hash(img.array), (split, image))
            if other[0] == split and near[0] != split:
                problems.append(
                    Problem(
                        image,
                        f"looks like a near-duplicate of {near[1]} (split '{near[0]}'): check that they are "
                        "different pictures",
                        "warning",
                    )
                )
            if other[0] != split:
                problems.append(
                    Problem(
                        image,
                        f"same pixels as {other[1]} (split '{other[0]}'): a leak "
                        f"between '{other[0]}' and '{split}'",
                    )
                )
            cls = entry.get("class")
            if "class" in entry:
                ok = isinstance(cls, int) and not isinstance(cls, bool) and cls >= 0
                if ok and num_cls_classes is not None and cls >= num_cls_classes:
                    ok = False
                if not ok:
                    allowed = (
                        f"an integer in [0, {num_cls_classes})" if num_cls_classes else "an integer >= 0"
                    )
                    problems.append(Problem(image, f"class {cls!r} ({where}) is not {allowed}"))
            elif has_class and "label" in entry and split != "unlabeled":
                problems.append(Problem(image, f"{where} has no 'class' while other entries of the split do"))
            if "label" not in entry or split == "unlabeled":
                continue
            mask = os.path.abspath(base / os.path.expanduser(str(entry["label"])))
            if not os.path.isfile(mask):
                problems.append(Problem(mask, f"mask file not found (mask of {image})"))
                continue
            try:
                lab = reader.load(mask, mask=True)
            except Exception as err:  # noqa: BLE001
                problems.append(Problem(mask, _strip_path(str(err), mask)))
                continue
            shapes = {tuple(img.array.shape), tuple(img.source_shape)}
            if tuple(lab.array.shape) not in shapes:
                problems.append(
                    Problem(
                        mask,
                        f"mask size (H, W) = {tuple(lab.array.shape)} differs from its "
                        f"image {image}: {tuple(img.array.shape)}",
                    )
                )
            if mask not in checked_masks:
                checked_masks.add(mask)
                values = _raw_mask_values(Path(mask))
                if len(values) > 2 or (len(values) == 2 and values[0] != 0):
                    shown = ", ".join(f"{v:g}" for v in values[:10]) + (", ..." if len(values) > 10 else "")
                    problems.append(
                        Problem(
                            mask,
                            f"mask is not binary: values {shown}; every value > 0 is taken as lesion",
                            "warning",
                        )
                    )
            if not lab.array.any():
                if isinstance(cls, int) and lesion is not None and cls in lesion:
                    problems.append(Problem(mask, f"empty mask for lesion class {cls} (image {image})"))
                elif "class" not in entry:
                    problems.append(Problem(mask, f"empty mask (image {image})", "warning"))
    return problems


def format_problems(problems: Iterable[Problem]) -> str:
    """Errors first, then warnings, one per line."""
    items = list(problems)
    ordered = [p for p in items if p.severity == "error"] + [p for p in items if p.severity != "error"]
    return "\n".join(str(p) for p in ordered)


def validate_datalist(
    datalist_path: str | os.PathLike,
    base_dir: str | os.PathLike | None = None,
    stream: Any = None,
    **kwargs: Any,
) -> list[Problem]:
    """Run :func:`check_datalist`; print problems to stderr; raise :class:`DatasetError` if any is an error.

    The exception message starts with the first bad file and its reason, then the count and the rest.
    Returns the warnings.
    """
    problems = check_datalist(datalist_path, base_dir, **kwargs)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity != "error"]
    out = stream if stream is not None else sys.stderr
    for w in warnings:
        print(str(w), file=out)
    if errors:
        print(f"data check failed, {len(errors)} problem(s) in {datalist_path}:", file=out)
        for e in errors:
            print(str(e), file=out)
        rest = "\n".join(str(p) for p in errors[1:])
        raise DatasetError(
            f"{errors[0]}\n({len(errors)} problem(s) in datalist {datalist_path}; run "
            f"`python -m hermes_monai.prepare check {datalist_path}` for the full report)"
            + (f"\n{rest}" if rest else "")
        )
    return warnings
