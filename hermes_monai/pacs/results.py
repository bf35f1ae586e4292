"""The results the PACS runner stores for one source instance: a DICOM SEG and a TID 1500 SR (highdicom).

**UIDs are deterministic** (:func:`result_uids`): SOP Instance UIDs from (source SOP Instance UID, model
id, kind) and Series Instance UIDs from (source series, model id, kind), hashed by pydicom's
``generate_uid(entropy_srcs=...)``. The model id names the package version and the checkpoint's
content (:func:`~hermes_monai.pacs.predict.model_id`). Storing the results of an instance twice (after
a kill between the store and the state file's write) therefore sends the same UIDs again, which a PACS
keeps as one instance (Orthanc by default ignores the second copy, or replaces it when configured to
overwrite) - never a duplicate. A new model gives new UIDs, i.e. new results next to the old ones.

- SEG: :func:`hermes_monai.inference.dicom_seg.build_dicom_seg` (the mask in the source's full frame,
  ultrasound-region crop undone, the chosen frame of a cine loop), series description
  :data:`~hermes_monai.inference.dicom_seg.SEG_SERIES_DESCRIPTION`.
- SR (Comprehensive 3D SR, TID 1500 measurement report): one planar ROI group ("lesion 1") whose region
  is the SEG's segment, with algorithm name and version; measurements: the probability of each class
  (unit UCUM ``1``) and, when the source gives a pixel spacing, the lesion area in mm² (SNOMED CT
  42798000 "Area"); qualitative evaluation: the predicted class. Class and probability concepts have no
  standard codes, so they use this package's private coding scheme ``99HERMES``. Evidence: the source
  instance and the SEG, so the SR references the source study and instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hermes_monai.inference.dicom_seg import ALGORITHM_NAME, build_dicom_seg

__all__ = [
    "SCHEME",
    "SR_SERIES_DESCRIPTION",
    "ResultUids",
    "build_results",
    "build_sr",
    "read_sr",
    "result_uids",
]

#: Coding scheme designator of this package's own concepts (classes, probabilities).
SCHEME = "99HERMES"
SR_SERIES_DESCRIPTION = "AI result: Hermes lesion classification report"
_PREDICTED_CLASS = ("predicted-class", "Predicted lesion class")


@dataclass(frozen=True)
class ResultUids:
    seg_sop: str
    seg_series: str
    sr_sop: str
    sr_series: str
    tracking: str


def result_uids(source_sop: str, source_series: str, model: str) -> ResultUids:
    """The deterministic UIDs of one source instance's results (see the module docstring)."""
    from pydicom.uid import generate_uid

    def uid(*parts: str) -> str:
        return str(generate_uid(entropy_srcs=[ALGORITHM_NAME, model, *parts]))

    return ResultUids(
        seg_sop=uid("seg", source_sop),
        seg_series=uid("seg-series", source_series),
        sr_sop=uid("sr", source_sop),
        sr_series=uid("sr-series", source_series),
        tracking=uid("lesion-1", source_sop),
    )


def _code(value: str, meaning: str) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(value[:16], SCHEME, meaning)


def _probability_name(class_name: str) -> Any:
    return _code(f"p-{class_name}", f"Probability of {class_name}")


def _segment_reference(source: Any, seg: Any) -> Any:
    """Frame 1, segment 1 of ``seg``, whose source is ``source`` (the SEG's own source frame, if any)."""
    import highdicom as hd

    derivation = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    frame = derivation.get("ReferencedFrameNumber")
    return hd.sr.ReferencedSegmentationFrame(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        frame_number=1,
        segment_number=1,
        source_image=hd.sr.SourceImageForSegmentation(
            str(source.SOPClassUID), str(source.SOPInstanceUID), [int(frame)] if frame else None
        ),
    )


def build_sr(
    source: Any,
    seg: Any,
    probabilities: Mapping[str, float],
    lesion_area_mm2: float | None,
    uids: ResultUids,
    version: str,
) -> Any:
    """The TID 1500 report (``highdicom.sr.Comprehensive3DSR``) of one source instance."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=version)
    predicted = max(probabilities, key=lambda k: probabilities[k])
    unity = hd.sr.CodedConcept("1", "UCUM", "no units")
    measurements = [
        hd.sr.Measurement(name=_probability_name(n), value=float(p), unit=unity, algorithm_id=algorithm)
        for n, p in probabilities.items()
    ]
    if lesion_area_mm2 is not None:
        measurements.append(
            hd.sr.Measurement(
                name=codes.SCT.Area,
                value=float(lesion_area_mm2),
                unit=codes.UCUM.SquareMillimeter,
                algorithm_id=algorithm,
            )
        )
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uids.tracking, identifier="lesion 1"),
        referenced_segment=_segment_reference(source, seg),
        finding_type=codes.SCT.Lesion,
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=_code(*_PREDICTED_CLASS), value=_code(predicted, predicted))
        ],
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=uids.sr_series, name=ALGORITHM_NAME, model_name=f"Hermes {version}"
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=hd.sr.CodedConcept("US", "DCM", "Ultrasound"),
        imaging_measurements=[group],
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[source, seg],
        content=report[0],
        series_instance_uid=uids.sr_series,
        series_number=int(getattr(source, "SeriesNumber", 0) or 0) + 2000,
        sop_instance_uid=uids.sr_sop,
        instance_number=1,
        manufacturer=ALGORITHM_NAME,
        is_complete=True,
        series_description=SR_SERIES_DESCRIPTION,
        software_versions=version,
    )


def build_results(
    source: Any,
    mask: np.ndarray,
    record: Mapping[str, Any],
    class_names: Sequence[str],
    model: str,
    version: str,
) -> tuple[Any, Any]:
    """``(seg, sr)`` for the source dataset from the inference mask and case record (its JSON).

    The record gives the probabilities (``class_probabilities``), the loader's ``us_crop_box``,
    ``frame_index`` and ``pixel_spacing_mm`` (row, col mm; area = lesion pixels × row mm × col mm).
    """
    from hermes_monai.inference.dicom_seg import source_header

    header = source_header(source)
    uids = result_uids(str(header.SOPInstanceUID), str(header.SeriesInstanceUID), model)
    seg = build_dicom_seg(
        mask,
        header,
        crop_box=record.get("us_crop_box"),
        frame_index=record.get("frame_index"),
        version=version,
        sop_instance_uid=uids.seg_sop,
        series_instance_uid=uids.seg_series,
    )
    probs = {n: float(record["class_probabilities"][n]) for n in class_names}
    spacing = record.get("pixel_spacing_mm")
    area = None if not spacing else float(np.count_nonzero(mask)) * float(spacing[0]) * float(spacing[1])
    sr = build_sr(header, seg, probs, area, uids, version)
    return seg, sr


def read_sr(sr: Any) -> dict[str, Any]:
    """``{"predicted_class", "probabilities": {class: p}, "area_mm2" (or None), "algorithm"}`` of an SR
    written by :func:`build_sr` (a pydicom dataset or a path)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    report = (
        hd.sr.srread(sr) if not hasattr(sr, "ContentSequence") else hd.sr.Comprehensive3DSR.from_dataset(sr)
    )
    group = report.content.get_planar_roi_measurement_groups()[0]
    probs, area = {}, None
    for m in group.get_measurements():
        name = m.name
        if name.scheme_designator == SCHEME and name.value.startswith("p-"):
            probs[name.meaning.removeprefix("Probability of ")] = float(m.value)
        elif name == codes.SCT.Area:
            area = float(m.value)
    evaluation = group.get_qualitative_evaluations()[0]
    return {
        "predicted_class": evaluation.value.meaning,
        "probabilities": probs,
        "area_mm2": area,
        "algorithm": (_first_text(report, "111001"), _first_text(report, "111003")),
    }


def _first_text(ds: Any, code: str) -> str | None:
    """The first TEXT content item with concept name DCM ``code`` (111001 Algorithm Name, 111003 Version)."""
    for item in ds.get("ContentSequence", []):
        names = item.get("ConceptNameCodeSequence", [])
        if names and names[0].CodeValue == code and "TextValue" in item:
            return str(item.TextValue)
        found = _first_text(item, code)
        if found is not None:
            return found
    return None
