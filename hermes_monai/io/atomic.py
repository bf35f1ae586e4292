"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Everything is written to a temporary file in the target's folder, flushed to disk and renamed over
the target with ``os.replace``. On error the temporary file is removed and the target is untouched.
Files get mode 0644 (``tempfile`` would leave them 0600).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path`` atomically.

    Example: ``with atomic_path("curves.png") as tmp: fig.savefig(tmp, format="png")``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN/inf float (not valid JSON) replaced by ``None``, recursively through
    mappings, lists and tuples (tuples become lists)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike, data: Any, strict: bool = False) -> None:
    """Write ``data`` as indented JSON (with a final newline) to ``path`` atomically.

    ``strict``: write standard JSON whatever ``data`` holds: NaN/inf as ``null`` (:func:`finite_or_none`),
    objects JSON has no type for (paths, dates) as their ``str``.
    """
    if strict:
        text = json.dumps(finite_or_none(data), indent=2, default=str, allow_nan=False)
    else:
        text = json.dumps(data, indent=2)
    write_text_atomic(path, text + "\n")
