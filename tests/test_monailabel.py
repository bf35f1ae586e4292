"""MONAI Label 0.8.5 serves this bundle unchanged: ``BundleInferTask`` built in-process on a copy of the
bundle with a trained ``models/model.pt``, run on a PNG and on an ultrasound DICOM file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from test_inference import write_us_dicom

from hermes_monai.data.transforms import read_ultrasound

bundle_task = pytest.importorskip("monailabel.tasks.infer.bundle", reason="monailabel is not installed")


@pytest.fixture(scope="module")
def task(trained_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("monailabel") / "hermes_bundle"
    shutil.copytree(trained_bundle / "configs", root / "configs")
    (root / "models").mkdir()
    shutil.copy(trained_bundle / "models" / "model.pt", root / "models" / "model.pt")
    t = bundle_task.BundleInferTask(str(root), conf={})
    assert t.is_valid()
    assert t.labels == {"lesion": 1} and t.dimension == 2
    return t


def _check_result(result: dict) -> None:
    probs = result["class_probabilities"]
    assert set(probs) == {"benign", "malignant"} and abs(sum(probs.values()) - 1) < 1e-5
    assert result["predicted_class"] == max(probs, key=probs.get)


def test_png(task, trained_bundle: Path, tmp_path: Path) -> None:
    src = next((trained_bundle / "data" / "images").glob("*.png"))
    grey = (read_ultrasound(src) * 255).astype(np.uint8)
    image = tmp_path / "wide.png"
    Image.fromarray(grey).resize((90, 70)).save(image)  # H=70, W=90: orientation shows
    label, result = task({"image": str(image), "device": "cpu"})
    mask = np.array(Image.open(label))
    assert mask.shape == (70, 90) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}
    _check_result(result)


def test_dicom(task, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = write_us_dicom(tmp_path / "us.dcm", rng.integers(0, 255, (80, 96), dtype=np.uint8))
    label, result = task({"image": str(image), "device": "cpu"})
    mask = pydicom.dcmread(label, force=True).pixel_array
    assert mask.shape == (80, 96) and mask.dtype == np.uint8
    _check_result(result)
