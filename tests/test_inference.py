"""Inference on new images through ``bundle/configs/inference.yaml`` (real MONAI pipeline, real files).

A tiny trained bundle (session fixture) whose lesion bias is shifted so that about half of each image
is predicted lesion (masks are then non-trivial) predicts a folder holding PNGs of several sizes, an
ultrasound DICOM, and three bad files (unreadable, CT DICOM, DICOM SEG). Checked: every good input has
its outputs at its original size, the CSV / JSON agree, the DICOM SEG reads back equal to the PNG mask
and references its source, bad files are reported by name and the run exits non-zero.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from dataset_trees import write_us
from monai.bundle import run
from PIL import Image
from pydicom.uid import CTImageStorage, UltrasoundImageStorage, generate_uid

from hermes_monai.data.transforms import read_ultrasound
from hermes_monai.inference import (
    ClassResultd,
    FailureLog,
    SegEntropyd,
    ToXYOrderd,
    find_cases,
    full_frame_mask,
    overlay_image,
    write_dicom_seg,
)
from hermes_monai.inference.overlay import mask_outline

INFER = Path(__file__).resolve().parents[1] / "bundle" / "configs" / "inference.yaml"


def write_us_dicom(
    path: Path, arr: np.ndarray, sop_class: str = UltrasoundImageStorage, modality: str = "US"
) -> Path:
    """A single-frame 8-bit greyscale DICOM with the patient/study/series tags a real file has."""
    return write_us(
        path,
        arr,
        SOPClassUID=sop_class,
        Modality=modality,
        PatientID="P001",
        PatientName="Test^Patient",
        PatientBirthDate="",
        PatientSex="F",
        StudyDate="20250101",
        StudyTime="120000",
        StudyID="1",
        AccessionNumber="A1",
        ReferringPhysicianName="",
        SeriesNumber=1,
        InstanceNumber=1,
    )


@pytest.fixture(scope="module")
def lesion_checkpoint(trained_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained weights, lesion bias moved by the median lesion-minus-background logit of a training image."""
    from hermes_monai.networks import HermesDeployNet

    state = torch.load(trained_bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    net = HermesDeployNet(decoder_channels=[128, 64, 32, 16])
    net.load_state_dict(state)
    image = next((trained_bundle / "data" / "images").glob("*.png"))
    x = torch.from_numpy(read_ultrasound(image))[None, None]
    with torch.no_grad():
        logits = net(x)
    diff = (logits[0, 1] - logits[0, 0]).flatten()
    state = {k: v.clone() for k, v in state.items()}
    state["seg.out_conv.bias"][1] -= diff.median()
    path = tmp_path_factory.mktemp("ckpt") / "lesion.pt"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def inputs(trained_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    images = sorted((trained_bundle / "data" / "images").glob("*.png"))
    shutil.copy(images[0], d / "case_a.png")
    grey = (read_ultrasound(images[1]) * 255).astype(np.uint8)
    Image.fromarray(grey).resize((90, 70)).save(d / "case_wide.png")  # H=70, W=90: not square, not /16
    us = np.array(Image.fromarray(grey).resize((96, 80)))
    write_us_dicom(d / "case_dicom.dcm", us)
    (d / "broken.png").write_bytes(b"this is not an image")
    write_us_dicom(d / "ct_slice.dcm", us, sop_class=CTImageStorage, modality="CT")
    write_dicom_seg(us > 128, d / "case_dicom.dcm", d / "mask_only.dcm")
    cine = pydicom.dcmread(d / "case_dicom.dcm")
    cine.SOPInstanceUID = generate_uid()
    cine.set_pixel_data(np.stack([us, us[::-1]]), photometric_interpretation="MONOCHROME2", bits_stored=8)
    cine.save_as(d / "cine.dcm", enforce_file_format=True)  # a 2-frame loop: which frame? refused
    return {p.stem: p for p in d.iterdir()}


def _run(trained_bundle: Path, checkpoint: Path, dataset_dir: Path, out: Path, **extra) -> None:
    run(
        config_file=str(INFER),
        bundle_root=str(trained_bundle),
        checkpoint=str(checkpoint),
        dataset_dir=str(dataset_dir),
        output_dir=str(out),
        image_size=64,
        device="$torch.device('cpu')",
        **extra,
    )


def test_folder_run_writes_everything_and_reports_bad_files(
    trained_bundle: Path, lesion_checkpoint: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    folder = inputs["case_a"].parent
    with pytest.raises(SystemExit) as exc:
        _run(trained_bundle, lesion_checkpoint, folder, tmp_path, save_nifti=True, save_entropy=True)
    message = str(exc.value.code)
    for bad in ("broken.png", "ct_slice.dcm", "mask_only.dcm", "cine.dcm"):
        assert bad in message
    assert "Modality 'CT'" in message and "DICOM SEG" in message and "multi-frame" in message

    rows = {Path(r["image"]).name: r for r in csv.DictReader(open(tmp_path / "predictions.csv"))}
    assert {n for n, r in rows.items() if r["status"] == "failed"} == {
        "broken.png",
        "ct_slice.dcm",
        "mask_only.dcm",
        "cine.dcm",
    }
    good = ["case_a.png", "case_wide.png", "case_dicom.dcm"]
    for name in good:
        stem = Path(name).stem
        src = read_ultrasound(folder / name)
        mask = np.array(Image.open(tmp_path / f"{stem}_mask.png"))
        assert mask.shape == src.shape and mask.dtype == np.uint8  # original size, rows first
        assert set(np.unique(mask)) <= {0, 255}
        assert 0 < (mask > 0).mean() < 1  # the shifted bias makes a real partial mask
        record = json.loads((tmp_path / f"{stem}.json").read_text())
        probs = record["class_probabilities"]
        assert abs(sum(probs.values()) - 1) < 1e-5
        assert record["predicted_class"] == max(probs, key=probs.get)
        assert record["lesion_pixels"] == int((mask > 0).sum())
        assert rows[name]["status"] == "ok" and rows[name]["predicted_class"] == record["predicted_class"]
        assert abs(float(rows[name][f"p_{record['predicted_class']}"]) - max(probs.values())) < 1e-5
        overlay = np.array(Image.open(tmp_path / f"{stem}_overlay.png"))
        assert overlay.shape == (*src.shape, 3)
        entropy = np.array(Image.open(tmp_path / f"{stem}_entropy.png"))
        assert entropy.shape == src.shape and entropy.max() > 0
        nifti = tmp_path / f"{stem}_mask.nii.gz"  # (x, y) on disk; the project's reader gives rows first
        np.testing.assert_array_equal(read_ultrasound(nifti, mask=True) > 0, mask > 0)

    # DICOM SEG: references its source and equals the PNG mask pixel for pixel
    src = pydicom.dcmread(folder / "case_dicom.dcm")
    seg = pydicom.dcmread(tmp_path / "case_dicom_seg.dcm")
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == src.StudyInstanceUID
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == src.SeriesInstanceUID
    assert ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "hermes-monai"
    png = np.array(Image.open(tmp_path / "case_dicom_mask.png")) > 0
    np.testing.assert_array_equal(seg.pixel_array.astype(bool), png)
    import highdicom as hd

    hd_seg = hd.seg.segread(tmp_path / "case_dicom_seg.dcm")
    assert hd_seg.get_segment_description(1).SegmentLabel == "lesion"


def test_command_line_exit_status(trained_bundle: Path, inputs: dict[str, Path], tmp_path: Path) -> None:
    """The real CLI: a folder with only bad files ends with status 1 and names them on stderr."""
    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy(inputs["broken"], folder)
    shutil.copy(inputs["cine"], folder)
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(INFER),
        "--bundle_root",
        str(trained_bundle),
        "--dataset_dir",
        str(folder),
        "--output_dir",
        str(tmp_path / "out"),
    ]
    env = {**os.environ, "PYTHONPATH": str(INFER.parents[2]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "broken.png" in proc.stderr and "cine.dcm" in proc.stderr
    assert "inference failed for 2 input file(s)" in proc.stderr


def test_single_file_tta_and_sliding_window(
    trained_bundle: Path, lesion_checkpoint: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    big = tmp_path / "big.png"
    Image.open(inputs["case_a"]).resize((200, 150)).save(big)  # ~3x the 64 px training size
    _run(trained_bundle, lesion_checkpoint, big, tmp_path / "sw", sliding_window=True, flip_tta=True)
    mask = np.array(Image.open(tmp_path / "sw" / "big_mask.png"))
    assert mask.shape == (150, 200)
    _run(trained_bundle, lesion_checkpoint, inputs["case_a"], tmp_path / "plain")
    _run(trained_bundle, lesion_checkpoint, inputs["case_a"], tmp_path / "tta", flip_tta=True)
    plain = json.loads((tmp_path / "plain" / "case_a.json").read_text())["class_probabilities"]
    tta = json.loads((tmp_path / "tta" / "case_a.json").read_text())["class_probabilities"]
    assert plain != tta  # the mirrored pass changes the averaged logits


def test_folded_batch_norm_gives_the_unfolded_predictions(
    trained_bundle: Path, lesion_checkpoint: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """inference.yaml folds the loaded weights' batch norms by default; switched off, the class
    probabilities agree to float rounding and the masks on all but near-tie pixels."""
    _run(trained_bundle, lesion_checkpoint, inputs["case_wide"], tmp_path / "folded")
    _run(trained_bundle, lesion_checkpoint, inputs["case_wide"], tmp_path / "plain", fold_batch_norm=False)
    got = json.loads((tmp_path / "folded" / "case_wide.json").read_text())["class_probabilities"]
    ref = json.loads((tmp_path / "plain" / "case_wide.json").read_text())["class_probabilities"]
    assert got.keys() == ref.keys() and all(abs(got[k] - ref[k]) < 1e-4 for k in ref)
    masks = [np.array(Image.open(tmp_path / d / "case_wide_mask.png")) for d in ("folded", "plain")]
    assert masks[0].shape == (70, 90) and (masks[0] != masks[1]).mean() < 0.01


def test_bf16_autocast_inference_is_close_to_fp32(
    trained_bundle: Path, lesion_checkpoint: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """``--amp true --amp_dtype bfloat16`` reaches the evaluator: the probabilities move (bf16 rounding,
    so autocast did run) but stay within a few hundredths of fp32's, and the masks differ on few pixels,
    only uncertain ones. The segmentation head's logits are scaled 500x so that most pixels are confident
    (the 4-iteration model alone leaves every pixel near 0.5)."""
    state = torch.load(lesion_checkpoint, map_location="cpu", weights_only=True)
    for key in ("seg.out_conv.weight", "seg.out_conv.bias"):
        state[key] = state[key] * 500
    confident = tmp_path / "confident.pt"
    torch.save(state, confident)
    for name, extra in (("fp32", {}), ("bf16", {"amp": True, "amp_dtype": "bfloat16"})):
        _run(trained_bundle, confident, inputs["case_wide"], tmp_path / name, save_entropy=True, **extra)
    got = json.loads((tmp_path / "bf16" / "case_wide.json").read_text())["class_probabilities"]
    ref = json.loads((tmp_path / "fp32" / "case_wide.json").read_text())["class_probabilities"]
    assert got.keys() == ref.keys() and got != ref
    assert all(abs(got[k] - ref[k]) < 0.05 for k in ref)
    masks = [np.array(Image.open(tmp_path / d / "case_wide_mask.png")) for d in ("bf16", "fp32")]
    entropy = np.array(Image.open(tmp_path / "fp32" / "case_wide_entropy.png")).astype(float) / 255
    flipped = masks[0] != masks[1]
    assert masks[0].shape == (70, 90) == entropy.shape
    assert flipped.mean() < 0.05
    assert (entropy[flipped] > np.median(entropy)).all()  # flips only where fp32 is less sure than usual


def test_datalist_input(trained_bundle: Path, tmp_path: Path) -> None:
    cases = find_cases(trained_bundle / "data" / "datalist.json")
    datalist = json.loads((trained_bundle / "data" / "datalist.json").read_text())
    assert len(cases) == len(datalist["test"]) and all(Path(c["image"]).is_file() for c in cases)
    folder = tmp_path / "twins"
    for sub in ("a", "b"):
        (folder / sub).mkdir(parents=True)
        shutil.copy(cases[0]["image"], folder / sub / "same.png")
    log = FailureLog()
    assert [Path(c["image"]).parent.name for c in find_cases(folder, log)] == ["a"]
    assert "same file name" in log.failures[str(folder / "b" / "same.png")]
    with pytest.raises(ValueError, match="does not exist"):
        find_cases(tmp_path / "nothing_here")
    with pytest.raises(ValueError, match="no input"):
        find_cases(None)


def test_dicom_seg_with_crop_box_fills_the_full_frame(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    src = write_us_dicom(tmp_path / "us.dcm", rng.integers(0, 255, (60, 80), dtype=np.uint8))
    mask = rng.random((30, 40)) > 0.5
    box = (10, 25, 40, 65)  # (row0, col0, row1, col1) as the loader's meta["us_crop_box"]
    write_dicom_seg(mask, src, tmp_path / "seg.dcm", crop_box=box)
    frame = pydicom.dcmread(tmp_path / "seg.dcm").pixel_array.astype(bool)
    assert frame.shape == (60, 80)
    np.testing.assert_array_equal(frame[10:40, 25:65], mask)
    assert frame.sum() == mask.sum()
    with pytest.raises(ValueError, match="does not fit"):
        full_frame_mask(mask, 60, 80, (40, 50, 70, 90))
    with pytest.raises(ValueError, match="differs"):
        write_dicom_seg(mask, src, tmp_path / "bad.dcm")


def test_dicom_seg_of_a_cine_frame_and_a_bare_header(tmp_path: Path) -> None:
    """A cine loop's SEG holds the segmented frame and references it; a source without patient / study
    attributes (Type 2, often absent in exports) still gets a SEG; caller-chosen UIDs are kept."""
    from pydicom.uid import UltrasoundMultiFrameImageStorage

    from hermes_monai.inference import build_dicom_seg

    frames = np.stack([np.full((30, 40), 40 * k, np.uint8) for k in range(3)])
    # no patient / study tags at all
    src = write_us(tmp_path / "cine.dcm", frames, SOPClassUID=UltrasoundMultiFrameImageStorage)
    mask = np.zeros((30, 40), bool)
    mask[5:20, 10:30] = True
    seg = build_dicom_seg(mask, src, frame_index=2, sop_instance_uid="1.2.3.4", series_instance_uid="1.2.3.5")
    assert (seg.SOPInstanceUID, seg.SeriesInstanceUID, seg.NumberOfFrames) == ("1.2.3.4", "1.2.3.5", 1)
    assert "AI result" in seg.SeriesDescription
    np.testing.assert_array_equal(seg.pixel_array.astype(bool), mask)
    ref = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert ref.ReferencedFrameNumber == 3 and ref.ReferencedSOPClassUID == UltrasoundMultiFrameImageStorage
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert referenced.ReferencedSOPInstanceUID == pydicom.dcmread(src).SOPInstanceUID
    with pytest.raises(ValueError, match="frame index 3 not in range"):
        build_dicom_seg(mask, src, frame_index=3)
    with pytest.raises(ValueError, match="frame index None not in range"):
        build_dicom_seg(mask, src)


def test_post_transforms() -> None:
    p = torch.tensor([[[0.5, 1.0]], [[0.5, 0.0]]])  # (C=2, H=1, W=2): uniform, certain
    ent = SegEntropyd()({"pred": p})["entropy"]
    np.testing.assert_allclose(ent.numpy(), [[[1.0, 0.0]]], atol=1e-5)
    res = ClassResultd(["benign", "malignant"])({"cls_prob": torch.tensor([0.2, 0.8])})["result"]
    assert res["predicted_class"] == "malignant" and res["class_probabilities"]["benign"] == pytest.approx(
        0.2
    )
    from monai.data import MetaTensor

    img = MetaTensor(torch.zeros(1, 2, 3))
    d = ToXYOrderd()({"pred": torch.arange(6).reshape(2, 3), "image": img})
    assert d["pred"].shape == (3, 2) and d["pred"][2, 1] == 5
    assert list(d["image"].meta["spatial_shape"]) == [3, 2]


def test_overlay_outline() -> None:
    m = np.zeros((7, 7), bool)
    m[2:5, 2:5] = True
    outline = mask_outline(m)
    assert outline.sum() == 8 and not outline[3, 3]
    pic = np.array(overlay_image(np.zeros((7, 7)), m, "x"))
    assert pic.shape == (7, 7, 3)
