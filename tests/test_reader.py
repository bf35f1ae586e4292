"""Tests for UltrasoundReader: DICOM as scanners write it (encodings, colour, frames, regions, header),
NIfTI, and its use through MONAI's own LoadImaged / DataLoader."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from dataset_trees import lesion, save, write_us, write_us_jpeg_lossless
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, LoadImaged, SplitDimd
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset as DicomDataset
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless

from hermes_monai.data import LoadUltrasoundd, UltrasoundReader, read_ultrasound

LUMA = np.array([0.299, 0.587, 0.114])


def _testdata(name: str) -> str:
    """A file of pydicom's own test data (real vendor files), or skip when this install lacks it."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not in this pydicom install's test data")
    return str(path)


def _rgb(seed: int) -> np.ndarray:
    img, mask = lesion(seed)
    rgb = np.stack([img, img // 2, 255 - img], axis=-1).astype(np.uint8)
    rgb[mask > 0, 1] = 250
    return rgb


# ------------------------------------------------------------------------------------- encodings
@pytest.mark.parametrize(
    "syntax",
    [None, RLELossless, JPEGLSLossless, JPEG2000Lossless],
    ids=["explicit-le", "rle", "jpeg-ls", "jpeg2000"],
)
@pytest.mark.parametrize("colour", [False, True], ids=["grey", "rgb"])
def test_written_encodings_decode_to_the_written_pixels(
    tmp_path: Path, syntax: str | None, colour: bool
) -> None:
    arr = _rgb(11) if colour else lesion(11)[0]
    kwargs = {"PlanarConfiguration": 0} if colour else {}
    try:
        path = write_us(tmp_path / "x.dcm", arr, transfer_syntax=syntax, **kwargs)
    except (RuntimeError, NotImplementedError) as err:  # an encoder plugin missing from this install
        pytest.skip(f"cannot encode {syntax}: {err}")
    if syntax is not None:
        assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    expected = (arr[..., :3] @ LUMA) / 255 if colour else arr / 255
    np.testing.assert_allclose(read_ultrasound(path), expected, atol=1e-5)


def test_real_files_jpeg_baseline_ybr_and_big_endian_match_their_lossless_twins() -> None:
    reader = UltrasoundReader(modalities=None)
    rle = reader.load(_testdata("SC_rgb_rle.dcm")).array  # RGB, lossless
    # JPEG baseline in YBR_FULL (lossy), uncompressed YBR_FULL_422: same picture after colour conversion
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "SC_ybr_full_422_uncompressed.dcm"):
        assert np.abs(reader.load(_testdata(name)).array - rle).max() < 0.02, name
    for little, big in (
        ("MR_small.dcm", "MR_small_bigendian.dcm"),
        ("SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm"),
    ):
        np.testing.assert_array_equal(reader.load(_testdata(little)).array, reader.load(_testdata(big)).array)
    mr = reader.load(_testdata("MR_small.dcm")).array
    for name in ("MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm"):
        np.testing.assert_array_equal(reader.load(_testdata(name)).array, mr)


def test_vendor_ultrasound_j2k_matches_uncompressed() -> None:
    """pydicom-data's real US files (present when that package's cache is)."""
    reader = UltrasoundReader()
    np.testing.assert_array_equal(
        reader.load(_testdata("US1_J2KR.dcm")).array, reader.load(_testdata("US1_UNCR.dcm")).array
    )


def test_jpeg_lossless_sv1_decodes_to_the_encoded_pixels(tmp_path: Path) -> None:
    img = lesion(12)[0]
    img[0, :6] = [0, 255, 0, 255, 255, 1]  # large jumps: category-8 differences and 0xFF bytes to stuff
    path = write_us_jpeg_lossless(tmp_path / "jl.dcm", img)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    np.testing.assert_allclose(read_ultrasound(path), img / 255, atol=1e-6)


# ------------------------------------------------------------------------------------ photometric
def test_palette_colour_through_its_lut(tmp_path: Path) -> None:
    idx = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ramp = np.arange(256, dtype=np.uint16)
    extra = {
        "RedPaletteColorLookupTableDescriptor": [256, 0, 16],
        "GreenPaletteColorLookupTableDescriptor": [256, 0, 16],
        "BluePaletteColorLookupTableDescriptor": [256, 0, 16],
        "RedPaletteColorLookupTableData": (ramp * 257).astype("<u2").tobytes(),  # red = i / 255
        "GreenPaletteColorLookupTableData": np.zeros(256, "<u2").tobytes(),
        "BluePaletteColorLookupTableData": ((255 - ramp) * 257).astype("<u2").tobytes(),  # blue = 1 - i/255
    }
    path = write_us(tmp_path / "pal.dcm", idx, photometric="PALETTE COLOR", **extra)
    expected = 0.299 * idx / 255 + 0.114 * (255 - idx.astype(float)) / 255
    np.testing.assert_allclose(read_ultrasound(path), expected, atol=1e-6)


def test_real_palette_ultrasound_cropped_to_its_b_mode_region() -> None:
    from pydicom.pixels import apply_color_lut

    path = _testdata("examples_palette.dcm")
    out = UltrasoundReader().load(path)
    ds = pydicom.dcmread(path)
    full = (apply_color_lut(ds.pixel_array, ds) / 65535.0) @ LUMA
    # region 1: 2D tissue, x 120..800, y 60..518, clamped to the image; region 2, a waveform: ignored
    assert out.meta["us_crop_box"] == (60, 120, 350, 800)
    np.testing.assert_allclose(out.array, full[60:350, 120:800], atol=1e-5)
    assert out.meta["pixel_spacing_mm"] == pytest.approx((0.2622878766, 0.2622878766))


# ------------------------------------------------------------------------------------------ frames
def test_cine_frame_policy(tmp_path: Path) -> None:
    frames = np.stack([lesion(20 + k)[0] for k in range(4)])
    path = write_us(tmp_path / "cine.dcm", frames)
    with pytest.raises(ValueError, match=r"cine.dcm: multi-frame DICOM \(4 frames\)"):
        read_ultrasound(path)
    np.testing.assert_allclose(read_ultrasound(path, frame=2), frames[2] / 255, atol=1e-6)
    np.testing.assert_allclose(read_ultrasound(path, frame=-1), frames[3] / 255, atol=1e-6)
    with pytest.raises(ValueError, match="frame 4 out of range for 4 frames"):
        read_ultrasound(path, frame=4)
    # every frame as its own sample, with MONAI's own LoadImaged + SplitDimd
    pipeline = Compose(
        [
            LoadImaged(
                keys="image", reader=UltrasoundReader(frame="all"), ensure_channel_first=True, image_only=True
            ),
            SplitDimd(keys="image", dim=0, keepdim=True, list_output=True),
        ]
    )
    samples = pipeline({"image": str(path)})
    assert len(samples) == 4
    for k, s in enumerate(samples):
        assert s["image"].shape == (1, 40, 48)
        np.testing.assert_allclose(s["image"][0].numpy(), frames[k] / 255, atol=1e-6)


def test_real_ybr_cine_frames_and_region() -> None:
    from pydicom.pixels import pixel_array

    path = _testdata("examples_ybr_color.dcm")  # a vendor US cine: 30 frames, JPEG baseline, YBR_FULL_422
    with pytest.raises(ValueError, match="30 frames"):
        UltrasoundReader().load(path)
    one = UltrasoundReader(frame=5).load(path)
    all_ = UltrasoundReader(frame="all").load(path)
    assert one.meta["us_crop_box"] == all_.meta["us_crop_box"] == (31, 84, 240, 320)
    assert all_.array.shape == (30, 209, 236) and all_.meta["frame_index"] == -1
    np.testing.assert_array_equal(all_.array[5], one.array)
    rgb = pixel_array(pydicom.dcmread(path), index=5)  # pydicom converts YBR -> RGB
    np.testing.assert_allclose(one.array, (rgb @ LUMA / 255)[31:240, 84:320], atol=1e-5)
    assert one.meta["pixel_spacing_mm"] == pytest.approx((0.5104970559, 0.5104970559))


# ---------------------------------------------------------------------------------- regions / meta
def _region(
    x0: int, y0: int, x1: int, y1: int, spatial: int, data_type: int, delta_cm: float
) -> DicomDataset:
    r = DicomDataset()
    r.RegionSpatialFormat, r.RegionDataType, r.RegionFlags = spatial, data_type, 0
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = (
        x0,
        y0,
        x1,
        y1,
    )
    r.PhysicalUnitsXDirection = r.PhysicalUnitsYDirection = 3
    r.PhysicalDeltaX, r.PhysicalDeltaY = delta_cm, delta_cm * 2
    return r


def test_b_mode_crop_meta_mask_alignment_and_collation(tmp_path: Path) -> None:
    img, mask = lesion(30, shape=(60, 80))
    img[:, 70:] = 255  # a colour bar outside the B-mode region
    regions = [_region(70, 0, 79, 59, 0, 0, 0.1), _region(5, 8, 64, 51, 1, 1, 0.01)]
    path = write_us(tmp_path / "scan.dcm", img, SequenceOfUltrasoundRegions=regions, PatientID="SECRET-ID")
    save(tmp_path / "scan_mask.png", mask)  # drawn on the full frame
    out = LoadUltrasoundd()({"image": str(path), "label": str(tmp_path / "scan_mask.png")})
    image, label = out["image"], out["label"]
    assert image.shape == label.shape == (1, 44, 60)  # rows 8..51, cols 5..64 inclusive
    np.testing.assert_allclose(image[0].numpy(), img[8:52, 5:65] / 255, atol=1e-6)
    np.testing.assert_array_equal(label[0].numpy(), (mask[8:52, 5:65] > 0).astype(np.float32))
    assert image.meta["us_crop_box"] == label.meta["us_crop_box"] == (8, 5, 52, 65)
    assert image.meta["pixel_spacing_mm"] == pytest.approx((0.2, 0.1))  # delta Y = 0.02 cm, X = 0.01 cm
    assert image.meta["filename_or_obj"] == str(path)
    dicom = image.meta["dicom"]
    assert dicom["Modality"] == "US" and dicom["PatientID"] == "SECRET-ID"
    assert dicom["SOPInstanceUID"] == pydicom.dcmread(path).SOPInstanceUID
    # a batch of a DICOM and a PNG collates (same metadata keys; the PNG's DICOM fields are empty)
    save(tmp_path / "plain.png", lesion(31, shape=(44, 60))[0])
    loader = DataLoader(
        Dataset(
            [{"image": str(path)}, {"image": str(tmp_path / "plain.png")}], LoadUltrasoundd(keys="image")
        ),
        batch_size=2,
    )
    batch = next(iter(loader))["image"]
    assert batch.shape == (2, 1, 44, 60)
    assert list(batch.meta["dicom"]["Modality"]) == ["US", ""]
    assert math.isnan(float(batch.meta["pixel_spacing_mm"][0][1]))


def test_crop_can_be_switched_off_and_pixel_spacing_fallback(tmp_path: Path) -> None:
    img = lesion(32, shape=(30, 40))[0]
    regions = [_region(2, 3, 20, 25, 1, 1, 0.01)]
    path = write_us(tmp_path / "s.dcm", img, SequenceOfUltrasoundRegions=regions)
    full = UltrasoundReader(crop_to_region=False).load(path)
    assert full.array.shape == (30, 40) and full.meta["us_crop_box"] == (0, 0, 30, 40)
    plain = write_us(tmp_path / "p.dcm", img, PixelSpacing=[0.3, 0.25])
    assert UltrasoundReader().load(plain).meta["pixel_spacing_mm"] == (0.3, 0.25)


def test_monai_load_image_with_the_reader(tmp_path: Path) -> None:
    img = lesion(33)[0]
    save(tmp_path / "a.png", img)
    write_us(tmp_path / "a_noext", img)
    for name in ("a.png", "a_noext"):
        out = LoadImaged(keys="image", reader=UltrasoundReader(), ensure_channel_first=True, image_only=True)(
            {"image": str(tmp_path / name)}
        )["image"]
        assert out.shape == (1, 40, 48) and out.dtype == torch.float32
        np.testing.assert_allclose(out[0].numpy(), img / 255, atol=1e-6)
    assert UltrasoundReader().verify_suffix(str(tmp_path / "a_noext"))
    assert not UltrasoundReader().verify_suffix(str(tmp_path / "notes.txt"))


# ------------------------------------------------------------------------------------------- NIfTI
def test_nifti_image_and_mask_rows_first(tmp_path: Path) -> None:
    img, mask = lesion(34)
    nib.save(nib.Nifti1Image(img.T.astype(np.float32) / 255, np.eye(4)), tmp_path / "i.nii.gz")
    nib.save(nib.Nifti1Image((mask.T > 0).astype(np.uint8)[..., None], np.eye(4)), tmp_path / "m.nii")
    out = LoadUltrasoundd()({"image": str(tmp_path / "i.nii.gz"), "label": str(tmp_path / "m.nii")})
    np.testing.assert_allclose(out["image"][0].numpy(), img / 255, atol=1e-6)
    np.testing.assert_array_equal(out["label"][0].numpy(), (mask > 0).astype(np.float32))
