"""Look-alike public dataset trees for the tests, built from generated images (real names and quirks).

Every image is distinct noise with a darker ellipse (the lesion) so that content hashes differ unless a
duplicate is made on purpose; masks are the ellipses (0 / 255).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def lesion(seed: int, shape: tuple[int, int] = (40, 48)) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image, uint8 0/255 mask) with one dark ellipse, different for every seed."""
    rng = np.random.default_rng(seed)
    h, w = shape
    rows, cols = np.mgrid[:h, :w]
    cy, cx = rng.integers(h // 3, 2 * h // 3), rng.integers(w // 3, 2 * w // 3)
    ry, rx = rng.integers(4, h // 4), rng.integers(4, w // 4)
    mask = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
    img = rng.integers(90, 200, size=shape).astype(np.uint8)
    img[mask] //= 3
    return img, mask.astype(np.uint8) * 255


def save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def busi(root: Path, n: dict[str, int] | None = None) -> Path:
    """``Dataset_BUSI_with_GT/{benign,malignant,normal}/<cls> (i).png`` + ``_mask.png`` (+ quirks):
    ``benign (2)`` has a second lesion in ``_mask_1.png``; ``benign (3)``'s mask is RGBA; ``malignant (1)``
    is an RGB image; ``malignant (2)`` holds the same pixels as ``benign (1)`` (a duplicate), ``malignant
    (3)`` is ``benign (4)`` 6 grey levels brighter (a near-duplicate); normal masks are empty."""
    n = n or {"benign": 10, "malignant": 8, "normal": 3}
    base = root / "Dataset_BUSI_with_GT"
    seed = 0
    for cls, count in n.items():
        for i in range(1, count + 1):
            seed += 1
            img, mask = lesion(seed)
            if cls == "normal":
                mask[:] = 0
            stem = f"{cls} ({i})"
            if (cls, i) == ("malignant", 1):
                save(base / cls / f"{stem}.png", np.stack([img] * 3, axis=-1))
            elif (cls, i) == ("malignant", 2):
                save(base / cls / f"{stem}.png", lesion(1)[0])  # same pixels as benign (1)
                mask = lesion(1)[1]
            elif (cls, i) == ("malignant", 3):  # benign (4) re-toned: a near-duplicate
                near = lesion(4)[0].astype(np.int32) + 6
                save(base / cls / f"{stem}.png", np.clip(near, 0, 255).astype(np.uint8))
            else:
                save(base / cls / f"{stem}.png", img)
            if (cls, i) == ("benign", 3):
                rgba = np.zeros(mask.shape + (4,), np.uint8)
                rgba[..., 0] = mask
                rgba[..., 3] = 255
                save(base / cls / f"{stem}_mask.png", rgba)
            else:
                save(base / cls / f"{stem}_mask.png", mask)
            if (cls, i) == ("benign", 2):
                second = np.zeros_like(mask)
                second[2:6, 2:8] = 255
                save(base / cls / f"{stem}_mask_1.png", second)
    return base


def udiat(root: Path, n: int = 16, sheet: str = "xlsx") -> Path:
    """``original/000001.png``, ``GT/000001.png`` and ``DatasetB.xlsx`` (or ``.csv``): Image, Type."""
    rows = []
    for i in range(1, n + 1):
        img, mask = lesion(100 + i)
        save(root / "original" / f"{i:06d}.png", img)
        save(root / "GT" / f"{i:06d}.png", mask)
        rows.append((i, "Malignant" if i % 3 == 0 else "Benign"))
    header = ("Image", "Type", "Comment")
    if sheet == "xlsx":
        from openpyxl import Workbook

        wb = Workbook()
        ws = wb.active
        ws.append(("UDIAT Dataset B", None, None))  # a title row above the header
        ws.append(header)
        for number, kind in rows:
            ws.append((number, kind, ""))
        wb.save(root / "DatasetB.xlsx")
    else:
        with open(root / "DatasetB.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows((number, kind, "") for number, kind in rows)
    return root


def busbra(root: Path, cases: int = 12) -> Path:
    """``Images/bus_0001-l.png``, ``Masks/mask_0001-l.png``, ``bus_data.csv``; every other case has both
    sides (``-l`` and ``-r``), so patients hold one or two images."""
    rows = []
    seed = 200
    for case in range(1, cases + 1):
        sides = ("l", "r") if case % 2 else ("l",)
        kind = "malignant" if case % 3 == 0 else "benign"
        for side in sides:
            seed += 1
            ident = f"bus_{case:04d}-{side}"
            img, mask = lesion(seed)
            save(root / "Images" / f"{ident}.png", img)
            save(root / "Masks" / f"mask_{case:04d}-{side}.png", mask)
            rows.append((ident, kind, 3 if kind == "benign" else 5, "GE"))
    with open(root / "bus_data.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("ID", "Pathology", "BIRADS", "Device"))
        w.writerows(rows)
    (root / "5-fold-cv.csv").write_text("ID,Fold\n")
    return root


def tn3k(root: Path, trainval: int = 12, test: int = 4) -> Path:
    """``trainval-image/0000.jpg`` ... with masks ``trainval-mask/0000.jpg``; test likewise; no classes."""
    for part, count, offset in (("trainval", trainval, 300), ("test", test, 400)):
        for i in range(count):
            img, mask = lesion(offset + i)
            save(root / f"{part}-image" / f"{i:04d}.jpg", img)
            save(root / f"{part}-mask" / f"{i:04d}.jpg", mask)
    (root / "tn3k-trainval-fold0.json").write_text("{}")
    return root


def generic(root: Path, n: int = 12, unlabeled: int = 4) -> Path:
    """``images/``, ``masks/``, ``labels.csv`` (file,label,patient: two images a patient), ``unlabeled/``."""
    rows = []
    for i in range(n):
        img, mask = lesion(500 + i)
        save(root / "images" / f"case {i}.png", img)
        save(root / "masks" / f"case {i}.png", mask)
        rows.append((f"case {i}.png", "malignant" if i % 2 else "benign", f"p{i // 2}"))
    for i in range(unlabeled):
        save(root / "unlabeled" / f"u{i}.png", lesion(600 + i)[0])
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("file", "label", "patient"))
        w.writerows(rows)
    return root


def write_us(
    path: Path,
    arr: np.ndarray,
    photometric: str | None = None,
    bits_stored: int | None = None,
    transfer_syntax: str | None = None,
    **attrs: object,
) -> Path:
    """Write ``arr`` as an ultrasound DICOM file with pydicom (Modality US, fresh UIDs); ``transfer_syntax``
    compresses it with pydicom's own encoders (RLE, JPEG-LS, JPEG 2000)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UltrasoundImageStorage, generate_uid

    if photometric is None:
        photometric = "RGB" if arr.ndim == 3 and arr.shape[-1] == 3 else "MONOCHROME2"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = UltrasoundImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "US"
    ds.PatientID = "ANON"
    ds.set_pixel_data(
        arr, photometric_interpretation=photometric, bits_stored=bits_stored or arr.dtype.itemsize * 8
    )
    for key, value in attrs.items():
        setattr(ds, key, value)
    if transfer_syntax is not None:
        ds.compress(transfer_syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def jpeg_lossless_sv1(arr: np.ndarray) -> bytes:
    """Encode an 8-bit grey image as a JPEG Lossless, process 14, selection value 1 bitstream (ITU T.81
    annex H), the DICOM transfer syntax 1.2.840.10008.1.2.4.70 that no installed package can write.

    Prediction: the first pixel from 128, the rest of the first row from the left neighbour, the first
    pixel of every later row from the one above, every other pixel from its left neighbour. The
    differences are Huffman-coded with one table giving each category 0..8 a 4-bit code.
    """
    a = np.asarray(arr, dtype=np.int32)
    h, w = a.shape
    pred = np.empty_like(a)
    pred[:, 1:] = a[:, :-1]
    pred[1:, 0] = a[:-1, 0]
    pred[0, 0] = 128
    diff = (a - pred).ravel()
    bits: list[str] = []
    for d in diff.tolist():
        size = abs(d).bit_length()
        bits.append(format(size, "04b"))  # canonical code of category `size` (nine 4-bit codes)
        if size:
            bits.append(format(d if d > 0 else d - 1 + (1 << size), f"0{size}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)  # pad with 1 bits
    data = bytearray()
    for i in range(0, len(stream), 8):
        byte = int(stream[i : i + 8], 2)
        data.append(byte)
        if byte == 0xFF:
            data.append(0x00)  # byte stuffing
    counts = [0, 0, 0, 9] + [0] * 12  # nine codes of length 4
    dht = bytes([0x00]) + bytes(counts) + bytes(range(9))
    sof = bytes([8]) + h.to_bytes(2, "big") + w.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    sos = bytes([1, 1, 0x00, 1, 0, 0])  # one component, table 0, predictor 1, Se 0, Ah/Al 0

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    return (
        b"\xff\xd8" + segment(0xC3, sof) + segment(0xC4, dht) + segment(0xDA, sos) + bytes(data) + b"\xff\xd9"
    )


def write_us_jpeg_lossless(path: Path, arr: np.ndarray) -> Path:
    """An ultrasound DICOM whose pixel data is :func:`jpeg_lossless_sv1` encapsulated."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1

    write_us(path, arr)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([jpeg_lossless_sv1(arr)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.save_as(path, enforce_file_format=True)
    return path
