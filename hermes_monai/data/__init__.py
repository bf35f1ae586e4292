"""Data for hermes_monai: the synthetic default dataset, datalists, loading transforms and the strong view.

* :mod:`.synthetic` - breast-ultrasound-like images, masks and ``datalist.json`` generated on first use.
* :mod:`.datalist` - reading / writing datalists with split-disjointness and file checks.
* :mod:`.transforms` - :class:`LoadUltrasoundd` (PNG / JPEG / BMP / DICOM -> (1, H, W) MetaTensor)
  and reference weak-view / evaluation pipelines.
* :mod:`.reader` - :class:`UltrasoundReader`, the MONAI ``ImageReader`` behind the loader (DICOM as
  scanners write it: every transfer syntax, cine frames, ultrasound-region crop, header in the metadata).
* :mod:`.layouts`, :mod:`.splits`, :mod:`.builder` - public dataset layouts -> seeded, stratified,
  patient-grouped splits -> ``datalist.json`` (``python -m hermes_monai.prepare``).
* :mod:`.checks` - every problem of a datalist, named with its file (``python -m hermes_monai.check``).
* :mod:`.prepare` - which dataset a bundle run uses (the user's, prepared on first use, or the synthetic
  default), checked before training starts.
* :mod:`.augment` - :class:`StrongAugment`, the batched strong view used inside the engine.
* :mod:`.cutmix` - :class:`CutMix`, boxes pasted between strong views (and their pseudo-labels).
"""

from hermes_monai.data.augment import StrongAugment
from hermes_monai.data.builder import prepare_dataset
from hermes_monai.data.checks import DatasetError, check_datalist, validate_datalist
from hermes_monai.data.cutmix import CutMix, MixBoxes
from hermes_monai.data.datalist import check_disjoint, load_datalist, write_datalist
from hermes_monai.data.prepare import data_base_dir, resolve_datalist
from hermes_monai.data.reader import UltrasoundReader
from hermes_monai.data.stream import ResumableStream, StreamSampler
from hermes_monai.data.synthetic import CLASS_NAMES, ensure_synthetic_dataset, generate_synthetic_dataset
from hermes_monai.data.transforms import UNKNOWN_CLASS, EnsureClassd, LoadUltrasoundd, read_ultrasound

__all__ = [
    "ResumableStream",
    "StreamSampler",
    "CLASS_NAMES",
    "UNKNOWN_CLASS",
    "DatasetError",
    "EnsureClassd",
    "LoadUltrasoundd",
    "StrongAugment",
    "CutMix",
    "MixBoxes",
    "UltrasoundReader",
    "check_datalist",
    "check_disjoint",
    "data_base_dir",
    "ensure_synthetic_dataset",
    "generate_synthetic_dataset",
    "load_datalist",
    "prepare_dataset",
    "read_ultrasound",
    "resolve_datalist",
    "validate_datalist",
    "write_datalist",
]
