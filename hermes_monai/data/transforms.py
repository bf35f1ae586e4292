"""Loading ultrasound images / masks as MONAI dictionary data.

:class:`LoadUltrasoundd` is :class:`monai.transforms.LoadImage` with :class:`~hermes_monai.data.reader.
UltrasoundReader` for an image and its mask: each key becomes a channel-first float32
:class:`monai.data.MetaTensor` of shape (1, H, W), rows = the first spatial dim (the array as displayed),
images in [0, 1], masks in {0, 1}; the reader's metadata (``filename_or_obj``, ``us_crop_box``,
``pixel_spacing_mm``, ``dicom``...) rides along. The reader's module docstring lists the formats, the
DICOM handling (modality check, frame policy, ultrasound-region crop) and the errors.

The pipelines themselves (resize, weak-view geometry) are MONAI transforms listed in the bundle's
YAML (``train#preprocessing``, ``validate#preprocessing``), the one place they are defined.

Choices where the spec is silent:

* a mask stored at the size of the *uncropped* DICOM frame (drawn on the scanner's full screen) is
  cropped with its image's ``us_crop_box``, so image and mask stay aligned;
* when loading fails inside a MONAI ``Compose`` / dataset, MONAI reports "applying transform <t>"; this
  transform's text then carries the file and the reason of the failure, so that line names them too.
* Resizing uses bilinear interpolation with anti-aliasing for images (good both for shrinking
  and enlarging, unlike ``area``) and ``nearest-exact`` for masks; rotation pads with zeros,
  which matches the black surround of ultrasound frames.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import EnsureChannelFirst, MapTransform

from hermes_monai.data.reader import UltrasoundReader

__all__ = ["UNKNOWN_CLASS", "EnsureClassd", "LoadUltrasoundd", "read_ultrasound"]


def read_ultrasound(path: str | os.PathLike, mask: bool = False, **reader_kwargs: Any) -> np.ndarray:
    """Read one image or mask file into a 2D float32 array (rows first, as displayed).

    Args:
        path: PNG / JPEG / BMP / TIFF, DICOM (``.dcm`` or no extension) or NIfTI file.
        mask: return a {0, 1} mask (any colour channel > 0) instead of a [0, 1] grey image.
        reader_kwargs: :class:`UltrasoundReader` options (``frame``, ``modalities``, ``crop_to_region``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: ``"cannot read image <path>: <reason>"`` when it cannot be decoded.
    """
    out = UltrasoundReader(mask=mask, **reader_kwargs).load(path).array
    if out.ndim != 2:
        raise ValueError(f"cannot read image {path}: decoded to shape {out.shape}, not one 2D image")
    return out


class LoadUltrasoundd(MapTransform):
    """Load image / mask paths of a data dict into (1, H, W) float32 MetaTensors.

    ``label_key`` is loaded as a {0, 1} mask, every other key in ``keys`` as a [0, 1] image, each with
    ``LoadImage(reader=UltrasoundReader(...), ensure_channel_first=True)``. When both ``image_key`` and
    ``label_key`` are loaded their (H, W) must agree (after cropping a full-frame mask to the image's
    ultrasound region), otherwise a ``ValueError`` names both files and shapes. Other dict entries (e.g.
    ``"class"``) pass through.

    Args:
        keys, allow_missing_keys: as for MONAI map transforms.
        image_key, label_key: which key holds the image and which the mask.
        frame, modalities, crop_to_region: :class:`UltrasoundReader` options. With ``frame="all"`` an
            image becomes (F, H, W), one channel per frame.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        image_key: str = "image",
        label_key: str = "label",
        allow_missing_keys: bool = True,
        frame: int | str | None = None,
        modalities: Sequence[str] | None = ("US",),
        crop_to_region: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.label_key = label_key
        options = {"frame": frame, "modalities": modalities, "crop_to_region": crop_to_region}
        self._readers = {mask: UltrasoundReader(mask=mask, **options) for mask in (False, True)}  # type: ignore[arg-type]
        self._failure = threading.local()

    def __repr__(self) -> str:
        failure = getattr(self._failure, "message", None)
        name = f"LoadUltrasoundd(keys={tuple(self.keys)})"
        return f"{name} failed: {failure}" if failure else name

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        self._failure.message = None
        try:
            return self._call(data)
        except Exception as err:
            self._failure.message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise

    def _read(self, path: str, mask: bool) -> MetaTensor:
        """What ``LoadImage(reader=UltrasoundReader(...), ensure_channel_first=True)`` does, minus its
        catch-all that replaces the reader's error (naming the file and reason) by "cannot find a reader"."""
        reader = self._readers[mask]
        array, meta = reader.get_data(reader.read(path))
        img = MetaTensor.ensure_torch_and_prune_meta(torch.from_numpy(array), meta, simple_keys=True)
        return EnsureChannelFirst()(img)

    def _call(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(
                    f"LoadUltrasoundd expects a file path under key '{key}', got {type(value).__name__}"
                )
            path = os.fspath(value)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"image file not found: {path}")
            d[key] = self._read(path, mask=key == self.label_key)
        img, lab = d.get(self.image_key), d.get(self.label_key)
        if isinstance(img, MetaTensor) and isinstance(lab, MetaTensor) and img.shape[1:] != lab.shape[1:]:
            box = [int(b) for b in img.meta.get("us_crop_box", ())]
            source = tuple(int(s) for s in img.meta.get("source_shape", ()))
            if box and tuple(lab.shape[1:]) == source:
                cropped = lab[:, box[0] : box[2], box[1] : box[3]]
                d[self.label_key] = lab = MetaTensor(cropped.as_tensor().clone(), meta=dict(lab.meta))
                lab.meta["us_crop_box"] = tuple(box)
                lab.meta["spatial_shape"] = np.asarray(lab.shape[1:])
            if img.shape[1:] != lab.shape[1:]:
                raise ValueError(
                    f"mask {lab.meta['filename_or_obj']} has size (H, W) = {tuple(lab.shape[1:])} but its "
                    f"image {img.meta['filename_or_obj']} has size {tuple(img.shape[1:])}"
                )
        return d


#: Class index of a labeled image whose class is unknown (segmentation-only data such as TN3K, or
#: MONAI Label training data): the classification losses and metrics skip it.
UNKNOWN_CLASS = -1


class EnsureClassd(MapTransform):
    """Give every item a ``class`` entry: the item's own, or :data:`UNKNOWN_CLASS` when it has none.

    Batches then collate whether or not a datalist carries classes (segmentation-only datasets, MONAI
    Label's image + mask training data); the trainer's classification loss ignores ``-1`` and the
    evaluation report computes classification metrics over the items with a known class only.
    """

    def __init__(self, key: str = "class", default: int = UNKNOWN_CLASS) -> None:
        super().__init__(keys=[key], allow_missing_keys=True)
        self.key = key
        self.default = int(default)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if d.get(self.key) is None:
            d[self.key] = self.default
        return d
