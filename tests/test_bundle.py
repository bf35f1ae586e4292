"""The bundle end to end through ``monai.bundle``: training, evaluation, resume, tracking, bad config.

Runs the real configs in ``bundle/configs`` with small overrides (tiny synthetic dataset, 64x64 images,
a few iterations), a real sqlite MLflow store and real checkpoints on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch
from monai.bundle import ConfigParser, run
from tiny_bundle import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"
TRAIN = str(CONFIGS / "train.yaml")
EVAL = [TRAIN, str(CONFIGS / "evaluate.yaml")]


def _overrides(root: Path, **extra) -> dict:
    return tiny_overrides(root, tracking_uri=f"sqlite:///{root}/mlruns.db", run_name="itest", **extra)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    run("training", config_file=TRAIN, logging_file=str(CONFIGS / "logging.conf"), **_overrides(root))
    return root


def test_training_writes_best_and_resumable_checkpoints(trained: Path) -> None:
    best = torch.load(trained / "models" / "model.pt", map_location="cpu", weights_only=True)
    # a plain state dict of the whole HermesNet (what ckpt_export and MONAI Label load)
    assert any(k.startswith("seg.") for k in best) and any(k.startswith("cls.") for k in best)
    final = torch.load(trained / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    for key in ("network", "seg_optimizer", "cls_optimizer", "trainer", "image_selector"):
        assert key in final
    assert final["trainer"]["iteration"] == 4  # 2 epochs x 2 iterations
    # the interval checkpoint has the name the model card and README give
    assert sorted(p.name for p in (trained / "models").glob("checkpoint*.pt")) == [
        "checkpoint_epoch=2.pt",
        "checkpoint_final.pt",
    ]
    val = json.loads((trained / "eval" / "val_metrics.json").read_text())
    assert 0.0 <= val["dice"] <= 1.0 and val["num_images"] == 4


def test_training_logs_every_term_to_mlflow(trained: Path) -> None:
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{trained}/mlruns.db")
    exp = client.get_experiment_by_name("hermes")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1  # trainer and validator share one run
    metrics = runs[0].data.metrics
    for key in (
        "loss",
        "loss_seg_l",
        "loss_contrast_seg",
        "loss_contrast_cls",
        "select_rate_pixel",
        "val_mean_dice",
    ):
        assert key in metrics, key


def test_evaluation_prints_and_writes_metrics(trained: Path) -> None:
    run("evaluating", config_file=EVAL, **_overrides(trained))
    metrics = json.loads((trained / "eval" / "metrics.json").read_text())
    for key in ("dice", "iou", "hd95", "accuracy", "auc", "sensitivity", "specificity", "f1", "dice_pooled"):
        assert key in metrics, key
    assert metrics["num_images"] == 6


def test_resume_continues_from_checkpoint(trained: Path, tmp_path: Path) -> None:
    ckpt = trained / "models" / "checkpoint_final.pt"
    over = _overrides(trained, max_epochs=3, resume_from=str(ckpt), ckpt_dir=str(tmp_path), use_mlflow=False)
    run("training", config_file=TRAIN, **over)
    final = torch.load(tmp_path / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert final["trainer"]["iteration"] == 6  # resumed at 4, one more epoch of 2


def test_same_seed_same_metrics(tmp_path: Path) -> None:
    results = []
    for name in ("a", "b"):
        root = tmp_path / name
        over = _overrides(root, synthetic_dir=str(tmp_path / "data"), max_epochs=1, use_mlflow=False)
        run("training", config_file=TRAIN, **over)
        results.append(json.loads((root / "eval" / "val_metrics.json").read_text()))
    assert results[0] == results[1]


def test_missing_dataset_dir_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dataset"
    with pytest.raises(RuntimeError) as info:  # MONAI wraps errors raised while evaluating a config item
        run("training", config_file=TRAIN, **_overrides(tmp_path, dataset_dir=str(missing)))
    cause = info.value
    while cause is not None and not isinstance(cause, FileNotFoundError):
        cause = cause.__cause__
    assert cause is not None and "dataset_dir not found" in str(cause) and str(missing) in str(cause)


def test_supervised_only_override_is_suponly() -> None:
    parser = ConfigParser()
    parser.read_config([TRAIN, str(CONFIGS / "supervised_only.yaml")])
    assert parser["semi_supervised"] is False
    for key in (
        "use_attention",
        "use_saliency",
        "use_image_contrast",
        "use_pixel_contrast",
        "use_consistency",
    ):
        assert parser[key] is False, key


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    from hermes_monai.data import generate_synthetic_dataset

    data = tmp_path / "data"
    datalist = generate_synthetic_dataset(
        data, num_labeled=4, num_unlabeled=2, num_validation=2, num_test=2, image_size=32
    )
    entries = json.loads(Path(datalist).read_text())
    broken = data / entries["labeled"][1]["image"]
    broken.write_bytes(b"this is not a png")
    with pytest.raises(RuntimeError) as info:
        run("training", config_file=TRAIN, **_overrides(tmp_path, dataset_dir=str(data), use_mlflow=False))
    chain, err = [], info.value
    while err is not None:
        chain.append(str(err))
        err = err.__cause__
    # the start-up data check stops the run before any data loader, naming the file first
    assert any(msg.startswith(f"{broken}: cannot identify image file") for msg in chain), chain


@pytest.mark.parametrize("layout", [True, False])
def test_channels_last_switch_sets_layout_not_result(layout: bool) -> None:
    """``channels_last`` changes the memory layout of the network only: same outputs as NCHW."""

    def build(channels_last: bool) -> torch.nn.Module:
        parser = ConfigParser()
        parser.read_config(TRAIN)
        parser.update({"channels_last": channels_last, "device": "$torch.device('cpu')"})
        return parser.get_parsed_content("network")

    net, ref = build(layout), build(False)
    ref.load_state_dict(net.state_dict())
    convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(
        w.is_contiguous(memory_format=torch.channels_last if layout else torch.contiguous_format)
        for w in convs
    )
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    net.eval(), ref.eval()
    with torch.no_grad():
        out, expected = net(x), ref(x)
    assert out["seg_logits"].is_contiguous(memory_format=torch.channels_last) == layout
    for key in ("seg_logits", "cls_logits"):
        torch.testing.assert_close(out[key], expected[key], rtol=1e-3, atol=1e-3)


def test_compile_switch_compiles_in_place_with_its_options() -> None:
    """``compile: true`` compiles the network's forward with ``compile_options`` (here dynamo with the eager
    backend, which traces without code generation): same ``state_dict`` keys, so checkpoints load either way,
    and the same outputs; ``compile: false`` leaves it eager."""

    def build(compile_on: bool) -> torch.nn.Module:
        parser = ConfigParser()
        parser.read_config(TRAIN)
        parser.update(
            {
                "compile": compile_on,
                "compile_options": {"backend": "eager"},
                "channels_last": False,
                "device": "$torch.device('cpu')",
            }
        )
        return parser.get_parsed_content("network")

    torch._dynamo.reset()
    net, ref = build(True), build(False)
    assert net._compiled_call_impl is not None and ref._compiled_call_impl is None
    assert list(net.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(net.state_dict())
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    net.eval(), ref.eval()
    with torch.no_grad():
        out, expected = net(x), ref(x)
    for key in ("seg_logits", "cls_logits", "saliency"):
        torch.testing.assert_close(out[key], expected[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("amp_dtype", "expected"), [(None, {}), ("bfloat16", {"dtype": torch.bfloat16})])
def test_amp_dtype_reaches_the_trainer_and_both_evaluators(amp_dtype: str | None, expected: dict) -> None:
    parser = ConfigParser()
    parser.read_config([TRAIN, str(CONFIGS / "evaluate.yaml")])
    parser.update({"amp_dtype": amp_dtype})
    for key in (
        "amp_kwargs",
        "train#trainer#amp_kwargs",
        "validate#evaluator#amp_kwargs",
        "test#evaluator#amp_kwargs",
    ):
        assert parser.get_parsed_content(key) == expected, key
