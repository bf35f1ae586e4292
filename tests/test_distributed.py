"""Distributed training on CPU with real torch.distributed (gloo): the bundle under ``torchrun`` with two
processes, and the cross-rank memory banks and selector statistics in a two-process group."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from monai.bundle import ConfigParser
from tiny_bundle import TINY_RUN

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"
TRAIN = str(CONFIGS / "train.yaml")
MULTI = str(CONFIGS / "multi_gpu_train.yaml")
SYNTHETIC = {"image_size": 64, "num_labeled": 8, "num_unlabeled": 8, "num_validation": 4, "num_test": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def _dump_config(tmp: Path) -> str:
    """multi_gpu_train.yaml's ``run`` plus one step: each rank saves its weights and banks after training."""
    parser = ConfigParser()
    parser.read_config([TRAIN, MULTI])
    steps = [step.replace("::", "#") for step in parser["run"]]
    steps.insert(
        len(steps),
        "$torch.save({'net': @network_module.state_dict(),"
        " 'image_bank': @train#trainer.image_contrast.state_dict(),"
        " 'pixel_bank': @train#trainer.pixel_contrast.state_dict(),"
        " 'iteration': @train#trainer.state.iteration}, @bundle_root + '/rank' + str(@rank) + '.pt')",
    )
    path = tmp / "dump.yaml"
    path.write_text(yaml.safe_dump({"run": steps}))
    return path.as_posix()


def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    from hermes_monai.data import ensure_synthetic_dataset

    root = tmp_path / "bundle"
    ensure_synthetic_dataset(tmp_path / "data", **SYNTHETIC)  # prepared once, before the ranks start
    overrides = {
        "bundle_root": root,
        "synthetic_dir": tmp_path / "data",
        "synthetic": SYNTHETIC,
        **TINY_RUN,
        "encoder": "resnet10t",
        "decoder_channels": "[32,16,16,8]",
        "max_epochs": 1,
        "epoch_length": 2,
        "grad_monitor_interval": 1,  # torch.autograd.grad on the DDP graph before its backward
        "use_mlflow": "false",
    }
    args = [str(a) for k, v in overrides.items() for a in (f"--{k}", v)]
    config = str([TRAIN, MULTI, _dump_config(tmp_path)])
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
        "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{_free_port()}",
        "-m", "monai.bundle", "run", "training", "--config_file", config, *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    ranks = [torch.load(root / f"rank{r}.pt", map_location="cpu", weights_only=True) for r in (0, 1)]
    assert ranks[0]["iteration"] == ranks[1]["iteration"] == 2  # both ranks finished
    # DDP: after the steps every parameter is identical on both ranks (buffers such as BN statistics are
    # rank-local until the next forward broadcasts rank 0's)
    net0, net1 = ranks[0]["net"], ranks[1]["net"]
    weights = [k for k in net0 if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    for key in weights:
        torch.testing.assert_close(net0[key], net1[key], rtol=0, atol=0, msg=key)
    # the banks were filled through all_gather: the same on both ranks
    for bank in ("image_bank", "pixel_bank"):
        for key, value in ranks[0][bank].items():
            torch.testing.assert_close(value, ranks[1][bank][key], rtol=0, atol=0, msg=f"{bank}.{key}")
    assert int(ranks[0]["pixel_bank"]["bank.count"].sum()) > 0
    # one set of checkpoints, written by rank 0
    models = sorted(p.name for p in (root / "models").iterdir())
    assert models == ["checkpoint_epoch=1.pt", "checkpoint_final.pt", "model.pt"], models
    ckpt = torch.load(root / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["network"])  # the unwrapped network is saved


def _worker(rank: int, port: int, out: str) -> None:
    from hermes_monai.losses.memory_bank import ClassFeatureBank, FeatureQueue
    from hermes_monai.pseudo_labels import DualThresholdSelector

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    queue, bank = FeatureQueue(dim=2, size=8), ClassFeatureBank(num_classes=2, dim=2, size=8)
    n = 1 + 2 * rank  # rank 0 enqueues 1 entry, rank 1 three: different sizes
    feats = torch.full((n, 2), float(rank + 1))
    queue.enqueue(feats, torch.full((n,), rank))
    bank.enqueue(feats, torch.full((n,), rank))
    bank.enqueue(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))  # nothing on either rank
    # rank 0 predicts class 0 everywhere, rank 1 class 1 everywhere: the global ratio is 1/4 : 3/4
    probs = torch.tensor([[0.9, 0.1]] * 1) if rank == 0 else torch.tensor([[0.1, 0.9]] * 3)
    sel = DualThresholdSelector(2, tau_max=0.95, tau_min=0.5, use_entropy=False)(probs, 1.0)
    torch.save(
        {"queue": queue.state_dict(), "bank": bank.state_dict(), "tau": sel.thresholds}, f"{out}{rank}.pt"
    )
    dist.destroy_process_group()


def test_banks_and_selector_statistics_are_gathered_across_ranks(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path / "r")), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"r{r}.pt", weights_only=True) for r in (0, 1))
    for key in r0["queue"]:
        torch.testing.assert_close(r0["queue"][key], r1["queue"][key])
    # both ranks' entries, in rank order: rank 0's one then rank 1's three
    assert int(r0["queue"]["num_filled"]) == 4
    assert r0["queue"]["features"][:4, 0].tolist() == [1.0, 2.0, 2.0, 2.0]
    assert r0["queue"]["labels"][:4].tolist() == [0, 1, 1, 1]
    assert r0["bank"]["count"].tolist() == [1, 3] and torch.equal(r0["bank"]["bank"], r1["bank"]["bank"])
    # same thresholds on both ranks, from the pooled ratio (1/4, 3/4)
    torch.testing.assert_close(r0["tau"], r1["tau"])
    expected = 0.95 - 0.45 * (1 - torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(r0["tau"], expected)


@pytest.mark.parametrize("name", ["multi_gpu_train.yaml"])
def test_multi_gpu_config_keeps_parameter_groups(name: str) -> None:
    """Without a process group the DDP parts are not built; the config's optimiser groups come from the
    unwrapped network and cover it exactly once."""
    parser = ConfigParser()
    parser.read_config([TRAIN, str(CONFIGS / name)])
    parser.update({"device": "$torch.device('cpu')", "encoder": "resnet10t"})
    net = parser.get_parsed_content("network_module")
    groups = net.parameter_groups()
    ids = [id(p) for g in ("seg", "cls") for p in groups[g]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in net.parameters()}
