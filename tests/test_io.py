"""Atomic writes: the target appears whole, is readable by others, and survives a failed write."""

from __future__ import annotations

import json
import stat

import pytest

from hermes_monai.io import atomic_path, write_json_atomic


def test_json_round_trip_and_mode(tmp_path) -> None:
    target = tmp_path / "sub" / "m.json"
    write_json_atomic(target, {"dice": 0.5, "n": [1, 2]})
    assert json.loads(target.read_text()) == {"dice": 0.5, "n": [1, 2]}
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["m.json"]  # no temporary file left


def test_strict_json_writes_standard_json(tmp_path) -> None:
    target = tmp_path / "r.json"
    data = {"dice": float("nan"), "rows": [(1.0, float("inf")), {"auc": -float("inf")}], "dir": tmp_path}
    write_json_atomic(target, {"dice": float("nan")})
    assert "NaN" in target.read_text()  # Python's extension of JSON, which strict readers reject
    write_json_atomic(target, data, strict=True)
    text = target.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"dice": None, "rows": [[1.0, None], {"auc": None}], "dir": str(tmp_path)}


def test_failed_write_keeps_the_old_file(tmp_path) -> None:
    target = tmp_path / "m.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "trunc')
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
