"""Configuration values given on a command line, and the switches that read them.

* :func:`parse_override` — ``KEY=VALUE`` pairs of ``scripts/compare.py`` and ``scripts/benchmark.py``,
  parsed as ``python -m monai.bundle run ... --KEY VALUE`` parses them (Python literals through
  ``fire``: ``1e-3`` is a float, ``[8, 4]`` a list, ``False``/``None`` what they say), with YAML's
  ``true`` / ``false`` / ``null`` (any case) also read as booleans and None.
* :func:`as_bool` — the bundle's on/off switches go through it: ``fire`` leaves ``--use_attention false``
  as the *string* ``'false'``, which Python would take as true. It accepts the usual spellings and
  refuses anything else with a message naming the switch, instead of silently switching a part on.
"""

from __future__ import annotations

from typing import Any

from fire.parser import DefaultParseValue

__all__ = ["as_bool", "parse_override", "parse_value"]

_WORDS: dict[str, Any] = {"true": True, "false": False, "null": None, "none": None, "yes": True, "no": False}


def parse_value(text: str) -> Any:
    """One command-line value: YAML words (``true``/``false``/``null``), else as ``fire`` parses it.

    A value holding ``#`` is kept as a string (``fire`` would cut it at the ``#`` as a comment).
    """
    stripped = text.strip()
    if stripped.lower() in _WORDS:
        return _WORDS[stripped.lower()]
    if "#" in stripped:
        return stripped
    return DefaultParseValue(stripped)


def parse_override(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(KEY, parse_value(VALUE))``; KEY may use ``#`` or ``::`` for nested ids.

    Raises:
        ValueError: ``text`` has no ``=`` or an empty KEY.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--override expects KEY=VALUE, got {text!r}")
    return key, parse_value(value)


def as_bool(value: Any, name: str = "switch") -> bool:
    """``value`` as a bool: bools, 0/1 and the strings true/false/yes/no/1/0 (any case).

    Raises:
        TypeError: anything else, naming the switch and the value.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "yes", "1"):
            return True
        if word in ("false", "no", "0"):
            return False
    raise TypeError(f"{name} must be true or false, got {value!r}")
