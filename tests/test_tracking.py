"""Experiment tracking against a real ``mlflow server`` (sqlite backend store, local artifact store) on
127.0.0.1, and training that goes on when the server is unreachable, keeping a local record."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import yaml
from monai.bundle import ConfigParser, run
from tiny_bundle import tiny_overrides

from hermes_monai.tracking import tracking_params

REPO = Path(__file__).resolve().parents[1]
TRAIN = str(REPO / "bundle" / "configs" / "train.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _overrides(root: Path, uri: str, **extra: object) -> dict:
    o = tiny_overrides(
        root,
        num_labeled=4,
        num_unlabeled=4,
        num_validation=2,
        num_test=2,
        encoder="resnet10t",
        decoder_channels=[32, 16, 16, 8],
        tracking_uri=uri,
        run_name="server_test",
    )
    o.update(extra)
    return o


@pytest.fixture(scope="module")
def server_proc(tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real MLflow tracking server on a free local port, stopped (by pid) at the end."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root}/server.db",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:  # bounded wait for readiness
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (root / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not become ready in 120 s"
            time.sleep(0.5)
        yield uri, proc
    finally:  # the server and its worker processes: the session it leads
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        log.close()


@pytest.fixture
def server(server_proc: tuple[str, subprocess.Popen]) -> str:
    return server_proc[0]


def test_training_against_a_real_mlflow_server(server: str, tmp_path: Path) -> None:
    run("training", config_file=TRAIN, **_overrides(tmp_path, server))
    client = mlflow.MlflowClient(tracking_uri=server)
    exp = client.get_experiment_by_name("hermes")
    runs = client.search_runs([exp.experiment_id], filter_string="attributes.run_name = 'server_test'")
    assert len(runs) == 1
    r = runs[0]
    params = r.data.params
    # the resolved settings, overrides included
    assert params["max_epochs"] == "2" and params["image_size"] == "64" and params["encoder"] == "resnet10t"
    assert params["loss_weights.seg_contrast"] == "0.8" and params["pixel_contrast_loss.max_per_group"] == "8"
    # no paths of any kind in params or tags
    for value in [*params.values(), *r.data.tags.values()]:
        assert str(tmp_path) not in value and ".png" not in value, value
    for key in ("loss", "loss_seg_l", "loss_contrast_seg", "select_rate_pixel", "select_rate_image"):
        history = client.get_metric_history(r.info.run_id, key)
        assert [m.step for m in history] == [1, 2, 3, 4], key  # every iteration
    assert [m.step for m in client.get_metric_history(r.info.run_id, "val_mean_dice")] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"model.pt", "executed_config.json"} <= artifacts, artifacts
    executed = json.loads(
        Path(client.download_artifacts(r.info.run_id, "executed_config.json", str(tmp_path))).read_text()
    )
    assert executed["max_epochs"] == 2 and executed["tracking_uri"] == server


def test_unreachable_server_training_goes_on_with_a_local_record(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    messages: list[str] = []
    catcher = logging.Handler(logging.WARNING)
    catcher.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("hermes_monai.tracking").addHandler(catcher)
    start = time.monotonic()
    try:
        run("training", config_file=TRAIN, **_overrides(tmp_path, uri, run_name="offline"))
    finally:
        logging.getLogger("hermes_monai.tracking").removeHandler(catcher)
    assert time.monotonic() - start < 240
    warnings = [m for m in messages if "MLflow tracking at" in m]
    assert len(warnings) == 1 and uri in warnings[0] and "training goes on" in warnings[0], messages
    assert (tmp_path / "models" / "checkpoint_final.pt").exists()
    record = [
        json.loads(line)
        for line in (tmp_path / "eval" / "tracking" / "offline.jsonl").read_text().splitlines()
    ]
    steps = [e["step"] for e in record if e["kind"] == "metrics" and "loss" in e["values"]]
    assert steps == [1, 2, 3, 4]  # every iteration kept locally
    assert any(e["kind"] == "metrics" and "val_mean_dice" in e["values"] for e in record)
    assert any(e["kind"] == "params" and e["values"].get("max_epochs") == 2 for e in record)


def test_tracking_params_leave_out_paths() -> None:
    params = tracking_params(
        {
            "dataset_dir": "/data/patients",
            "seed": 0,
            "name": "/home/x/img.dcm",
            "w": {"a": 1, "datalist": "x"},
        }
    )
    assert params == {"seed": 0, "w.a": 1}


def test_server_gone_mid_run_training_goes_on(
    server_proc: tuple[str, subprocess.Popen], tmp_path: Path
) -> None:
    """SIGKILL the real server after iteration 2 (this module's last use of it): the run completes, warns
    once, and the local record holds every iteration, before and after the server went away."""
    uri, proc = server_proc
    parser = ConfigParser()
    parser.read_config(TRAIN)
    steps = [step.replace("::", "#") for step in parser["run"]]
    steps.insert(
        len(steps) - 1,
        "$@train#trainer.add_event_handler(hermes_monai.engines.trainer.Events.ITERATION_COMPLETED(once=2), "
        f"lambda engine: os.killpg({proc.pid}, 9) or time.sleep(1))",
    )
    killer = tmp_path / "kill_server.yaml"
    killer.write_text(yaml.safe_dump({"run": steps}))
    messages: list[str] = []
    catcher = logging.Handler(logging.WARNING)
    catcher.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("hermes_monai.tracking").addHandler(catcher)
    try:
        run("training", config_file=[TRAIN, str(killer)], **_overrides(tmp_path, uri, run_name="gone"))
    finally:
        logging.getLogger("hermes_monai.tracking").removeHandler(catcher)
    assert proc.wait(timeout=30) is not None  # the server really died
    assert len([m for m in messages if "MLflow tracking at" in m]) == 1, messages
    record = [
        json.loads(line) for line in (tmp_path / "eval" / "tracking" / "gone.jsonl").read_text().splitlines()
    ]
    assert [e["step"] for e in record if e["kind"] == "metrics" and "loss" in e["values"]] == [1, 2, 3, 4]
    assert (tmp_path / "models" / "checkpoint_final.pt").exists()
