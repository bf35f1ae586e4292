"""Does semi-supervision pay? Hermes against the SupOnly baseline (and ablations) at fixed label budgets.

For every label budget N, seed s and method m this driver trains the real bundle in-process
(``monai.bundle.run("training", ...)``), evaluates on the test split (``run("evaluating", ...)``) both the
best-validation checkpoint and the weights at the end of training, and collects the test metrics and the
validation learning curves::

    python scripts/compare.py --budgets 10 20 --seeds 0 1 2 --methods hermes suponly \
        --output_dir docs/compare --override max_epochs=30 --override epoch_length=10

Data: ``--datalist PATH`` or ``--dataset_dir DIR`` (holding ``datalist.json``); by default the embedded
synthetic dataset is generated into ``<output_dir>/data`` with train.yaml's ``synthetic`` settings
(``--override synthetic#num_labeled=...`` changes them) and the fixed ``--data_seed``, so every
training seed sees the same images; its test split has ``--num_test`` images (400 by default, not the
bundle's 60: differences of a few points need that many).

Label budget (HERMES.md §7 protocol, N/K per class for K classes): for each (N, s) a derived datalist
``<output_dir>/splits/n{N}_s{s}.json`` is written with absolute paths: ``labeled`` = a class-balanced
draw of N entries from the dataset's ``labeled`` split, the other labeled entries moved to
``unlabeled`` (without ``label``/``class``), ``validation``/``test`` unchanged, split disjointness
checked. Every method uses the same subset at a given (N, s).

Outputs in ``--output_dir``: ``runs/<method>_n<N>_s<seed>/`` (the bundle root of each run: ``models/``,
``eval/metrics.json``, ``eval_final/metrics.json``, ``compare_run.json``), ``mlruns.db`` (MLflow
experiment ``compare``, one run per (method, N, seed) holding the training curves, the test metrics as
``test_*`` and the comparison parameters), ``results.json``, ``table.md`` and ``curves.png``. Runs whose
``eval/metrics.json`` exists are skipped (the driver is resumable) unless ``--force``; a finished run whose
recorded configuration differs from the requested one is an error rather than a silently stale result.

Choices where the spec is silent (documented here and in docs/compare.md):

* Budget draw: one ``numpy.random.default_rng(seed)`` permutation per class (classes sorted), the first
  N/K of each taken, so the subsets of one seed are nested across budgets (the N=10 subset lies
  inside the N=20 one), which makes budget trends less noisy. N must be a multiple of K.
* The synthetic dataset seed is ``--data_seed`` (default 0), not the training seed: seeds vary the
  labeled subset and the initialisation/augmentation, not the images.
* Std over seeds is the sample std (ddof 1); with one seed only the mean is shown. The difference rows
  (``method - reference``, reference ``suponly`` by default) are paired: per-seed differences on the same
  labeled subset, then mean ± sample std.
* Learning curves: ``val_mean_dice`` / ``val_accuracy`` from the MLflow run, logged at the trainer's
  epoch; x = epoch × ``epoch_length`` (iterations); mean over the seeds that have that point.
* Evaluation runs with ``use_mlflow=false``; the driver logs the test metrics (``test_<name>``) into the
  training run itself, so the experiment has exactly one MLflow run per (method, N, seed). Earlier
  MLflow runs with the same name are deleted before a run is (re)trained, because ``MLFlowHandler``
  would otherwise append to an unfinished run of that name.
* Override precedence: config files < ``--override`` < the method's own overrides < the driver's keys
  (``bundle_root``, ``datalist``, ``dataset_dir``, ``seed``, tracking); an ``--override`` that sets one
  of the method's keys or a driver key is rejected as ambiguous.
* Two test figures per run. ``models/model.pt`` is the best-validation checkpoint: the maximum of a noisy
  curve (the validation split's few dozen images, every epoch), which flatters the method whose curve jumps
  most (SupOnly at 20 labels: validation Dice 0.29-0.73 between neighbouring epochs late in a 2400-iteration
  run, docs/benchmarks.md). ``models/model_final.pt`` holds the weights when training ended (taken from the
  trainer's ``checkpoint_final.pt``): no selection, and the plateau's model once the curves have flattened.
  ``table.md`` has one table for each, then each validation curve's last-quarter level and its change from
  the third quarter (the plateau check).
* Disk: each run's resumable training checkpoints (optimiser state included, ~0.4 GB per run on the CPU
  preset) are deleted once the run is evaluated; ``models/model.pt`` and ``models/model_final.pt`` (the
  evaluated weights) stay. ``--keep_checkpoints`` keeps them.
* ``--test_datalist FILE``: every run (finished ones too) is also evaluated on the ``test`` split of
  another datalist; each record's ``metrics`` (so the table and ``results.json``) are then those, its
  own test split's moved to ``own_test_metrics``. Use it to judge runs on a larger
  held-out set than the dataset's own test split without retraining. The extra evaluation is cached in
  ``<run_dir>/eval_<first 12 hex of the file's sha256>/metrics.json``; a test image that any training or
  validation split of the run also holds is an error.
* Guard: the labeled budget must fill one labeled batch and the unlabeled split one unlabeled batch
  (the loaders drop the last partial batch; an empty unlabeled loader would stall the trainer).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from hermes_monai.io import atomic_path, write_text_atomic
from hermes_monai.overrides import parse_override

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_DIR = REPO / "bundle" / "configs"
# test images of the generated dataset: on the bundle's 60, a Hermes - SupOnly Dice difference read -8.3 where
# 400 fresh images read +2.2 (docs/benchmarks.md, "How many test images a comparison needs")
DEFAULT_NUM_TEST = 400
EXPERIMENT = "compare"
CURVE_KEYS: tuple[str, ...] = ("val_mean_dice", "val_accuracy")
CURVE_TITLES: dict[str, str] = {
    "val_mean_dice": "validation lesion Dice",
    "val_accuracy": "validation accuracy",
}
#: Loss terms whose gradient norm on the shared seg encoder the trainer logs (``grad_norm_<term>``, at
#: ``grad_monitor_interval`` iterations) and ``grad_shares.png`` plots as a ratio to ``seg_l``'s
GRAD_TERMS: tuple[str, ...] = ("seg_u", "contrast_seg", "itc", "cls_l", "cls_u", "contrast_cls")
TABLE_METRICS: tuple[tuple[str, str], ...] = (
    ("dice", "Dice"),
    ("iou", "IoU"),
    ("accuracy", "Acc"),
    ("auc", "AUC"),
)
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


# ------------------------------------------------------------------------------------------ small helpers
def run_name(method: str, budget: int, seed: int) -> str:
    """The run folder and MLflow run name of one comparison run."""
    return f"{method}_n{budget}_s{seed}"


def _json_normalise(obj: Any) -> Any:
    """Round-trip through JSON (tuples -> lists, Paths -> str) so stored and fresh values compare equal."""
    return json.loads(json.dumps(obj, default=str))


def _finite_or_none(obj: Any) -> Any:
    """Replace NaN/inf floats (not valid JSON) by None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def write_strict_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (NaN -> null) atomically."""
    write_text_atomic(path, json.dumps(_finite_or_none(obj), indent=2, default=str, allow_nan=False) + "\n")


# ------------------------------------------------------------------------------------------ label budgets
def class_balanced_indices(classes: Sequence[Any], budget: int, seed: int) -> list[int]:
    """Indices of a class-balanced draw of ``budget`` items.

    Args:
        classes: the class of each labeled entry (any sortable values), length M.
        budget: N, a multiple of the number of distinct classes K; N/K are drawn per class.
        seed: seed of ``numpy.random.default_rng``; one permutation per class (classes in sorted order),
            independent of ``budget``, so draws of one seed are nested across budgets.

    Returns:
        The chosen indices into ``classes``, ascending (original order kept).
    """
    values = sorted(set(classes))
    if not values:
        raise ValueError("no labeled entries to draw a budget from")
    if budget <= 0 or budget % len(values):
        raise ValueError(
            f"budget {budget} must be a positive multiple of the number of classes ({len(values)})"
        )
    per_class = budget // len(values)
    labels = np.asarray([values.index(c) for c in classes])
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for k, value in enumerate(values):
        members = np.flatnonzero(labels == k)
        if len(members) < per_class:
            raise ValueError(
                f"budget {budget} needs {per_class} labeled entries of class {value!r}; "
                f"the dataset has {len(members)}"
            )
        chosen.append(members[rng.permutation(len(members))[:per_class]])
    return sorted(int(i) for i in np.concatenate(chosen))


def load_splits(datalist_path: Path, base_dir: Path | None = None) -> tuple[dict[str, list[dict]], Any]:
    """Every split of a datalist with absolute, existence-checked paths, and its ``meta`` (or None)."""
    from hermes_monai.data import load_datalist

    data = json.loads(Path(datalist_path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"datalist {datalist_path} must hold a JSON object of splits")
    splits = {
        name: load_datalist(datalist_path, name, base_dir)
        for name, value in data.items()
        if isinstance(value, list)
    }
    return splits, data.get("meta")


def budget_splits(
    splits: Mapping[str, Sequence[Mapping[str, Any]]], budget: int, seed: int
) -> dict[str, list[dict]]:
    """The splits of one (budget, seed): N class-balanced labeled entries, the rest of them unlabeled.

    Args:
        splits: split name -> entries; must contain ``labeled`` (entries with ``class``) and may contain
            ``unlabeled``, ``validation``, ``test`` (copied unchanged) and others.
        budget / seed: see :func:`class_balanced_indices`.

    Returns:
        New splits: ``labeled`` the chosen entries, ``unlabeled`` the original unlabeled entries followed by
        the unchosen labeled ones stripped of ``label`` and ``class``; every other split unchanged.
    """
    if "labeled" not in splits:
        raise KeyError("the datalist has no 'labeled' split to draw label budgets from")
    labeled = [dict(e) for e in splits["labeled"]]
    missing = [e.get("image") for e in labeled if "class" not in e]
    if missing:
        raise ValueError(f"labeled entries without 'class' cannot be balanced, e.g. {missing[0]}")
    keep = set(class_balanced_indices([e["class"] for e in labeled], budget, seed))
    moved = [
        {k: v for k, v in e.items() if k not in ("label", "class")}
        for i, e in enumerate(labeled)
        if i not in keep
    ]
    out = {name: [dict(e) for e in entries] for name, entries in splits.items()}
    out["labeled"] = [e for i, e in enumerate(labeled) if i in keep]
    out["unlabeled"] = [*out.get("unlabeled", []), *moved]
    return out


def write_budget_datalist(
    splits: Mapping[str, Sequence[Mapping[str, Any]]],
    budget: int,
    seed: int,
    path: Path,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write the derived datalist of one (budget, seed) to ``path`` (atomic, disjointness checked).

    ``splits`` must hold absolute paths (see :func:`load_splits`); ``meta`` of the source is kept under
    ``meta.source`` together with ``budget`` and ``budget_seed``.
    """
    from hermes_monai.data import check_disjoint, write_datalist

    derived = budget_splits(splits, budget, seed)
    check_disjoint(derived)
    info = {"budget": budget, "budget_seed": seed, "source": meta}
    return write_datalist(path, derived, info)


# ------------------------------------------------------------------------------------------ runs
def _config_value(files: Sequence[str], overrides: Mapping[str, Any], key: str) -> Any:
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
    if _config_value(spec.train_files, spec.overrides, "semi_supervised"):
        needs.append(("unlabeled", "unlabeled_batch_size"))
    for split, key in needs:
        size = int(_config_value(spec.train_files, spec.overrides, key))
        count = len(data.get(split, []))
        if count < size:
            raise ValueError(f"{spec.name}: split '{split}' has {count} entries, fewer than {key}={size}")


def _mlflow_client(tracking_uri: str) -> MlflowClient:
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
    client = _mlflow_client(tracking_uri)
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
        "epoch_length": int(_config_value(spec.train_files, spec.overrides, "epoch_length")),
        "mlflow_run_id": None,
    }
    write_strict_json(record_path, record)

    print(f"[compare] {spec.name}: training", flush=True)
    start = time.perf_counter()
    run("training", config_file=list(spec.train_files), **spec.overrides)
    record["train_seconds"] = round(time.perf_counter() - start, 2)
    found = _find_runs(client, spec.name)
    record["mlflow_run_id"] = found[0].info.run_id if found else None
    write_strict_json(record_path, record)

    print(f"[compare] {spec.name}: evaluating", flush=True)
    start = time.perf_counter()
    run("evaluating", config_file=list(spec.eval_files), **{**spec.overrides, "use_mlflow": False})
    record["eval_seconds"] = round(time.perf_counter() - start, 2)
    metrics = json.loads(metrics_path.read_text())
    record["metrics"] = metrics
    if record["mlflow_run_id"] is not None:
        _log_to_mlflow(client, record["mlflow_run_id"], spec, metrics)
    write_strict_json(record_path, record)
    record["final_metrics"] = evaluate_final(spec)
    write_strict_json(record_path, record)
    if not keep_checkpoints:
        for ckpt in (spec.run_dir / "models").glob("checkpoint*.pt"):
            ckpt.unlink()
    return record


def final_weights(run_dir: Path) -> Path | None:
    """``<run_dir>/models/model_final.pt``: the network's weights when training ended (a plain state dict).

    Written (atomically) from the trainer's ``models/checkpoint_final.pt`` when absent; ``None`` when
    neither file exists (a run whose training checkpoints were pruned before this file was kept).
    """
    import torch

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


def _evaluate(
    spec: RunSpec, out_dir: Path, final: bool, test_datalist: Path | None = None
) -> dict[str, Any] | None:
    """``run("evaluating", ...)`` of the best checkpoint (or, ``final``, the final weights) into
    ``out_dir``, on the run's own test split or that of ``test_datalist`` (checked for leaks first);
    cached by ``out_dir/metrics.json``. ``None`` when ``final`` and the run kept no final weights."""
    from monai.bundle import run

    metrics_path = out_dir / "metrics.json"
    if metrics_path.is_file():
        return json.loads(metrics_path.read_text())
    overrides = {**spec.overrides, "output_dir": str(out_dir), "use_mlflow": False}
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


# ------------------------------------------------------------------------------------------ summaries
def _mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean and sample std (ddof 1; NaN for one value) of the finite values, and their count."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan, 0
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return float(arr.mean()), std, int(arr.size)


def _metric(record: Mapping[str, Any], key: str, source: str = "metrics") -> float:
    value = (record.get(source) or {}).get(key)
    return math.nan if value is None else float(value)


def summarise(
    records: Sequence[Mapping[str, Any]],
    methods: Sequence[str],
    budgets: Sequence[int],
    reference: str | None,
    source: str = "metrics",
) -> list[dict[str, Any]]:
    """Rows of the comparison table, in %: one per (budget, method), then ``method - reference`` rows.

    Each row: ``budget``, ``method`` (``"A - B"`` for a difference row), ``seeds`` (count) and, per table
    metric, ``<metric>_mean`` / ``<metric>_std`` (percent; std is NaN with one seed). Difference rows are
    paired over the seeds both methods have. ``source``: the record entry holding the test metrics,
    ``"metrics"`` (best validation checkpoint) or ``"final_metrics"`` (weights at the end of training);
    records without it are left out.
    """
    rows: list[dict[str, Any]] = []
    for budget in budgets:
        by_method = {
            m: {
                int(r["seed"]): r
                for r in records
                if r["method"] == m and int(r["budget"]) == budget and r.get(source)
            }
            for m in methods
        }
        for m in methods:
            runs = list(by_method[m].values())
            if not runs:
                continue
            row: dict[str, Any] = {"budget": budget, "method": m, "seeds": len(runs)}
            for key, _ in TABLE_METRICS:
                mean, std, _n = _mean_std([100.0 * _metric(r, key, source) for r in runs])
                row[f"{key}_mean"], row[f"{key}_std"] = mean, std
            rows.append(row)
        if reference is None or not by_method.get(reference):
            continue
        for m in methods:
            seeds = sorted(set(by_method[m]) & set(by_method[reference]))
            if m == reference or not seeds:
                continue
            row = {"budget": budget, "method": f"{m} - {reference}", "seeds": len(seeds)}
            for key, _ in TABLE_METRICS:
                mine, ref = by_method[m], by_method[reference]
                diffs = [
                    100.0 * (_metric(mine[s], key, source) - _metric(ref[s], key, source)) for s in seeds
                ]
                row[f"{key}_mean"], row[f"{key}_std"], _n = _mean_std(diffs)
            rows.append(row)
    return rows


def plateau_change(curve: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(mean of the last quarter, last-quarter mean minus third-quarter mean) of a learning curve.

    ``curve``: ``[(iteration, value), ...]``; the quarters are of the last iteration logged (points with
    ``3T/4 < x <= T`` against ``T/2 < x <= 3T/4``). A change near zero says the curve has flattened;
    NaN when a quarter holds no point.
    """
    if not curve:
        return math.nan, math.nan
    end = max(float(x) for x, _ in curve)
    last = [float(y) for x, y in curve if 0.75 * end < float(x) <= end]
    third = [float(y) for x, y in curve if 0.5 * end < float(x) <= 0.75 * end]
    if not last or not third:
        return math.nan, math.nan
    return float(np.mean(last)), float(np.mean(last) - np.mean(third))


def plateau_rows(
    records: Sequence[Mapping[str, Any]], methods: Sequence[str], budgets: Sequence[int]
) -> list[dict[str, Any]]:
    """Per (budget, method), in %: each validation curve's last-quarter level and its change from the
    third quarter (:func:`plateau_change`), mean ± sample std over seeds (``<curve>_level_*``,
    ``<curve>_change_*``)."""
    rows: list[dict[str, Any]] = []
    for budget in budgets:
        for m in methods:
            runs = [r for r in records if r["method"] == m and int(r["budget"]) == budget]
            if not runs:
                continue
            row: dict[str, Any] = {"budget": budget, "method": m, "seeds": len(runs)}
            for key in CURVE_KEYS:
                pairs = [plateau_change(r.get("curves", {}).get(key, [])) for r in runs]
                for i, part in enumerate(("level", "change")):
                    mean, std, _n = _mean_std([100.0 * p[i] for p in pairs])
                    row[f"{key}_{part}_mean"], row[f"{key}_{part}_std"] = mean, std
            rows.append(row)
    return rows


def format_plateau_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`plateau_rows`."""
    head = ["labels", "method", "seeds"]
    for key in CURVE_KEYS:
        head += [f"{CURVE_TITLES[key]}, last quarter %", "change from third quarter"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = []
        for key in CURVE_KEYS:
            cells.append(_cell(row[f"{key}_level_mean"], row[f"{key}_level_std"], False))
            cells.append(_cell(row[f"{key}_change_mean"], row[f"{key}_change_std"], True))
        lines.append("| " + " | ".join([str(row["budget"]), row["method"], str(row["seeds"]), *cells]) + " |")
    return "\n".join(lines) + "\n"


def _cell(mean: float, std: float, signed: bool) -> str:
    if not math.isfinite(mean):
        return "n/a"
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text if not math.isfinite(std) else f"{text} ± {std:.2f}"


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`summarise` rows (difference rows signed, in bold method name)."""
    head = ["labels", "method", "seeds", *[f"{label} %" for _, label in TABLE_METRICS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        diff = " - " in row["method"]
        name = f"**{row['method']}**" if diff else row["method"]
        cells = [_cell(row[f"{k}_mean"], row[f"{k}_std"], diff) for k, _ in TABLE_METRICS]
        lines.append("| " + " | ".join([str(row["budget"]), name, str(row["seeds"]), *cells]) + " |")
    return "\n".join(lines) + "\n"


def mean_curves(
    records: Iterable[Mapping[str, Any]], key: str
) -> dict[tuple[int, str], list[tuple[int, float]]]:
    """(budget, method) -> ``[(iteration, mean over seeds), ...]`` of the learning curve ``key``."""
    pooled: dict[tuple[int, str], dict[int, list[float]]] = {}
    for r in records:
        points = pooled.setdefault((int(r["budget"]), r["method"]), {})
        for x, y in r.get("curves", {}).get(key, []):
            points.setdefault(int(x), []).append(float(y))
    return {k: [(x, float(np.mean(ys))) for x, ys in sorted(v.items())] for k, v in pooled.items() if v}


def _pyplot() -> Any:
    """pyplot on the non-interactive Agg backend (imported on first use: plotting is optional)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig: Any, path: Path) -> None:
    """Lay out ``fig``, write it atomically as PNG to ``path`` and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)


def grad_share_curves(
    records: Iterable[Mapping[str, Any]],
) -> dict[tuple[int, str], dict[str, list[tuple[int, float]]]]:
    """(budget, method) -> term -> ``[(iteration, mean over seeds of norm_term / norm_seg_l), ...]``.

    Reads each record's ``grad_curves`` (``grad_norm_<term>`` as ``[iteration, value]``); an iteration
    counts for a seed when both norms were logged there and ``seg_l``'s is positive. Terms whose norm is 0
    throughout (off, or detached from the encoder) are left out, and so are runs without a monitor.
    """
    pooled: dict[tuple[int, str], dict[str, dict[int, list[float]]]] = {}
    for r in records:
        grads = r.get("grad_curves", {})
        ref = {int(x): float(y) for x, y in grads.get("grad_norm_seg_l", [])}
        for term in GRAD_TERMS:
            points = grads.get(f"grad_norm_{term}", [])
            if not any(float(y) > 0 for _, y in points):
                continue
            per_it = pooled.setdefault((int(r["budget"]), r["method"]), {}).setdefault(term, {})
            for x, y in points:
                if ref.get(int(x), 0.0) > 0:
                    per_it.setdefault(int(x), []).append(float(y) / ref[int(x)])
    return {
        key: {t: [(x, float(np.mean(v))) for x, v in sorted(its.items())] for t, its in terms.items() if its}
        for key, terms in pooled.items()
    }


def plot_grad_shares(records: Sequence[Mapping[str, Any]], path: Path) -> bool:
    """Each auxiliary term's encoder-gradient norm over the supervised seg term's, against iteration: one
    panel per (method, budget), mean over seeds, a dashed line at 1 (the gradient budget's bound). Written
    atomically as PNG; returns False (nothing written) when no run logged gradient shares."""
    curves = grad_share_curves(records)
    if not curves:
        return False
    plt = _pyplot()
    keys = sorted(curves)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, (budget, method) in zip(axes[0], keys):
        for i, term in enumerate(GRAD_TERMS):
            if term in curves[(budget, method)]:
                xs, ys = zip(*curves[(budget, method)][term])
                ax.plot(xs, ys, color=plt.get_cmap("tab10")(i), marker="o", markersize=3, label=term)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("encoder gradient norm / seg_l's")
        ax.set_title(f"{method}, N={budget}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save_png(fig, path)
    return True


def plot_curves(records: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Validation Dice and accuracy against iteration, one line per (method, budget), mean over seeds.

    Colour encodes the method, line style the budget. Written atomically as PNG.
    """
    plt = _pyplot()
    methods = sorted({r["method"] for r in records})
    budgets = sorted({int(r["budget"]) for r in records})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, len(CURVE_KEYS), figsize=(6 * len(CURVE_KEYS), 4.5), squeeze=False)
    for ax, key in zip(axes[0], CURVE_KEYS):
        for (budget, method), points in sorted(mean_curves(records, key).items()):
            xs, ys = zip(*points)
            ax.plot(
                xs,
                [100.0 * y for y in ys],
                color=colours[method],
                linestyle=styles[budgets.index(budget) % len(styles)],
                marker="o",
                markersize=3,
                label=f"{method}, N={budget}",
            )
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{key} (%)")
        ax.set_title(CURVE_TITLES.get(key, key))
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    _save_png(fig, path)


# ------------------------------------------------------------------------------------------ driver
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    data = p.add_mutually_exclusive_group()
    data.add_argument("--dataset_dir", type=str, default=None, help="folder holding datalist.json")
    data.add_argument(
        "--datalist", type=str, default=None, help="datalist JSON (paths relative to its folder)"
    )
    p.add_argument("--budgets", type=int, nargs="+", default=[10, 20], help="label budgets N (N/K per class)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--methods",
        nargs="+",
        default=["hermes", "suponly"],
        choices=sorted(METHODS),
        metavar="METHOD",
        help=f"methods to compare, from: {', '.join(METHODS)}",
    )
    p.add_argument(
        "--reference", default="suponly", help="method the difference rows subtract (default suponly)"
    )
    p.add_argument("--output_dir", type=str, default="compare_output")
    p.add_argument("--config_dir", type=str, default=str(DEFAULT_CONFIG_DIR), help="bundle config folder")
    p.add_argument("--data_seed", type=int, default=0, help="seed of the generated synthetic dataset")
    p.add_argument(
        "--num_test",
        type=int,
        default=DEFAULT_NUM_TEST,
        help=f"test images of the generated synthetic dataset (default {DEFAULT_NUM_TEST}; the bundle's 60 "
        "leave several Dice points of noise per run); an explicit --override synthetic#num_test wins; "
        "ignored with --datalist/--dataset_dir",
    )
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="bundle config override for every run (VALUE parsed as on the monai.bundle command line); "
        "repeatable",
    )
    p.add_argument(
        "--test_datalist",
        type=str,
        default=None,
        help="also evaluate every run on the 'test' split of this datalist and report those metrics "
        "(e.g. a larger fresh test set; no retraining)",
    )
    p.add_argument("--force", action="store_true", help="retrain runs that finished earlier")
    p.add_argument(
        "--keep_checkpoints",
        action="store_true",
        help="keep each run's resumable training checkpoints "
        "(default: keep only the evaluated weights, models/model.pt and model_final.pt)",
    )
    p.add_argument(
        "--report_only", action="store_true", help="only rebuild results/table/plot from finished runs"
    )
    return p


def _dataset(
    args: argparse.Namespace, config_dir: Path, user: Mapping[str, Any], output_dir: Path
) -> tuple[Path, Path]:
    """(datalist path, base dir for its relative paths) of the dataset the comparison draws from."""
    from hermes_monai.data import data_base_dir, ensure_synthetic_dataset

    if args.datalist is not None or args.dataset_dir is not None:
        from hermes_monai.data import resolve_datalist

        path = Path(resolve_datalist(args.dataset_dir, args.datalist, output_dir / "data")).resolve()
        return path, Path(data_base_dir(args.dataset_dir, path)).resolve()
    synthetic = {**_config_value([str(config_dir / "train.yaml")], user, "synthetic"), "seed": args.data_seed}
    if "synthetic#num_test" not in user:
        synthetic["num_test"] = args.num_test
    path = ensure_synthetic_dataset(output_dir / "data", **synthetic).resolve()
    return path, path.parent


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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the comparison; returns what is written to ``results.json``."""
    args = build_parser().parse_args(argv)
    output_dir = Path(args.output_dir).resolve()
    config_dir = Path(args.config_dir).resolve()
    user = dict(parse_override(o) for o in args.override)
    output_dir.mkdir(parents=True, exist_ok=True)

    datalist_path, base_dir = _dataset(args, config_dir, user, output_dir)
    splits, meta = load_splits(datalist_path, base_dir)
    specs = plan_runs(args.methods, args.budgets, args.seeds, splits, meta, config_dir, user, output_dir)
    tracking_uri = f"sqlite:///{output_dir / 'mlruns.db'}"

    records: list[dict[str, Any]] = []
    for i, spec in enumerate(specs, 1):
        print(f"[compare] run {i}/{len(specs)}: {spec.name}", flush=True)
        if args.report_only:
            if not (spec.run_dir / "eval" / "metrics.json").is_file():
                print(f"[compare] {spec.name}: not finished, left out", flush=True)
                continue
        force = args.force and not args.report_only
        record = execute(spec, tracking_uri, force=force, keep_checkpoints=args.keep_checkpoints)
        if args.test_datalist is not None:
            record["own_test_metrics"] = record["metrics"]
            record["metrics"] = evaluate_on(spec, Path(args.test_datalist))
            record["own_final_metrics"] = record.get("final_metrics")
            record["final_metrics"] = evaluate_on(spec, Path(args.test_datalist), final=True)
            record["test_datalist"] = str(Path(args.test_datalist).resolve())
        records.append(record)

    client = _mlflow_client(tracking_uri)
    for r in records:
        r["curves"] = {
            k: metric_curve(client, r.get("mlflow_run_id"), k, r["epoch_length"]) for k in CURVE_KEYS
        }
        # logged at iterations (grad_monitor_interval), not epochs
        r["grad_curves"] = {
            k: metric_curve(client, r.get("mlflow_run_id"), k, 1)
            for k in ("grad_norm_seg_l", *(f"grad_norm_{t}" for t in GRAD_TERMS))
        }

    reference = args.reference if args.reference in args.methods else None
    rows = summarise(records, args.methods, args.budgets, reference)
    final_rows = summarise(records, args.methods, args.budgets, reference, source="final_metrics")
    flat_rows = plateau_rows(records, args.methods, args.budgets)
    table = format_table(rows)
    results = {
        "config": {
            "dataset": str(datalist_path),
            "methods": {
                m: {"config_files": list(METHODS[m].config_files), "overrides": dict(METHODS[m].overrides)}
                for m in args.methods
            },
            "budgets": args.budgets,
            "seeds": args.seeds,
            "overrides": user,
            "reference": reference,
            "test_datalist": None if args.test_datalist is None else str(Path(args.test_datalist).resolve()),
            "tracking_uri": tracking_uri,
            "experiment_name": EXPERIMENT,
        },
        "runs": records,
        "summary": rows,
        "summary_final": final_rows,
        "plateau": flat_rows,
    }
    write_strict_json(output_dir / "results.json", results)
    test_name = "Test split" if args.test_datalist is None else f"Test split of {args.test_datalist}"
    header = (
        f"{test_name}, mean ± sample std over seeds {args.seeds} (%); labels = N labeled images "
        "(N/K per class). Difference rows are paired per seed.\n\n"
    )
    text = f"{header}Best validation checkpoint (`models/model.pt`):\n\n{table}"
    if final_rows:
        text += (
            "\nFinal weights (`models/model_final.pt`, the end of training; no selection on validation):\n\n"
            + format_table(final_rows)
        )
    text += (
        "\nValidation curves, last quarter of training and its change from the third quarter "
        "(near 0: flattened):\n\n" + format_plateau_table(flat_rows)
    )
    write_text_atomic(output_dir / "table.md", text)
    plot_curves(records, output_dir / "curves.png")
    plot_grad_shares(records, output_dir / "grad_shares.png")
    print(table, flush=True)
    return results


if __name__ == "__main__":
    main()
