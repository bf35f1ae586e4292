"""Datalists: JSON files that list the images (and masks / classes) of each data split.

A datalist is a JSON object whose keys are split names (``"labeled"``, ``"unlabeled"``,
``"validation"``, ``"test"``, ...) mapping to lists of entries such as
``{"image": "images/us_0001.png", "label": "masks/us_0001.png", "class": 0}``; any key whose
value is not a list (for example ``"meta"``) is not a split. Paths may be relative; they are
resolved against ``base_dir`` (default: the folder holding the datalist).

:func:`load_datalist` returns one split with absolute paths after checking that the file
exists, that the split exists, that no image is listed in two splits (leakage between
training and evaluation is the most expensive silent bug in semi-supervised work) and that
every referenced file exists. :func:`write_datalist` writes one atomically.

Choices where the spec is silent: an image listed twice *within* one split is allowed (it
is not leakage); only the ``"image"`` and ``"label"`` keys are treated as paths.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hermes_monai.io import write_json_atomic

PATH_KEYS: tuple[str, ...] = ("image", "label")


def _splits(datalist: Mapping[str, Any]) -> dict[str, list[dict]]:
    """The split entries of a datalist: every key whose value is a list (``meta`` etc. skipped)."""
    return {k: v for k, v in datalist.items() if isinstance(v, list)}


def _absolute(path: str | os.PathLike, base_dir: Path) -> Path:
    """``path`` made absolute against ``base_dir`` (normalised, symlinks left alone)."""
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.is_absolute():
        p = base_dir / p
    return Path(os.path.abspath(p))


def check_disjoint(datalist: Mapping[str, Any], base_dir: str | Path | None = None) -> None:
    """Raise ``ValueError`` if any image appears in two different splits.

    Args:
        datalist: the parsed datalist (split name -> list of entry dicts; non-list values ignored).
        base_dir: folder that relative paths are resolved against (default: current directory).

    Images are compared by resolved absolute path, so ``images/a.png`` and ``./images/a.png``
    collide. The error names the image and both splits.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    seen: dict[Path, str] = {}
    for split, entries in _splits(datalist).items():
        for entry in entries:
            if not isinstance(entry, Mapping) or "image" not in entry:
                continue
            key = _absolute(entry["image"], base).resolve()
            first = seen.setdefault(key, split)
            if first != split:
                raise ValueError(
                    f"image {key} appears in two splits: '{first}' and '{split}'; "
                    "each image must belong to exactly one split"
                )


def load_datalist(datalist_path: str | Path, split: str, base_dir: str | Path | None = None) -> list[dict]:
    """Load one split of a datalist with absolute, existence-checked paths.

    Args:
        datalist_path: path of the JSON datalist.
        split: split key, e.g. ``"labeled"``.
        base_dir: folder for relative paths; default the datalist's folder.

    Returns:
        A list of new entry dicts (the file's entries copied) whose ``"image"``/``"label"``
        values are absolute path strings.

    Raises:
        FileNotFoundError: the datalist, or a file it references, does not exist.
        KeyError: the split is not in the datalist.
        ValueError: the datalist is malformed or an image belongs to two splits.
    """
    path = Path(datalist_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"datalist not found: {path} (set `dataset_dir` / `datalist` in the bundle config to "
            "your data, or leave them at their defaults to use the generated synthetic dataset)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"datalist {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"datalist {path} must hold a JSON object of splits, got {type(data).__name__}")
    if split not in data:
        available = sorted(_splits(data))
        raise KeyError(f"split '{split}' not found in datalist {path}; available splits: {available}")
    entries = data[split]
    if not isinstance(entries, list):
        raise ValueError(f"split '{split}' of datalist {path} must be a list of entries")

    base = Path(base_dir) if base_dir is not None else path.parent
    base = Path(os.path.abspath(base))
    check_disjoint(data, base)

    out: list[dict] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "image" not in entry:
            raise ValueError(f"entry {i} of split '{split}' in datalist {path} has no 'image' key")
        item = dict(entry)
        for key in PATH_KEYS:
            if key not in item:
                continue
            abs_path = _absolute(item[key], base)
            if not abs_path.is_file():
                raise FileNotFoundError(
                    f"file not found: {abs_path} (key '{key}' of entry {i}, split '{split}', datalist {path})"
                )
            item[key] = str(abs_path)
        out.append(item)
    return out


def write_datalist(
    datalist_path: str | Path,
    splits: Mapping[str, Sequence[Mapping[str, Any]]],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a datalist JSON atomically (temp file + rename) after checking the splits are disjoint.

    Args:
        datalist_path: where to write.
        splits: split name -> entries (paths as given; relative paths stay relative).
        meta: optional metadata stored under ``"meta"``.

    Returns:
        The path written.
    """
    path = Path(datalist_path)
    data: dict[str, Any] = {name: [dict(e) for e in entries] for name, entries in splits.items()}
    if meta is not None:
        data["meta"] = dict(meta)
    check_disjoint(data, path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)
    return path
