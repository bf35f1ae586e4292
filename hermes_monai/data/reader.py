"""``UltrasoundReader``: a MONAI :class:`~monai.data.ImageReader` for 2D ultrasound as scanners and datasets
store it (PNG / JPEG / BMP / TIFF, DICOM in every transfer syntax pydicom + pylibjpeg decode, NIfTI).

Use it anywhere MONAI takes a reader: ``LoadImaged(keys="image", reader=UltrasoundReader(),
ensure_channel_first=True)`` gives a (1, H, W) float32 MetaTensor in [0, 1]; ``UltrasoundReader(mask=True)``
gives a {0, 1} mask. :class:`hermes_monai.data.LoadUltrasoundd` is that, for an image and its mask.

Output: rows first (the array as a viewer displays it). Grey images are scaled to [0, 1]; colour is
reduced to luminance (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B, alpha dropped). Masks: any colour
channel > 0 (alpha dropped; lossy JPEG masks: > half the range) is lesion.

DICOM (pydicom 3; the JPEG baseline / extended / lossless, JPEG-LS, JPEG 2000 and RLE decoders come from
pylibjpeg and its plugins):

* pixel data is decoded by pydicom, which converts YBR_FULL / YBR_FULL_422 to RGB; PALETTE COLOR goes
  through its colour LUT; MONOCHROME1 is inverted so that bright = echogenic; the modality LUT /
  rescale then the VOI LUT / window are applied and the result scaled by the range that step defines
  (plain data: the ``BitsStored`` range, so 12-bit data does not look black). Big-endian files read as
  any other.
* **Modality**: an image must be ultrasound (``Modality`` ``US``, or an ultrasound SOP class when the
  tag is absent); ``modalities=None`` reads any, or name those allowed, e.g. ``("US", "OT")``. A DICOM
  SEG or a file without pixel data is refused with that reason.
* **Frames** (cine loops): ``frame=None`` (default) refuses a multi-frame file, naming its frame count -
  which frame a mask belongs to is never guessed; ``frame=k`` reads frame ``k`` of a multi-frame file
  (negative counts from the end; single-frame files are read as they are); ``frame="all"`` returns
  every frame along the first axis, (F, H, W) with ``original_channel_dim = 0``, so
  ``LoadImaged(..., ensure_channel_first=True)`` gives (F, H, W) and ``SplitDimd(keys="image", dim=0,
  keepdim=True)`` makes each frame its own (1, H, W) sample.
* **Ultrasound regions**: when the file has a Sequence of Ultrasound Regions and ``crop_to_region`` is
  true (default), the image is cropped to its 2D tissue (B-mode) region - ``RegionSpatialFormat`` 1 and
  ``RegionDataType`` 1, else any 2D region; the largest when there are several - dropping burned-in
  text, colour bars and Doppler strips.

Metadata (all plain, JSON-able, the same keys for every file so batches collate):

* ``filename_or_obj``; ``spatial_shape`` (H, W) after the crop; ``source_shape`` (H, W) of the stored image;
* ``us_crop_box`` = (row0, col0, row1, col1), end exclusive, in source pixels (the whole image when not
  cropped): ``source[row0:row1, col0:col1]`` is the returned image;
* ``pixel_spacing_mm`` = (row_mm, col_mm) from the region's ``PhysicalDeltaY/X`` (cm -> mm), else
  ``PixelSpacing``, else (nan, nan);
* ``frame_index`` (the frame read; -1 for ``"all"``) and ``num_frames``;
* ``dicom``: a dict of strings - UIDs (SOP class / instance, study, series, frame of reference), patient
  and study identifiers, modality, manufacturer, spacing - for writers downstream (DICOM SEG); empty
  strings for files that are not DICOM. It is never logged: do not pass it to loggers or trackers.

NIfTI (nibabel): a 2D image, or 3D with one slice, or 3D with ``frame`` choosing the slice; array axis 0
is x (columns) and axis 1 is y (rows), as MONAI and ITK write 2D images, so the array is transposed to
rows-first. Float images already in [0, 1] are kept, else divided by their maximum.

Every failure is a ``ValueError`` whose message starts with ``cannot read image <path>: <reason>``
(``FileNotFoundError`` for a missing file). Images holding NaN or infinite values are refused.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader
from PIL import Image, ImageOps

__all__ = ["DICOM_META_TAGS", "Decoded", "UltrasoundReader", "raw_pixels"]

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
NIFTI_SUFFIXES = (".nii", ".nii.gz")
LOSSY_SUFFIXES = frozenset({".jpg", ".jpeg", ".webp"})
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
ULTRASOUND_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.6.1",  # US Image Storage
        "1.2.840.10008.5.1.4.1.1.6",  # US Image Storage (retired)
        "1.2.840.10008.5.1.4.1.1.3.1",  # US Multi-frame Image Storage
        "1.2.840.10008.5.1.4.1.1.3",  # US Multi-frame Image Storage (retired)
    }
)
DICOM_META_TAGS: tuple[str, ...] = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "SeriesNumber",
    "InstanceNumber",
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "Laterality",
    "ImageLaterality",
    "PixelSpacing",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "PhotometricInterpretation",
    "TransferSyntaxUID",
)
_CM = 3  # PhysicalUnitsX/YDirection code for centimetres


class _DecodeError(Exception):
    """Internal: the file exists but cannot be read as asked; becomes ``ValueError`` naming the file."""


@dataclass
class Decoded:
    """A decoded file: ``array`` (H, W) or (F, H, W) float32, and its metadata."""

    array: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def source_shape(self) -> tuple[int, int]:
        return tuple(self.meta.get("source_shape", self.array.shape[-2:]))  # type: ignore[return-value]


# --------------------------------------------------------------------------------------- helpers
def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _is_dicom_file(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _to_grey(arr: np.ndarray, colour: bool) -> np.ndarray:
    """Colour (..., C) -> luminance of the first 3 channels (1-2 channels: the first); grey unchanged."""
    if not colour:
        return arr
    c = arr.shape[-1]
    if c in (1, 2):
        return arr[..., 0]
    return arr[..., :3] @ _LUMA


def _mask_from(arr: np.ndarray, threshold: float, colour: bool) -> np.ndarray:
    """Any colour channel (alpha dropped) above ``threshold``."""
    if colour:
        channels = arr[..., :1] if arr.shape[-1] in (1, 2) else arr[..., :3]
        return (channels > threshold).any(axis=-1)
    return arr > threshold


def _finite(arr: np.ndarray) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise _DecodeError(f"holds {bad} NaN or infinite pixel value(s)")


def _float_scale(arr: np.ndarray) -> float:
    """Divisor for a float image: 1 when already within [0, 1], else its maximum."""
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
    return 1.0 if lo >= 0 and hi <= 1 else max(hi, 1e-12)


def _raster_array(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
            elif img.mode == "1":
                img = img.convert("L")
            return np.asarray(img)
    except Exception as err:  # Pillow raises many types for broken files
        raise _DecodeError(str(err) or type(err).__name__) from err


def _read_raster(path: Path, mask: bool) -> np.ndarray:
    arr = _raster_array(path)
    colour = arr.ndim == 3
    if arr.dtype == np.uint8:
        vmax = 255.0
    elif arr.dtype == np.uint16 or (
        arr.dtype.kind in "iu" and arr.min(initial=0) >= 0 and arr.max(initial=0) <= 65535
    ):
        vmax = 65535.0
    elif arr.dtype.kind in "iu":
        vmax = float(np.iinfo(arr.dtype).max)
    else:
        _finite(arr)
        vmax = _float_scale(arr)
    if mask:
        lossy = path.suffix.lower() in LOSSY_SUFFIXES
        return _mask_from(arr, vmax / 2 if lossy else 0, colour).astype(np.float32)
    grey = _to_grey(np.asarray(arr, dtype=np.float64) / vmax, colour)
    return np.clip(grey, 0.0, 1.0).astype(np.float32)


def _read_nifti(path: Path, mask: bool, frame: int | str | None) -> np.ndarray:
    import nibabel as nib

    try:
        arr = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as err:  # noqa: BLE001 - nibabel raises several types for broken files
        raise _DecodeError(str(err) or type(err).__name__) from err
    arr = arr.reshape(arr.shape[:2] + tuple(s for s in arr.shape[2:] if s != 1))
    if arr.ndim == 3:
        if frame is None:
            raise _DecodeError(f"NIfTI with {arr.shape[2]} slices: choose frame=<index> or frame='all'")
        arr = np.moveaxis(arr, 2, 0) if frame == "all" else arr[..., _frame_index(frame, arr.shape[2])]
    elif arr.ndim != 2:
        raise _DecodeError(f"unsupported NIfTI shape {arr.shape}")
    arr = np.swapaxes(arr, -1, -2)  # (x, y) -> (rows, columns)
    if mask:
        return (arr > 0).astype(np.float32)
    arr = np.asarray(arr, dtype=np.float64)
    _finite(arr)
    lo = min(float(arr.min()), 0.0)
    if lo < 0:
        arr = arr - lo
    return np.clip(arr / _float_scale(arr), 0, 1).astype(np.float32)


def _frame_index(frame: int | str, n: int) -> int:
    if not isinstance(frame, (int, np.integer)) or isinstance(frame, bool):
        raise _DecodeError(f"frame must be an integer index or 'all', got {frame!r}")
    k = int(frame) + (n if frame < 0 else 0)
    if not 0 <= k < n:
        raise _DecodeError(f"frame {frame} out of range for {n} frames")
    return k


# ----------------------------------------------------------------------------------------- DICOM
def _stored_range(ds: Any) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _dicom_to_unit(arr: np.ndarray, ds: Any, photometric: str) -> np.ndarray:
    """Decoded DICOM pixels -> [0, 1] grey (frames, if any, first)."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        vmax = 255.0 if rgb.dtype == np.uint8 else 65535.0
        return np.clip(_to_grey(rgb / vmax, True), 0, 1)
    if not photometric.startswith("MONOCHROME"):  # RGB; YBR is converted to RGB by pydicom
        _finite(arr)
        lo, hi = _stored_range(ds)
        return np.clip(_to_grey((arr - lo) / (hi - lo), True), 0, 1)
    lo, hi = _stored_range(ds)
    if ds.get("ModalityLUTSequence"):
        arr = apply_modality_lut(arr, ds)
        lo, hi = 0.0, 2.0 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
    elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        arr = apply_modality_lut(arr, ds)
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    _finite(np.asarray(arr))
    if arr.dtype.kind == "f" and "RescaleSlope" not in ds and not ds.get("ModalityLUTSequence"):
        lo, hi = float(np.min(arr)), float(np.max(arr))  # float pixel data: its own range
    voi_lut = ds.get("VOILUTSequence")
    if voi_lut and voi_lut[0].get("LUTDescriptor") is not None and voi_lut[0].get("LUTData") is not None:
        arr = apply_voi_lut(arr, ds)
        lo, hi = 0.0, 2.0 ** int(voi_lut[0].LUTDescriptor[2]) - 1
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        arr = apply_voi_lut(arr, ds)  # window output spans the modality range computed above
    grey = np.clip((np.asarray(arr, dtype=np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return 1.0 - grey if photometric == "MONOCHROME1" else grey


def _region_box(
    ds: Any, shape: tuple[int, int]
) -> tuple[tuple[int, int, int, int], tuple[float, float]] | None:
    """(crop box, spacing mm) of the largest 2D tissue region of a Sequence of Ultrasound Regions."""
    regions = ds.get("SequenceOfUltrasoundRegions")
    if not regions:
        return None
    two_d = [r for r in regions if int(r.get("RegionSpatialFormat", 0) or 0) == 1]
    tissue = [r for r in two_d if int(r.get("RegionDataType", 0) or 0) == 1]
    candidates = tissue or two_d
    best, best_area = None, -1
    for r in candidates:
        try:
            c0, r0 = int(r.RegionLocationMinX0), int(r.RegionLocationMinY0)
            c1, r1 = int(r.RegionLocationMaxX1) + 1, int(r.RegionLocationMaxY1) + 1
        except AttributeError:
            continue
        r0, c0 = max(r0, 0), max(c0, 0)
        r1, c1 = min(r1, shape[0]), min(c1, shape[1])
        if r1 <= r0 or c1 <= c0:
            continue
        if (r1 - r0) * (c1 - c0) > best_area:
            best, best_area = (r, (r0, c0, r1, c1)), (r1 - r0) * (c1 - c0)
    if best is None:
        return None
    region, box = best
    spacing = (math.nan, math.nan)
    if (
        int(region.get("PhysicalUnitsXDirection", 0) or 0) == _CM
        and int(region.get("PhysicalUnitsYDirection", 0) or 0) == _CM
    ):
        spacing = (abs(float(region.PhysicalDeltaY)) * 10.0, abs(float(region.PhysicalDeltaX)) * 10.0)
    return box, spacing


def _dicom_meta(ds: Any) -> dict[str, str]:
    out = {}
    for tag in DICOM_META_TAGS:
        value = (
            ds.file_meta.get(tag) if tag == "TransferSyntaxUID" and hasattr(ds, "file_meta") else ds.get(tag)
        )
        value = getattr(value, "value", value)
        if value is None:
            out[tag] = ""
        elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            out[tag] = "\\".join(str(v) for v in value)
        else:
            out[tag] = str(value)
    return out


def _read_dicom(
    path: Path, mask: bool, frame: int | str | None, modalities: tuple[str, ...] | None, crop: bool
) -> Decoded:
    import pydicom
    from pydicom.pixels import pixel_array

    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as err:  # noqa: BLE001 - pydicom raises many types for broken files
        raise _DecodeError(f"not a readable DICOM file ({err or type(err).__name__})") from err
    if not _is_dicom_file(path) and "SOPClassUID" not in ds and "PixelData" not in ds:
        raise _DecodeError("not a DICOM file (no DICM preamble, no image elements)")
    sop = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", "") or "").upper()
    if sop == SEG_SOP_CLASS or modality == "SEG":
        raise _DecodeError("is a DICOM SEG (a segmentation object), not an image")
    if not any(t in ds for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        kind = getattr(ds.get("SOPClassUID"), "name", "") or sop or "unknown SOP class"
        raise _DecodeError(f"DICOM without pixel data ({kind}); not an image")
    if not mask and modalities is not None:
        allowed = {m.upper() for m in modalities}
        ok = modality in allowed if modality else ("US" in allowed and sop in ULTRASOUND_SOP_CLASSES)
        if not ok:
            raise _DecodeError(
                f"Modality '{modality or 'missing'}' is not one of {sorted(allowed)}; this reader expects "
                "ultrasound - set modalities=None (bundle: --dicom_modalities any) to read it anyway"
            )
    n = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    colour = int(ds.get("SamplesPerPixel", 1) or 1) > 1
    try:
        if n > 1 and frame is None:
            raise _DecodeError(
                f"multi-frame DICOM ({n} frames): choose one with frame=<index> (bundle: --dicom_frame k) "
                "or read every frame with frame='all'"
            )
        if n > 1 and frame != "all":
            index = _frame_index(frame, n)  # type: ignore[arg-type]
            arr = pixel_array(ds, index=index)
        else:
            index = -1 if n > 1 else 0
            arr = ds.pixel_array
        if mask:
            out = _mask_from(arr, 0, colour and photometric != "PALETTE COLOR").astype(np.float32)
        else:
            out = _dicom_to_unit(arr, ds, photometric).astype(np.float32)
    except _DecodeError:
        raise
    except Exception as err:  # noqa: BLE001 - decoders raise many types for broken / truncated data
        raise _DecodeError(str(err) or type(err).__name__) from err
    if n > 1 and frame == "all" and out.ndim == 2:
        out = out[None]
    source = tuple(int(s) for s in out.shape[-2:])
    box, spacing = (0, 0, source[0], source[1]), (math.nan, math.nan)
    region = _region_box(ds, source) if crop else None  # type: ignore[arg-type]
    if region is not None:
        box, spacing = region
        out = out[..., box[0] : box[2], box[1] : box[3]]
    if math.isnan(spacing[0]) and ds.get("PixelSpacing") is not None and len(ds.PixelSpacing) == 2:
        spacing = (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
    meta = _base_meta(out, source, box, spacing, index, n)
    meta["dicom"] = _dicom_meta(ds)
    return Decoded(np.ascontiguousarray(out), meta)


def _base_meta(
    out: np.ndarray,
    source: tuple[int, ...],
    box: tuple[int, int, int, int],
    spacing: tuple[float, float],
    frame_index: int,
    num_frames: int,
) -> dict[str, Any]:
    return {
        "spatial_shape": np.asarray(out.shape[-2:]),
        "original_channel_dim": 0 if out.ndim == 3 else "no_channel",
        "source_shape": tuple(int(s) for s in source),
        "us_crop_box": tuple(int(b) for b in box),
        "pixel_spacing_mm": tuple(float(s) for s in spacing),
        "frame_index": int(frame_index),
        "num_frames": int(num_frames),
        "dicom": dict.fromkeys(DICOM_META_TAGS, ""),
    }


def raw_pixels(path: str | os.PathLike) -> np.ndarray:
    """The stored pixel values of a file, colour channels kept and alpha dropped (for mask checks)."""
    p = Path(path)
    if _suffix(p) in NIFTI_SUFFIXES:
        import nibabel as nib

        return np.asanyarray(nib.load(str(p)).dataobj)
    if _suffix(p) in DICOM_SUFFIXES or (_suffix(p) not in RASTER_SUFFIXES and _is_dicom_file(p)):
        import pydicom

        ds = pydicom.dcmread(p, force=True)
        arr = ds.pixel_array
        return arr[..., :3] if int(ds.get("SamplesPerPixel", 1) or 1) > 1 else arr
    arr = _raster_array(p)
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):
        arr = arr[..., :-1]
    return arr


# ---------------------------------------------------------------------------------------- reader
def _modalities(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """Accepted modalities: None, "any", "null" or "none" = any; "US,OT" or a list = those."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() in ("any", "null", "none", ""):
            return None
        value = value.split(",")
    return tuple(str(v).strip().upper() for v in value)


class UltrasoundReader(ImageReader):
    """MONAI image reader for 2D ultrasound images and masks (see the module docstring).

    Args:
        mask: read {0, 1} masks instead of [0, 1] grey images.
        frame: multi-frame policy: None refuses cine files, an int reads that frame, ``"all"`` reads every
            frame along the first axis.
        modalities: DICOM modalities accepted for images (default ``("US",)``); None (or ``"any"``) accepts
            any; a comma-separated string such as ``"US,OT"`` is accepted too (bundle command lines).
        crop_to_region: crop DICOM images to their ultrasound B-mode region when they declare one.
    """

    def __init__(
        self,
        mask: bool = False,
        frame: int | str | None = None,
        modalities: Sequence[str] | None = ("US",),
        crop_to_region: bool = True,
    ) -> None:
        super().__init__()
        if frame is not None and frame != "all" and (not isinstance(frame, int) or isinstance(frame, bool)):
            raise ValueError(f"frame must be None, an integer index or 'all', got {frame!r}")
        self.mask = mask
        self.frame = frame
        self.modalities = _modalities(modalities)
        self.crop_to_region = crop_to_region

    def verify_suffix(self, filename: Sequence[os.PathLike | str] | os.PathLike | str) -> bool:
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        for name in names:
            p = Path(name)
            sfx = _suffix(p)
            if sfx in RASTER_SUFFIXES or sfx in DICOM_SUFFIXES or sfx in NIFTI_SUFFIXES:
                continue
            if not (p.is_file() and _is_dicom_file(p)):
                return False
        return True

    def load(self, path: str | os.PathLike, mask: bool | None = None) -> Decoded:
        """Decode one file (``mask`` overrides the reader's own setting)."""
        p = Path(path)
        mask = self.mask if mask is None else mask
        if not p.is_file():
            raise FileNotFoundError(f"image file not found: {p}")
        sfx = _suffix(p)
        try:
            if sfx in NIFTI_SUFFIXES:
                arr = _read_nifti(p, mask, self.frame)
                out = Decoded(
                    arr,
                    _base_meta(
                        arr,
                        arr.shape[-2:],
                        (0, 0, *arr.shape[-2:]),
                        (math.nan,) * 2,
                        -1 if arr.ndim == 3 else 0,
                        arr.shape[0] if arr.ndim == 3 else 1,
                    ),
                )
            elif sfx in DICOM_SUFFIXES or (sfx not in RASTER_SUFFIXES and _is_dicom_file(p)):
                out = _read_dicom(p, mask, self.frame, self.modalities, self.crop_to_region)
            else:
                arr = _read_raster(p, mask)
                if arr.ndim != 2:
                    raise _DecodeError(f"decoded to unsupported shape {arr.shape}")
                out = Decoded(arr, _base_meta(arr, arr.shape, (0, 0, *arr.shape), (math.nan,) * 2, 0, 1))
        except _DecodeError as err:
            raise ValueError(f"cannot read image {p}: {err}") from None
        if min(out.array.shape) == 0:
            raise ValueError(f"cannot read image {p}: decoded to an empty array {out.array.shape}")
        out.meta["filename_or_obj"] = os.fspath(p)
        return out

    def read(self, data: Sequence[os.PathLike | str] | os.PathLike | str, **kwargs: Any) -> Decoded:
        names = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        if len(names) != 1:
            raise ValueError(f"UltrasoundReader reads one 2D file at a time, got {len(names)}: {names}")
        return self.load(names[0])

    def get_data(self, img: Decoded) -> tuple[np.ndarray, dict]:
        return img.array, dict(img.meta)
