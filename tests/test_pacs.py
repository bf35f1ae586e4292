"""The PACS round trip against a real Orthanc (Debian package ``orthanc`` + ``orthanc-dicomweb``).

Each test starts its own Orthanc on free loopback ports (config written here: no authentication, HTTP
from localhost only, DICOM only from the registered runner AE at 127.0.0.1), uploads real DICOM files
over its REST API and runs ``python -m hermes_monai.pacs`` (in-process through ``main`` or as a
subprocess) with a random-initialised checkpoint (no training; its lesion bias is shifted so that masks
are partial). Checked through Orthanc's REST API and highdicom:

- DICOMweb: one SEG and one SR per ultrasound instance (single-frame, RGB, cine, with ultrasound
  regions), none for a CT or for a US instance whose pixel data is broken (logged, failed, exit 1);
  SEG pixels equal the mask ``inference.yaml`` writes for the same file (crop undone, cine frame
  referenced), SR probabilities equal its CSV, lesion area in mm² from the region's spacing; a second
  run stores nothing.
- DIMSE: the runner is SIGKILLed after its first result is stored, restarted, and every instance ends
  with exactly one SEG and one SR; a lost state row (a kill between store and state write) re-stores the
  same UIDs, still one of each.
- Storage SCP: Orthanc C-STOREs instances to ``--listen``; results are forwarded back.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
import yaml
from dataset_trees import lesion, write_us
from monai.bundle import run
from PIL import Image
from pydicom.uid import CTImageStorage, UltrasoundMultiFrameImageStorage

pytest.importorskip("pynetdicom", reason="pynetdicom not installed (pip install -e '.[pacs]')")
pytest.importorskip("dicomweb_client", reason="dicomweb-client not installed (pip install -e '.[pacs]')")
import highdicom as hd  # noqa: E402
import requests  # noqa: E402
from test_inference import write_us_dicom  # noqa: E402
from test_reader import _region, _rgb  # noqa: E402

from hermes_monai.pacs.__main__ import main  # noqa: E402
from hermes_monai.pacs.results import SR_SERIES_DESCRIPTION, read_sr  # noqa: E402

ORTHANC = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")  # Debian: /usr/sbin
DICOMWEB_PLUGIN = next(
    (p for p in ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",) if os.path.isfile(p)), None
)
pytestmark = pytest.mark.skipif(
    ORTHANC is None or DICOMWEB_PLUGIN is None,
    reason="Orthanc with its DICOMweb plugin is not installed (Debian: apt-get install orthanc "
    "orthanc-dicomweb; .ci/run does this)",
)
REPO = Path(__file__).resolve().parents[1]
INFER = REPO / "bundle" / "configs" / "inference.yaml"
CLASSES = ("benign", "malignant")
RUNNER_AE = "HERMES"
IMAGE_SIZE = 64
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
INFER_OVERRIDES = {"dicom_frame": 0, "image_size": IMAGE_SIZE, "device": "$torch.device('cpu')"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """A running Orthanc: ``http`` (REST root), ``dicomweb`` (DICOMweb root), ``dicom_port``, and the
    port its registered modality ``hermes`` (this runner's storage SCP) listens on."""

    def __init__(self, root: Path) -> None:
        self.http_port, self.dicom_port, self.scp_port = _free_port(), _free_port(), _free_port()
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb = self.http + "/dicom-web"
        config = {
            "Name": "hermes-test",
            "StorageDirectory": str(root / "db"),
            "IndexDirectory": str(root / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,  # HTTP from 127.0.0.1 only; no users, no passwords
            "AuthenticationEnabled": False,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomCheckModalityHost": True,  # DICOM only from the registered AE at 127.0.0.1
            "DicomModalities": {
                "hermes": {
                    "AET": RUNNER_AE,
                    "Host": "127.0.0.1",
                    "Port": self.scp_port,
                    "AllowEcho": True,
                    "AllowFind": True,
                    "AllowGet": True,
                    "AllowStore": True,
                }
            },
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        root.mkdir(parents=True, exist_ok=True)
        (root / "orthanc.json").write_text(json.dumps(config, indent=1))
        self.log = open(root / "orthanc.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(self.http + "/system", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not start: {(root / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def upload(self, path: Path) -> str:
        r = requests.post(self.http + "/instances", data=path.read_bytes(), timeout=10)
        r.raise_for_status()
        return r.json()["ID"]

    def instances(self, modality: str) -> list[pydicom.Dataset]:
        """Every stored instance of series modality ``modality``, read back."""
        out = []
        for series in requests.get(self.http + "/series?expand", timeout=10).json():
            if series["MainDicomTags"].get("Modality") == modality:
                for ident in series["Instances"]:
                    data = requests.get(f"{self.http}/instances/{ident}/file", timeout=10).content
                    out.append(pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)))
        return out

    def count(self) -> int:
        return len(requests.get(self.http + "/instances", timeout=10).json())


@pytest.fixture
def orthanc(tmp_path: Path) -> Orthanc:
    server = Orthanc(tmp_path / "orthanc")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bundle_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle folder with a random-initialised ``models/model.pt`` whose lesion bias is moved by the
    median lesion-minus-background logit of a test image, so that masks are partial."""
    from hermes_monai.networks import HermesDeployNet

    root = tmp_path_factory.mktemp("pacs_bundle")
    torch.manual_seed(0)
    net = HermesDeployNet(decoder_channels=[128, 64, 32, 16]).eval()
    x = torch.from_numpy(lesion(5, (IMAGE_SIZE, IMAGE_SIZE))[0] / 255.0).float()[None, None]
    with torch.no_grad():
        logits = net(x)
    state = net.state_dict()
    state["seg.out_conv.bias"][1] -= (logits[0, 1] - logits[0, 0]).flatten().median()
    (root / "models").mkdir()
    torch.save(state, root / "models" / "model.pt")
    return root


def _settings(tmp_path: Path, bundle_root: Path, source: dict, **extra) -> Path:
    settings = {
        "source": source,
        "calling_ae_title": RUNNER_AE,
        "state_file": str(tmp_path / "state.sqlite"),
        "work_dir": str(tmp_path / "work"),
        "batch_size": 8,
        "bundle": {
            "config_file": str(INFER),
            "bundle_root": str(bundle_root),
            "checkpoint": str(bundle_root / "models" / "model.pt"),
            "class_names": list(CLASSES),
            "overrides": INFER_OVERRIDES,
        },
        **extra,
    }
    path = tmp_path / "pacs.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def _patient(**extra) -> dict:
    return {"PatientName": "Test^Patient", "StudyDate": "20250101", "StudyTime": "120000", **extra}


def _ultrasound_files(folder: Path) -> dict[str, Path]:
    """Single-frame grey, RGB, a 3-frame cine and one with ultrasound regions (crop + spacing)."""
    grey = write_us_dicom(folder / "grey.dcm", lesion(40, (60, 72))[0])
    rgb = write_us(folder / "rgb.dcm", _rgb(41), **_patient())
    frames = np.stack([lesion(42 + k, (48, 64))[0] for k in range(3)])
    cine = write_us(folder / "cine.dcm", frames, SOPClassUID=UltrasoundMultiFrameImageStorage, **_patient())
    img = lesion(45, shape=(60, 80))[0]
    img[:, 70:] = 255  # a colour bar outside the B-mode region
    regions = [_region(70, 0, 79, 59, 0, 0, 0.1), _region(5, 8, 64, 51, 1, 1, 0.01)]
    region = write_us(folder / "region.dcm", img, SequenceOfUltrasoundRegions=regions, **_patient())
    return {"grey": grey, "rgb": rgb, "cine": cine, "region": region}


def _by_source(datasets: list[pydicom.Dataset]) -> dict[str, list[pydicom.Dataset]]:
    """Result instances by the SOP Instance UID of the source they reference."""
    out: dict[str, list[pydicom.Dataset]] = {}
    for ds in datasets:
        if ds.Modality == "SEG":
            uid = ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
        else:
            evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
            items = [i for s in evidence for i in s.ReferencedSOPSequence]
            (uid,) = [i.ReferencedSOPInstanceUID for i in items if i.ReferencedSOPClassUID != SEG_CLASS]
        out.setdefault(str(uid), []).append(ds)
    return out


def test_dicomweb_round_trip_matches_bundle_inference(
    orthanc: Orthanc, bundle_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = _ultrasound_files(tmp_path / "us")
    ct = write_us_dicom(tmp_path / "other" / "ct.dcm", lesion(50)[0], sop_class=CTImageStorage, modality="CT")
    broken = pydicom.dcmread(write_us_dicom(tmp_path / "other" / "broken.dcm", lesion(51)[0]))
    broken.PixelData = broken.PixelData[:100]  # a truncated image: the reader refuses it
    broken.save_as(tmp_path / "other" / "broken.dcm", enforce_file_format=True)
    for path in [*files.values(), ct, tmp_path / "other" / "broken.dcm"]:
        orthanc.upload(path)
    sources = {name: pydicom.dcmread(p) for name, p in files.items()}
    settings = _settings(tmp_path, bundle_root, {"protocol": "dicomweb", "url": orthanc.dicomweb})

    assert main(["--config", str(settings), "--once"]) == 1  # the broken instance failed
    assert str(broken.SOPInstanceUID) in caplog.text and "failed" in caplog.text
    rows = {
        r[0]: r[1]
        for r in sqlite3.connect(tmp_path / "state.sqlite").execute("SELECT sop_uid, status FROM instances")
    }
    assert rows.pop(str(broken.SOPInstanceUID)) == "failed"
    assert rows == {str(ds.SOPInstanceUID): "done" for ds in sources.values()}

    # the bundle's own inference on the same files
    out = tmp_path / "inference"
    run(
        config_file=str(INFER),
        bundle_root=str(bundle_root),
        dataset_dir=str(tmp_path / "us"),
        output_dir=str(out),
        **INFER_OVERRIDES,
    )
    table = {Path(r["image"]).stem: r for r in csv.DictReader(open(out / "predictions.csv"))}

    segs, srs = orthanc.instances("SEG"), orthanc.instances("SR")
    assert len(segs) == len(srs) == len(files)  # none for the CT, none for the broken one
    seg_of, sr_of = _by_source(segs), _by_source(srs)
    for name, src in sources.items():
        uid = str(src.SOPInstanceUID)
        (seg,), (sr,) = seg_of[uid], sr_of[uid]
        for ds in (seg, sr):
            assert ds.StudyInstanceUID == src.StudyInstanceUID and "AI result" in ds.SeriesDescription
        mask = np.array(Image.open(out / f"{name}_mask.png")) > 0
        assert 0 < mask.mean() < 1
        hd_seg = hd.seg.Segmentation.from_dataset(seg)
        assert hd_seg.get_segment_description(1).SegmentLabel == "lesion"
        algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
        assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("hermes-monai", hermes_version())
        frame = seg.pixel_array.astype(bool)
        assert frame.shape == (src.Rows, src.Columns)
        if name == "region":  # the crop undone: the mask sits at the B-mode box, zero elsewhere
            np.testing.assert_array_equal(frame[8:52, 5:65], mask)
            assert frame.sum() == mask.sum()
        else:
            np.testing.assert_array_equal(frame, mask)
        source_ref = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        assert source_ref.ReferencedSOPInstanceUID == uid
        if name == "cine":
            assert source_ref.ReferencedFrameNumber == 1  # dicom_frame 0

        assert sr.SeriesDescription == SR_SERIES_DESCRIPTION
        result = read_sr(sr)
        row = table[name]
        for c in CLASSES:
            assert abs(result["probabilities"][c] - float(row[f"p_{c}"])) <= 5e-7
        assert result["predicted_class"] == row["predicted_class"]
        assert result["algorithm"] == ("hermes-monai", hermes_version())
        if name == "region":  # rows 0.2 mm (PhysicalDeltaY 0.02 cm), columns 0.1 mm
            assert result["area_mm2"] == pytest.approx(mask.sum() * 0.2 * 0.1)
        else:
            assert result["area_mm2"] is None
        hd.sr.srread(_saved(sr, tmp_path / f"{name}_sr.dcm"))  # readable by highdicom from a file too

    before = orthanc.count()
    assert main(["--config", str(settings), "--once"]) == 0  # nothing left: the failed one is not retried
    assert orthanc.count() == before


def hermes_version() -> str:
    import hermes_monai

    return hermes_monai.__version__


def _saved(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _runner(settings: Path, *args: str) -> subprocess.Popen:
    """The real command as a subprocess; its output goes to ``runner.log`` next to the settings (a pipe
    nobody reads could fill and stall it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hermes_monai.pacs", "--config", str(settings), *args]
    with open(settings.parent / "runner.log", "a") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = settings.parent / "runner.log"
    return proc


def _wait(condition, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"runner exited early ({proc.returncode}): {proc.log_path.read_text()[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def _one_of_each(orthanc: Orthanc, sources: list[pydicom.Dataset]) -> None:
    seg_of, sr_of = _by_source(orthanc.instances("SEG")), _by_source(orthanc.instances("SR"))
    for src in sources:
        uid = str(src.SOPInstanceUID)
        assert len(seg_of.get(uid, [])) == 1 and len(sr_of.get(uid, [])) == 1, uid
    assert sum(map(len, seg_of.values())) == sum(map(len, sr_of.values())) == len(sources)


def test_dimse_kill_mid_batch_and_restart_leaves_one_result_each(
    orthanc: Orthanc, bundle_root: Path, tmp_path: Path
) -> None:
    paths = [write_us_dicom(tmp_path / "us" / f"case{k}.dcm", lesion(60 + k, (56, 64))[0]) for k in range(6)]
    sources = [pydicom.dcmread(p) for p in paths]
    for p in paths:
        orthanc.upload(p)
    source = {"protocol": "dimse", "host": "127.0.0.1", "port": orthanc.dicom_port, "ae_title": "ORTHANC"}
    settings = _settings(tmp_path, bundle_root, source, batch_size=2)  # 3 batches: the kill lands inside one

    proc = _runner(settings, "--once")
    _wait(lambda: orthanc.count() > len(paths), timeout=120, proc=proc)  # a first result is stored
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored_at_kill = orthanc.count() - len(paths)
    assert stored_at_kill < 2 * len(paths)  # killed mid-batch

    assert main(["--config", str(settings), "--once"]) == 0
    _one_of_each(orthanc, sources)
    # a kill between storing and the state write: the row is lost, the instance is processed again and
    # its results carry the same UIDs, so Orthanc still holds one of each
    db = sqlite3.connect(tmp_path / "state.sqlite", isolation_level=None)
    assert db.execute("SELECT COUNT(*) FROM instances WHERE status = 'done'").fetchone()[0] == len(paths)
    db.execute("DELETE FROM instances WHERE sop_uid = ?", (str(sources[0].SOPInstanceUID),))
    before = orthanc.count()
    assert main(["--config", str(settings), "--once"]) == 0
    assert orthanc.count() == before
    _one_of_each(orthanc, sources)


def test_storage_scp_processes_what_the_pacs_sends(
    orthanc: Orthanc, bundle_root: Path, tmp_path: Path
) -> None:
    us = [write_us_dicom(tmp_path / "in" / f"scp{k}.dcm", lesion(70 + k)[0]) for k in range(2)]
    ct = write_us_dicom(tmp_path / "in" / "ct.dcm", lesion(75)[0], sop_class=CTImageStorage, modality="CT")
    ids = [orthanc.upload(p) for p in [*us, ct]]
    sources = [pydicom.dcmread(p) for p in us]
    destination = {
        "protocol": "dimse",
        "host": "127.0.0.1",
        "port": orthanc.dicom_port,
        "ae_title": "ORTHANC",
    }
    settings = _settings(
        tmp_path,
        bundle_root,
        {"protocol": "dicomweb", "url": orthanc.dicomweb},
        destination=destination,
        listen={"ae_title": RUNNER_AE, "host": "127.0.0.1", "port": orthanc.scp_port},
    )
    proc = _runner(settings, "--listen")
    try:

        def echo() -> bool:
            r = requests.post(f"{orthanc.http}/modalities/hermes/echo", data="{}", timeout=10)
            return r.ok

        _wait(echo, timeout=120, proc=proc)
        r = requests.post(f"{orthanc.http}/modalities/hermes/store", json={"Resources": ids}, timeout=60)
        assert r.ok, r.text
        _wait(lambda: orthanc.count() == len(ids) + 2 * len(us), timeout=120, proc=proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.log_path.read_text()[-3000:]
    _one_of_each(orthanc, sources)


def _has_monai_deploy() -> bool:
    try:
        return importlib.util.find_spec("monai.deploy.operators") is not None
    except ImportError:
        return False


@pytest.mark.skipif(not _has_monai_deploy(), reason="monai-deploy-app-sdk not installed (optional)")
def test_monai_deploy_application(orthanc: Orthanc, bundle_root: Path, tmp_path: Path) -> None:
    """The MONAI Deploy wrapper (run only where monai-deploy-app-sdk is installed): its DICOM loader and
    series selector feed the runner's processing step; the CT is not selected."""
    from hermes_monai.pacs.config import load_config
    from hermes_monai.pacs.deploy_app import build_app
    from hermes_monai.pacs.runner import PacsRunner, RunSummary

    us = [write_us_dicom(tmp_path / "in" / f"md{k}.dcm", lesion(80 + k)[0]) for k in range(2)]
    write_us_dicom(tmp_path / "in" / "ct.dcm", lesion(85)[0], sop_class=CTImageStorage, modality="CT")
    settings = _settings(tmp_path, bundle_root, {"protocol": "dicomweb", "url": orthanc.dicomweb})
    runner = PacsRunner(load_config(settings))
    summary = RunSummary()
    try:
        build_app(runner, tmp_path / "in", summary).run()
    finally:
        runner.close()
    assert len(summary.done) == len(us) and not summary.failed
    _one_of_each(orthanc, [pydicom.dcmread(p) for p in us])
