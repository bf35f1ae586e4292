"""Deciding which dataset a bundle run uses, and checking it before anything trains.

The bundle's ``dataset_dir`` and ``datalist`` default to ``null``. Then :func:`resolve_datalist`
generates (once; later runs re-use it) the synthetic dataset under ``synthetic_dir`` and returns its
datalist. When the user sets ``dataset_dir`` (a folder holding ``datalist.json``) or ``datalist``
(a JSON file anywhere), those are checked and used, with a message naming what is missing.

A ``dataset_dir`` without ``datalist.json`` that holds a known public layout (BUSI, UDIAT, BUS-BRA,
TN3K, generic ``images/`` + ``masks/``) is prepared on first use with the default label budget
(:func:`hermes_monai.data.builder.prepare_dataset`): the datalist is written into the dataset folder when
it is writable, else under ``<bundle data folder>/prepared/<name>-<hash of its path>/`` (with absolute
paths), and its path is printed. Later runs re-use it.

Then (``check=True``) every file of the datalist is checked (:func:`hermes_monai.data.checks.
validate_datalist`): a bad dataset stops the run in seconds with ``<file>: <reason>`` as the first line
of the error, instead of failing mid-training inside a data loader.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hermes_monai.data.synthetic import ensure_synthetic_dataset

PREPARED_DIR = "prepared"


def prepare_on_first_use(dataset_dir: Path, synthetic_dir: Path, writable: bool | None = None) -> Path | None:
    """The datalist of a known layout in ``dataset_dir``, prepared now or on an earlier run; None when the
    folder holds no known layout. ``writable`` (default: whether ``dataset_dir`` is writable) chooses
    between ``<dataset_dir>/datalist.json`` and the bundle's ``data/prepared`` folder."""
    from hermes_monai.data.builder import prepare_dataset
    from hermes_monai.data.layouts import detect_layout

    if detect_layout(dataset_dir) in (None, "dicom"):
        return None
    if writable is None:
        writable = os.access(dataset_dir, os.W_OK)
    if writable:
        target, relative = dataset_dir / "datalist.json", True
    else:
        tag = hashlib.sha1(str(dataset_dir.resolve()).encode()).hexdigest()[:8]
        target = synthetic_dir.parent / PREPARED_DIR / f"{dataset_dir.resolve().name}-{tag}" / "datalist.json"
        relative = False
    if not target.is_file():
        print(f"no datalist.json in {dataset_dir}: preparing one with the default label budget")
        prepare_dataset(dataset_dir, out=target, relative=relative)
    print(f"datalist: {target}")
    return target


def resolve_datalist(
    dataset_dir: str | Path | None,
    datalist: str | Path | None,
    synthetic_dir: str | Path,
    num_cls_classes: int | None = None,
    require_unlabeled: bool = True,
    check: bool = True,
    reader_kwargs: Mapping[str, Any] | None = None,
    required_splits: Sequence[str] | None = None,
    **synthetic_kwargs: Any,
) -> str:
    """Path of the datalist JSON to train/evaluate on, after checking every file it lists.

    Args:
        dataset_dir: the user's data folder, or None for the embedded default.
        datalist: the user's datalist JSON, or None for ``<dataset_dir>/datalist.json`` (prepared from a
            known layout when missing).
        synthetic_dir: where the embedded synthetic dataset lives (generated when missing); prepared
            datalists of read-only dataset folders go next to it.
        num_cls_classes: class labels must lie in ``[0, num_cls_classes)``.
        require_unlabeled: an empty unlabeled split is an error (semi-supervised training).
        check: run :func:`hermes_monai.data.checks.validate_datalist`.
        reader_kwargs: :class:`hermes_monai.data.reader.UltrasoundReader` options used by the check.
        required_splits: splits that must exist and be non-empty (default ``labeled``, ``validation`` and,
            with ``require_unlabeled``, ``unlabeled``; evaluation needs only ``test``).
        synthetic_kwargs: passed to :func:`ensure_synthetic_dataset` (size, counts, seed).

    Raises:
        FileNotFoundError: naming the configured ``dataset_dir`` or datalist that does not exist.
        hermes_monai.data.checks.DatasetError: the datalist or a file it lists is bad (file and reason first).
    """
    if dataset_dir is None and datalist is None:
        path = Path(ensure_synthetic_dataset(synthetic_dir, **synthetic_kwargs))
    else:
        if dataset_dir is not None and not Path(dataset_dir).is_dir():
            raise FileNotFoundError(
                f"dataset_dir not found: {dataset_dir} (set --dataset_dir to a folder holding datalist.json "
                "or a known dataset layout, or leave it null to use the embedded synthetic dataset)"
            )
        if datalist is not None:
            path = Path(datalist)
        else:
            path = Path(dataset_dir) / "datalist.json"  # type: ignore[arg-type]
            if not path.is_file():
                path = prepare_on_first_use(Path(dataset_dir), Path(synthetic_dir)) or path  # type: ignore[arg-type]
        if not path.is_file():
            raise FileNotFoundError(
                f"datalist not found: {path} (expected JSON with 'labeled', 'unlabeled', 'validation' and "
                "'test' lists, or a dataset folder in a known layout - see bundle/docs/README.md; set "
                "--datalist to its path)"
            )
    if check:
        from hermes_monai.data.checks import validate_datalist

        splits = ("labeled", "validation") if required_splits is None else tuple(required_splits)
        validate_datalist(
            path,
            data_base_dir(dataset_dir, path),
            num_cls_classes=num_cls_classes,
            require_unlabeled=require_unlabeled and required_splits is None,
            required_splits=splits,
            reader_kwargs=reader_kwargs,
        )
    return str(path)


def data_base_dir(dataset_dir: str | Path | None, datalist_path: str | Path) -> str:
    """Folder that relative paths in the datalist are resolved against: ``dataset_dir`` when set,
    else the datalist's own folder."""
    return str(dataset_dir) if dataset_dir is not None else str(Path(datalist_path).parent)
