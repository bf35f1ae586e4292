"""Tests of the measurement instruments in :mod:`hermes_monai.benchmarking` (FLOPs, kernel ceiling, peak
probe, peak memory, timing summaries, graph breaks), each against hand-computed values or a bound it must
respect."""

from __future__ import annotations

import pytest
import torch

from hermes_monai.benchmarking import (
    PeakMemory,
    count_flops,
    effective_peak,
    graph_breaks,
    kernel_ceiling,
    matmul_flops,
    measure_matmul_peak,
    summarize_times,
)
from hermes_monai.benchmarking.kernels import _materialize, _spec


def test_matmul_flops_is_two_n_cubed():
    # 2 * 3^3 = 54 ; 2 * 2048^3 = 17_179_869_184
    assert matmul_flops(3) == 54
    assert matmul_flops(2048) == 17_179_869_184


def test_summarize_times():
    s = summarize_times([3.0, 1.0, 2.0, 10.0])
    # sorted 1, 2, 3, 10 -> median (2 + 3) / 2 = 2.5
    assert s["median"] == 2.5
    assert s["min"] == 1.0 and s["max"] == 10.0
    assert s["all"] == [3.0, 1.0, 2.0, 10.0]


# ------------------------------------------------------------------------------------------------ probes
def test_global_flop_counter_counts_linear_forward_and_input_grad():
    lin = torch.nn.Linear(8, 16)
    x = torch.rand(4, 8)
    # forward addmm: 2 * 4 * 8 * 16 = 1024 FLOPs (bias adds are not counted)
    total, by_op = count_flops(lambda: lin(x))
    assert total == 1024 and by_op == {"addmm": 1024}

    def input_grad():
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(lin(xi).sum(), xi)  # what the saliency map does; stock tracker raises
        return g

    # forward 1024 + grad wrt input: (4x16) @ (16x8) = 2 * 4 * 16 * 8 = 1024 -> 2048
    total, by_op = count_flops(input_grad)
    assert total == 2048
    assert by_op == {"addmm": 1024, "mm": 1024}


def test_kernel_ceiling_replays_each_counted_call_once_per_shape():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    lin = torch.nn.Linear(16, 4)
    x = torch.rand(2, 3, 16, 16)
    v = torch.rand(5, 16)

    def work():
        conv(x.requires_grad_(True)).sum().backward()  # convolution + convolution_backward
        lin(v), lin(v)  # the same addmm twice: one distinct call, counted twice
        x.requires_grad_(False)

    expected, by_op = count_flops(work)
    c = kernel_ceiling(work, torch.device("cpu"), peak_gflops=100.0, repeats=2)
    assert c["flops"] == expected  # every FLOP-counted call was recorded and replayed
    assert c["calls"] == 4 and c["distinct_calls"] == 3
    assert set(c["by_op"]) == {"convolution", "convolution_backward", "addmm"} == set(by_op)
    assert c["by_op"]["addmm"]["calls"] == 2 and c["by_op"]["addmm"]["flops"] == by_op["addmm"]
    assert c["seconds"] == pytest.approx(sum(o["seconds"] for o in c["by_op"].values()))
    assert c["achieved_gflops"] == pytest.approx(expected / c["seconds"] / 1e9)
    assert c["fraction_of_matmul_peak"] == pytest.approx(c["achieved_gflops"] / 100.0)


def test_materialize_keeps_recorded_layout():
    nhwc = torch.rand(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    expanded = torch.rand(3, 1).expand(3, 6)  # stride 0, as a gradient of a sum is
    for t in (nhwc, expanded, torch.arange(6).view(2, 3)):
        spec = _spec(t)
        out = _materialize(spec, torch.Generator().manual_seed(0))
        assert out.shape == t.shape and out.stride() == t.stride() and out.dtype == t.dtype


def test_peak_memory_sees_a_large_allocation():
    device = torch.device("cpu")
    nbytes = 256 * 2**20
    with PeakMemory(device) as mem:
        buf = torch.ones(nbytes // 4)  # touched (filled with ones), so resident
        del buf
    assert mem.method
    assert mem.baseline_rss is not None and mem.peak_rss is not None
    # the 256 MiB buffer was resident at the peak; allow some slack for allocator behaviour
    assert mem.peak_rss - mem.baseline_rss > 0.8 * nbytes
    d = mem.as_dict()
    assert d["peak_rss_gb"] == pytest.approx(mem.peak_rss / 1e9)
    if mem.method.startswith("clear_refs"):
        with PeakMemory(device) as mem2:
            pass
        # the high-water mark was reset: an idle block does not report the earlier 256 MiB peak
        assert mem2.peak_rss < mem.peak_rss - 0.5 * nbytes


def test_measure_matmul_peak_fields():
    peak = measure_matmul_peak([32, 64], repeats=2, device=torch.device("cpu"))
    assert set(peak["by_size"]) == {"32", "64"}
    assert peak["gflops"] == max(peak["by_size"].values()) > 0
    assert peak["threads"] == torch.get_num_threads()
    assert peak["dtype"] == "float32"


def test_flop_counter_on_a_conv_matches_hand_count():
    # conv 3x3, 4 -> 6 channels, 10x12 output, batch 2: 2 * (2*6*10*12) outputs * (4*3*3) MACs = 103_680
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=False)
    x = torch.rand(2, 4, 10, 12)
    total, by_op = count_flops(lambda: conv(x))
    assert total == 2 * (2 * 6 * 10 * 12) * (4 * 3 * 3) == 103_680
    assert by_op == {"convolution": 103_680}


def test_effective_peak_is_never_below_a_replayed_kernel():
    conv = torch.nn.Conv2d(32, 32, 3, padding=1, bias=False)
    x = torch.rand(2, 32, 24, 24)
    matmul = measure_matmul_peak([64], repeats=2, device=torch.device("cpu"))
    c = kernel_ceiling(lambda: conv(x), torch.device("cpu"), matmul["gflops"], repeats=2)
    assert c["best_call_gflops"] == pytest.approx(c["achieved_gflops"])  # one distinct call
    peak = effective_peak(matmul["gflops"], [c, None])
    assert peak["gflops"] >= c["best_call_gflops"] and peak["gflops"] >= matmul["gflops"]
    assert peak["source"] == ("kernel" if c["best_call_gflops"] > matmul["gflops"] else "matmul")
    assert effective_peak(5.0, [{"best_call_gflops": 7.0}])["gflops"] == 7.0
    assert effective_peak(9.0, [])["gflops"] == 9.0


class _SaliencyNet(torch.nn.Module):
    """conv -> BN -> ReLU, then (optionally) the input gradient of the summed output as an extra channel:
    the pattern of Hermes' saliency map (``torch.autograd.grad`` inside the forward)."""

    def __init__(self, with_grad: bool):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
        )
        self.with_grad = with_grad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if not self.with_grad:
            return y
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.body(xg).sum(), xg)
        return torch.cat([y, g], dim=1)


def test_graph_breaks_counts_the_autograd_break_and_restores_buffers():
    x = torch.randn(2, 1, 8, 8)
    plain = graph_breaks(_SaliencyNet(with_grad=False).train(), x)
    assert (plain["graphs"], plain["breaks"], plain["reasons"]) == (1, 0, [])
    assert plain["ops"] >= 3  # conv, batch norm, relu captured

    net = _SaliencyNet(with_grad=True).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sal = graph_breaks(net, x)
    assert sal["breaks"] >= 1 and sal["graphs"] == sal["breaks"] + 1
    assert any("autograd" in r for r in sal["reasons"]), sal["reasons"]
    # the training-mode pass ran, but the running statistics are as before
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
