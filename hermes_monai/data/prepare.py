"""Deciding which dataset a bundle run uses: the user's, or the embedded synthetic default.

The bundle's ``dataset_dir`` and ``datalist`` default to ``null``. Then :func:`resolve_datalist`
generates (once; later runs re-use it) the synthetic dataset under ``synthetic_dir`` and returns its
datalist. When the user sets ``dataset_dir`` (a folder holding ``datalist.json``) or ``datalist``
(a JSON file anywhere), those are checked and used, with a message naming what is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hermes_monai.data.synthetic import ensure_synthetic_dataset


def resolve_datalist(
    dataset_dir: str | Path | None,
    datalist: str | Path | None,
    synthetic_dir: str | Path,
    **synthetic_kwargs: Any,
) -> str:
    """Path of the datalist JSON to train/evaluate on.

    Args:
        dataset_dir: the user's data folder, or None for the embedded default.
        datalist: the user's datalist JSON, or None for ``<dataset_dir>/datalist.json``.
        synthetic_dir: where the embedded synthetic dataset lives (generated when missing).
        synthetic_kwargs: passed to :func:`ensure_synthetic_dataset` (size, counts, seed).

    Raises:
        FileNotFoundError: naming the configured ``dataset_dir`` or datalist that does not exist.
    """
    if dataset_dir is None and datalist is None:
        return str(ensure_synthetic_dataset(synthetic_dir, **synthetic_kwargs))
    if dataset_dir is not None and not Path(dataset_dir).is_dir():
        raise FileNotFoundError(
            f"dataset_dir not found: {dataset_dir} (set --dataset_dir to a folder holding datalist.json, "
            "or leave it null to use the embedded synthetic dataset)"
        )
    path = Path(datalist) if datalist is not None else Path(dataset_dir) / "datalist.json"  # type: ignore[arg-type]
    if not path.is_file():
        raise FileNotFoundError(
            f"datalist not found: {path} (expected JSON with 'labeled', 'unlabeled', 'validation' and 'test' "
            "lists; set --datalist to its path)"
        )
    return str(path)


def data_base_dir(dataset_dir: str | Path | None, datalist_path: str | Path) -> str:
    """Folder that relative paths in the datalist are resolved against: ``dataset_dir`` when set,
    else the datalist's own folder."""
    return str(dataset_dir) if dataset_dir is not None else str(Path(datalist_path).parent)
