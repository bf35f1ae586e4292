"""Inference on new images: input screening, the two-headed inferer, post-processing and writers.

Used by ``bundle/configs/inference.yaml``; see the model card's "Predict on your images".
"""

from hermes_monai.inference.cases import FailureLog, find_cases, screen_file
from hermes_monai.inference.dicom_seg import build_dicom_seg, full_frame_mask, write_dicom_seg
from hermes_monai.inference.inferer import HermesInferer, predict_all
from hermes_monai.inference.overlay import overlay_image, write_overlay
from hermes_monai.inference.transforms import ClassResultd, SegEntropyd, ToXYOrderd
from hermes_monai.inference.writer import PredictionWriter, png_saver

__all__ = [
    "ClassResultd",
    "FailureLog",
    "HermesInferer",
    "PredictionWriter",
    "SegEntropyd",
    "ToXYOrderd",
    "build_dicom_seg",
    "find_cases",
    "full_frame_mask",
    "overlay_image",
    "png_saver",
    "predict_all",
    "screen_file",
    "write_dicom_seg",
    "write_overlay",
]
