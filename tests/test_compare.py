"""Comparisons (hermes_monai.comparison, data.budgets, scripts/compare.py): label-budget datalists, the
summary arithmetic and one tiny end-to-end comparison.

The end-to-end test trains Hermes and SupOnly through the real bundle (1 iteration each on a tiny synthetic
dataset at 64x64), so it checks the driver, not model quality.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from tiny_bundle import TINY_RUN

from hermes_monai import comparison
from hermes_monai.comparison.parity import format_parity_table, load_parity, parity
from hermes_monai.data import budgets

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("compare_script", REPO / "scripts" / "compare.py")
compare = importlib.util.module_from_spec(_spec)
sys.modules["compare_script"] = compare  # dataclasses resolve annotations through sys.modules
_spec.loader.exec_module(compare)

TINY = {
    "synthetic#image_size": 64,
    "synthetic#num_labeled": 8,
    "synthetic#num_unlabeled": 2,
    "synthetic#num_validation": 2,
    "synthetic#num_test": 4,
    **TINY_RUN,
    "encoder": "resnet10t",  # the smallest timm ResNet: the test checks the driver, not the model
    "decoder_channels": "[32, 16, 8, 8]",
    "max_epochs": 1,
    "epoch_length": 1,
    "device": "$torch.device('cpu')",
}


def _argv(out: Path, **extra) -> list[str]:
    over = {**TINY, **extra}
    argv = ["--budgets", "4", "--seeds", "0", "--methods", "hermes", "suponly", "--output_dir", str(out)]
    for k, v in over.items():
        argv += ["--override", f"{k}={v}"]
    return argv


def _fake_splits() -> dict[str, list[dict]]:
    # labeled: 6 benign (0) + 4 malignant (1), interleaved
    classes = [0, 1, 0, 0, 1, 0, 1, 0, 1, 0]
    return {
        "labeled": [
            {"image": f"/d/l{i}.png", "label": f"/d/m{i}.png", "class": c} for i, c in enumerate(classes)
        ],
        "unlabeled": [{"image": f"/d/u{i}.png"} for i in range(3)],
        "validation": [{"image": "/d/v0.png", "label": "/d/mv0.png", "class": 1}],
        "test": [{"image": "/d/t0.png", "label": "/d/mt0.png", "class": 0}],
    }


# ---------------------------------------------------------------------------------------------- unit tests
def test_class_balanced_indices_balanced_nested_and_checked() -> None:
    classes = [0, 1, 0, 0, 1, 0, 1, 0, 1, 0]
    for seed in range(5):
        four = budgets.class_balanced_indices(classes, 4, seed)
        two = budgets.class_balanced_indices(classes, 2, seed)
        assert len(four) == len(set(four)) == 4 and four == sorted(four)
        assert sorted(classes[i] for i in four) == [0, 0, 1, 1]  # N/2 per class
        assert set(two) <= set(four)  # one seed's subsets are nested across budgets
        assert budgets.class_balanced_indices(classes, 4, seed) == four  # reproducible
    draws = {tuple(budgets.class_balanced_indices(classes, 4, s)) for s in range(10)}
    assert len(draws) > 1  # the seed matters
    with pytest.raises(ValueError, match="multiple"):
        budgets.class_balanced_indices(classes, 3, 0)
    with pytest.raises(ValueError, match="class 1"):  # only 4 malignant: 10 needs 5 of each
        budgets.class_balanced_indices(classes, 10, 0)


def test_budget_splits_move_the_rest_to_unlabeled() -> None:
    splits = _fake_splits()
    out = budgets.budget_splits(splits, 4, seed=3)
    assert len(out["labeled"]) == 4
    assert sorted(e["class"] for e in out["labeled"]) == [0, 0, 1, 1]
    # 3 original unlabeled + (10 - 4) moved labeled entries
    assert len(out["unlabeled"]) == 3 + 6
    assert out["unlabeled"][:3] == splits["unlabeled"]
    for entry in out["unlabeled"]:
        assert set(entry) == {"image"}  # stripped of label and class
    images = lambda name: {e["image"] for e in out[name]}  # noqa: E731
    assert images("labeled") | (images("unlabeled") - {e["image"] for e in splits["unlabeled"]}) == {
        e["image"] for e in splits["labeled"]
    }
    assert not images("labeled") & images("unlabeled")
    assert out["validation"] == splits["validation"] and out["test"] == splits["test"]
    assert splits["labeled"][0]["label"] == "/d/m0.png"  # the input was not modified


def test_summary_rows_mean_std_and_paired_difference() -> None:
    def rec(method: str, seed: int, dice: float, auc: float) -> dict:
        return {
            "method": method,
            "budget": 20,
            "seed": seed,
            "metrics": {"dice": dice, "iou": dice / 2, "accuracy": 0.5, "auc": auc},
        }

    records = [
        rec("hermes", 0, 0.80, 0.9),
        rec("hermes", 1, 0.90, math.nan),
        rec("suponly", 0, 0.70, 0.6),
        rec("suponly", 1, 0.75, 0.8),
    ]
    rows = comparison.summarise(records, ["hermes", "suponly"], [20], "suponly")
    assert [r["method"] for r in rows] == ["hermes", "suponly", "hermes - suponly"]
    hermes, sup, diff = rows
    # hermes Dice: mean (80 + 90) / 2 = 85; sample std sqrt((5^2 + 5^2) / 1) = sqrt(50) = 7.0711
    assert hermes["dice_mean"] == pytest.approx(85.0) and hermes["dice_std"] == pytest.approx(50**0.5)
    # suponly Dice: mean 72.5, std sqrt(2.5^2 * 2) = 3.5355
    assert sup["dice_mean"] == pytest.approx(72.5) and sup["dice_std"] == pytest.approx(12.5**0.5)
    # paired differences 80-70 = 10 and 90-75 = 15: mean 12.5, std sqrt(2.5^2 * 2) = 3.5355
    assert diff["dice_mean"] == pytest.approx(12.5) and diff["dice_std"] == pytest.approx(12.5**0.5)
    # hermes AUC: the NaN of seed 1 is left out -> one value 90, no std
    assert hermes["auc_mean"] == pytest.approx(90.0) and math.isnan(hermes["auc_std"])
    table = comparison.format_table(rows)
    assert "| 20 | hermes | 2 | 85.00 ± 7.07 | 42.50 ± 3.54 | 50.00 ± 0.00 | 90.00 |" in table
    assert "| 20 | **hermes - suponly** | 2 | +12.50 ± 3.54 |" in table


def test_summary_of_final_weights_leaves_out_runs_without_them() -> None:
    def rec(method: str, seed: int, best: float, final: float | None) -> dict:
        scores = {"dice": best, "iou": best, "accuracy": best, "auc": best}
        finals = None if final is None else {"dice": final, "iou": final, "accuracy": final, "auc": final}
        return {"method": method, "budget": 10, "seed": seed, "metrics": scores, "final_metrics": finals}

    records = [rec("hermes", 0, 0.8, 0.7), rec("hermes", 1, 0.6, None), rec("suponly", 0, 0.9, 0.5)]
    best = comparison.summarise(records, ["hermes", "suponly"], [10], "suponly")
    final = comparison.summarise(records, ["hermes", "suponly"], [10], "suponly", source="final_metrics")
    assert [r["seeds"] for r in best] == [2, 1, 1] and [r["seeds"] for r in final] == [1, 1, 1]
    # best: paired over seed 0 only, 80 - 90 = -10; final: 70 - 50 = +20
    assert best[2]["dice_mean"] == pytest.approx(-10.0) and final[2]["dice_mean"] == pytest.approx(20.0)
    assert final[0]["dice_mean"] == pytest.approx(70.0)


def test_bf16_parity_pairs_seeds_and_applies_the_tolerance(tmp_path: Path) -> None:
    def rec(method: str, seed: int, dice: float, acc: float, **extra) -> dict:
        scores = {"dice": dice, "accuracy": acc}
        return {
            "method": method,
            "budget": 20,
            "seed": seed,
            "metrics": scores,
            "final_metrics": scores,
            **extra,
        }

    records = [
        rec(
            "hermes",
            0,
            0.70,
            0.60,
            train_seconds=300,
            bf16_inference_metrics={"dice": 0.701, "accuracy": 0.60},
        ),
        rec(
            "hermes",
            1,
            0.80,
            0.50,
            train_seconds=340,
            bf16_inference_metrics={"dice": 0.797, "accuracy": 0.51},
        ),
        rec("bf16", 0, 0.703, 0.61, train_seconds=200),  # Dice +0.3, accuracy +1.0
        rec("bf16", 1, 0.805, 0.506, train_seconds=220),  # Dice +0.5, accuracy +0.6
        rec("bf16", 2, 0.9, 0.9),  # no fp32 partner: left out
        rec("fp32_nchw", 0, 0.68, 0.62),  # Dice -2.0, accuracy +2.0
    ]
    table = parity(records)
    training = table["comparisons"]["training"]["metrics"]
    assert training["dice"]["seeds"] == [0, 1]
    assert training["dice"]["per_seed"] == pytest.approx([0.3, 0.5])
    # mean 0.4, sample std sqrt(2 * 0.1^2) = 0.1414: within 0.5
    assert training["dice"]["mean"] == pytest.approx(0.4) and training["dice"]["std"] == pytest.approx(
        0.02**0.5
    )
    assert training["dice"]["within"] and training["dice"]["max_abs"] == pytest.approx(0.5)
    # accuracy mean (1.0 + 0.6) / 2 = 0.8 > 0.5: the shipped checkpoint is not at parity
    assert training["accuracy"]["mean"] == pytest.approx(0.8) and not training["accuracy"]["within"]
    assert table["met"] is False
    control = table["comparisons"]["control"]["metrics"]
    assert control["dice"]["per_seed"] == pytest.approx([-2.0]) and math.isnan(control["dice"]["std"])
    inference = table["comparisons"]["inference"]
    assert set(inference) == {"metrics"}  # no bf16 evaluation of the final weights
    assert inference["metrics"]["dice"]["per_seed"] == pytest.approx([0.1, -0.3])
    assert inference["metrics"]["accuracy"]["per_seed"] == pytest.approx([0.0, 1.0])
    assert table["train_seconds"] == pytest.approx({"hermes": 320.0, "bf16": 210.0})
    # a wider tolerance passes the same runs
    assert parity(records, tolerance=1.0)["met"] is True
    text = format_parity_table(table)
    assert (
        "| bf16 - hermes (trained with bf16 autocast) | best checkpoint | Dice | +0.30, +0.50 "
        "| +0.40 ± 0.14 | yes |" in text
    )
    assert "| best checkpoint | accuracy | +1.00, +0.60 | +0.80 ± 0.28 | no |" in text
    assert text.rstrip().endswith("not met.")
    # two budgets need a choice; a file that is not a results.json is named
    with pytest.raises(ValueError, match="budgets"):
        parity([*records, {**records[0], "budget": 10}])
    bad = tmp_path / "results.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="results.json"):
        load_parity(bad)


def test_plateau_change_compares_the_last_two_quarters() -> None:
    # T = 80: third quarter (40, 60] -> 0.5, 0.6; last quarter (60, 80] -> 0.7, 0.9
    curve = [[10, 0.1], [20, 0.2], [30, 0.3], [40, 0.4], [50, 0.5], [60, 0.6], [70, 0.7], [80, 0.9]]
    level, change = comparison.plateau_change(curve)
    assert level == pytest.approx(0.8) and change == pytest.approx(0.8 - 0.55)
    flat = [[x, 0.5] for x in range(10, 90, 10)]
    assert comparison.plateau_change(flat) == (pytest.approx(0.5), pytest.approx(0.0))
    assert all(math.isnan(v) for v in comparison.plateau_change([[80, 0.9]]))  # no third-quarter point
    records = [
        {"method": "hermes", "budget": 4, "curves": {"val_mean_dice": curve, "val_accuracy": flat}},
        {"method": "hermes", "budget": 4, "curves": {"val_mean_dice": flat, "val_accuracy": flat}},
    ]
    (row,) = comparison.plateau_rows(records, ["hermes", "suponly"], [4])
    # Dice changes 25 and 0 points: mean 12.5; levels 80 and 50: mean 65
    assert row["val_mean_dice_change_mean"] == pytest.approx(12.5)
    assert row["val_mean_dice_level_mean"] == pytest.approx(65.0)
    assert row["val_accuracy_change_mean"] == pytest.approx(0.0)
    assert "| 4 | hermes | 2 | 65.00 ± 21.21 | +12.50 ± 17.68 |" in comparison.format_plateau_table([row])


def test_mean_curves_average_seeds_per_iteration() -> None:
    records = [
        {"method": "hermes", "budget": 4, "curves": {"val_mean_dice": [[10, 0.2], [20, 0.4]]}},
        {"method": "hermes", "budget": 4, "curves": {"val_mean_dice": [[10, 0.4], [20, 0.6]]}},
        {"method": "suponly", "budget": 4, "curves": {"val_mean_dice": [[10, 0.1]]}},
    ]
    curves = comparison.mean_curves(records, "val_mean_dice")
    # (0.2 + 0.4) / 2 = 0.3 at 10, (0.4 + 0.6) / 2 = 0.5 at 20
    assert curves[(4, "hermes")] == [(10, pytest.approx(0.3)), (20, pytest.approx(0.5))]
    assert curves[(4, "suponly")] == [(10, pytest.approx(0.1))]


def test_grad_share_curves_are_ratios_to_the_supervised_term_averaged_over_seeds(tmp_path: Path) -> None:
    def run(seed_l: list, seg_u: list, itc: list) -> dict:
        grads = {"grad_norm_seg_l": seed_l, "grad_norm_seg_u": seg_u, "grad_norm_itc": itc}
        return {"method": "hermes", "budget": 20, "grad_curves": {**grads, "grad_norm_cls_l": [[50, 0.0]]}}

    records = [
        run([[50, 2.0], [100, 1.0]], [[50, 1.0], [100, 3.0]], [[50, 4.0], [100, 0.5]]),
        run([[50, 4.0], [100, 0.0]], [[50, 1.0], [100, 9.0]], [[50, 2.0], [100, 1.0]]),
        {"method": "suponly", "budget": 20, "grad_curves": {}},
    ]
    curves = comparison.grad_share_curves(records)
    assert set(curves) == {(20, "hermes")}  # SupOnly logged nothing
    shares = curves[(20, "hermes")]
    assert set(shares) == {"seg_u", "itc"}  # cls_l is 0 throughout (detached): left out
    # seg_u at 50: (1/2 + 1/4) / 2 = 0.375; at 100 only the first seed counts (the second's seg_l is 0): 3
    assert shares["seg_u"] == [(50, pytest.approx(0.375)), (100, pytest.approx(3.0))]
    # itc at 50: (4/2 + 2/4) / 2 = 1.25; at 100: 0.5 / 1
    assert shares["itc"] == [(50, pytest.approx(1.25)), (100, pytest.approx(0.5))]
    assert comparison.plot_grad_shares(records, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not comparison.plot_grad_shares(records[2:], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_plan_rejects_ambiguous_overrides(tmp_path: Path) -> None:
    configs = compare.DEFAULT_CONFIG_DIR
    args = (["suponly"], [4], [0], _fake_splits(), None, configs)
    with pytest.raises(ValueError, match="driver sets"):
        comparison.plan_runs(*args, {"seed": 3}, tmp_path)
    with pytest.raises(ValueError, match="suponly"):  # supervised_only.yaml sets semi_supervised
        comparison.plan_runs(*args, {"semi_supervised": True}, tmp_path)
    with pytest.raises(ValueError, match="no_attention"):
        comparison.plan_runs(["no_attention"], *args[1:], {"use_attention": True}, tmp_path)
    specs = comparison.plan_runs(["hermes", "no_consistency"], *args[1:], {"max_epochs": 2}, tmp_path)
    hermes, ablation = specs
    assert hermes.datalist == ablation.datalist  # same labeled subset for every method
    assert ablation.overrides["use_consistency"] is False and ablation.overrides["max_epochs"] == 2
    assert hermes.overrides["seed"] == 0 and hermes.overrides["run_name"] == "hermes_n4_s0"


def test_every_method_switch_is_a_bundle_setting() -> None:
    # a misspelled switch would be one more key the config ignores, and the "ablation" would rerun Hermes
    import yaml

    configs = compare.DEFAULT_CONFIG_DIR
    known = set(yaml.safe_load((configs / "train.yaml").read_text()))
    for name, method in comparison.METHODS.items():
        for f in method.config_files:
            assert (configs / f).is_file(), (name, f)
        unknown = sorted(set(method.overrides) - known)
        assert not unknown, f"method {name!r} sets {unknown}, which train.yaml does not define"
    assert comparison.METHODS["bf16"].overrides == {"amp": True, "amp_dtype": "bfloat16"}
    assert comparison.METHODS["fp32_nchw"].overrides == {"channels_last": False}


def test_generated_test_split_has_num_test_images_unless_overridden(tmp_path: Path) -> None:
    small = {"synthetic#image_size": 32, "synthetic#num_labeled": 4, "synthetic#num_unlabeled": 2}
    small["synthetic#num_validation"] = 2

    def test_count(argv: list[str], user: dict, out: Path) -> int:
        args = compare.build_parser().parse_args(argv)
        path, _ = compare._dataset(args, compare.DEFAULT_CONFIG_DIR, user, out)
        return len(json.loads(path.read_text())["test"])

    assert compare.build_parser().parse_args([]).num_test == compare.DEFAULT_NUM_TEST
    assert test_count(["--num_test", "6"], small, tmp_path / "a") == 6
    # an explicit override of the dataset's own setting wins over --num_test
    assert test_count(["--num_test", "6"], {**small, "synthetic#num_test": 3}, tmp_path / "b") == 3


# ---------------------------------------------------------------------------------------------- end to end
def test_compare_end_to_end_resumable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cmp"
    results = compare.main(_argv(out))

    # derived datalist: 4 labeled (2 per class) drawn from the 8 labeled, the other 4 now unlabeled
    derived = json.loads((out / "splits" / "n4_s0.json").read_text())
    source = json.loads((out / "data" / "datalist.json").read_text())
    assert sorted(e["class"] for e in derived["labeled"]) == [0, 0, 1, 1]
    assert len(derived["unlabeled"]) == 2 + 4
    split_images = {
        s: {e["image"] for e in derived[s]} for s in ("labeled", "unlabeled", "validation", "test")
    }
    for a in split_images:
        for b in split_images:
            assert a == b or not split_images[a] & split_images[b], (a, b)
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in split_images[a])
    source_labeled = {str((out / "data" / e["image"]).resolve()) for e in source["labeled"]}
    assert split_images["labeled"] < source_labeled
    assert source_labeled - split_images["labeled"] <= split_images["unlabeled"]
    assert len(derived["test"]) == 4 and len(derived["validation"]) == 2

    runs = {r["method"]: r for r in results["runs"]}
    assert set(runs) == {"hermes", "suponly"}
    assert runs["hermes"]["datalist"] == runs["suponly"]["datalist"]
    for r in runs.values():
        assert r["metrics"]["num_images"] == 4 and 0.0 <= r["metrics"]["dice"] <= 1.0
        assert [x for x, _ in r["curves"]["val_mean_dice"]] == [1]  # epoch 1 x epoch_length 1
        assert [x for x, _ in r["curves"]["val_accuracy"]] == [1]
        assert r["machine"] == runs["hermes"]["machine"] and r["machine"]["cpu_signature"]
    on_disk = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in on_disk["runs"]] == ["hermes_n4_s0", "suponly_n4_s0"]
    table = (out / "table.md").read_text()
    for name in ("| 4 | hermes | 1 |", "| 4 | suponly | 1 |", "**hermes - suponly**"):
        assert name in table
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for method in ("hermes", "suponly"):  # evaluated weights kept, resumable training checkpoints pruned
        models = out / "runs" / f"{method}_n4_s0" / "models"
        assert sorted(p.name for p in models.iterdir()) == ["model.pt", "model_final.pt"]
        # one epoch, one validation: the best checkpoint is the final one, tensor for tensor and on the test
        best = torch.load(models / "model.pt", weights_only=True)
        final = torch.load(models / "model_final.pt", weights_only=True)
        assert list(best) == list(final) and all(torch.equal(best[k], final[k]) for k in best)
        assert runs[method]["final_metrics"] == runs[method]["metrics"]
        assert (out / "runs" / f"{method}_n4_s0" / "eval_final" / "metrics.json").is_file()
    assert "Final weights" in table and "last quarter" in table
    assert comparison.format_table(results["summary_final"]) == comparison.format_table(results["summary"])

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{out}/mlruns.db")
    exp = client.get_experiment_by_name("compare")
    tracked = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in tracked) == ["hermes_n4_s0", "suponly_n4_s0"]
    for r in tracked:
        assert "test_dice" in r.data.metrics and "val_mean_dice" in r.data.metrics
        assert r.data.params["compare_budget"] == "4"

    # --test_datalist: the finished runs are judged on another dataset's test split, without retraining
    from hermes_monai.data import generate_synthetic_dataset, write_datalist

    fresh = generate_synthetic_dataset(tmp_path / "fresh", 2, 0, 0, 3, image_size=64, seed=7)
    extra = compare.main([*_argv(out), "--test_datalist", str(fresh)])
    for r in extra["runs"]:
        assert r["metrics"]["num_images"] == 3 and r["own_test_metrics"]["num_images"] == 4
        assert r["test_datalist"] == str(fresh.resolve())
        assert r["final_metrics"]["num_images"] == 3 and r["own_final_metrics"]["num_images"] == 4
        digest = hashlib.sha256(fresh.read_bytes()).hexdigest()[:12]
        evals = sorted(p.parent.name for p in Path(r["run_dir"]).glob("eval_*/metrics.json"))
        assert evals == [f"eval_{digest}", "eval_final", f"eval_final_{digest}"]
    assert f"Test split of {fresh}" in (out / "table.md").read_text()
    # a "test" image the run trained on is refused, naming the file
    trained = derived["labeled"][0]
    leaky = write_datalist(tmp_path / "leaky.json", {"test": [trained]})
    with pytest.raises(ValueError, match=f"leaky.json.*{Path(trained['image']).name}"):
        compare.main([*_argv(out), "--test_datalist", str(leaky)])

    # --bf16_inference: Hermes' two weight sets evaluated once more under bf16 autocast (the parity table's
    # inference row); SupOnly's are not
    with_bf16 = compare.main([*_argv(out), "--bf16_inference"])
    runs = {r["method"]: r for r in with_bf16["runs"]}
    assert runs["hermes"]["bf16_inference_metrics"]["num_images"] == 4
    assert runs["hermes"]["bf16_inference_final_metrics"]["num_images"] == 4
    assert "bf16_inference_metrics" not in runs["suponly"]
    hermes_dir = Path(runs["hermes"]["run_dir"])
    assert (hermes_dir / "eval_bf16" / "metrics.json").is_file()
    assert (hermes_dir / "eval_final_bf16" / "metrics.json").is_file()
    (parity_table,) = with_bf16["bf16_parity"]
    assert set(parity_table["comparisons"]) == {"inference"} and parity_table["met"] is None
    assert "weights evaluated in bf16" in (out / "table.md").read_text()

    # resumable: nothing is retrained (or re-evaluated) on a second call
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr("monai.bundle.run", no_training)
    again = compare.main(_argv(out))
    assert comparison.format_table(again["summary"]) == comparison.format_table(results["summary"])
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in results["runs"]]
    cached_bf16 = compare.main([*_argv(out), "--bf16_inference"])
    assert cached_bf16["bf16_parity"] == with_bf16["bf16_parity"]
    cached = compare.main([*_argv(out), "--test_datalist", str(fresh)])
    assert [r["metrics"] for r in cached["runs"]] == [r["metrics"] for r in extra["runs"]]
    # a different configuration in the same output folder is refused, not silently re-used
    with pytest.raises(RuntimeError, match="different configuration"):
        compare.main(_argv(out, max_epochs=2))
