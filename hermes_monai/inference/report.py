"""The tables of an inference run: one JSON per case and one CSV for the run.

Per case (``<name>.json``): the input file, the class probabilities by class name, the predicted
class, the lesion area in pixels, the original (H, W) and the files written; the writer adds the source
geometry (:func:`source_geometry`: ultrasound-region crop box, frame read, pixel spacing in mm or null),
which the PACS runner needs to place the mask in the source frame and to measure the lesion area.
The run's CSV (``predictions.csv``) has one row per input file, failed ones included (``status``
``failed`` and the reason), columns
``image, status, predicted_class, p_<class>..., lesion_pixels, height, width, error``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from hermes_monai.io.atomic import write_json_atomic, write_text_atomic

__all__ = ["case_record", "source_geometry", "write_case_json", "write_run_csv"]


def case_record(
    image: str,
    probs: Sequence[float],
    class_names: Sequence[str],
    lesion_pixels: int,
    shape: Sequence[int],
    files: Mapping[str, str],
) -> dict[str, Any]:
    """The per-case result as a JSON-ready dict."""
    k = max(range(len(probs)), key=lambda i: probs[i])
    return {
        "image": image,
        "status": "ok",
        "predicted_class": class_names[k],
        "predicted_index": k,
        "class_probabilities": {n: float(p) for n, p in zip(class_names, probs)},
        "lesion_pixels": int(lesion_pixels),
        "height": int(shape[0]),
        "width": int(shape[1]),
        "files": dict(files),
    }


def source_geometry(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``us_crop_box`` (row0, col0, row1, col1), ``frame_index`` and ``pixel_spacing_mm`` (row, col; null
    when unknown) from the loader's image meta, JSON-ready; keys the meta lacks are left out."""
    out: dict[str, Any] = {}
    if meta.get("us_crop_box") is not None:
        out["us_crop_box"] = [int(v) for v in meta["us_crop_box"]]
    if meta.get("frame_index") is not None:
        out["frame_index"] = int(meta["frame_index"])
    spacing = meta.get("pixel_spacing_mm")
    if spacing is not None:
        values = [float(v) for v in spacing]
        out["pixel_spacing_mm"] = None if any(math.isnan(v) for v in values) else values
    return out


def write_case_json(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    write_json_atomic(path, dict(record))


def write_run_csv(
    path: str | os.PathLike,
    records: Sequence[Mapping[str, Any]],
    failures: Mapping[str, str],
    class_names: Sequence[str],
) -> None:
    """One row per case (``records``) and per failed file (``failures``: path → reason)."""
    cols = [
        "image",
        "status",
        "predicted_class",
        *(f"p_{n}" for n in class_names),
        "lesion_pixels",
        "height",
        "width",
        "error",
    ]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in records:
        row = {c: r.get(c, "") for c in cols}
        row.update({f"p_{n}": f"{p:.6f}" for n, p in r["class_probabilities"].items()})
        w.writerow(row)
    for image, reason in failures.items():
        w.writerow({"image": image, "status": "failed", "error": reason})
    write_text_atomic(path, buf.getvalue())
