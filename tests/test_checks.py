"""Tests for the datalist checks: each bad input gives one error naming the file, in the ``check`` command,
in the loader and in the start-up check that training runs (before any data loader)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dataset_trees import busi, lesion, save, write_us
from monai.data import CacheDataset
from monai.transforms import Compose
from PIL import Image

from hermes_monai.data import DatasetError, LoadUltrasoundd, check_datalist, resolve_datalist
from hermes_monai.data.checks import Problem
from hermes_monai.data.prepare import prepare_on_first_use

REPO = Path(__file__).resolve().parents[1]


def _base(root: Path) -> dict:
    """A small valid datalist: 2 labeled, 2 unlabeled, 1 validation, 1 test (relative paths)."""
    entries = []
    for i in range(6):
        img, mask = lesion(800 + i)
        save(root / "images" / f"im {i}.png", img)
        save(root / "masks" / f"im {i}.png", mask)
        entries.append({"image": f"images/im {i}.png", "label": f"masks/im {i}.png", "class": i % 2})
    return {
        "labeled": entries[:2],
        "unlabeled": [{"image": e["image"]} for e in entries[2:4]],
        "validation": entries[4:5],
        "test": entries[5:6],
    }


def _write(root: Path, data: dict) -> Path:
    path = root / "datalist.json"
    path.write_text(json.dumps(data))
    return path


def _errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def test_valid_datalist_has_no_problem(tmp_path: Path) -> None:
    assert check_datalist(_write(tmp_path, _base(tmp_path)), num_cls_classes=2) == []


# every bad input: (name, how to make the bad file, substring of the reason)
def _truncated_png(p: Path) -> None:
    save(p, lesion(1)[0])
    p.write_bytes(p.read_bytes()[:200])


def _truncated_dicom(p: Path) -> None:
    write_us(p, lesion(2)[0])
    p.write_bytes(p.read_bytes()[:-600])


def _no_pixels(p: Path) -> None:
    write_us(p, lesion(3)[0])
    ds = pydicom.dcmread(p)
    del ds.PixelData
    ds.save_as(p)


def _seg(p: Path) -> None:
    write_us(p, lesion(4)[1], SOPClassUID="1.2.840.10008.5.1.4.1.1.66.4", Modality="SEG")


def _text_png(p: Path) -> None:
    p.write_text("this is a text file, not a PNG\n")


def _ct(p: Path) -> None:
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), p)


def _nan_tiff(p: Path) -> None:
    arr = np.random.default_rng(0).random((20, 24)).astype(np.float32)
    arr[3, 4] = np.nan
    Image.fromarray(arr, mode="F").save(p)


BAD_FILES: list[tuple[str, Callable[[Path], None], str]] = [
    ("trunc.png", _truncated_png, "truncated"),
    ("trunc.dcm", _truncated_dicom, "pixel data"),
    ("nopixels.dcm", _no_pixels, "without pixel data"),
    ("seg.dcm", _seg, "DICOM SEG"),
    ("text.png", _text_png, "cannot identify image"),
    ("ct.dcm", _ct, "Modality 'CT'"),
    ("nan.tif", _nan_tiff, "NaN or infinite"),
]


@pytest.mark.parametrize(("name", "make", "reason"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_image_one_error_naming_the_file(tmp_path: Path, name: str, make: Callable, reason: str) -> None:
    data = _base(tmp_path)
    make(tmp_path / "images" / name)
    data["labeled"].append({"image": f"images/{name}", "label": "masks/im 0.png", "class": 0})
    path = _write(tmp_path, data)
    errors = _errors(check_datalist(path, num_cls_classes=2))
    assert len(errors) == 1, errors
    assert errors[0].file == str(tmp_path / "images" / name) and reason in errors[0].reason
    # the loader names it as well, and so does MONAI's wrapper line when it runs inside a dataset
    with pytest.raises(ValueError, match=reason) as err:
        LoadUltrasoundd(keys="image")({"image": str(tmp_path / "images" / name)})
    assert str(tmp_path / "images" / name) in str(err.value).splitlines()[0]
    with pytest.raises(RuntimeError) as wrapped:
        CacheDataset(
            [{"image": str(tmp_path / "images" / name)}],
            Compose([LoadUltrasoundd(keys="image")]),
            progress=False,
        )
    assert str(tmp_path / "images" / name) in str(wrapped.value).splitlines()[0]
    # start-up check: the first line of the error is "<file>: <reason>"
    with pytest.raises(DatasetError) as startup:
        resolve_datalist(None, path, tmp_path / "synthetic", num_cls_classes=2)
    assert str(startup.value).startswith(f"{tmp_path / 'images' / name}: ")


def test_modality_override_reads_ct(tmp_path: Path) -> None:
    _ct(tmp_path / "ct.dcm")
    out = LoadUltrasoundd(keys="image", modalities=None)({"image": str(tmp_path / "ct.dcm")})["image"]
    assert out.shape == (1, 128, 128) and 0 <= float(out.min()) < float(out.max()) <= 1


def test_dataset_level_problems(tmp_path: Path) -> None:
    data = _base(tmp_path)
    img, mask = lesion(900)
    save(tmp_path / "images" / "big.png", np.pad(img, 2))  # size mismatch with its mask
    save(tmp_path / "masks" / "big.png", mask)
    save(tmp_path / "masks" / "empty.png", np.zeros_like(mask))
    save(tmp_path / "images" / "five.png", lesion(901)[0])
    grey = mask.copy()
    grey[grey > 0] = 128
    grey[0, 0] = 7
    save(tmp_path / "masks" / "grey.png", grey)
    shutil.copy(tmp_path / "images" / "im 0.png", tmp_path / "images" / "copy of im 0.png")
    save(tmp_path / "images" / "brighter im 1.png", lesion(801)[0] + 5)  # a near-duplicate of im 1
    data["labeled"] += [
        {"image": "images/big.png", "label": "masks/big.png", "class": 0},
        {"image": "images/im 2.png", "label": "masks/empty.png", "class": 1},
        {"image": "images/im 3.png", "label": "masks/grey.png", "class": 1},
        {"image": "images/five.png", "label": "masks/im 4.png", "class": 5},
        {"image": "images/missing.png", "label": "masks/im 0.png", "class": 0},
    ]
    data["test"].append({"image": "images/copy of im 0.png", "label": "masks/im 0.png", "class": 0})
    data["test"].append({"image": "images/brighter im 1.png", "label": "masks/im 1.png", "class": 1})
    data["unlabeled"] = []
    problems = check_datalist(_write(tmp_path, data), num_cls_classes=2)
    text = "\n".join(map(str, problems))
    expect = [
        (tmp_path / "masks" / "big.png", "mask size (H, W) = (40, 48) differs from its image"),
        (tmp_path / "masks" / "empty.png", "empty mask for lesion class 1"),
        (tmp_path / "masks" / "grey.png", "warning: mask is not binary: values 0, 7, 128"),
        (tmp_path / "images" / "five.png", "class 5"),
        (tmp_path / "images" / "missing.png", "file not found"),
        (tmp_path / "images" / "copy of im 0.png", "same pixels as"),
        (tmp_path / "datalist.json", "split 'unlabeled' is empty"),
        (tmp_path / "images" / "brighter im 1.png", "warning: looks like a near-duplicate of"),
    ]
    for file, reason in expect:
        assert f"{file}: {reason}" in text, (file, reason, text)
    assert len(problems) == len(expect), text
    assert sum(p.severity == "warning" for p in problems) == 2
    # supervised-only: no unlabeled split needed
    assert "unlabeled" not in "\n".join(
        str(p) for p in check_datalist(tmp_path / "datalist.json", num_cls_classes=2, require_unlabeled=False)
    )


def test_warning_printed_once_per_mask(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _base(tmp_path)
    grey = lesion(800)[1]
    grey[grey > 0] = 3
    grey[0, 0] = 1
    save(tmp_path / "masks" / "im 0.png", grey)
    data["validation"].append(dict(data["labeled"][0], image="images/im 5.png"))  # same mask twice
    data["test"] = []
    path = _write(tmp_path, data)
    resolve_datalist(None, path, tmp_path / "synthetic", num_cls_classes=2)
    err = capsys.readouterr().err
    assert err.count("not binary") == 1 and "values 0, 1, 3" in err


def test_empty_dataset_dir_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        resolve_datalist(tmp_path / "empty", None, tmp_path / "synthetic")


def test_read_only_dataset_dir_prepared_under_bundle_data(tmp_path: Path) -> None:
    busi(tmp_path / "busi", {"benign": 8, "malignant": 8})
    synthetic = tmp_path / "bundle" / "data" / "synthetic"
    path = prepare_on_first_use(tmp_path / "busi", synthetic, writable=False)
    assert path is not None and path.parent.parent == tmp_path / "bundle" / "data" / "prepared"
    assert not (tmp_path / "busi" / "datalist.json").exists()
    data = json.loads(path.read_text())
    assert all(Path(e["image"]).is_absolute() for e in data["labeled"] + data["test"])
    assert all(Path(e["label"]).is_absolute() for e in data["labeled"] + data["test"])
    # its absolute paths resolve whatever base folder training uses (there: dataset_dir)
    assert check_datalist(path, base_dir=tmp_path / "busi", num_cls_classes=2) == []
    assert prepare_on_first_use(tmp_path / "busi", synthetic, writable=False) == path  # re-used
    assert prepare_on_first_use(tmp_path, synthetic) is None  # no known layout


def test_bundle_trains_on_a_busi_folder(tmp_path: Path) -> None:
    """The model-card command with --dataset_dir pointing at a BUSI folder (no datalist): prepared on
    first use, path printed, one epoch of two iterations trains."""
    busi(tmp_path / "busi", {"benign": 14, "malignant": 12, "normal": 2})
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", str(REPO / "bundle" / "configs" / "train.yaml"),
        "--dataset_dir", str(tmp_path / "busi"), "--bundle_root", str(tmp_path / "bundle"),
        "--max_epochs", "1", "--epoch_length", "2", "--val_interval", "1", "--use_mlflow", "False",
        "--labeled_batch_size", "2", "--unlabeled_batch_size", "2", "--image_size", "32",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"datalist: {tmp_path / 'busi' / 'datalist.json'}" in run.stdout
    assert (tmp_path / "bundle" / "models" / "checkpoint_final.pt").is_file()
    data = json.loads((tmp_path / "busi" / "datalist.json").read_text())
    assert data["meta"]["layout"] == "busi" and data["meta"]["class_names"] == ["benign", "malignant"]
