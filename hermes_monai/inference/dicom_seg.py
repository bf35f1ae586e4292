"""DICOM SEG output for DICOM input: the lesion mask as a binary Segmentation instance (highdicom).

:func:`write_dicom_seg` reads the source file's header (``pydicom.dcmread(..., stop_before_pixels=True)``)
and writes a Segmentation that references the source study, series and instance, carries this
package's algorithm identification (name ``hermes-monai``, its version, family "Artificial
Intelligence") and one segment, "lesion" (SNOMED CT 52988006 "Lesion", category 49755003
"Morphologically abnormal structure"). Its frame equals the mask written as PNG (``mask > 0``).

When the loader cropped the source to its ultrasound region it records the box in the image meta
(``meta["us_crop_box"] = (row0, col0, row1, col1)``, source pixels, end exclusive); the mask is then
placed at that box inside a zero frame of the source's full ``Rows`` × ``Columns``, as a SEG must
match its source image's pixel grid.

:func:`build_dicom_seg` returns the Segmentation dataset without writing it (the PACS runner sends it);
callers may fix its SOP Instance and Series UIDs. A multi-frame source (a cine loop read with
``dicom_frame`` k) gets a one-frame SEG of frame k: highdicom builds SEGs of multi-frame sources only
when they have a Frame of Reference, which ultrasound loops usually lack, so the SEG is built against a
single-frame view of the header and its source references are then pointed at the original SOP class
and at frame k + 1 (``ReferencedFrameNumber``). Type 2 patient / study attributes that the source omits
are given empty values first (highdicom requires them present; empty is what DICOM allows).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from hermes_monai.io.atomic import atomic_path

__all__ = [
    "ALGORITHM_NAME",
    "SEG_SERIES_DESCRIPTION",
    "algorithm_version",
    "build_dicom_seg",
    "full_frame_mask",
    "source_header",
    "write_dicom_seg",
]

#: SOP Class UID of (binary / fractional) Segmentation Storage.
SEGMENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def full_frame_mask(
    mask: np.ndarray, rows: int, cols: int, crop_box: Sequence[int] | None = None
) -> np.ndarray:
    """Place ``mask`` (h, w) into a (rows, cols) zero frame at ``crop_box`` (row0, col0, row1, col1).

    Without a box the mask must already be (rows, cols). A box whose size differs from the mask or
    that leaves the frame raises ``ValueError``.
    """
    mask = np.asarray(mask)
    if crop_box is None:
        if mask.shape != (rows, cols):
            raise ValueError(f"mask shape {mask.shape} differs from the DICOM frame ({rows}, {cols}).")
        return mask
    r0, c0, r1, c1 = (int(v) for v in crop_box)
    if (r1 - r0, c1 - c0) != mask.shape or r0 < 0 or c0 < 0 or r1 > rows or c1 > cols:
        raise ValueError(
            f"crop box {tuple(crop_box)} does not fit mask {mask.shape} in frame ({rows}, {cols})."
        )
    frame = np.zeros((rows, cols), dtype=mask.dtype)
    frame[r0:r1, c0:c1] = mask
    return frame


#: Algorithm name carried by every result this package writes (SEG, SR).
ALGORITHM_NAME = "hermes-monai"
#: Series description of the SEGs: says that they are AI results.
SEG_SERIES_DESCRIPTION = "AI result: Hermes lesion segmentation"
_SINGLE_FRAME_US = "1.2.840.10008.5.1.4.1.1.6.1"
_TYPE2_DEFAULTS = {
    "PatientName": "",
    "PatientID": "",
    "PatientBirthDate": "",
    "PatientSex": "",
    "StudyDate": "",
    "StudyTime": "",
    "StudyID": "",
    "AccessionNumber": "",
    "ReferringPhysicianName": "",
}


def algorithm_version() -> str:
    """This package's version, as results carry it."""
    import hermes_monai

    return str(getattr(hermes_monai, "__version__", "0"))


def source_header(source: str | os.PathLike | Any) -> Any:
    """The source's header (a path is read without pixels) with empty Type 2 patient / study attributes
    added where missing; a dataset given is copied, never changed."""
    import copy

    import pydicom

    if isinstance(source, (str, os.PathLike)):
        ds = pydicom.dcmread(os.fspath(source), stop_before_pixels=True)
    else:
        ds = copy.deepcopy(source)
        for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            if keyword in ds:
                delattr(ds, keyword)
    for keyword, value in _TYPE2_DEFAULTS.items():
        if keyword not in ds:
            setattr(ds, keyword, value)
    return ds


def build_dicom_seg(
    mask: np.ndarray,
    source: str | os.PathLike | Any,
    crop_box: Sequence[int] | None = None,
    frame_index: int | None = None,
    version: str | None = None,
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    series_description: str = SEG_SERIES_DESCRIPTION,
) -> Any:
    """The DICOM SEG (``highdicom.seg.Segmentation``) of ``mask`` for ``source`` (a path or dataset).

    Args:
        mask: (h, w), lesion where > 0, at the loader's output size (the crop box's size when cropped).
        source: the source DICOM file or its dataset.
        crop_box: the loader's ``us_crop_box`` (row0, col0, row1, col1), or ``None``.
        frame_index: the frame the mask belongs to (0-based) for a multi-frame source.
        version: algorithm version (default: this package's).
        sop_instance_uid, series_instance_uid: UIDs to use (default: new random ones).
        series_description: the SEG's series description.

    Raises:
        ValueError: a multi-frame source without ``frame_index`` (or one out of range), or a mask that
            does not fit the source frame.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    src = source_header(source)
    frames = int(getattr(src, "NumberOfFrames", 1) or 1)
    original_class = str(src.SOPClassUID)
    if frames != 1:
        if frame_index is None or not 0 <= int(frame_index) < frames:
            raise ValueError(f"multi-frame DICOM ({frames} frames): frame index {frame_index} not in range")
        # highdicom: one frame of a source without Frame of Reference; references fixed below
        del src.NumberOfFrames
        src.SOPClassUID = _SINGLE_FRAME_US
    frame = full_frame_mask(np.asarray(mask) > 0, int(src.Rows), int(src.Columns), crop_box)
    version = version or algorithm_version()
    algorithm = hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME, version=version, family=codes.cid7162.ArtificialIntelligence
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion",
        segmented_property_category=hd.sr.CodedConcept(
            "49755003", "SCT", "Morphologically abnormal structure"
        ),
        segmented_property_type=hd.sr.CodedConcept("52988006", "SCT", "Lesion"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=[src],
        pixel_array=frame[None].astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=int(getattr(src, "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=1,
        manufacturer=ALGORITHM_NAME,
        manufacturer_model_name="Hermes lesion segmentation",
        software_versions=version,
        device_serial_number="none",
        series_description=series_description,
        omit_empty_frames=False,
    )
    if frames != 1:
        _point_at_source_frame(seg, original_class, int(frame_index) + 1)  # type: ignore[arg-type]
    return seg


def _point_at_source_frame(seg: Any, sop_class: str, frame_number: int) -> None:
    """Reference the original (multi-frame) SOP class and ``frame_number`` of the source in ``seg``."""
    for series in seg.ReferencedSeriesSequence:
        for item in series.ReferencedInstanceSequence:
            item.ReferencedSOPClassUID = sop_class
    for group in seg.PerFrameFunctionalGroupsSequence:
        for derivation in group.get("DerivationImageSequence", []):
            for item in derivation.SourceImageSequence:
                item.ReferencedSOPClassUID = sop_class
                item.ReferencedFrameNumber = frame_number


def write_dicom_seg(
    mask: np.ndarray,
    source_path: str | os.PathLike,
    out_path: str | os.PathLike,
    crop_box: Sequence[int] | None = None,
    algorithm_version: str | None = None,
    frame_index: int | None = None,
) -> None:
    """Write ``mask`` (h, w; lesion where > 0) as a DICOM SEG for the DICOM file ``source_path``
    (:func:`build_dicom_seg` with new UIDs).

    Raises:
        ValueError: a multi-frame source without ``frame_index``, or a mask that does not fit its frame.
    """
    seg = build_dicom_seg(mask, source_path, crop_box, frame_index, algorithm_version)
    with atomic_path(out_path) as tmp:
        seg.save_as(tmp)
