"""Training that survives crashes and bad numbers: SIGKILL and resume, kills during a save, NaN/inf steps,
a longer resumed run, ``--resume_from latest`` and checkpoints that need pickle.

The bundle runs are real ``python -m monai.bundle run training`` processes (tiny: 64 px, a handful of
synthetic images, a few iterations, one thread each) killed with a real ``SIGKILL`` by pid.
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

from hermes_monai.engines.trainer import NonFiniteError
from hermes_monai.handlers import AtomicCheckpointSaver, SafeCheckpointLoader, load_checkpoint, resolve_resume

REPO = Path(__file__).resolve().parents[1]
TRAIN = str(REPO / "bundle" / "configs" / "train.yaml")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    return env


def _args(root: Path, data: Path, **extra: object) -> list[str]:
    o: dict[str, object] = {
        "bundle_root": str(root),
        "synthetic_dir": str(data),
        "synthetic": str(
            {"image_size": 64, "num_labeled": 8, "num_unlabeled": 8, "num_validation": 4, "num_test": 2}
        ),
        "image_size": 64,
        "encoder": "resnet10t",
        "decoder_channels": "[32,16,16,8]",
        "labeled_batch_size": 2,
        "unlabeled_batch_size": 2,
        "max_epochs": 3,
        "epoch_length": 3,  # 8 images / batch 2 = 4 batches a pass: epoch ends fall mid-pass
        "val_interval": 1,
        "log_interval": 1,
        "contrast_warmup": 0,
        "pixel_contrast_loss#min_pixels": 4,
        "pixel_contrast_loss#max_per_group": 8,
        "use_mlflow": "false",
        "device": "$torch.device('cpu')",
    }
    o.update(extra)
    out = []
    for k, v in o.items():
        out += [f"--{k}", str(v)]
    return out


def _train(config: str | list[str], root: Path, data: Path, **extra: object) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(config)]
    log = open(root.parent / f"{root.name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        cmd + _args(root, data, **extra), env=_env(), stdout=log, stderr=subprocess.STDOUT
    )


def _wait(proc: subprocess.Popen, root: Path, timeout: float = 240) -> None:
    rc = proc.wait(timeout=timeout)
    assert rc == 0, (root.parent / f"{root.name}.log").read_text()[-3000:]


def _pausing_config(tmp: Path, after_epoch: int) -> str:
    """train.yaml's ``run`` with one more handler: sleep after the checkpoint of ``after_epoch`` is saved,
    so the test can SIGKILL the process at a known point of the run."""
    parser = ConfigParser()
    parser.read_config(TRAIN)
    steps = [step.replace("::", "#") for step in parser["run"]]
    pause = (  # (no "import" in an expression: MONAI would parse it as an import statement)
        "$@train#trainer.add_event_handler(hermes_monai.engines.trainer.Events.EPOCH_COMPLETED"
        f"(once={after_epoch}), lambda engine: time.sleep(600))"
    )
    steps.insert(len(steps) - 1, pause)  # after the saver is attached: the checkpoint is written first
    path = tmp / "pause.yaml"
    path.write_text(yaml.safe_dump({"run": steps}))
    return str([TRAIN, str(path)])


@pytest.mark.parametrize("teacher_momentum", [None, 0.9])
def test_sigkill_then_resume_latest_equals_uninterrupted_run(
    tmp_path: Path, teacher_momentum: float | None
) -> None:
    data = tmp_path / "data"
    ref_root, crash_root = tmp_path / "ref", tmp_path / "crash"
    teacher = {} if teacher_momentum is None else {"teacher_momentum": teacher_momentum}
    ref = _train(TRAIN, ref_root, data, **teacher)
    _wait(ref, ref_root)  # also generates the synthetic data the second run reuses

    crashing = _train(_pausing_config(tmp_path, after_epoch=1), crash_root, data, **teacher)
    ckpt = crash_root / "models" / "checkpoint_epoch=1.pt"
    deadline = time.monotonic() + 240
    while not ckpt.exists():  # the pause starts only after this file is in place
        assert crashing.poll() is None, (tmp_path / "crash.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the training never saved epoch 1"
        time.sleep(0.2)
    os.kill(crashing.pid, signal.SIGKILL)
    assert crashing.wait(timeout=30) == -signal.SIGKILL
    assert not (crash_root / "models" / "checkpoint_final.pt").exists()  # it really died mid-run

    resumed = _train(TRAIN, crash_root, data, resume_from="latest", **teacher)
    _wait(resumed, crash_root)
    log = (tmp_path / "crash.log").read_text()
    assert "rescaled" not in log  # same T: the schedule is restored as saved

    models = crash_root / "models"
    # n_saved=1 held across the resume: the epoch-1 checkpoint was retired once epoch 2's was written
    names = sorted(p.name for p in models.iterdir())
    assert names == ["checkpoint_epoch=3.pt", "checkpoint_final.pt", "model.pt"]
    for path in models.iterdir():  # every file on disk loads without pickle
        load_checkpoint(path)
    final = load_checkpoint(models / "checkpoint_final.pt")
    expected = load_checkpoint(ref_root / "models" / "checkpoint_final.pt")
    assert final["trainer"]["iteration"] == expected["trainer"]["iteration"] == 9
    # bit-identical on CPU: same weights, optimiser moments, memory banks, selector and best-model record
    for key in ("network", "seg_optimizer", "cls_optimizer", "image_selector", "pixel_selector"):
        torch.testing.assert_close(final[key], expected[key], rtol=0, atol=0, msg=key)
    for bank in ("image_contrast", "pixel_contrast"):
        got, want = final["trainer"]["hermes"][bank], expected["trainer"]["hermes"][bank]
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    got, want = final["trainer"]["hermes"]["teacher"], expected["trainer"]["hermes"]["teacher"]
    assert (got is None) == (teacher_momentum is None)
    torch.testing.assert_close(got, want, rtol=0, atol=0)  # the mean teacher's weights and update count
    assert final["best"] == expected["best"]  # best metric, its epoch and the model.pt record
    best = load_checkpoint(models / "model.pt")
    torch.testing.assert_close(best, load_checkpoint(ref_root / "models" / "model.pt"), rtol=0, atol=0)


_SAVER_LOOP = """
import sys, torch
from ignite.engine import Engine, Events
from hermes_monai.handlers import AtomicCheckpointSaver
net = torch.nn.Linear(512, 1024)  # 2 MB a file
engine = Engine(lambda e, b: None)
saver = AtomicCheckpointSaver(
    save_dir=sys.argv[1], save_dict={"net": net, "engine": engine}, save_interval=1, epoch_level=False,
    n_saved=1, save_final=True, final_filename="checkpoint_final.pt",
)
saver.attach(engine)
engine.add_event_handler(Events.ITERATION_STARTED, lambda e: net.weight.data.add_(1.0))
print("ready", flush=True)
engine.run(range(10**6), max_epochs=1)
"""


def test_kill_at_any_instant_leaves_an_intact_checkpoint(tmp_path: Path) -> None:
    """SIGKILL a process that saves 2 MB checkpoints back to back, at several instants: one intact
    checkpoint always remains, and the next saver removes the temporary file of the interrupted write."""
    script = tmp_path / "saver_loop.py"
    script.write_text(_SAVER_LOOP)
    for delay in (0.07, 0.31):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "ckpt")], env=_env(), stdout=subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        intact = []
        for path in (tmp_path / "ckpt").glob("checkpoint_*.pt"):
            try:
                intact.append(load_checkpoint(path)["net"]["weight"])
            except Exception:  # noqa: BLE001 - a torn file would be the failure this test looks for
                pytest.fail(f"{path.name} is torn")
        assert intact, "no intact checkpoint after a kill"
        # a new saver (start-up) cleans the stray temporary files
        AtomicCheckpointSaver(save_dir=str(tmp_path / "ckpt"), save_dict={"net": torch.nn.Linear(1, 1)})
        assert not [p.name for p in (tmp_path / "ckpt").iterdir() if p.name.endswith(".tmp")]


def test_resume_from_latest_skips_torn_files_and_refuses_pickle(tmp_path: Path) -> None:
    good = tmp_path / "checkpoint_epoch=1.pt"
    torch.save({"trainer": {"iteration": 2}, "network": {"w": torch.ones(2)}}, good)
    time.sleep(0.01)
    torn = tmp_path / "checkpoint_epoch=2.pt"
    torch.save({"trainer": {"iteration": 4}, "network": {"w": torch.ones(10000)}}, torn)
    torn.write_bytes(torn.read_bytes()[:1000])  # a kill mid-write without atomic saves
    assert resolve_resume("latest", tmp_path) == str(good)
    with pytest.raises(FileNotFoundError, match="no intact resumable checkpoint"):
        resolve_resume("latest", tmp_path / "empty")
    evil = tmp_path / "pickled.pt"
    torch.save({"trainer": {"callback": pickle.loads}}, evil)  # needs pickle to load
    with pytest.raises(ValueError, match="refused: this checkpoint holds Python objects"):
        load_checkpoint(evil)
    # the bundle's loader (--resume_from) refuses it the same way, before touching the engine
    engine = Engine(lambda e, b: None)
    SafeCheckpointLoader(load_path=str(evil), load_dict={"trainer": engine}).attach(engine)
    with pytest.raises(ValueError, match=re.escape(f"{evil}: refused")):
        engine.run([0], max_epochs=1)


def _tiny_trainer(max_epochs: int = 1, **kw):
    from hermes_monai.engines import HermesTrainer
    from hermes_monai.losses import ImageContrastLoss, PixelContrastLoss
    from hermes_monai.networks import HermesNet

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    def batch() -> dict:
        label = (torch.rand(2, 1, 32, 32, generator=g) > 0.7).long()
        return {"image": torch.rand(2, 1, 32, 32, generator=g), "label": label, "class": torch.tensor([0, 1])}

    labeled = [batch(), batch()]
    unlabeled = [{"image": b["image"].clone()} for b in (batch(), batch())]
    net = HermesNet(encoder="resnet10t", decoder_channels=(16, 8, 8, 8))
    groups = net.parameter_groups()
    seg_opt = torch.optim.Adam(groups["seg"], lr=1e-3)
    cls_opt = torch.optim.SGD(groups["cls"], lr=1e-2, momentum=0.9)
    scheds = [
        torch.optim.lr_scheduler.PolynomialLR(o, total_iters=2 * max_epochs, power=0.9)
        for o in (seg_opt, cls_opt)
    ]
    trainer = HermesTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=labeled,
        unlabeled_data_loader=unlabeled,
        epoch_length=2,
        network=net,
        seg_optimizer=seg_opt,
        cls_optimizer=cls_opt,
        image_contrast=ImageContrastLoss(bank_size=16),
        pixel_contrast=PixelContrastLoss(min_pixels=2, max_per_group=4, bank_size=32),
        contrast_warmup=0,
        lr_schedulers=scheds,
        **kw,
    )
    for s in scheds:
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e, s=s: s.step())
    return trainer, labeled, unlabeled


def test_nan_input_stops_before_the_step_and_the_final_checkpoint_is_good(tmp_path: Path) -> None:
    trainer, labeled, _ = _tiny_trainer()
    labeled[1]["image"][0, 0, :4, :4] = float("nan")  # the second iteration's labeled batch
    saver = AtomicCheckpointSaver(
        save_dir=str(tmp_path),
        save_dict={"network": trainer.network, "trainer": trainer},
        save_final=True,
        final_filename="checkpoint_final.pt",
        save_interval=0,
    )
    saver.attach(trainer)
    with pytest.raises(NonFiniteError, match=r"iteration 2: non-finite input \(labeled image\)"):
        trainer.run()
    final = load_checkpoint(tmp_path / "checkpoint_final.pt")
    assert all(torch.isfinite(v).all() for v in final["network"].values() if v.is_floating_point())
    assert all(
        torch.isfinite(v).all() for v in trainer.network.state_dict().values() if v.is_floating_point()
    )


def test_nan_loss_names_the_term_and_skip_option_counts(tmp_path: Path) -> None:
    trainer, _, _ = _tiny_trainer()
    with torch.no_grad():
        # finite input, non-finite classification loss
        trainer.network.cls.classifier.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"iteration 1: non-finite loss term\(s\) loss_cls_l=nan"):
        trainer.run()

    trainer, labeled, unlabeled = _tiny_trainer(skip_nonfinite_steps=True)
    unlabeled[0]["image"][0, 0, 0, 0] = float("inf")
    before = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    trainer.run()  # iteration 1 skipped, iteration 2 trains
    assert trainer.state.nonfinite_steps == 1 and trainer.state.iteration == 2
    assert any(not torch.equal(before[k], v) for k, v in trainer.network.state_dict().items())
    bank_f, _ = trainer.image_contrast.queue.get()
    assert torch.isfinite(bank_f).all()


def test_longer_resumed_run_rescales_the_schedule_or_refuses() -> None:
    trainer, _, _ = _tiny_trainer(max_epochs=1)
    trainer.run()  # T = 2: the polynomial schedule has reached LR 0
    state = {"trainer": trainer.state_dict(), "scheds": [s.state_dict() for s in trainer.lr_schedulers]}
    state["opts"] = [trainer.seg_optimizer.state_dict(), trainer.cls_optimizer.state_dict()]
    assert trainer.seg_optimizer.param_groups[0]["lr"] == 0.0

    for mode in ("rescale", "refuse"):
        longer, _, _ = _tiny_trainer(max_epochs=2, resume_schedule=mode)  # T = 4
        lrs: list[float] = []

        def record(engine, lrs=lrs) -> None:
            lrs.append(engine.seg_optimizer.param_groups[0]["lr"])

        longer.add_event_handler(Events.ITERATION_STARTED, record)

        def restore(engine, longer=longer) -> None:  # what CheckpointLoader does at STARTED
            longer.seg_optimizer.load_state_dict(state["opts"][0])
            longer.cls_optimizer.load_state_dict(state["opts"][1])
            for s, sd in zip(longer.lr_schedulers, state["scheds"]):
                s.load_state_dict(sd)
            longer.load_state_dict({**state["trainer"], "max_epochs": 2})

        longer.add_event_handler(Events.STARTED, restore)
        if mode == "refuse":
            with pytest.raises(ValueError, match="planned for 2 iterations .* epoch_length = 4"):
                longer.run()
        else:
            longer.run()
            assert longer.state.iteration == 4
            # resumed at t = 2 of T = 4: lr = 1e-3 * (1 - 2/4)^0.9, not 0
            assert lrs[0] == pytest.approx(1e-3 * 0.5**0.9)


def test_bundle_stops_on_a_nan_loss_and_keeps_the_last_good_state(tmp_path: Path) -> None:
    """Through the bundle (where a StatsHandler also listens for exceptions): a NaN loss weight makes the
    first loss NaN; the run stops naming iteration and term, and checkpoint_final.pt holds finite weights."""
    from monai.bundle import run

    over = {
        "bundle_root": str(tmp_path),
        "synthetic_dir": str(tmp_path / "data"),
        "synthetic": {
            "image_size": 64,
            "num_labeled": 4,
            "num_unlabeled": 4,
            "num_validation": 2,
            "num_test": 2,
        },
        "image_size": 64,
        "encoder": "resnet10t",
        "decoder_channels": [32, 16, 16, 8],
        "labeled_batch_size": 2,
        "unlabeled_batch_size": 2,
        "max_epochs": 1,
        "epoch_length": 2,
        "loss_weights#itc": "$float('nan')",
        "use_mlflow": False,
        "device": "$torch.device('cpu')",
    }
    with pytest.raises(Exception) as info:  # noqa: B017 - MONAI may wrap the trainer's error
        run("training", config_file=TRAIN, **over)
    chain, err = [], info.value
    while err is not None:
        chain.append(str(err))
        err = err.__cause__ or err.__context__
    assert any("iteration 1: non-finite loss term(s) loss_itc=nan" in m for m in chain), chain
    final = load_checkpoint(tmp_path / "models" / "checkpoint_final.pt")
    assert final["trainer"]["iteration"] == 1
    assert all(torch.isfinite(v).all() for v in final["network"].values() if v.is_floating_point())
