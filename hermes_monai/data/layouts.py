"""Public ultrasound dataset layouts: find every image, its mask(s), class and patient on disk.

Each ``discover_<layout>(root)`` function walks one layout of ``shared/design/DATASETS.md`` and returns a
list of :class:`Sample` sorted by image path (so the result never depends on the order the file system
lists files). :func:`detect_layout` names the layout a folder holds; :func:`discover` dispatches.

* ``busi``: ``Dataset_BUSI_with_GT/{benign,malignant,normal}/benign (1).png`` with ``benign (1)_mask.png``
  and further lesions in ``benign (1)_mask_1.png``, ``_mask_2.png`` (all masks of an image are kept, the
  caller merges them). No patient ids.
* ``udiat``: ``original/000001.png``, ``GT/000001.png`` and the class sheet ``DatasetB.xlsx`` (or a CSV
  export of it) with columns ``Image`` (integer, zero-padded to 6 digits) and ``Type`` (Benign/Malignant).
* ``busbra``: ``Images/bus_0001-l.png``, ``Masks/mask_0001-l.png`` and ``bus_data.csv`` (``ID``,
  ``Pathology``); the patient is the 4-digit case id, so both views of a case stay in one split.
* ``tn3k``: ``trainval-image/``, ``trainval-mask/``, ``test-image/``, ``test-mask/`` (same file stems); no
  class; the dataset's own test part is kept as the test split.
* ``generic``: ``images/``, ``masks/`` (same stem), optional ``labels.csv`` (``file,label[,patient]``),
  optional ``unlabeled/`` folder of images without masks.
* ``dicom``: any folder of DICOM files (found by content, any depth); images without masks, patient from
  the DICOM ``PatientID``.

Choices where the spec is silent: an image of the generic layout without a mask is unlabeled; names of
classes found in ``labels.csv`` keep the order benign, malignant, normal when they are among those, else
they are sorted (numerically when they are all integers).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LAYOUTS", "LayoutError", "Sample", "detect_layout", "discover", "is_dicom_file", "IMAGE_SUFFIXES"]

RASTER = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
IMAGE_SUFFIXES = RASTER + (".dcm", ".dicom", ".dic", ".nii", ".nii.gz")
KNOWN_CLASS_ORDER = ("benign", "malignant", "normal")


class LayoutError(ValueError):
    """The folder does not hold the layout asked for (the message names the path and what is missing)."""


@dataclass(frozen=True)
class Sample:
    """One image found on disk.

    Attributes:
        image: path of the image file.
        masks: its mask file(s); several are merged into one; empty for an image without a mask.
        cls: class name (``"benign"``...), or None where the dataset has no classes.
        patient: patient / case identifier for grouping, or None.
        split: a split fixed by the dataset itself (TN3K's ``"test"``), or None.
    """

    image: Path
    masks: tuple[Path, ...] = ()
    cls: str | None = None
    patient: str | None = None
    split: str | None = None


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` starts with the DICOM preamble + ``DICM`` magic."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


def _is_image(path: Path) -> bool:
    """A file with an image suffix, or a DICOM file without one (scanners often write ``IM0001``)."""
    if not path.is_file() or path.name.startswith("."):
        return False
    return path.name.lower().endswith(IMAGE_SUFFIXES) or (not path.suffix and is_dicom_file(path))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_image(p))


def _require(folder: Path, *names: str) -> None:
    missing = [n for n in names if not (folder / n).exists()]
    if missing:
        raise LayoutError(f"{folder}: missing {', '.join(missing)}")


def _by_stem(paths: Iterable[Path], folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in paths:
        key = _stem(p)
        if key in out:
            raise LayoutError(f"{p}: two files share the stem '{key}' ({out[key].name}) in {folder}")
        out[key] = p
    return out


# ------------------------------------------------------------------------------------------- BUSI
_BUSI_MASK = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<k>\d+))?$")


def _busi_root(root: Path) -> Path:
    inner = root / "Dataset_BUSI_with_GT"
    return inner if inner.is_dir() else root


def discover_busi(root: Path) -> list[Sample]:
    """BUSI: class folders of ``<class> (n).png`` images and ``<class> (n)_mask[_k].png`` masks."""
    base = _busi_root(Path(root))
    classes = [c for c in KNOWN_CLASS_ORDER if (base / c).is_dir()]
    if not {"benign", "malignant"} <= set(classes):
        raise LayoutError(f"{base}: a BUSI folder holds benign/ and malignant/ (and normal/) sub-folders")
    samples: list[Sample] = []
    for cls in classes:
        folder = base / cls
        images: dict[str, Path] = {}
        masks: dict[str, list[tuple[int, Path]]] = {}
        for p in _images(folder):
            m = _BUSI_MASK.match(_stem(p))
            if m:
                masks.setdefault(m["stem"], []).append((int(m["k"] or 0), p))
            else:
                images[_stem(p)] = p
        for stem in masks:
            if stem not in images:
                raise LayoutError(f"{masks[stem][0][1]}: mask without an image '{stem}.png' in {folder}")
        for stem, image in sorted(images.items()):
            found = tuple(p for _, p in sorted(masks.get(stem, [])))
            if not found:
                raise LayoutError(f"{image}: BUSI image without a mask ('{stem}_mask.png' missing)")
            samples.append(Sample(image=image, masks=found, cls=cls))
    return sorted(samples, key=lambda s: str(s.image))


# ------------------------------------------------------------------------------------------ UDIAT
def _read_table(path: Path, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Rows of a CSV or .xlsx sheet as dicts keyed by the lower-cased header: the first row naming every
    ``required`` column (title rows above it are skipped), else the first non-empty row."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            from openpyxl import load_workbook
        except ImportError as err:  # pragma: no cover - openpyxl is a dependency
            raise LayoutError(f"{path}: reading .xlsx needs openpyxl (pip install openpyxl)") from err
        wb = load_workbook(path, read_only=True, data_only=True)
        try:
            rows = [
                ["" if v is None else str(v).strip() for v in row]
                for row in wb.active.iter_rows(values_only=True)
            ]
        finally:
            wb.close()
    else:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [[v.strip() for v in row] for row in csv.reader(f)]
    rows = [r for r in rows if any(r)]
    if not rows:
        raise LayoutError(f"{path}: empty table")
    start = next((i for i, r in enumerate(rows) if set(required) <= {h.lower() for h in r}), 0)
    header = [h.lower() for h in rows[start]]
    return [dict(zip(header, r)) for r in rows[start + 1 :]]


def _udiat_sheet(root: Path) -> Path:
    for pattern in ("*.xlsx", "*.csv"):
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
    raise LayoutError(f"{root}: no class sheet (DatasetB.xlsx or a CSV export with columns Image, Type)")


def discover_udiat(root: Path, sheet: Path | None = None) -> list[Sample]:
    """UDIAT Dataset B: ``original/``, ``GT/`` and the class sheet (``Image`` number, ``Type``)."""
    root = Path(root)
    _require(root, "original", "GT")
    sheet = Path(sheet) if sheet is not None else _udiat_sheet(root)
    classes: dict[str, str] = {}
    for i, row in enumerate(_read_table(sheet, ("image", "type")), start=2):
        if "image" not in row or "type" not in row:
            raise LayoutError(f"{sheet}: columns 'Image' and 'Type' are required, found {sorted(row)}")
        if not row["image"]:
            continue
        try:
            number = int(float(row["image"]))
        except ValueError:
            raise LayoutError(f"{sheet}: row {i}: Image '{row['image']}' is not a number") from None
        kind = row["type"].strip().lower()
        if kind not in ("benign", "malignant"):
            raise LayoutError(f"{sheet}: row {i}: Type '{row['type']}' is neither Benign nor Malignant")
        classes[f"{number:06d}"] = kind
    masks = _by_stem(_images(root / "GT"), root / "GT")
    samples = []
    for image in _images(root / "original"):
        stem = _stem(image)
        if stem not in classes:
            raise LayoutError(f"{image}: not listed in the class sheet {sheet}")
        if stem not in masks:
            raise LayoutError(f"{image}: no mask GT/{stem}.png")
        samples.append(Sample(image=image, masks=(masks[stem],), cls=classes[stem]))
    return samples


# ---------------------------------------------------------------------------------------- BUS-BRA
_CASE = re.compile(r"(\d{4})")


def discover_busbra(root: Path) -> list[Sample]:
    """BUS-BRA: ``Images/bus_0001-l.png``, ``Masks/mask_0001-l.png``, ``bus_data.csv``; patient = case id."""
    root = Path(root)
    _require(root, "Images", "Masks", "bus_data.csv")
    images = _by_stem(_images(root / "Images"), root / "Images")
    masks = _by_stem(_images(root / "Masks"), root / "Masks")
    samples = []
    for i, row in enumerate(_read_table(root / "bus_data.csv", ("id", "pathology")), start=2):
        if "id" not in row or "pathology" not in row:
            raise LayoutError(f"{root / 'bus_data.csv'}: columns 'ID' and 'Pathology' are required")
        ident = row["id"] if row["id"].startswith("bus_") else f"bus_{row['id']}"
        case = _CASE.search(ident)
        kind = row["pathology"].strip().lower()
        if case is None or kind not in ("benign", "malignant"):
            raise LayoutError(
                f"{root / 'bus_data.csv'}: row {i}: cannot read ID '{row['id']}' / "
                f"Pathology '{row['pathology']}'"
            )
        mask_stem = "mask_" + ident[len("bus_") :]
        if ident not in images:
            raise LayoutError(f"{root / 'Images' / (ident + '.png')}: listed in bus_data.csv but missing")
        if mask_stem not in masks:
            raise LayoutError(f"{root / 'Masks' / (mask_stem + '.png')}: mask of {ident} missing")
        samples.append(Sample(image=images[ident], masks=(masks[mask_stem],), cls=kind, patient=case[1]))
    return sorted(samples, key=lambda s: str(s.image))


# ------------------------------------------------------------------------------------------- TN3K
def discover_tn3k(root: Path) -> list[Sample]:
    """TN3K: ``{trainval,test}-{image,mask}/`` with numeric names; masks only, no class."""
    root = Path(root)
    _require(root, "trainval-image", "trainval-mask")
    samples = []
    for part, split in (("trainval", None), ("test", "test")):
        if not (root / f"{part}-image").is_dir():
            continue
        masks = _by_stem(_images(root / f"{part}-mask"), root / f"{part}-mask")
        for image in _images(root / f"{part}-image"):
            stem = _stem(image)
            if stem not in masks:
                raise LayoutError(f"{image}: no mask {part}-mask/{stem}.*")
            samples.append(Sample(image=image, masks=(masks[stem],), split=split))
    return samples


# ---------------------------------------------------------------------------------------- generic
def discover_generic(root: Path) -> list[Sample]:
    """Generic: ``images/`` + ``masks/`` (same stem), optional ``labels.csv`` and ``unlabeled/``."""
    root = Path(root)
    _require(root, "images")
    masks = _by_stem(_images(root / "masks"), root / "masks") if (root / "masks").is_dir() else {}
    labels: dict[str, tuple[str, str | None]] = {}
    if (root / "labels.csv").is_file():
        for i, row in enumerate(_read_table(root / "labels.csv", ("file", "label")), start=2):
            if "file" not in row or "label" not in row:
                raise LayoutError(f"{root / 'labels.csv'}: columns 'file' and 'label' are required")
            if not row["file"]:
                raise LayoutError(f"{root / 'labels.csv'}: row {i} has no file name")
            labels[_stem(Path(row["file"]))] = (row["label"].strip(), row.get("patient") or None)
    samples = []
    images = _images(root / "images")
    known = {_stem(p) for p in images}
    for stem in labels:
        if stem not in known:
            raise LayoutError(f"{root / 'labels.csv'}: '{stem}' has no image in {root / 'images'}")
    for image in images:
        stem = _stem(image)
        cls, patient = labels.get(stem, (None, None))
        mask = (masks[stem],) if stem in masks else ()
        samples.append(Sample(image=image, masks=mask, cls=cls or None, patient=patient))
    if (root / "unlabeled").is_dir():
        samples += [Sample(image=p) for p in _images(root / "unlabeled")]
    return sorted(samples, key=lambda s: str(s.image))


# ------------------------------------------------------------------------------------------ DICOM
def discover_dicom(root: Path) -> list[Sample]:
    """Every DICOM file under ``root`` (by content, any depth), unlabeled; patient = ``PatientID``."""
    import pydicom

    root = Path(root)
    samples = []
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        if not is_dicom_file(p):
            continue
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["PatientID"])
        samples.append(Sample(image=p, patient=str(ds.get("PatientID", "") or "") or None))
    return samples


LAYOUTS: dict[str, Callable[[Path], list[Sample]]] = {
    "busi": discover_busi,
    "udiat": discover_udiat,
    "busbra": discover_busbra,
    "tn3k": discover_tn3k,
    "generic": discover_generic,
    "dicom": discover_dicom,
}


def detect_layout(root: str | Path) -> str | None:
    """Name of the layout ``root`` holds (``"busi"``, ...), or None when it looks like none of them."""
    root = Path(root)
    if not root.is_dir():
        return None
    base = _busi_root(root)
    if (base / "benign").is_dir() and (base / "malignant").is_dir():
        return "busi"
    if (root / "original").is_dir() and (root / "GT").is_dir():
        return "udiat"
    if (root / "Images").is_dir() and (root / "bus_data.csv").is_file():
        return "busbra"
    if (root / "trainval-image").is_dir():
        return "tn3k"
    if (root / "images").is_dir():
        return "generic"
    if any(is_dicom_file(p) for p in root.rglob("*") if p.is_file()):
        return "dicom"
    return None


def discover(root: str | Path, layout: str | None = None) -> tuple[str, list[Sample]]:
    """(layout name, samples) of the dataset in ``root``; ``layout=None`` detects it.

    Raises:
        LayoutError: the folder is missing, empty or in no known layout (the message names it).
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: dataset folder not found")
    name = layout or detect_layout(root)
    if name is None:
        raise LayoutError(
            f"{root}: not a known dataset layout (BUSI, UDIAT, BUS-BRA, TN3K, generic images/+masks/, "
            "or a folder of DICOM files); see bundle/docs/README.md"
        )
    if name not in LAYOUTS:
        raise LayoutError(f"unknown layout '{name}'; choose one of {sorted(LAYOUTS)}")
    samples = LAYOUTS[name](root)
    if not samples:
        raise LayoutError(f"{root}: no images found for the {name} layout")
    return name, samples
