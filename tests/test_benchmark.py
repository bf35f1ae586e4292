"""Fast tests of ``scripts/benchmark.py`` and the step it measures (``hermes_monai.benchmarking.steps``,
``.phases``): helper arithmetic and a tiny end-to-end run (the other instruments are tested in
``test_benchmarking.py``).

The end-to-end run uses the CPU preset at 32x32 with batch 2+2, no warm-up and one timed step, so the
whole file stays within a few seconds of compute; it checks that the JSON has every field and that the
derived numbers are consistent with the measured ones.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from hermes_monai import benchmarking

REPO = Path(__file__).resolve().parents[1]


def _load_script():
    path = REPO / "scripts" / "benchmark.py"
    spec = importlib.util.spec_from_file_location("hermes_benchmark_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


bench = _load_script()

TINY = {"image_size": 32, "labeled_batch_size": 2, "unlabeled_batch_size": 2}


# ------------------------------------------------------------------------------------------------ helpers
def test_phase_breakdown_fractions_and_remainder():
    phase_us = {"hermes::forward_student": 500_000.0, "hermes::backward": 250_000.0, "other": 9e9}
    out = benchmarking.phase_breakdown(phase_us, step_seconds=1.0)
    assert set(out) == {*benchmarking.PHASES, "unattributed"}
    # 500 000 us = 0.5 s of a 1.0 s step -> 50 %; 250 000 us -> 25 %; rest 1 - 0.75 = 0.25 s
    assert out["forward_student"] == {"seconds": 0.5, "fraction": 0.5}
    assert out["backward"] == {"seconds": 0.25, "fraction": 0.25}
    assert out["strong_view"]["seconds"] == 0.0
    assert out["unattributed"]["seconds"] == pytest.approx(0.25)
    assert sum(v["fraction"] for v in out.values()) == pytest.approx(1.0)


def test_phase_breakdown_never_negative_remainder():
    # phases (0.6 + 0.6 s) longer than the step (1 s): the remainder is clamped at 0
    out = benchmarking.phase_breakdown({"hermes::backward": 6e5, "hermes::optimizer": 6e5}, step_seconds=1.0)
    assert out["unattributed"]["seconds"] == 0.0


def test_synthetic_batches_shapes_values_and_disc():
    gen = torch.Generator().manual_seed(0)
    batches = benchmarking.synthetic_batches(3, 4, 64, gen, num_cls_classes=2, labeled=True)
    assert len(batches) == 3
    for b in batches:
        assert b["image"].shape == (4, 1, 64, 64) and b["image"].dtype == torch.float32
        assert b["label"].shape == (4, 1, 64, 64)
        assert b["class"].shape == (4,) and b["class"].dtype == torch.long
        assert set(b["label"].unique().tolist()) <= {0.0, 1.0}
        assert b["class"].min() >= 0 and b["class"].max() <= 1
        img, lab = b["image"], b["label"].bool()
        assert img.min() >= 0.0 and img.max() <= 1.0
        # inside the disc: 0.2 + 0.5 + 0.3 * U[0, 1) >= 0.7 ; outside: 0.2 + 0.3 * U < 0.5
        assert img[lab].min() >= 0.7 and img[~lab].max() < 0.5
        # radius 0.25..0.35 of the side, centre 0.35..0.65: area pi r^2 in [0.196, 0.385] of the image
        # (a disc may just touch the border), allow for pixel discretisation
        area = lab.float().mean(dim=(1, 2, 3))
        assert (area > 0.17).all() and (area < 0.41).all()
    unlabeled = benchmarking.synthetic_batches(2, 2, 32, gen, labeled=False)
    assert all(set(b) == {"image"} for b in unlabeled)


def test_fill_memory_banks_fills_to_capacity_with_unit_vectors():
    from hermes_monai.losses import ImageContrastLoss, PixelContrastLoss

    img = ImageContrastLoss(dim=8, bank_size=10)
    pix = PixelContrastLoss(num_classes=3, dim=4, bank_size=5)
    benchmarking.fill_memory_banks(img, pix, torch.Generator().manual_seed(0))
    feats, labels = img.queue.get()
    assert feats.shape == (10, 8) and set(labels.tolist()) == {0, 1}
    assert torch.allclose(feats.norm(dim=1), torch.ones(10), atol=1e-5)
    assert pix.bank.count.tolist() == [5, 5, 5]
    bank_feats, bank_labels = pix.bank.get()
    assert bank_feats.shape == (15, 4)
    assert torch.bincount(bank_labels).tolist() == [5, 5, 5]
    benchmarking.fill_memory_banks(None, None, torch.Generator())  # switched-off terms are skipped


# ------------------------------------------------------------------------------------------------ CLI
def test_options_from_args_quick_and_overrides():
    opts = bench.options_from_args(bench.parse_args(["--quick", "--configs", "cpu_full", "--iters", "5"]))
    assert opts.mode == "quick" and opts.configs == ("cpu_full",) and opts.iters == 5 and opts.warmup == 1
    assert opts.extra_overrides == {"image_size": 64, "labeled_batch_size": 2, "unlabeled_batch_size": 2}
    full = bench.options_from_args(bench.parse_args(["--inference", "none", "--matmul-sizes", "128,256"]))
    assert full.mode == "full" and full.extra_overrides == {}
    assert full.configs == ("paper_method_equal", "paper_full", "cpu_full")
    assert full.inference_presets == () and full.matmul_sizes == (128, 256) and full.compiled is False
    assert bench.options_from_args(bench.parse_args(["--compiled"])).compiled is True
    with pytest.raises(SystemExit):
        bench.options_from_args(bench.parse_args(["--inference", "tiny"]))
    args = [
        "--quick",
        "--override",
        "channels_last=false",
        "--override",
        "image_size=48",
        "--ceiling-repeats",
        "0",
    ]
    custom = bench.options_from_args(bench.parse_args(args))
    assert custom.extra_overrides == {
        **benchmarking.QUICK_OVERRIDES,
        "channels_last": False,
        "image_size": 48,
    }
    assert custom.ceiling_repeats == 0


def test_paper_configs_differ_only_in_ias_switches():
    _, equal = benchmarking.STEP_CONFIGS["paper_method_equal"]
    _, full = benchmarking.STEP_CONFIGS["paper_full"]
    assert equal["use_attention"] is False and equal["use_saliency"] is False
    assert full["use_attention"] is True and full["use_saliency"] is True
    assert {k: v for k, v in equal.items() if not k.startswith("use_") or "contrast" in k} == {
        k: v for k, v in full.items() if not k.startswith("use_") or "contrast" in k
    }
    paper = benchmarking.make_parser("paper", {}, torch.device("cpu"))
    assert paper["encoder"] == "res2net101d" and paper["image_size"] == 224
    assert paper["decoder_channels"] == [512, 256, 64]


def test_build_step_uses_bundle_config_and_late_schedule():
    setup = benchmarking.build_step(
        "paper_method_equal",
        torch.device("cpu"),
        {**TINY, "encoder": "resnet18", "max_epochs": 30, "epoch_length": 10},
        late_fraction=0.9,
    )
    s = setup.settings
    # T = max_epochs 30 * epoch_length 10 = 300; start at int(0.9 * 300) = 270
    assert s["total_iterations_T"] == 300 and s["start_iteration"] == 270
    assert setup.trainer.state.iteration == 270
    assert s["use_attention"] is False and s["use_saliency"] is False
    assert s["image_contrast"] and s["pixel_contrast"] and s["consistency"]
    assert s["contrast_warmup"] == 0 and setup.trainer.contrast_warmup == 0
    assert s["decoder_channels"] == [512, 256, 64]  # the paper preset's decoder, from the bundle parse
    assert isinstance(setup.trainer.seg_optimizer, torch.optim.Adam)
    assert isinstance(setup.trainer.cls_optimizer, torch.optim.SGD)
    assert setup.trainer.image_contrast.queue.num_filled.item() == setup.trainer.image_contrast.queue.size


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def tiny_results():
    opts = benchmarking.Options(
        configs=("cpu_full",),
        inference_presets=("cpu",),
        device="cpu",
        warmup=0,
        iters=1,
        # CutMix is off in the preset; on here so that every phase of the step runs and is timed
        extra_overrides={**TINY, "cutmix_prob": 1.0},
        matmul_sizes=(64,),
        matmul_repeats=2,
        inference_batch=2,
        pipeline_labeled=4,
        pipeline_unlabeled=4,
        pipeline_image_size=32,
        pipeline_workers=(None,),
        pipeline_passes=1,
        mode="test",
    )
    return benchmarking.run_benchmark(opts, log=lambda msg: None)


def test_run_benchmark_top_level_fields(tiny_results):
    r = tiny_results
    for key in ("schema_version", "mode", "machine", "matmul_peak", "steps", "comparisons", "inference"):
        assert key in r
    assert "data_pipeline" in r
    assert r["mode"] == "test" and r["schema_version"] == benchmarking.SCHEMA_VERSION
    m = r["machine"]
    assert m["device"] == "cpu" and m["torch_threads"] == torch.get_num_threads()
    assert m["torch_version"] == torch.__version__ and m["cpu_model"]
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert m["cpu_bf16"] == benchmarking.bf16_supported(torch.device("cpu"))
    if Path("/proc/cpuinfo").is_file():  # Linux: "family/model/stepping", three numbers
        assert all(part.isdigit() for part in m["cpu_signature"].split("/")), m["cpu_signature"]
        assert len(m["cpu_signature"].split("/")) == 3
    json.dumps(r)  # serialisable as is


def test_run_benchmark_step_fields_are_consistent(tiny_results):
    s = tiny_results["steps"]["cpu_full"]
    peak = tiny_results["matmul_peak"]["gflops"]
    med = s["step_seconds"]["median"]
    assert med > 0 and s["samples_per_step"] == 4
    assert s["samples_per_second"] == pytest.approx(4 / med)
    assert s["flops_per_step"] > 0 and s["flops_by_op"]
    assert sum(s["flops_by_op"].values()) == s["flops_per_step"]
    assert s["achieved_gflops"] == pytest.approx(s["flops_per_step"] / med / 1e9)
    assert s["fraction_of_matmul_peak"] == pytest.approx(s["achieved_gflops"] / peak)
    assert s["settings"]["image_size"] == 32 and s["settings"]["use_saliency"] is True
    mem = s["memory"]
    assert mem["peak_rss_bytes"] >= mem["baseline_rss_bytes"] > 0
    phases = s["phases"]
    assert set(phases) == {*benchmarking.PHASES, "unattributed"}
    # all phases of a semi-supervised step with contrast on ran, and they tile the profiled step
    for name in benchmarking.PHASES:
        assert phases[name]["seconds"] > 0, name
    attributed = sum(phases[name]["seconds"] for name in benchmarking.PHASES)
    rest = max(s["profiled_step_seconds"] - attributed, 0.0)
    assert phases["unattributed"]["seconds"] == pytest.approx(rest, abs=1e-9)
    assert s["profiler_overhead"] == pytest.approx(s["profiled_step_seconds"] / med - 1)
    for key in ("selection_rate_image", "selection_rate_pixel"):
        assert 0.0 <= s[key] <= 1.0
    assert math.isfinite(s["loss"])
    assert s["targets"] == {}  # targets belong to paper_method_equal
    assert s["settings"]["channels_last"] is True  # the bundle default layout
    c = s["kernel_ceiling"]
    # the replayed step draws its own pixel anchors, so its contrast matmuls may differ a little in size
    assert c["flops"] == pytest.approx(s["flops_per_step"], rel=0.05)
    assert 0 < c["seconds"] and c["calls"] >= c["distinct_calls"] > 0


def test_run_benchmark_inference_and_pipeline(tiny_results):
    inf = tiny_results["inference"]["cpu"]
    peak = tiny_results["matmul_peak"]["gflops"]
    lat = inf["latency_seconds_batch1"]["median"]
    assert lat > 0 and inf["images_per_second"] == pytest.approx(2 / inf["batch_seconds"]["median"])
    assert inf["flops_per_image"] > 0
    assert inf["flops_over_peak_seconds"] == pytest.approx(inf["flops_per_image"] / (peak * 1e9))
    assert inf["latency_over_flops_bound"] == pytest.approx(lat / inf["flops_over_peak_seconds"])
    assert inf["kernel_ceiling"]["flops"] == inf["flops_per_image"]
    floor = inf["kernel_ceiling"]["seconds"] / inf["flops_over_peak_seconds"]
    assert inf["kernel_floor_over_flops_bound"] == pytest.approx(floor)
    pipe = tiny_results["data_pipeline"]["cpu"]
    assert pipe["settings"]["configured_num_workers"] == 0 and pipe["settings"]["caching"] is False
    rate = pipe["by_num_workers"]["0"]
    assert rate["images"] == 8  # 4 labeled + 4 unlabeled, batches of 2, one timed pass
    assert rate["images_per_second"] == pytest.approx(rate["images"] / rate["seconds"])
    step_rate = tiny_results["steps"]["cpu_full"]["samples_per_second"]
    ratio = pipe["ratio_to_step_consumption"]["cpu_full"]
    assert ratio == pytest.approx(rate["images_per_second"] / step_rate)


def test_format_report_mentions_every_section(tiny_results):
    text = benchmarking.format_report(tiny_results)
    for needle in (
        "matmul peak",
        "cpu_full",
        "phases of cpu_full",
        "kernel ceiling",
        "inference",
        "data pipeline cpu",
    ):
        assert needle in text


def test_effective_peak_and_kernel_ceiling_fractions(tiny_results):
    s = tiny_results["steps"]["cpu_full"]
    peak = tiny_results["peak"]["fp32"]
    # the peak compared with is never below the matmul probe nor below any kernel the step replayed
    assert peak["gflops"] >= tiny_results["matmul_peak"]["gflops"]
    assert peak["gflops"] >= s["kernel_ceiling"]["best_call_gflops"]
    assert s["fraction_of_peak"] == pytest.approx(s["achieved_gflops"] / peak["gflops"])
    assert s["fraction_of_kernel_ceiling"] == pytest.approx(
        s["kernel_ceiling"]["seconds"] / s["step_seconds"]["median"]
    )
    inf = tiny_results["inference"]["cpu"]
    lat = inf["latency_seconds_batch1"]["median"]
    assert inf["latency_over_kernel_floor"] == pytest.approx(lat / inf["kernel_ceiling"]["seconds"])
    folded = inf["bn_folded"]
    assert folded["batch_norms_folded"] > 0
    assert folded["speedup"] == pytest.approx(lat / folded["latency_seconds_batch1"]["median"])
    # the served network: every batch norm prediction runs folded (the classifier's 20 as well), its
    # latency against its own floor; it computes neither the training heads nor the classifier stem twice
    dep = inf["deploy"]
    assert dep["network"] == "HermesDeployNet"
    assert dep["batch_norms_folded"] > folded["batch_norms_folded"] + 19
    dep_lat = dep["latency_seconds_batch1"]["median"]
    assert dep["latency_over_kernel_floor"] == pytest.approx(dep_lat / dep["kernel_ceiling"]["seconds"])
    assert 0 < dep["flops_per_image"] < inf["flops_per_image"]


def test_compiled_step_is_timed_against_the_eager_kernel_ceiling(tiny_results):
    """The compiled variant (dynamo, eager backend: fast to trace) reports its compilation, its speed-up over
    the eager step and its fraction of that step's kernel ceiling, consistently with its own timings."""
    eager = tiny_results["steps"]["cpu_full"]
    opts = benchmarking.Options(
        configs=("cpu_full",),
        device="cpu",
        warmup=0,
        iters=1,
        extra_overrides={**TINY, "cutmix_prob": 1.0, "compile_options": {"backend": "eager"}},
    )
    torch._dynamo.reset()
    r = benchmarking.benchmark_compiled_step("cpu_full", opts, eager)
    med = r["step_seconds"]["median"]
    assert r["compile_options"] == {"backend": "eager"} and math.isfinite(r["loss"])
    assert r["first_step_seconds"] > 0 and r["compile_seconds"] == pytest.approx(
        max(r["first_step_seconds"] - med, 0)
    )
    assert r["speedup_vs_eager"] == pytest.approx(eager["step_seconds"]["median"] / med)
    assert r["fraction_of_kernel_ceiling"] == pytest.approx(eager["kernel_ceiling"]["seconds"] / med)
    saving = eager["step_seconds"]["median"] - med
    if saving > 0:
        assert r["break_even_iterations"] == math.ceil(r["compile_seconds"] / saving)
    else:
        assert r["break_even_iterations"] is None
    # cpu_full has the saliency map: its autograd.grad inside the forward breaks the graph
    g = r["graph_breaks"]
    assert g["breaks"] >= 1 and g["graphs"] == g["breaks"] + 1
    assert any("autograd" in reason for reason in g["reasons"]), g["reasons"]
    results = {**tiny_results, "steps": {"cpu_full": {**eager, "compiled": r}}}
    assert "compiled:" in benchmarking.format_report(results)
    # the target of the paper preset's method-equal step reads the compiled step as well
    targets = benchmarking.step_targets("paper_method_equal", {**eager, "compiled": r}, torch.device("cpu"))
    assert targets["fraction_of_kernel_ceiling_min_compiled"]["value"] == r["fraction_of_kernel_ceiling"]


def test_network_compute_counts_seg_and_cls_against_the_reference():
    opts = benchmarking.Options(device="cpu", extra_overrides={"encoder": "resnet18", "image_size": 32})
    out = benchmarking.network_compute("paper", opts)
    assert out["image_size"] == 32 and "within_tolerance" not in out["seg"]  # reference is per 224² image
    for name in ("seg", "cls"):
        assert out[name]["parameters"] > 0
        assert out[name]["ratio_to_reference"] == pytest.approx(
            out[name]["forward_gflop"] / out[name]["reference_forward_gflop"]
        )
    assert out["seg"]["encoder_parameters"] < out["seg"]["parameters"]
