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
* bf16 parity (issue 12): with method ``bf16`` and/or ``fp32_nchw`` beside ``hermes``, or with
  ``--bf16_inference`` (every Hermes run's two weight sets evaluated once more under bf16 autocast, cached in
  ``<run_dir>/eval_bf16/`` and ``eval_final_bf16/``), ``results.json`` gains ``bf16_parity`` and ``table.md``
  the parity table (:mod:`hermes_monai.comparison.parity`): per-seed differences from fp32 Hermes in Dice
  and accuracy, within ±0.5 points or not.
* Guard: the labeled budget must fill one labeled batch and the unlabeled split one unlabeled batch
  (the loaders drop the last partial batch; an empty unlabeled loader would stall the trainer).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hermes_monai.comparison import (
    CURVE_KEYS,
    EXPERIMENT,
    GRAD_TERMS,
    METHODS,
    config_value,
    evaluate_on,
    evaluate_under,
    execute,
    format_table,
    metric_curve,
    mlflow_client,
    plan_runs,
    plateau_rows,
    plot_curves,
    plot_grad_shares,
    report_markdown,
    summarise,
)
from hermes_monai.comparison.parity import BF16_EVAL, INFERENCE_ENTRY, format_parity_table, parity
from hermes_monai.data.budgets import load_splits
from hermes_monai.io import write_json_atomic, write_text_atomic
from hermes_monai.overrides import parse_override

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_DIR = REPO / "bundle" / "configs"
# test images of the generated dataset: on the bundle's 60, a Hermes - SupOnly Dice difference read -8.3 where
# 400 fresh images read +2.2 (docs/benchmarks.md, "How many test images a comparison needs")
DEFAULT_NUM_TEST = 400


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
    p.add_argument(
        "--bf16_inference",
        action="store_true",
        help="also evaluate every Hermes run's weights (both sets) under bf16 autocast: the inference row of "
        "the bf16 parity table",
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
    synthetic = {**config_value([str(config_dir / "train.yaml")], user, "synthetic"), "seed": args.data_seed}
    if "synthetic#num_test" not in user:
        synthetic["num_test"] = args.num_test
    path = ensure_synthetic_dataset(output_dir / "data", **synthetic).resolve()
    return path, path.parent


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
        if args.bf16_inference and spec.method == "hermes":
            for source, entry in INFERENCE_ENTRY.items():
                record[entry] = evaluate_under(spec, "bf16", BF16_EVAL, final=source == "final_metrics")
        records.append(record)

    client = mlflow_client(tracking_uri)
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
    parity_tables = [
        parity([r for r in records if int(r["budget"]) == b], budget=b)
        for b in args.budgets
        if {"bf16", "fp32_nchw"} & set(args.methods) or args.bf16_inference
    ]
    parity_tables = [t for t in parity_tables if t["comparisons"]]
    if parity_tables:
        results["bf16_parity"] = parity_tables
    write_json_atomic(output_dir / "results.json", results, strict=True)
    test_name = "Test split" if args.test_datalist is None else f"Test split of {args.test_datalist}"
    text = report_markdown(rows, final_rows, flat_rows, args.seeds, test_name)
    for t in parity_tables:
        text += "\nbf16 parity (paired per seed, points; `hermes_monai.comparison.parity`):\n\n"
        text += format_parity_table(t)
    write_text_atomic(output_dir / "table.md", text)
    plot_curves(records, output_dir / "curves.png")
    plot_grad_shares(records, output_dir / "grad_shares.png")
    print(table, flush=True)
    return results


if __name__ == "__main__":
    main()
