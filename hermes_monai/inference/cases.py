"""Which files an inference run reads, and which of them it cannot: :func:`find_cases`, :class:`FailureLog`.

``dataset_dir`` (the zoo bundles' name for the input) may be a folder (every image / DICOM / NIfTI file in
it, recursively, sorted), a datalist JSON (the entries of one split, default ``"test"``, or a plain list
of ``{"image": ...}`` dicts or paths) or one file. Each file is screened before the run by a full decode
with the project's reader (:class:`~hermes_monai.data.UltrasoundReader`), which refuses a Segmentation
(mask-only DICOM), another modality, a cine loop or an unreadable file; such a file is recorded in the
run's :class:`FailureLog` by name (as is a second file with the same name, e.g. ``a/1.png`` and ``b/1.png``:
outputs are named after the input's file name) and left out, so the rest still finish. At the end
:meth:`FailureLog.exit_if_any` turns failures into a non-zero exit status.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from hermes_monai.data.reader import DICOM_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES
from hermes_monai.data.transforms import read_ultrasound

__all__ = ["FailureLog", "find_cases", "screen_file"]

logger = logging.getLogger(__name__)


class FailureLog:
    """The files an inference run could not process: ``{path: reason}``, in the order they failed."""

    def __init__(self) -> None:
        self.failures: dict[str, str] = {}

    def add(self, path: str | os.PathLike, reason: str) -> None:
        self.failures[os.fspath(path)] = reason
        logger.error("inference failed for %s: %s", os.fspath(path), reason)

    def __len__(self) -> int:
        return len(self.failures)

    def exit_if_any(self, total: int | None = None) -> None:
        """Raise ``SystemExit`` (status 1) listing every failed file, or return when none failed."""
        if not self.failures:
            return
        lines = [f"  {p}: {r}" for p, r in self.failures.items()]
        of = f" of {total}" if total is not None else ""
        raise SystemExit(f"inference failed for {len(self.failures)}{of} input file(s):\n" + "\n".join(lines))


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _is_image_name(path: Path) -> bool:
    name = path.name.lower()
    return path.suffix.lower() in RASTER_SUFFIXES | DICOM_SUFFIXES or name.endswith(NIFTI_SUFFIXES)


def screen_file(path: str | os.PathLike, **reader_kwargs: Any) -> str | None:
    """Why ``path`` cannot be segmented (the loader's reason), or ``None`` when it can.

    The check is a full decode with the project's reader, which refuses non-ultrasound DICOM modalities,
    DICOM Segmentations and files without pixel data, and multi-frame files (cine loops); ``reader_kwargs``
    are its options (``modalities``, ``frame``), as given to the pipeline's loader.
    """
    try:
        read_ultrasound(path, **reader_kwargs)
    except Exception as e:  # noqa: BLE001 - any decoding problem is reported, not raised
        return str(e)
    return None


def _datalist_entries(path: Path, split: str) -> list[dict]:
    data = json.loads(path.read_text())
    items = data.get(split, []) if isinstance(data, dict) else data
    base = path.parent
    out = []
    for item in items:
        image = item["image"] if isinstance(item, dict) else item
        image = Path(image)
        out.append({"image": str(image if image.is_absolute() else base / image)})
    return out


def find_cases(
    dataset_dir: str | os.PathLike | None,
    failures: FailureLog | None = None,
    split: str = "test",
    **reader_kwargs: Any,
) -> list[dict]:
    """The ``[{"image": path}, ...]`` cases of an inference run, bad files left out (and logged).

    Raises:
        ValueError: ``dataset_dir`` is not given, does not exist, or holds no file to read.
    """
    if dataset_dir is None:
        raise ValueError(
            "no input: pass --dataset_dir (a folder of images, a datalist .json or one image file)"
        )
    root = Path(dataset_dir)
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        cases = [{"image": str(p)} for p in files if _is_image_name(p) or _is_dicom(p)]
    elif root.suffix.lower() == ".json" and root.is_file():
        cases = _datalist_entries(root, split)
    elif root.exists():
        cases = [{"image": str(root)}]
    else:
        raise ValueError(f"input {root} does not exist")
    if not cases:
        raise ValueError(f"no image or DICOM file found in {root}")
    log = failures if failures is not None else FailureLog()
    good = []
    names: dict[str, str] = {}
    for case in cases:
        name = Path(case["image"]).stem
        reason = screen_file(case["image"], **reader_kwargs)
        if reason is None and name in names:
            reason = f"same file name as {names[name]}: outputs are named after the input, use unique names"
        if reason is None:
            good.append(case)
            names[name] = case["image"]
        else:
            log.add(case["image"], reason)
    logger.info("%d input file(s), %d readable", len(cases), len(good))
    return good
