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
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from hermes_monai.io.atomic import atomic_path

__all__ = ["full_frame_mask", "write_dicom_seg"]

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


def write_dicom_seg(
    mask: np.ndarray,
    source_path: str | os.PathLike,
    out_path: str | os.PathLike,
    crop_box: Sequence[int] | None = None,
    algorithm_version: str | None = None,
) -> None:
    """Write ``mask`` (h, w; lesion where > 0) as a DICOM SEG for the DICOM file ``source_path``.

    Raises:
        ValueError: the source is not a single-frame image DICOM, or the mask does not fit its frame.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    import hermes_monai

    src = pydicom.dcmread(os.fspath(source_path), stop_before_pixels=True)
    if int(getattr(src, "NumberOfFrames", 1) or 1) != 1:
        raise ValueError(f"{source_path}: multi-frame DICOM is not supported.")
    frame = full_frame_mask(np.asarray(mask) > 0, int(src.Rows), int(src.Columns), crop_box)
    version = algorithm_version or getattr(hermes_monai, "__version__", "0")
    algorithm = hd.AlgorithmIdentificationSequence(
        name="hermes-monai", version=version, family=codes.cid7162.ArtificialIntelligence
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
        series_instance_uid=generate_uid(),
        series_number=int(getattr(src, "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="hermes-monai",
        manufacturer_model_name="Hermes lesion segmentation",
        software_versions=version,
        device_serial_number="none",
        series_description="Hermes lesion mask",
        omit_empty_frames=False,
    )
    with atomic_path(out_path) as tmp:
        seg.save_as(tmp)
