"""Tests for dataset preparation: layouts -> seeded, stratified, grouped splits -> datalist; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dataset_trees import busbra, busi, generic, lesion, save, tn3k, udiat, write_us

from hermes_monai.data.builder import prepare_dataset
from hermes_monai.data.layouts import LayoutError, detect_layout, discover
from hermes_monai.data.splits import Record, assign_splits, per_class_budget
from hermes_monai.data.transforms import read_ultrasound
from hermes_monai.prepare import main, parse_budget

SPLITS = ("labeled", "unlabeled", "validation", "test")


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _images(data: dict, split: str) -> list[str]:
    return [e["image"] for e in data[split]]


def _all_images(data: dict) -> list[str]:
    return [img for s in SPLITS for img in _images(data, s)]


# ------------------------------------------------------------------------------------------ BUSI
@pytest.fixture(scope="module")
def busi_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busi(tmp_path_factory.mktemp("busi"))


def test_busi_discovery_names_masks_and_classes(busi_root: Path) -> None:
    assert detect_layout(busi_root) == detect_layout(busi_root.parent) == "busi"
    _, samples = discover(busi_root.parent)
    assert len(samples) == 21
    by_name = {s.image.name: s for s in samples}
    assert [m.name for m in by_name["benign (2).png"].masks] == [
        "benign (2)_mask.png",
        "benign (2)_mask_1.png",
    ]
    assert by_name["normal (1).png"].cls == "normal" and by_name["malignant (3).png"].cls == "malignant"


def test_busi_prepare_paper_preset(busi_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "dl" / "datalist.json"
    result = prepare_dataset(busi_root, out=out, preset="paper", budget=4, seed=1)
    data = _load(out)
    assert data["meta"]["class_names"] == ["benign", "malignant"]
    assert result.dropped == {"class 'normal'": 3}
    images = _all_images(data)
    assert len(images) == len(set(images)) == 18  # normal dropped, nothing listed twice
    assert not any("normal" in p for p in images)
    assert all(Path(p).is_absolute() for p in images)  # outside the datalist's folder -> absolute
    # 70/30 per class: round(0.3 * 10) = 3 benign, round(0.3 * 8) = 2 malignant (+ the duplicate's twin)
    test_classes = sorted(e["class"] for e in data["test"])
    assert test_classes.count(0) >= 3 and test_classes.count(1) >= 2
    # N labels = N/2 per class
    assert sorted(e["class"] for e in data["labeled"]) == [0, 0, 1, 1]
    assert {e["class"] for e in data["validation"]} == {0, 1}
    for e in data["unlabeled"]:
        assert set(e) == {"image"}
    # the duplicate pair (benign (1), malignant (2)) sits in one split
    where = {Path(p).name: s for s in SPLITS for p in _images(data, s)}
    assert where["benign (1).png"] == where["malignant (2).png"]
    assert where["benign (4).png"] == where["malignant (3).png"]  # near-duplicates too
    assert result.duplicate_groups == 2


def test_busi_masks_merged_and_binarised(busi_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "datalist.json"
    prepare_dataset(busi_root, out=out, budget=1.0, test_fraction=0.0, val_fraction=0.0)
    data = _load(out)
    labels = {
        Path(e["image"]).name: tmp_path / e["label"]
        if not Path(e["label"]).is_absolute()
        else Path(e["label"])
        for e in data["labeled"]
    }
    merged = labels["benign (2).png"]
    assert "masks_merged" in str(merged)
    expected = (read_ultrasound(busi_root / "benign" / "benign (2)_mask.png", mask=True) > 0) | (
        read_ultrasound(busi_root / "benign" / "benign (2)_mask_1.png", mask=True) > 0
    )
    np.testing.assert_array_equal(read_ultrasound(merged, mask=True), expected.astype(np.float32))
    assert expected[2:6, 2:8].all()  # the second lesion is in
    rgba = read_ultrasound(labels["benign (3).png"], mask=True)
    assert set(np.unique(rgba)) == {0.0, 1.0} and 0 < rgba.mean() < 0.5  # RGBA -> lesion only, not all


def test_same_seed_byte_identical_other_seed_differs(busi_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "datalist.json"
    prepare_dataset(busi_root, out=out, budget=4, seed=7)
    first = out.read_bytes()
    prepare_dataset(busi_root, out=out, budget=4, seed=7)
    assert out.read_bytes() == first
    prepare_dataset(busi_root, out=out, budget=4, seed=8)
    assert out.read_bytes() != first


# ----------------------------------------------------------------------------- UDIAT / BUS-BRA
@pytest.mark.parametrize("sheet", ["xlsx", "csv"])
def test_udiat_classes_from_sheet(tmp_path: Path, sheet: str) -> None:
    root = udiat(tmp_path / "UDIAT", sheet=sheet)
    assert detect_layout(root) == "udiat"
    prepare_dataset(root, budget=4, seed=0)
    data = _load(root / "datalist.json")
    for split in ("labeled", "validation", "test"):
        for e in data[split]:
            number = int(Path(e["image"]).stem)
            assert e["image"] == f"original/{number:06d}.png" and e["label"] == f"GT/{number:06d}.png"
            assert e["class"] == (1 if number % 3 == 0 else 0)
    assert len(_all_images(data)) == 16


def test_udiat_image_missing_from_sheet_is_named(tmp_path: Path) -> None:
    root = udiat(tmp_path / "UDIAT", n=6, sheet="csv")
    save(root / "original" / "000099.png", lesion(9)[0])
    save(root / "GT" / "000099.png", lesion(9)[1])
    with pytest.raises(LayoutError, match="000099.png"):
        discover(root)


def test_busbra_patients_never_span_splits(tmp_path: Path) -> None:
    root = busbra(tmp_path / "BUSBRA", cases=16)
    for seed in range(4):
        prepare_dataset(root, budget=0.5, seed=seed, stream=open("/dev/null", "w"))
        data = _load(root / "datalist.json")
        split_of: dict[str, set[str]] = {}
        for s in SPLITS:
            for img in _images(data, s):
                split_of.setdefault(img.split("_")[1][:4], set()).add(s)
        assert all(len(v) == 1 for v in split_of.values()), split_of
        assert len(_all_images(data)) == 24 and data["meta"]["grouped_by_patient"]


# ------------------------------------------------------------------------------- TN3K / generic
def test_tn3k_keeps_its_test_split_and_has_no_class(tmp_path: Path) -> None:
    root = tn3k(tmp_path / "TN3K")
    prepare_dataset(root, budget=3, seed=0)
    data = _load(root / "datalist.json")
    assert sorted(_images(data, "test")) == [f"test-image/{i:04d}.jpg" for i in range(4)]
    assert len(_images(data, "labeled")) == 3
    assert all("class" not in e for s in SPLITS for e in data[s])
    assert all(e["label"].startswith("trainval-mask/") for e in data["validation"] + data["labeled"])


def test_generic_labels_patients_and_unlabeled_folder(tmp_path: Path) -> None:
    root = generic(tmp_path / "mine")
    prepare_dataset(root, budget=2, seed=3, test_fraction=0.25)
    data = _load(root / "datalist.json")
    assert set(_images(data, "unlabeled")) >= {f"unlabeled/u{i}.png" for i in range(4)}
    patient = {f"images/case {i}.png": i // 2 for i in range(12)}
    split_of: dict[int, set[str]] = {}
    for s in SPLITS:
        for img in _images(data, s):
            if img in patient:
                split_of.setdefault(patient[img], set()).add(s)
    assert all(len(v) == 1 for v in split_of.values())
    assert data["meta"]["class_names"] == ["benign", "malignant"]


def test_generic_dicom_images_without_suffix_with_png_masks(tmp_path: Path) -> None:
    for i in range(6):
        img, mask = lesion(750 + i)
        write_us(tmp_path / "g" / "images" / f"IM{i:04d}", img)
        save(tmp_path / "g" / "masks" / f"IM{i:04d}.png", mask)
    prepare_dataset(tmp_path / "g", budget=2, test_fraction=0.2)
    data = _load(tmp_path / "g" / "datalist.json")
    assert len(_all_images(data)) == 6 and len(data["labeled"]) == 2
    assert data["labeled"][0]["label"] == data["labeled"][0]["image"].replace("images/", "masks/") + ".png"


def test_dicom_folder_lists_every_file_unlabeled(tmp_path: Path) -> None:
    for i in range(3):
        write_us(tmp_path / "exam" / f"IM{i}", lesion(700 + i)[0], PatientID=f"P{i % 2}")
    (tmp_path / "exam" / "notes.txt").write_text("not dicom")
    assert detect_layout(tmp_path / "exam") == "dicom"
    prepare_dataset(tmp_path / "exam", budget=1)
    data = _load(tmp_path / "exam" / "datalist.json")
    assert sorted(_images(data, "unlabeled")) == ["IM0", "IM1", "IM2"]


def test_empty_and_unknown_folders_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="empty.*not a known dataset layout"):
        prepare_dataset(tmp_path / "empty")
    (tmp_path / "gen" / "images").mkdir(parents=True)
    with pytest.raises(LayoutError, match="no images found"):
        prepare_dataset(tmp_path / "gen")


# ---------------------------------------------------------------------------------- split logic
def test_per_class_budget_count_and_fraction() -> None:
    assert per_class_budget(144, [300, 130]) == [72, 72]
    assert per_class_budget(5, [10, 10]) == [3, 2]
    assert per_class_budget(0.5, [10, 7]) == [5, 4]
    with pytest.raises(ValueError):
        per_class_budget(1.5, [10])


def test_budget_larger_than_train_part_is_refused() -> None:
    records = [Record(key=f"{i:03d}", cls=i % 2, has_mask=True, group=f"{i:03d}") for i in range(20)]
    with pytest.raises(ValueError, match="10 labeled images of class 0.*holds only 6"):
        assign_splits(records, budget=20, seed=0)
    out = assign_splits(records, budget=4, seed=0)
    assert out.count("labeled") == 4 and out.count("test") == 6 and out.count("validation") == 2


# ------------------------------------------------------------------------------------------ CLI
def test_cli_prepare_and_check(busi_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "datalist.json"
    assert parse_budget("144") == 144 and parse_budget("25%") == 0.25 and parse_budget("0.3") == 0.3
    assert main([str(busi_root), "--preset", "paper", "--labels", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "busi datalist written" in printed and "benign" in printed and "labeled" in printed
    assert main(["check", str(out), "--num-cls-classes", "2"]) == 0
    assert main(["check", str(out), "--num-cls-classes", "1"]) == 1  # malignant = 1 is out of range
    assert "class 1" in capsys.readouterr().out
    assert main([str(tmp_path / "nowhere")]) == 1
    assert "dataset folder not found" in capsys.readouterr().err
