"""Tests for hermes_monai.data: synthetic dataset, datalists, the ultrasound loader and pipelines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image
from scipy.ndimage import binary_dilation

from hermes_monai.data.datalist import check_disjoint, load_datalist, write_datalist
from hermes_monai.data.synthetic import (
    ensure_synthetic_dataset,
    generate_synthetic_dataset,
    render_case,
)
from hermes_monai.data.transforms import UNKNOWN_CLASS, LoadUltrasoundd, read_ultrasound

SMALL = {"num_labeled": 6, "num_unlabeled": 8, "num_validation": 4, "num_test": 4, "image_size": 64}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic_dataset(tmp_path_factory.mktemp("synth"), seed=3, **SMALL)


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


# ----------------------------------------------------------------------------------------------
# synthetic dataset
# ----------------------------------------------------------------------------------------------


def test_synthetic_structure_and_files(synth: Path) -> None:
    root = synth.parent
    data = json.loads(synth.read_text())
    assert synth.name == "datalist.json"
    assert {"labeled", "unlabeled", "validation", "test", "meta"} <= set(data)
    assert [len(data[s]) for s in ("labeled", "unlabeled", "validation", "test")] == [6, 8, 4, 4]
    assert data["meta"]["class_names"] == ["benign", "malignant"]
    assert data["meta"]["seed"] == 3
    for split in ("labeled", "validation", "test"):
        for e in data[split]:
            assert set(e) == {"image", "label", "class"}
            assert not Path(e["image"]).is_absolute() and e["image"].startswith("images/us_")
            assert e["label"] == e["image"].replace("images/", "masks/")
            assert e["class"] in (0, 1)
    for e in data["unlabeled"]:
        assert set(e) == {"image"}
        assert not (root / e["image"].replace("images/", "masks/")).exists()  # no mask leaks
    images = [e["image"] for s in ("labeled", "unlabeled", "validation", "test") for e in data[s]]
    assert len(set(images)) == 22  # every image in exactly one split
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(Path(p).name for p in images)
    img = _read(root / images[0])
    assert img.dtype == np.uint8 and img.shape == (64, 64)


def test_synthetic_class_balance(synth: Path) -> None:
    data = json.loads(synth.read_text())
    for split, n in (("labeled", 6), ("validation", 4), ("test", 4)):
        classes = [e["class"] for e in data[split]]
        assert classes.count(0) == classes.count(1) == n // 2


def test_synthetic_odd_split_balance(tmp_path: Path) -> None:
    p = generate_synthetic_dataset(
        tmp_path, num_labeled=5, num_unlabeled=0, num_validation=1, num_test=0, image_size=32
    )
    classes = [e["class"] for e in json.loads(p.read_text())["labeled"]]
    assert sorted(classes) == [0, 0, 0, 1, 1]  # ceil(5/2) benign, floor(5/2) malignant


def test_synthetic_masks_binary_nonempty_and_lesion_darker(synth: Path) -> None:
    root = synth.parent
    data = json.loads(synth.read_text())
    for split in ("labeled", "validation", "test"):
        for e in data[split]:
            img, mask = _read(root / e["image"]), _read(root / e["label"])
            assert mask.shape == img.shape
            assert set(np.unique(mask).tolist()) == {0, 255}
            inside = mask > 0
            ring = binary_dilation(inside, iterations=4) & ~inside
            assert img[inside].mean() < 0.8 * img[ring].mean()


def test_synthetic_deterministic(tmp_path: Path, synth: Path) -> None:
    again = generate_synthetic_dataset(tmp_path / "a", seed=3, **SMALL)
    other = generate_synthetic_dataset(tmp_path / "b", seed=4, **SMALL)
    assert again.read_bytes() == synth.read_bytes()
    files = sorted(p.relative_to(synth.parent) for p in synth.parent.rglob("*.png"))
    assert files == sorted(p.relative_to(again.parent) for p in again.parent.rglob("*.png"))
    for rel in files:
        assert (synth.parent / rel).read_bytes() == (again.parent / rel).read_bytes()
    differs = [
        (synth.parent / rel).read_bytes() != (other.parent / rel).read_bytes()
        for rel in files
        if (other.parent / rel).exists()
    ]
    assert differs and all(differs)


def test_synthetic_reuse_and_regenerate(tmp_path: Path) -> None:
    params = {"num_labeled": 2, "num_unlabeled": 2, "num_validation": 2, "num_test": 0, "image_size": 32}
    p = ensure_synthetic_dataset(tmp_path, **params)
    img = tmp_path / json.loads(p.read_text())["labeled"][0]["image"]
    old = 1_000_000_000  # push mtimes into the past so a rewrite is detectable
    os.utime(p, (old, old))
    os.utime(img, (old, old))
    assert ensure_synthetic_dataset(tmp_path, **params) == p
    assert p.stat().st_mtime == old and img.stat().st_mtime == old  # nothing rewritten
    generate_synthetic_dataset(tmp_path, overwrite=True, **params)
    assert p.stat().st_mtime != old
    ensure_synthetic_dataset(tmp_path, **{**params, "num_unlabeled": 3})  # params differ -> new data
    data = json.loads(p.read_text())
    assert len(data["unlabeled"]) == 3 and data["meta"]["num_unlabeled"] == 3
    assert len(list((tmp_path / "images").glob("*.png"))) == 7  # stale files removed


def test_synthetic_class_cues() -> None:
    """Benign lesions are wider-than-tall and more compact than malignant ones on average."""

    def features(cls: int, i: int) -> tuple[float, float]:
        _, m = render_case(np.random.default_rng(500 + 2 * i + cls), cls, 96)
        m = m > 0
        rows, cols = np.nonzero(m)
        aspect = (np.ptp(rows) + 1) / (np.ptp(cols) + 1)  # height / width
        perimeter = (m ^ np.roll(m, 1, 0)).sum() + (m ^ np.roll(m, 1, 1)).sum()
        return aspect, perimeter**2 / m.sum()

    benign = np.array([features(0, i) for i in range(30)])
    malignant = np.array([features(1, i) for i in range(30)])
    assert benign[:, 0].mean() < 0.9 < malignant[:, 0].mean()
    assert benign[:, 1].mean() < malignant[:, 1].mean()


# ----------------------------------------------------------------------------------------------
# datalists
# ----------------------------------------------------------------------------------------------


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_load_datalist_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="datalist not found") as err:
        load_datalist(missing, "labeled")
    assert str(missing) in str(err.value) and "dataset_dir" in str(err.value)


def test_load_datalist_missing_split(tmp_path: Path) -> None:
    p = tmp_path / "dl.json"
    p.write_text(json.dumps({"labeled": []}))
    with pytest.raises(KeyError) as err:
        load_datalist(p, "validation")
    assert "validation" in str(err.value) and str(p) in str(err.value)


def test_load_datalist_makes_paths_absolute(tmp_path: Path) -> None:
    _touch(tmp_path / "images" / "a.png")
    _touch(tmp_path / "masks" / "a.png")
    _touch(tmp_path / "other" / "images" / "a.png")
    p = tmp_path / "dl.json"
    p.write_text(json.dumps({"labeled": [{"image": "images/a.png", "label": "./masks/a.png", "class": 1}]}))
    (entry,) = load_datalist(p, "labeled")
    assert entry == {
        "image": str(tmp_path / "images" / "a.png"),
        "label": str(tmp_path / "masks" / "a.png"),
        "class": 1,
    }
    p.write_text(json.dumps({"unlabeled": [{"image": "images/a.png"}]}))
    (entry,) = load_datalist(p, "unlabeled", base_dir=tmp_path / "other")
    assert entry["image"] == str(tmp_path / "other" / "images" / "a.png")


def test_load_datalist_missing_referenced_file(tmp_path: Path) -> None:
    _touch(tmp_path / "images" / "a.png")
    p = tmp_path / "dl.json"
    p.write_text(json.dumps({"test": [{"image": "images/a.png", "label": "masks/gone.png"}]}))
    with pytest.raises(FileNotFoundError) as err:
        load_datalist(p, "test")
    assert "gone.png" in str(err.value) and str(p) in str(err.value)


def test_check_disjoint_detects_overlap(tmp_path: Path) -> None:
    datalist = {
        "labeled": [{"image": "images/a.png"}, {"image": "images/b.png"}],
        "test": [{"image": "./images/c.png"}, {"image": "images/../images/b.png"}],
        "meta": {"seed": 0},
    }
    with pytest.raises(ValueError) as err:
        check_disjoint(datalist, tmp_path)
    msg = str(err.value)
    assert "b.png" in msg and "'labeled'" in msg and "'test'" in msg
    check_disjoint({"labeled": [{"image": "a.png"}, {"image": "a.png"}], "test": [{"image": "c.png"}]})

    for name in ("a", "b", "c"):
        _touch(tmp_path / "images" / f"{name}.png")
    p = tmp_path / "dl.json"
    p.write_text(json.dumps(datalist))
    with pytest.raises(ValueError, match="two splits"):
        load_datalist(p, "labeled")  # whole file is checked, not just the requested split


def test_write_datalist_roundtrip(tmp_path: Path) -> None:
    _touch(tmp_path / "images" / "a.png")
    p = write_datalist(tmp_path / "dl.json", {"unlabeled": [{"image": "images/a.png"}]}, meta={"k": 1})
    assert json.loads(p.read_text()) == {"unlabeled": [{"image": "images/a.png"}], "meta": {"k": 1}}
    with pytest.raises(ValueError):
        write_datalist(tmp_path / "bad.json", {"a": [{"image": "x.png"}], "b": [{"image": "x.png"}]})
    assert not (tmp_path / "bad.json").exists()


# ----------------------------------------------------------------------------------------------
# loader
# ----------------------------------------------------------------------------------------------


def _write_dicom(path: Path, arr: np.ndarray, photometric: str, bits_stored: int, **attrs: object) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UltrasoundImageStorage

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = UltrasoundImageStorage
    ds.set_pixel_data(arr, photometric_interpretation=photometric, bits_stored=bits_stored)
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_load_grey_png_orientation_and_scale(tmp_path: Path) -> None:
    arr = (np.arange(35).reshape(5, 7) * 7).astype(np.uint8)  # H=5, W=7, max 34*7=238
    Image.fromarray(arr).save(tmp_path / "g.png")
    out = LoadUltrasoundd(keys="image")({"image": str(tmp_path / "g.png"), "class": 1})
    img = out["image"]
    assert img.shape == (1, 5, 7) and img.dtype == torch.float32
    np.testing.assert_allclose(img[0].numpy(), arr / 255.0, atol=1e-6)
    assert img.meta["filename_or_obj"] == str(tmp_path / "g.png")
    assert out["class"] == 1


def test_load_16bit_png(tmp_path: Path) -> None:
    arr = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    np.testing.assert_allclose(read_ultrasound(tmp_path / "g16.png"), arr / 65535.0, atol=1e-6)


def test_load_rgb_and_rgba_png_to_luminance(tmp_path: Path) -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 100, 100]]], dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    # luminance 0.299 R + 0.587 G + 0.114 B: red 0.299, green 0.587, blue 0.114, grey 100/255
    expected = np.array([[0.299, 0.587, 0.114, 100 / 255]])
    np.testing.assert_allclose(read_ultrasound(tmp_path / "c.png"), expected, atol=1e-5)
    rgba = np.concatenate([rgb, np.array([[[0], [255], [10], [255]]], dtype=np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "c4.png")
    out = LoadUltrasoundd(keys="image")({"image": tmp_path / "c4.png"})["image"]
    assert out.shape == (1, 1, 4)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-5)  # alpha dropped


def test_load_colour_masks(tmp_path: Path) -> None:
    img = np.zeros((4, 4), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "i.png")
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque black background
    rgba[1:3, 1:3, 0] = 200  # red lesion
    Image.fromarray(rgba).save(tmp_path / "m.png")
    out = LoadUltrasoundd()({"image": str(tmp_path / "i.png"), "label": str(tmp_path / "m.png")})
    expected = np.zeros((4, 4), dtype=np.float32)
    expected[1:3, 1:3] = 1
    np.testing.assert_array_equal(out["label"][0].numpy(), expected)
    Image.fromarray(rgba[..., :3]).save(tmp_path / "m3.png")
    np.testing.assert_array_equal(read_ultrasound(tmp_path / "m3.png", mask=True), expected)


def test_load_dicom_monochrome_uint16(tmp_path: Path) -> None:
    arr = np.array([[0, 1000, 65535], [30000, 2, 5]], dtype=np.uint16)
    for name in ("u16.dcm", "u16_noext"):
        _write_dicom(tmp_path / name, arr, "MONOCHROME2", 16)
        out = LoadUltrasoundd(keys="image")({"image": str(tmp_path / name)})["image"]
        assert out.shape == (1, 2, 3) and out.dtype == torch.float32
        np.testing.assert_allclose(out[0].numpy(), arr / 65535.0, atol=1e-6)
    # 12 bits stored: range 0..4095, so 4095 -> 1 and 1365 -> 1365/4095 = 1/3
    arr12 = np.array([[0, 1365, 4095]], dtype=np.uint16)
    _write_dicom(tmp_path / "u12.dcm", arr12, "MONOCHROME2", 12)
    np.testing.assert_allclose(read_ultrasound(tmp_path / "u12.dcm"), [[0.0, 1 / 3, 1.0]], atol=1e-6)
    # MONOCHROME1: inverted, 8 bits: 0 -> 1, 255 -> 0, 51 -> 1 - 0.2 = 0.8
    _write_dicom(tmp_path / "m1.dcm", np.array([[0, 255, 51]], dtype=np.uint8), "MONOCHROME1", 8)
    np.testing.assert_allclose(read_ultrasound(tmp_path / "m1.dcm"), [[1.0, 0.0, 0.8]], atol=1e-6)


def test_load_dicom_window(tmp_path: Path) -> None:
    # LINEAR window, center 2048, width 1025 (pydicom: c' = 2047.5, w' = 1024), 12-bit output range:
    # x <= 1535.5 -> 0, x > 2559.5 -> 4095, x = 2047.5 -> 0.5 * 4095; scaled by 4095 -> 0, 1, 0.5.
    arr = np.array([[1000, 4000, 2047]], dtype=np.uint16)
    _write_dicom(tmp_path / "w.dcm", arr, "MONOCHROME2", 12, WindowCenter=2048, WindowWidth=1025)
    out = read_ultrasound(tmp_path / "w.dcm")
    # 2047 -> ((2047 - 2047.5) / 1024 + 0.5) = 0.49951...
    np.testing.assert_allclose(out, [[0.0, 1.0, 0.5 - 0.5 / 1024]], atol=1e-5)


def test_load_dicom_rgb(tmp_path: Path) -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, :, 0] = 255  # top row red -> 0.299
    rgb[1, :, 1] = 255  # bottom row green -> 0.587
    _write_dicom(tmp_path / "rgb.dcm", rgb, "RGB", 8)
    out = LoadUltrasoundd(keys="image")({"image": str(tmp_path / "rgb.dcm")})["image"]
    assert out.shape == (1, 2, 3)
    np.testing.assert_allclose(out[0].numpy(), [[0.299] * 3, [0.587] * 3], atol=1e-5)


def test_corrupt_files_raise_value_error(tmp_path: Path) -> None:
    for name in ("broken.png", "broken.dcm", "broken.jpg"):
        bad = tmp_path / name
        bad.write_bytes(b"definitely not an image" * 4)
        with pytest.raises(ValueError, match="cannot read image") as err:
            LoadUltrasoundd(keys="image")({"image": str(bad)})
        assert str(bad) in str(err.value)
    with pytest.raises(FileNotFoundError, match="gone.png"):
        read_ultrasound(tmp_path / "gone.png")


def test_mask_size_mismatch(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((6, 8), dtype=np.uint8)).save(tmp_path / "img.png")
    Image.fromarray(np.zeros((6, 7), dtype=np.uint8)).save(tmp_path / "msk.png")
    with pytest.raises(ValueError) as err:
        LoadUltrasoundd()({"image": str(tmp_path / "img.png"), "label": str(tmp_path / "msk.png")})
    msg = str(err.value)
    assert "img.png" in msg and "msk.png" in msg and "(6, 8)" in msg and "(6, 7)" in msg


# ----------------------------------------------------------------------------------------------
# pipelines
# ----------------------------------------------------------------------------------------------


def _bundle_pipeline(section: str, image_size: int):
    """The bundle's own ``<section>#preprocessing`` from train.yaml (the one place pipelines are defined)."""
    parser = ConfigParser()
    parser.read_config(str(Path(__file__).resolve().parents[1] / "bundle" / "configs" / "train.yaml"))
    parser["image_size"] = image_size
    return parser.get_parsed_content(f"{section}#preprocessing")


def test_train_transforms_keep_image_and_mask_aligned(tmp_path: Path) -> None:
    mask = np.zeros((40, 50), dtype=np.uint8)
    mask[5:20, 8:30] = 255  # off-centre rectangle so every flip / rotation moves it
    Image.fromarray(mask).save(tmp_path / "m.png")
    Image.fromarray(mask).save(tmp_path / "i.png")  # image bright exactly where the lesion is
    item = {"image": str(tmp_path / "i.png"), "label": str(tmp_path / "m.png"), "class": 1}
    pipeline = _bundle_pipeline("train", 32)
    pipeline.set_random_state(seed=0)
    moved = 0
    for _ in range(8):
        out = pipeline(item)
        img, lab = out["image"], out["label"]
        assert img.shape == lab.shape == (1, 32, 32)
        assert set(torch.unique(lab).tolist()) <= {0.0, 1.0}
        assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0 + 1e-6
        assert float(((img > 0.5).float() == lab).float().mean()) > 0.95
        assert int(out["class"]) == 1
        moved += int(lab[0, :16, :16].sum() < 0.5 * lab.sum())  # lesion left the top-left quadrant
    assert moved > 0  # the random geometry actually did something

    unlabeled = pipeline({"image": str(tmp_path / "i.png")})
    assert set(unlabeled) == {"image", "class"} and unlabeled["image"].shape == (1, 32, 32)
    assert unlabeled["class"] == UNKNOWN_CLASS  # EnsureClassd: no class given -> unknown (-1)


def test_eval_transforms_resize_with_and_without_label(synth: Path) -> None:
    entry = load_datalist(synth, "test")[0]
    pipeline = _bundle_pipeline("validate", 48)
    out = pipeline(entry)
    assert out["image"].shape == out["label"].shape == (1, 48, 48)
    assert set(torch.unique(out["label"]).tolist()) == {0.0, 1.0}
    assert out["image"].meta["filename_or_obj"] == entry["image"]


def test_synthetic_difficulty_moves_lesions_toward_iso_echoic_and_nothing_else(tmp_path: Path) -> None:
    """Harder images keep the same lesion masks and the same tissue away from the lesion; the lesion's echo
    moves toward its surroundings', more at difficulty 1 than at 0.5."""

    def case(difficulty: float, i: int) -> tuple[np.ndarray, np.ndarray, float]:
        image, mask = render_case(np.random.default_rng(700 + i), i % 2, 96, difficulty)
        inside = mask > 0
        ring = binary_dilation(inside, iterations=6) & ~inside
        return image, mask, image[inside].mean() / image[ring].mean()

    cases = {d: [case(d, i) for i in range(24)] for d in (0.0, 0.5, 1.0)}
    for (im0, m0, _), (im1, m1, _) in zip(cases[0.0], cases[1.0]):
        assert np.array_equal(m0, m1)
        far = ~binary_dilation(m0 > 0, iterations=12)
        assert np.abs(im0[far].astype(int) - im1[far].astype(int)).max() <= 1  # tissue untouched
    ratio = {d: np.mean([r for *_, r in v]) for d, v in cases.items()}
    assert ratio[0.0] + 0.05 < ratio[0.5] < ratio[1.0] - 0.05 and ratio[1.0] < 1.0
    with pytest.raises(ValueError, match="difficulty"):
        generate_synthetic_dataset(tmp_path, difficulty=2.5, **SMALL)
    params = {"num_labeled": 2, "num_unlabeled": 0, "num_validation": 0, "num_test": 0, "image_size": 32}
    plain = json.loads(generate_synthetic_dataset(tmp_path / "a", **params).read_text())["meta"]
    harder = json.loads(generate_synthetic_dataset(tmp_path / "b", difficulty=0.5, **params).read_text())[
        "meta"
    ]
    assert "difficulty" not in plain and harder["difficulty"] == 0.5  # older datasets stay reusable
    assert plain["version"] == 1 and harder["version"] == 3  # older hardened sets are regenerated


def test_synthetic_difficulty_above_one_changes_only_the_appearance_of_some_lesions(tmp_path: Path) -> None:
    """Above 1 (version 4) a case keeps difficulty 1's mask and tissue; at 2 about half the lesions change
    appearance: a quarter turn brighter than their surroundings, a quarter get cystic spaces (more contrast
    inside the lesion)."""
    changed, hyper, complex_ = [], [], []
    for i in range(80):
        base, mask = render_case(np.random.default_rng(900 + i), i % 2, 96, 1.0)
        image, mask2 = render_case(np.random.default_rng(900 + i), i % 2, 96, 2.0)
        assert np.array_equal(mask, mask2)
        far = ~binary_dilation(mask > 0, iterations=12)
        assert np.abs(image[far].astype(int) - base[far].astype(int)).max() <= 1  # tissue untouched
        inside = mask > 0
        ring = binary_dilation(inside, iterations=6) & ~inside
        ratio = [im[inside].mean() / im[ring].mean() for im in (base, image)]
        spread = [im[inside].std() / im[inside].mean() for im in (base, image)]
        changed.append(not np.array_equal(image, base))
        hyper.append(ratio[1] > max(1.0, ratio[0] + 0.2))
        complex_.append(changed[-1] and not hyper[-1] and spread[1] > spread[0] + 0.1)
    assert 0.3 <= np.mean(changed) <= 0.7  # expected 0.5
    assert 0.1 <= np.mean(hyper) <= 0.4  # expected 0.25
    assert 0.08 <= np.mean(complex_) <= 0.4  # expected 0.25, a few with little cystic area go unseen
    params = {"num_labeled": 2, "num_unlabeled": 0, "num_validation": 0, "num_test": 0, "image_size": 32}
    meta = json.loads(generate_synthetic_dataset(tmp_path, difficulty=2.0, **params).read_text())["meta"]
    assert meta["version"] == 4 and meta["difficulty"] == 2.0
