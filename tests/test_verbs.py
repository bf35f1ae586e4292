"""The model-zoo verbs on this bundle: the merged train + evaluate configs evaluate, ``--tracking mlflow``
leaves one MLflow handler per engine, and ``run`` trains on MONAI Label-style data (masks, no classes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_train_overrides
from monai.bundle import ConfigWorkflow, run
from monai.handlers import MLFlowHandler

CONFIGS = Path(__file__).resolve().parents[1] / "bundle" / "configs"
TRAIN = str(CONFIGS / "train.yaml")
EVAL = [TRAIN, str(CONFIGS / "evaluate.yaml")]
META = str(CONFIGS / "metadata.json")


def test_zoo_idiom_train_plus_evaluate_evaluates(trained_bundle: Path) -> None:
    final = trained_bundle / "models" / "checkpoint_final.pt"
    before = final.stat().st_mtime_ns
    out = trained_bundle / "eval_zoo"
    run(config_file=EVAL, **tiny_train_overrides(trained_bundle), output_dir=str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    test_split = json.loads((trained_bundle / "data" / "datalist.json").read_text())["test"]
    assert metrics["num_images"] == len(test_split) and "dice" in metrics and "auc" in metrics
    assert final.stat().st_mtime_ns == before  # no training happened


@pytest.mark.parametrize("tracking", [None, "mlflow"])
def test_one_mlflow_handler_per_engine(trained_bundle: Path, tmp_path: Path, tracking: str | None) -> None:
    overrides = tiny_train_overrides(trained_bundle)
    overrides.update(
        use_mlflow=True, output_dir=str(tmp_path), tracking_uri=f"sqlite:///{tmp_path}/mlruns.db"
    )
    wf = ConfigWorkflow(
        config_file=TRAIN, meta_file=META, workflow_type="train", tracking=tracking, **overrides
    )
    wf.initialize()
    for handlers_id in ("train#handlers", "validate#handlers"):
        handlers = wf.parser.get_parsed_content(handlers_id)
        assert sum(isinstance(h, MLFlowHandler) for h in handlers) == 1, handlers_id


def test_training_on_monai_label_data_without_classes(trained_bundle: Path, tmp_path: Path) -> None:
    """What MONAI Label's BundleTrainTask does: ``run`` with its datastore's image + mask entries (no class)
    as ``train#dataset#data`` and ``validate#dataset#data``; the classification loss skips the unknown
    classes, training completes and the best model is written."""
    datalist = json.loads((trained_bundle / "data" / "datalist.json").read_text())
    base = trained_bundle / "data"
    entries = [
        {"image": str(base / e["image"]), "label": str(base / e["label"])} for e in datalist["labeled"]
    ]
    overrides = tiny_train_overrides(tmp_path)
    overrides["synthetic_dir"] = str(base)  # the unlabeled stream: the bundle's own datalist
    overrides["train#dataset#data"] = entries[:6]
    overrides["validate#dataset#data"] = entries[6:]
    run(config_file=TRAIN, **overrides)
    assert (tmp_path / "models" / "model.pt").is_file()
