"""The bundle's own inference for the PACS runner: ``inference.yaml`` run on a folder of downloaded files.

:class:`BundlePredictor` builds ``bundle/configs/inference.yaml`` with MONAI's ``ConfigParser`` (so the
preprocessing, network, inferer and post-processing are exactly those of ``python -m monai.bundle run
--config_file bundle/configs/inference.yaml``), points ``dataset_dir`` / ``output_dir`` at the batch's
folders, runs ``initialize`` and ``run`` and reads back each case's ``<name>.json`` and ``<name>_mask.png``.
Instead of ``finalize`` (which exits non-zero on any failure) the run's ``failures`` are returned, so one
bad instance fails alone. Overlays and the file-based DICOM SEG are switched off: the runner builds its
SEG from the mask with deterministic UIDs.

The checkpoint may be the state dict (``models/model.pt``, loaded by inference.yaml's CheckpointLoader)
or the TorchScript file from ``ckpt_export`` (``models/model.ts``: its ``predict`` method is what
inference.yaml's inferer calls; the loader is then disabled).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BundlePredictor", "Prediction", "model_id"]


@dataclass
class Prediction:
    """One case's results: the JSON record (probabilities, geometry) and the (H, W) bool mask."""

    record: dict[str, Any]
    mask: np.ndarray


def model_id(checkpoint: str | os.PathLike, version: str) -> str:
    """``<package version>-<first 16 hex of the checkpoint's SHA-256>``: names the model in result UIDs."""
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{version}-{digest.hexdigest()[:16]}"


class BundlePredictor:
    """Run ``config_file`` (inference.yaml) on folders.

    Args:
        config_file: the inference config.
        bundle_root: the bundle folder (``bundle_root`` in the config).
        checkpoint: ``.pt`` state dict or ``.ts`` TorchScript file.
        overrides: further inference.yaml keys (e.g. ``{"dicom_frame": 0}``).
    """

    def __init__(
        self,
        config_file: str | os.PathLike,
        bundle_root: str | os.PathLike,
        checkpoint: str | os.PathLike,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.config_file = os.path.abspath(config_file)
        self.bundle_root = os.path.abspath(bundle_root)
        self.checkpoint = os.path.abspath(checkpoint)
        self.overrides = dict(overrides or {})
        if not os.path.isfile(self.checkpoint):
            raise FileNotFoundError(f"checkpoint not found: {self.checkpoint}")
        self.torchscript = Path(self.checkpoint).suffix in (".ts", ".jit")

    def _parser(self, dataset_dir: Path, output_dir: Path) -> Any:
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(self.config_file)
        parser.update(
            {
                "bundle_root": self.bundle_root,
                "checkpoint": self.checkpoint,
                "dataset_dir": str(dataset_dir),
                "output_dir": str(output_dir),
                "save_overlay": False,
                "save_dicom_seg": False,
                **self.overrides,
            }
        )
        if self.torchscript:
            parser["network"] = "$torch.jit.load(@checkpoint, map_location=@device).eval()"
            parser["handlers#0#_disabled_"] = True  # the CheckpointLoader
        return parser

    def predict(
        self, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike
    ) -> tuple[dict[str, Prediction], dict[str, str]]:
        """``({input file name: Prediction}, {input path: reason})`` for every file in ``dataset_dir``."""
        from PIL import Image

        dataset_dir, output_dir = Path(dataset_dir), Path(output_dir)
        parser = self._parser(dataset_dir, output_dir)
        parser.get_parsed_content("initialize")
        parser.get_parsed_content("run")
        failures = dict(parser.get_parsed_content("failures").failures)
        results: dict[str, Prediction] = {}
        for path in sorted(dataset_dir.iterdir()):
            if str(path) in failures:
                continue
            record_file = output_dir / f"{path.stem}.json"
            mask_file = output_dir / f"{path.stem}_mask.png"
            if not (record_file.is_file() and mask_file.is_file()):
                failures.setdefault(str(path), "inference wrote no result")
                continue

            record = json.loads(record_file.read_text())
            results[path.name] = Prediction(record, np.array(Image.open(mask_file)) > 0)
        return results, failures
