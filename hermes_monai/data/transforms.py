"""Loading ultrasound images / masks as MONAI dictionary data.

:class:`LoadUltrasoundd` reads PNG / JPEG / BMP / TIFF (Pillow) and DICOM (pydicom) into a
channel-first float32 :class:`monai.data.MetaTensor` of shape (1, H, W), rows = the first
spatial dim (the array as displayed), with ``meta["filename_or_obj"]`` set so later handlers can
name the file. Images are scaled to [0, 1]; masks become {0, 1}.

The pipelines themselves (resize, weak-view geometry) are MONAI transforms listed in the bundle's
YAML (``train#preprocessing``, ``validate#preprocessing``), the one place they are defined.

Choices where the spec is silent:

* Raster images: EXIF orientation is applied (so the array is what a viewer displays); palette,
  CMYK and YCbCr images are converted to RGB first; RGB(A) -> grey by ITU-R BT.601 luminance
  (0.299 R + 0.587 G + 0.114 B, alpha dropped). Scaling by the dtype maximum (uint8 / 255,
  uint16 / 65535); 32-bit integer images whose values fit in 16 bits (old Pillow 16-bit PNGs)
  are scaled as 16-bit; float images are clipped to [0, 1] when already in range, else divided
  by their maximum.
* DICOM: the modality LUT / rescale is applied when present, then the VOI LUT or window
  (``pydicom.pixels.apply_voi_lut``); the result is scaled by the output range that step defines
  (for plain data: the ``BitsStored`` range, which equals the dtype maximum for 8- and 16-bit
  data and keeps 12-bit data from looking black). MONOCHROME1 is inverted so that bright =
  echogenic; PALETTE COLOR goes through its colour LUT; colour data -> luminance. Multi-frame
  DICOM (cine loops) is rejected with a ``ValueError``: which frame the mask belongs to is
  ambiguous, so the user must export it.
* Masks: alpha is dropped before "any channel > 0" (an opaque-black RGBA background would
  otherwise become all lesion); lossy JPEG masks use "> half the range" because compression
  ringing makes the background non-zero.
* A missing file raises ``FileNotFoundError`` (naming it); a file that exists but cannot be
  decoded raises ``ValueError("cannot read image <path>: <reason>")``.
* Resizing uses bilinear interpolation with anti-aliasing for images (good both for shrinking
  and enlarging, unlike ``area``) and ``nearest-exact`` for masks; rotation pads with zeros,
  which matches the black surround of ultrasound frames.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from PIL import Image, ImageOps

__all__ = ["LoadUltrasoundd", "read_ultrasound"]

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
LOSSY_SUFFIXES = frozenset({".jpg", ".jpeg", ".webp"})
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


class _DecodeError(Exception):
    """Internal: the file exists but could not be decoded; converted to ValueError by the caller."""


def _to_grey(arr: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) float -> (H, W): luminance of the first 3 channels; 2 channels = grey + alpha."""
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3:
        raise _DecodeError(f"unsupported array shape {arr.shape}")
    c = arr.shape[-1]
    if c in (1, 2):
        return arr[..., 0]
    return arr[..., :3] @ _LUMA


def _mask_from(arr: np.ndarray, threshold: float) -> np.ndarray:
    """(H, W[, C]) -> bool (H, W): any colour channel (alpha dropped) above ``threshold``."""
    if arr.ndim == 3:
        colour = arr[..., :1] if arr.shape[-1] in (1, 2) else arr[..., :3]
        return (colour > threshold).any(axis=-1)
    return arr > threshold


def _read_raster(path: Path, mask: bool) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGBA" if img.mode == "PA" else "RGB")
            elif img.mode == "1":
                img = img.convert("L")
            arr = np.asarray(img)
    except Exception as err:  # Pillow raises many types for broken files
        raise _DecodeError(str(err) or type(err).__name__) from err
    if arr.dtype == np.uint8:
        vmax = 255.0
    elif arr.dtype == np.uint16 or (
        arr.dtype.kind in "iu" and arr.min(initial=0) >= 0 and arr.max(initial=0) <= 65535
    ):
        vmax = 65535.0
    elif arr.dtype.kind in "iu":
        vmax = float(np.iinfo(arr.dtype).max)
    else:
        vmax = max(1.0, float(np.nanmax(arr)) if arr.size else 1.0)
    if mask:
        lossy = path.suffix.lower() in LOSSY_SUFFIXES
        return _mask_from(arr, vmax / 2 if lossy else 0).astype(np.float32)
    grey = _to_grey(np.asarray(arr, dtype=np.float64) / vmax)
    return np.clip(grey, 0.0, 1.0).astype(np.float32)


def _stored_range(ds: Any) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _read_dicom(path: Path, mask: bool) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path, force=True)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise _DecodeError(
                f"multi-frame DICOM ({frames} frames) is not supported; export the annotated frame"
            )
        arr = ds.pixel_array
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        if mask:
            return _mask_from(arr, 0).astype(np.float32)
        if photometric == "PALETTE COLOR":
            rgb = apply_color_lut(arr, ds)
            vmax = 255.0 if rgb.dtype == np.uint8 else 65535.0
            return np.clip(_to_grey(rgb / vmax), 0, 1).astype(np.float32)
        if not photometric.startswith("MONOCHROME"):
            lo, hi = _stored_range(ds)  # colour (RGB; YBR is converted to RGB by pydicom)
            return np.clip(_to_grey((arr - lo) / (hi - lo)), 0, 1).astype(np.float32)

        lo, hi = _stored_range(ds)
        if ds.get("ModalityLUTSequence"):
            arr = apply_modality_lut(arr, ds)
            lo, hi = 0.0, 2.0 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
        elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
            slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
            arr = apply_modality_lut(arr, ds)
            lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
        voi_lut = ds.get("VOILUTSequence")
        if voi_lut and voi_lut[0].get("LUTDescriptor") is not None and voi_lut[0].get("LUTData") is not None:
            arr = apply_voi_lut(arr, ds)
            lo, hi = 0.0, 2.0 ** int(voi_lut[0].LUTDescriptor[2]) - 1
        elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
            arr = apply_voi_lut(arr, ds)  # window output spans the modality range computed above
        grey = np.clip((np.asarray(arr, dtype=np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
        if photometric == "MONOCHROME1":
            grey = 1.0 - grey
        return _to_grey(grey).astype(np.float32)
    except _DecodeError:
        raise
    except Exception as err:  # pydicom raises many types for broken / pixel-less files
        raise _DecodeError(str(err) or type(err).__name__) from err


def _is_dicom_file(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def read_ultrasound(path: str | os.PathLike, mask: bool = False) -> np.ndarray:
    """Read one image or mask file into a 2D float32 array.

    Args:
        path: PNG / JPEG / BMP / TIFF file, or DICOM (``.dcm`` or no extension).
        mask: return a {0, 1} mask (any colour channel > 0) instead of a [0, 1] grey image.

    Returns:
        float32 array of shape (H, W), rows first as displayed.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: ``"cannot read image <path>: <reason>"`` when it cannot be decoded.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix in DICOM_SUFFIXES or (suffix not in RASTER_SUFFIXES and _is_dicom_file(p)):
            out = _read_dicom(p, mask)
        else:
            out = _read_raster(p, mask)
    except _DecodeError as err:
        raise ValueError(f"cannot read image {p}: {err}") from None
    if out.ndim != 2 or min(out.shape) == 0:
        raise ValueError(f"cannot read image {p}: decoded to unsupported shape {out.shape}")
    return out


class LoadUltrasoundd(MapTransform):
    """Load image / mask paths of a data dict into (1, H, W) float32 MetaTensors.

    ``label_key`` is loaded as a {0, 1} mask, every other key in ``keys`` as a [0, 1] image.
    When both ``image_key`` and ``label_key`` are loaded their (H, W) must agree, otherwise a
    ``ValueError`` names both files and shapes. Other dict entries (e.g. ``"class"``) pass through.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        image_key: str = "image",
        label_key: str = "label",
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.label_key = label_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(
                    f"LoadUltrasoundd expects a file path under key '{key}', got {type(value).__name__}"
                )
            arr = read_ultrasound(value, mask=key == self.label_key)
            meta = {
                "filename_or_obj": os.fspath(value),
                "spatial_shape": np.asarray(arr.shape),
                "original_channel_dim": "no_channel",
            }
            d[key] = MetaTensor(torch.from_numpy(arr)[None], meta=meta)
        img, lab = d.get(self.image_key), d.get(self.label_key)
        if isinstance(img, MetaTensor) and isinstance(lab, MetaTensor) and img.shape[1:] != lab.shape[1:]:
            raise ValueError(
                f"mask {lab.meta['filename_or_obj']} has size (H, W) = {tuple(lab.shape[1:])} but its image "
                f"{img.meta['filename_or_obj']} has size {tuple(img.shape[1:])}"
            )
        return d
