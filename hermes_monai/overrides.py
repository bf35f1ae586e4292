"""Bundle overrides given on a command line as ``KEY=VALUE`` (used by ``scripts/compare.py`` and
``scripts/benchmark.py``), parsed the way ``python -m monai.bundle run ... --KEY VALUE`` users expect."""

from __future__ import annotations

from typing import Any

import yaml


def parse_override(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(KEY, yaml.safe_load(VALUE))``; KEY may use ``#`` for nested ids.

    Raises:
        ValueError: ``text`` has no ``=`` or an empty KEY.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--override expects KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)
