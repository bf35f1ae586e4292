"""Runs of a comparison: which methods exist, one (method, budget, seed) run planned, trained, evaluated.

:data:`METHODS` names every compared method as config files merged over ``train.yaml`` plus overrides
(Hermes, SupOnly and one ablation per switch). :func:`plan_runs` writes each (budget, seed)'s derived
datalist (:mod:`hermes_monai.data.budgets`) and returns a :class:`RunSpec` per run; :func:`execute` trains
one through the real bundle (``monai.bundle.run("training", ...)``), evaluates the best-validation
checkpoint and the final weights on the test split, and returns its record. A finished run is re-used
when its configuration fingerprint matches, and is an error when it does not.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from hermes_monai.benchmarking.machine import machine_info
from hermes_monai.data.budgets import load_splits, write_budget_datalist
from hermes_monai.io import atomic_path, write_json_atomic

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


EXPERIMENT = "compare"
# keys the driver sets for every run; a user --override of these is an error
RESERVED_KEYS: frozenset[str] = frozenset(
    {
        "bundle_root",
        "datalist",
        "dataset_dir",
        "seed",
        "tracking_uri",
        "experiment_name",
        "run_name",
        "use_mlflow",
    }
)


@dataclass(frozen=True)
class Method:
    """A compared method: config files merged over ``train.yaml`` and overrides applied on top.

    Args:
        config_files: file names inside the bundle's config folder, merged after ``train.yaml``.
        overrides: config id -> value, applied after the user's ``--override`` pairs.
    """

    config_files: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)


METHODS: dict[str, Method] = {
    "hermes": Method(),
    "suponly": Method(config_files=("supervised_only.yaml",)),
    "no_attention": Method(overrides={"use_attention": False}),
    "no_saliency": Method(overrides={"use_saliency": False}),
    "no_ias": Method(overrides={"use_attention": False, "use_saliency": False}),
    "attach_seg": Method(overrides={"detach_seg_features": False}),
    "no_image_contrast": Method(overrides={"use_image_contrast": False}),
    "no_pixel_contrast": Method(overrides={"use_pixel_contrast": False}),
    "no_consistency": Method(overrides={"use_consistency": False}),
    "no_confidence_threshold": Method(overrides={"use_confidence_threshold": False}),
    "no_entropy_threshold": Method(overrides={"use_entropy_threshold": False}),
    # Hermes under bf16 autocast (trainer and evaluators): the bf16 parity run, paired with "hermes"
    "bf16": Method(overrides={"amp": True, "amp_dtype": "bfloat16"}),
    # Hermes in fp32 with PyTorch's default NCHW layout: the same arithmetic in another rounding order, so its
    # distance from "hermes" is the run-to-run spread any numerical change causes (the parity table's control)
    "fp32_nchw": Method(overrides={"channels_last": False}),
}


@dataclass(frozen=True)
class RunSpec:
    """One (method, budget, seed) training + evaluation, fully specified."""

    method: str
    budget: int
    seed: int
    run_dir: Path
    datalist: Path
    train_files: tuple[str, ...]
    eval_files: tuple[str, ...]
    overrides: Mapping[str, Any]

    @property
    def name(self) -> str:
        return run_name(self.method, self.budget, self.seed)

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a finished run to be re-used (JSON-normalised)."""
        digest = hashlib.sha256(self.datalist.read_bytes()).hexdigest()
        return _json_normalise(
            {
                "train_files": [Path(f).name for f in self.train_files],
                "overrides": dict(self.overrides),
                "datalist_sha256": digest,
            }
        )


def run_name(method: str, budget: int, seed: int) -> str:
    """The run folder and MLflow run name of one comparison run."""
    return f"{method}_n{budget}_s{seed}"


def _json_normalise(obj: Any) -> Any:
    """Round-trip through JSON (tuples -> lists, Paths -> str) so stored and fresh values compare equal."""
    return json.loads(json.dumps(obj, default=str))


def config_value(files: Sequence[str], overrides: Mapping[str, Any], key: str) -> Any:
    """Resolve one (cheap) config item of a run without building the run."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(list(files))
    parser.update(dict(overrides))
    return parser.get_parsed_content(key)


def _check_batches(spec: RunSpec) -> None:
    """Fail early when a split cannot fill one batch (the loaders drop partial batches)."""
    data = json.loads(spec.datalist.read_text())
    needs = [("labeled", "labeled_batch_size")]
    if config_value(spec.train_files, spec.overrides, "semi_supervised"):
        needs.append(("unlabeled", "unlabeled_batch_size"))
    for split, key in needs:
        size = int(config_value(spec.train_files, spec.overrides, key))
        count = len(data.get(split, []))
        if count < size:
            raise ValueError(f"{spec.name}: split '{split}' has {count} entries, fewer than {key}={size}")


def mlflow_client(tracking_uri: str) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _find_runs(client: MlflowClient, name: str) -> list:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return []
    return client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`mlflow.runName` = '{name}'",
        order_by=["attributes.start_time DESC"],
    )


def metric_curve(
    client: MlflowClient, run_id: str | None, key: str, epoch_length: int
) -> list[tuple[int, float]]:
    """``[(iteration, value), ...]`` of an MLflow metric logged per epoch (step × ``epoch_length``; 1 for
    a metric logged per iteration), sorted by iteration."""
    if run_id is None:
        return []
    history = client.get_metric_history(run_id, key)
    points = {int(m.step) * int(epoch_length): float(m.value) for m in history}
    return sorted(points.items())


def execute(
    spec: RunSpec, tracking_uri: str, force: bool = False, keep_checkpoints: bool = False
) -> dict[str, Any]:
    """Train and evaluate one run unless it is already finished; return its record.

    The record (also ``<run_dir>/compare_run.json``) holds method, budget, seed, the configuration
    fingerprint, the MLflow run id, wall-clock times, the test metrics and ``epoch_length``. Unless
    ``keep_checkpoints``, the resumable training checkpoints (``models/checkpoint*.pt``, optimiser state
    included) are deleted after evaluation; the evaluated weights ``models/model.pt`` and
    ``models/model_final.pt`` stay. ``final_metrics`` holds the final weights' test metrics (``None``
    for a run trained before they were kept).
    """
    from monai.bundle import run

    record_path = spec.run_dir / "compare_run.json"
    metrics_path = spec.run_dir / "eval" / "metrics.json"
    fingerprint = spec.fingerprint()
    if not force and metrics_path.is_file():
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        if record.get("fingerprint") != fingerprint:
            raise RuntimeError(
                f"{spec.run_dir} holds a finished run with a different configuration; "
                "pass --force to retrain it or choose another --output_dir"
            )
        print(f"[compare] {spec.name}: finished earlier, re-using {metrics_path}", flush=True)
        record["metrics"] = json.loads(metrics_path.read_text())
        record["final_metrics"] = evaluate_final(spec)
        return record

    _check_batches(spec)
    client = mlflow_client(tracking_uri)
    for old in _find_runs(client, spec.name):  # MLFlowHandler would append to an unfinished namesake
        client.delete_run(old.info.run_id)
    if spec.run_dir.exists():
        shutil.rmtree(spec.run_dir)
    spec.run_dir.mkdir(parents=True)
    record: dict[str, Any] = {
        "name": spec.name,
        "method": spec.method,
        "budget": spec.budget,
        "seed": spec.seed,
        "run_dir": str(spec.run_dir),
        "datalist": str(spec.datalist),
        "config_files": [str(f) for f in spec.train_files],
        "fingerprint": fingerprint,
        "epoch_length": int(config_value(spec.train_files, spec.overrides, "epoch_length")),
        "mlflow_run_id": None,
        # results differ between CPU generations with the same seed: which machine trained this run
        "machine": machine_info(torch.device("cpu")),
    }
    write_json_atomic(record_path, record, strict=True)

    print(f"[compare] {spec.name}: training", flush=True)
    start = time.perf_counter()
    run("training", config_file=list(spec.train_files), **spec.overrides)
    record["train_seconds"] = round(time.perf_counter() - start, 2)
    found = _find_runs(client, spec.name)
    record["mlflow_run_id"] = found[0].info.run_id if found else None
    write_json_atomic(record_path, record, strict=True)

    print(f"[compare] {spec.name}: evaluating", flush=True)
    start = time.perf_counter()
    run("evaluating", config_file=list(spec.eval_files), **{**spec.overrides, "use_mlflow": False})
    record["eval_seconds"] = round(time.perf_counter() - start, 2)
    metrics = json.loads(metrics_path.read_text())
    record["metrics"] = metrics
    if record["mlflow_run_id"] is not None:
        _log_to_mlflow(client, record["mlflow_run_id"], spec, metrics)
    write_json_atomic(record_path, record, strict=True)
    record["final_metrics"] = evaluate_final(spec)
    write_json_atomic(record_path, record, strict=True)
    if not keep_checkpoints:
        for ckpt in (spec.run_dir / "models").glob("checkpoint*.pt"):
            ckpt.unlink()
    return record


def final_weights(run_dir: Path) -> Path | None:
    """``<run_dir>/models/model_final.pt``: the network's weights when training ended (a plain state dict).

    Written (atomically) from the trainer's ``models/checkpoint_final.pt`` when absent; ``None`` when
    neither file exists (a run whose training checkpoints were pruned before this file was kept).
    """

    from hermes_monai.handlers.checkpoint import load_checkpoint

    models = run_dir / "models"
    target = models / "model_final.pt"
    if target.is_file():
        return target
    source = models / "checkpoint_final.pt"
    if not source.is_file():
        return None
    state = load_checkpoint(source)
    if "network" not in state:
        raise ValueError(f"{source}: no 'network' entry (keys: {sorted(state)})")
    with atomic_path(target) as tmp:
        torch.save(state["network"], tmp)
    return target


def evaluate_final(spec: RunSpec) -> dict[str, Any] | None:
    """Test metrics of the weights at the end of training (:func:`final_weights`) on the run's own test
    split, or ``None`` without them. Cached in ``<run_dir>/eval_final/metrics.json``.

    The best-validation checkpoint (``model.pt``) is the maximum of a noisy curve (a few dozen validation
    images, evaluated every epoch), which favours the method whose curve jumps most; the final weights
    need no selection and, once the validation curves have flattened, are the plateau's model.
    """
    return _evaluate(spec, spec.run_dir / "eval_final", final=True)


def evaluate_on(spec: RunSpec, test_datalist: Path, final: bool = False) -> dict[str, Any] | None:
    """Evaluate one finished run's ``models/model.pt`` (``final``: its final weights, ``None`` without
    them) on the ``test`` split of ``test_datalist``.

    The metrics are written to (and, when present, re-read from)
    ``<run_dir>/eval[_final]_<sha256[:12] of the file>/metrics.json``. Raises ``ValueError`` naming the file
    when one of its test images is also in a training or validation split of the run's datalist.
    """
    test_datalist = Path(test_datalist).resolve()
    digest = hashlib.sha256(test_datalist.read_bytes()).hexdigest()[:12]
    out_dir = spec.run_dir / f"eval{'_final' if final else ''}_{digest}"
    return _evaluate(spec, out_dir, final=final, test_datalist=test_datalist)


def evaluate_under(
    spec: RunSpec, tag: str, changes: Mapping[str, Any], final: bool = False
) -> dict[str, Any] | None:
    """Evaluate one finished run's trained weights (best checkpoint, or ``final``: the final weights) on
    its own test split with the evaluation settings ``changes`` on top of the run's (e.g. bf16 autocast:
    ``{"amp": True, "amp_dtype": "bfloat16"}``), without retraining; ``None`` without final weights.

    Cached in ``<run_dir>/eval[_final]_<tag>/metrics.json``. The paired difference from the run's own
    metrics is then the effect of ``changes`` on these very weights, free of training-run spread.
    """
    out_dir = spec.run_dir / f"eval{'_final' if final else ''}_{tag}"
    return _evaluate(spec, out_dir, final=final, changes=changes)


def _evaluate(
    spec: RunSpec,
    out_dir: Path,
    final: bool,
    test_datalist: Path | None = None,
    changes: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """``run("evaluating", ...)`` of the best checkpoint (or, ``final``, the final weights) into
    ``out_dir``, on the run's own test split or that of ``test_datalist`` (checked for leaks first), with
    the run's overrides updated by ``changes``; cached by ``out_dir/metrics.json``. ``None`` when
    ``final`` and the run kept no final weights."""
    from monai.bundle import run

    metrics_path = out_dir / "metrics.json"
    if metrics_path.is_file():
        return json.loads(metrics_path.read_text())
    overrides = {**spec.overrides, **(changes or {}), "output_dir": str(out_dir), "use_mlflow": False}
    if final:
        weights = final_weights(spec.run_dir)
        if weights is None:
            return None
        overrides["checkpoint"] = str(weights)
    if test_datalist is not None:
        test, _ = load_splits(test_datalist)
        own, _ = load_splits(spec.datalist)
        seen = {
            str(Path(e["image"]).resolve())
            for name, entries in own.items()
            if name != "test"
            for e in entries
        }
        leaked = sorted({str(Path(e["image"]).resolve()) for e in test.get("test", [])} & seen)
        if leaked:
            raise ValueError(
                f"--test_datalist {test_datalist}: {len(leaked)} test image(s) are in a training or "
                f"validation split of {spec.datalist}, e.g. {leaked[0]}"
            )
        overrides["datalist"] = str(test_datalist)
    weights_name = "the final weights" if final else "the best checkpoint"
    where = "" if test_datalist is None else f" on {test_datalist}"
    print(f"[compare] {spec.name}: evaluating {weights_name}{where}", flush=True)
    run("evaluating", config_file=list(spec.eval_files), **overrides)
    return json.loads(metrics_path.read_text())


def _log_to_mlflow(client: MlflowClient, run_id: str, spec: RunSpec, metrics: Mapping[str, Any]) -> None:
    """Add the test metrics and the comparison coordinates to the training run."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    values = [
        Metric(f"test_{k}", float(v), now, 0)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and math.isfinite(float(v))
    ]
    params = [
        Param(f"compare_{k}", str(v))
        for k, v in (("method", spec.method), ("budget", spec.budget), ("seed", spec.seed))
    ]
    client.log_batch(run_id, metrics=values, params=params)


def plan_runs(
    methods: Sequence[str],
    budgets: Sequence[int],
    seeds: Sequence[int],
    splits: Mapping[str, Sequence[Mapping[str, Any]]],
    meta: Any,
    config_dir: Path,
    user: Mapping[str, Any],
    output_dir: Path,
) -> list[RunSpec]:
    """Write the derived datalists and return every run to do, in (budget, seed, method) order."""
    reserved = sorted(RESERVED_KEYS & set(user))
    if reserved:
        raise ValueError(
            f"--override may not set {reserved}: the driver sets them (use --datalist/--dataset_dir)"
        )
    tracking_uri = f"sqlite:///{output_dir / 'mlruns.db'}"
    specs: list[RunSpec] = []
    for budget in budgets:
        for seed in seeds:
            datalist = write_budget_datalist(
                splits, budget, seed, output_dir / "splits" / f"n{budget}_s{seed}.json", meta
            )
            for method in methods:
                spec = METHODS[method]
                files = tuple(str(config_dir / f) for f in spec.config_files)
                method_keys = set(spec.overrides)
                for f in files:
                    method_keys |= set(yaml.safe_load(Path(f).read_text()) or {})
                clash = sorted((method_keys - RESERVED_KEYS) & set(user))
                if clash:
                    raise ValueError(f"--override {clash} would change what method '{method}' is; drop it")
                name = run_name(method, budget, seed)
                overrides = {
                    **user,
                    **spec.overrides,
                    "bundle_root": str(output_dir / "runs" / name),
                    "datalist": str(datalist),
                    "dataset_dir": None,
                    "seed": seed,
                    "use_mlflow": True,
                    "tracking_uri": tracking_uri,
                    "experiment_name": EXPERIMENT,
                    "run_name": name,
                }
                train = str(config_dir / "train.yaml")
                specs.append(
                    RunSpec(
                        method=method,
                        budget=budget,
                        seed=seed,
                        run_dir=output_dir / "runs" / name,
                        datalist=Path(datalist),
                        train_files=(train, *files),
                        eval_files=(train, *files, str(config_dir / "evaluate.yaml")),
                        overrides=overrides,
                    )
                )
    return specs
