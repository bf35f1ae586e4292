"""The ignite handler that writes each case's results next to the masks ``SaveImaged`` writes.

:class:`PredictionWriter` runs after the evaluator's post-processing (``ITERATION_COMPLETED``). For
every decollated item it reads ``mask`` (the uint8 (H, W) lesion mask at the input's original size),
``cls_prob`` and the image meta (``filename_or_obj``, and ``us_crop_box`` when the loader cropped a
DICOM), and writes, named after the input file's stem:

- ``<name>.json``: the case record (:func:`~hermes_monai.inference.report.case_record`) with the
  source geometry (:func:`~hermes_monai.inference.report.source_geometry`: crop box, frame, spacing);
- ``<name>_overlay.png``: the original image with the mask outline and the predicted class;
- ``<name>_seg.dcm``: a DICOM SEG, for DICOM input only.

At the end of the run (``COMPLETED``) it writes ``predictions.csv`` with every case, failed ones
included. A case whose writing fails is recorded in the run's
:class:`~hermes_monai.inference.cases.FailureLog` and the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.transforms import SaveImaged

from hermes_monai.data.transforms import read_ultrasound
from hermes_monai.inference.cases import FailureLog, _is_dicom
from hermes_monai.inference.dicom_seg import write_dicom_seg
from hermes_monai.inference.overlay import write_overlay
from hermes_monai.inference.report import case_record, source_geometry, write_case_json, write_run_csv

__all__ = ["PredictionWriter", "png_saver"]

logger = logging.getLogger(__name__)


def png_saver(
    keys: str | Sequence[str], output_dir: str, output_postfix: str, scale: int = 255
) -> SaveImaged:
    """``SaveImaged`` writing (1, H, W) data as an 8-bit PNG with rows as rows.

    MONAI's PNG writer swaps the first two axes by default (its PNG reader does too); this project's
    loader keeps rows first, so the writer is told not to. ``scale=255`` maps [0, 1] to [0, 255]
    (masks are written 0 / 255).
    """
    saver = SaveImaged(
        keys=keys,
        output_dir=output_dir,
        output_postfix=output_postfix,
        output_ext=".png",
        separate_folder=False,
        resample=False,
        scale=scale,
        writer="PILWriter",
        print_log=False,
    )
    saver.set_options(write_kwargs={"reverse_indexing": False})
    return saver


def _meta(item: dict, key: str) -> dict:
    value = item.get(key)
    meta = getattr(value, "meta", None)
    return dict(meta) if meta is not None else dict(item.get(f"{key}_meta_dict", {}))


class PredictionWriter:
    """Write per-case JSON, overlay and DICOM SEG files and the run's CSV (see the module docstring).

    Args:
        output_dir: folder for the files.
        class_names: names of the classifier's classes, index order.
        failures: the run's failure log (shared with :func:`~hermes_monai.inference.cases.find_cases`).
        overlay: write the overlay PNG.
        dicom_seg: write a DICOM SEG for DICOM input.
        csv_name: the run's CSV file name.
        mask_key: the key of the uint8 (H, W) mask, rows first.
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        failures: FailureLog | None = None,
        overlay: bool = True,
        dicom_seg: bool = True,
        csv_name: str = "predictions.csv",
        mask_key: str = "mask",
    ) -> None:
        self.mask_key = mask_key
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names)
        self.failures = failures if failures is not None else FailureLog()
        self.overlay = overlay
        self.dicom_seg = dicom_seg
        self.csv_name = csv_name
        self.records: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.write_csv)

    def write_csv(self, engine: Engine | None = None) -> None:
        write_run_csv(self.output_dir / self.csv_name, self.records, self.failures.failures, self.class_names)

    def iteration_completed(self, engine: Engine) -> None:
        output = engine.state.output
        for item in output if isinstance(output, list) else [output]:
            meta = _meta(item, "image")
            source = str(meta.get("filename_or_obj", ""))
            try:
                self.write_case(item, source, meta)
            except Exception as e:  # noqa: BLE001 - one bad case must not stop the run
                self.failures.add(source or "<unknown input>", f"writing results failed: {e}")

    def write_case(self, item: dict, source: str, meta: dict) -> dict[str, Any]:
        mask = np.asarray(torch.as_tensor(item[self.mask_key]).detach().cpu()).squeeze()
        if mask.ndim != 2:
            raise ValueError(f"expected a (H, W) mask, got shape {mask.shape}")
        probs = torch.as_tensor(item["cls_prob"]).float().flatten().tolist()
        name = Path(source).stem
        self.output_dir.mkdir(parents=True, exist_ok=True)
        files = {"mask": str(self.output_dir / f"{name}_mask.png")}
        record = case_record(source, probs, self.class_names, int((mask > 0).sum()), mask.shape, files)
        record.update(source_geometry(meta))
        if self.overlay:
            path = self.output_dir / f"{name}_overlay.png"
            # the loaded frame of a cine loop; the modality was screened already
            frame = meta.get("frame_index") if int(meta.get("num_frames", 1) or 1) > 1 else None
            image = read_ultrasound(source, frame=None if frame is None else int(frame), modalities=None)
            box = meta.get("us_crop_box")
            if box is not None:
                r0, c0, r1, c1 = (int(v) for v in box)
                image = image[r0:r1, c0:c1] if image.shape != mask.shape else image
            caption = f"{record['predicted_class']} {max(probs):.2f}"
            write_overlay(path, image, mask, caption)
            files["overlay"] = str(path)
        if self.dicom_seg and _is_dicom(Path(source)):
            path = self.output_dir / f"{name}_seg.dcm"
            write_dicom_seg(
                mask, source, path, crop_box=meta.get("us_crop_box"), frame_index=meta.get("frame_index")
            )
            files["dicom_seg"] = str(path)
        record["files"] = files
        write_case_json(self.output_dir / f"{name}.json", record)
        self.records.append(record)
        return record
