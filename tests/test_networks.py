"""Tests for hermes_monai.networks: shapes, heads, IAS attention and saliency, weights loading."""

from __future__ import annotations

import pytest
import timm
import torch

from hermes_monai.networks import (
    ENCODER_PRESETS,
    HermesClsNet,
    HermesNet,
    HermesSegNet,
    ImageContrastHead,
    InterTaskAttention,
    PixelContrastHead,
    ProjectionMLP,
    create_encoder,
    saliency_map,
)

H = W = 32
B = 2


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _x(b: int = B, c: int = 1, h: int = H, w: int = W) -> torch.Tensor:
    return torch.randn(b, c, h, w)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "use_attention,use_saliency", [(True, True), (False, True), (True, False), (False, False)]
)
def test_hermesnet_output_shapes(use_attention: bool, use_saliency: bool) -> None:
    net = HermesNet(num_cls_classes=3, use_attention=use_attention, use_saliency=use_saliency)
    out = net(_x())
    expected = {
        "seg_logits": (B, 2, H, W),
        "seg_embed": (B, 256, H // 8, W // 8),
        "seg_proj": (B, 256),
        "cls_logits": (B, 3),
        "cls_embed": (B, 128),
        "cls_proj": (B, 256),
    }
    if use_saliency:
        expected["saliency"] = (B, 1, H, W)
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    # contrast embeddings have unit L2 norm (per pixel for seg, per image for cls)
    torch.testing.assert_close(out["seg_embed"].norm(dim=1), torch.ones(B, H // 8, W // 8))
    torch.testing.assert_close(out["cls_embed"].norm(dim=1), torch.ones(B))
    assert (net.cls.attention is not None) == use_attention


def test_hermesnet_pred_output_is_seg_logits() -> None:
    net = HermesNet(output="pred").eval()
    with torch.no_grad():
        y = net(_x(1))
    assert isinstance(y, torch.Tensor) and y.shape == (1, 2, H, W)
    with pytest.raises(ValueError, match="output"):
        HermesNet(output="pred_prob")


def test_segnet_features_and_channels() -> None:
    net = HermesSegNet(decoder_channels=(40, 24, 16, 8), contrast_dim=16, proj_dim=12, num_classes=3)
    out = net(_x())
    assert net.feature_channels == [8, 16, 24, 40]
    shapes = [tuple(f.shape) for f in out["features"]]
    assert shapes == [(B, 8, H // 2, W // 2), (B, 16, H // 4, W // 4), (B, 24, H // 8, W // 8), (B, 40, 2, 2)]
    assert out["logits"].shape == (B, 3, H, W)
    assert out["embed"].shape == (B, 16, H // 8, W // 8)
    assert out["proj"].shape == (B, 12)


def test_segnet_saliency_changes_prediction_and_none_means_zeros() -> None:
    net = HermesSegNet().eval()
    x = _x()
    with torch.no_grad():
        base = net(x)["logits"]
        zeros = net(x, torch.zeros(B, 1, H, W))["logits"]
        ones = net(x, torch.ones(B, 1, H, W))["logits"]
    torch.testing.assert_close(base, zeros)
    assert not torch.allclose(base, ones)
    with pytest.raises(ValueError, match="saliency"):
        net(x, torch.zeros(B, 1, H // 2, W // 2))


def test_size_not_divisible_by_16_raises() -> None:
    with pytest.raises(ValueError, match="divisible by 16"):
        HermesSegNet(use_saliency=False)(_x(h=40))
    with pytest.raises(ValueError, match="divisible by 16"):
        HermesNet(use_saliency=False)(_x(w=24))


def test_cls_stages_are_at_strides_2_4_8_16() -> None:
    net = HermesClsNet(use_attention=False, stem_pool=False)
    sizes: list[tuple[int, int]] = []
    hooks = [s.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:]))) for s in net.stages]
    out = net(_x())
    for h in hooks:
        h.remove()
    assert sizes == [(16, 16), (8, 8), (4, 4), (2, 2)]  # 32 / 2, 32 / 4, 32 / 8, 32 / 16
    assert net.stage_channels == (64, 128, 256, 512)
    assert out["logits"].shape == (B, 2) and out["embed"].shape == (B, 128) and out["proj"].shape == (B, 256)
    assert net.forward_logits(_x()).shape == (B, 2)


def test_paper_decoder_layout_features_and_errors() -> None:
    net = HermesSegNet(decoder_layout="paper", decoder_channels=(24, 16, 8), contrast_dim=16, proj_dim=12)
    out = net(_x(), torch.rand(B, 1, H, W))
    assert net.feature_channels == [8, 16, 24, 256]  # the 1/16 feature is resnet18's f4 itself
    shapes = [tuple(f.shape) for f in out["features"]]
    assert shapes == [
        (B, 8, H // 2, W // 2),
        (B, 16, H // 4, W // 4),
        (B, 24, H // 8, W // 8),
        (B, 256, 2, 2),
    ]
    assert out["logits"].shape == (B, 2, H, W)
    with pytest.raises(ValueError, match="needs 3 entries"):
        HermesSegNet(decoder_layout="paper", decoder_channels=(24, 16, 8, 8))
    with pytest.raises(ValueError, match="decoder_layout"):
        HermesSegNet(decoder_layout="unet")


def test_paper_networks_match_the_reference_compute_at_224() -> None:
    """HERMES.md §1: the reference's seg network is about 103 GFLOP per 224² forward; the stock ResNet-18
    (stem max-pool kept) about 3.6 GFLOP (2 FLOPs per multiply-add, FlopCounterMode's convention)."""
    from torch.utils.flop_counter import FlopCounterMode

    seg = HermesSegNet("res2net101d", decoder_layout="paper", decoder_channels=(512, 256, 64)).eval()
    cls = HermesClsNet(use_attention=False, stem_pool=True).eval()
    x = torch.randn(1, 1, 224, 224)
    with torch.no_grad(), FlopCounterMode(display=False) as seg_flops:
        seg(x)
    with torch.no_grad(), FlopCounterMode(display=False) as cls_flops:
        cls(x)
    assert abs(seg_flops.get_total_flops() / 103e9 - 1) < 0.05
    assert abs(cls_flops.get_total_flops() / 3.6e9 - 1) < 0.05
    # the decoder: 1024→1024→512 and 1024→512→512 at 1/8, 512→512→256 and 513→256→256 at 1/4, ...
    assert [m.out_channels for m in seg.up8 if isinstance(m, torch.nn.Conv2d)] == [1024, 512]
    assert [m.in_channels for m in seg.block4 if isinstance(m, torch.nn.Conv2d)] == [513, 256]


def test_cls_stem_pool_stages_and_attention_pairing() -> None:
    net = HermesClsNet(seg_channels=(8, 16, 24, 40), stem_pool=True)
    sizes: list[tuple[int, int]] = []
    hooks = [s.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:]))) for s in net.stages]
    seg = [torch.randn(B, c, H // s, W // s) for c, s in ((8, 2), (16, 4), (24, 8), (40, 16))]
    out = net(_x(), seg)
    for h in hooks:
        h.remove()
    assert sizes == [(8, 8), (4, 4), (2, 2), (1, 1)]  # strides 4, 8, 16, 32
    assert [a.seg_proj[0].in_channels for a in net.attention] == [16, 24, 40, 40]
    assert out["logits"].shape == (B, 2)


def test_encoder_presets_and_res2net_strides() -> None:
    assert ENCODER_PRESETS["cpu"] == "resnet18"
    enc = create_encoder("resnet34", in_channels=1)
    assert enc.feature_info.reduction() == [2, 4, 8, 16]
    feats = enc(_x())
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert [f.shape[1] for f in feats] == enc.feature_info.channels()
    paper = create_encoder("paper", in_channels=1)
    assert paper.feature_info.reduction() == [2, 4, 8, 16]
    assert paper.feature_info.channels() == [64, 256, 512, 1024]


# ---------------------------------------------------------------- heads


def test_heads_shapes_and_normalisation() -> None:
    pix = PixelContrastHead(8, dim=5)(torch.randn(2, 8, 3, 4))
    assert pix.shape == (2, 5, 3, 4)
    torch.testing.assert_close(pix.norm(dim=1), torch.ones(2, 3, 4))
    img = ImageContrastHead(12, hidden=6, out_dim=4)(torch.randn(3, 12))
    assert img.shape == (3, 4)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(3))
    proj = ProjectionMLP(12, hidden=6, out_dim=7)(torch.randn(3, 12))
    assert proj.shape == (3, 7) and (proj >= 0).all()  # ends in ReLU


# ---------------------------------------------------------------- attention


def test_attention_shape_and_changes_feature() -> None:
    att = InterTaskAttention(cls_channels=16, seg_channels=8)
    cls_feat = torch.randn(2, 16, 8, 8)
    out = att(cls_feat, torch.randn(2, 8, 8, 8))
    assert out.shape == cls_feat.shape
    assert not torch.allclose(out, cls_feat)
    # a seg feature of another size is resized to the cls feature's size
    assert att(cls_feat, torch.randn(2, 8, 4, 4)).shape == cls_feat.shape


def test_attention_formula_with_neutral_gates() -> None:
    # Zero the last channel-MLP layer and the spatial conv: both sigmoids see 0 and output 0.5,
    # so out = cls * 0.5 (channel) * 0.5 (spatial) = 0.25 * cls whatever the seg feature.
    att = InterTaskAttention(cls_channels=4, seg_channels=3)
    with torch.no_grad():
        att.channel_mlp[2].weight.zero_()
        att.channel_mlp[2].bias.zero_()
        att.spatial_conv.weight.zero_()
        att.spatial_conv.bias.zero_()
    cls_feat = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(att(cls_feat, torch.randn(2, 3, 5, 5)), 0.25 * cls_feat)


def test_attention_uses_seg_feature() -> None:
    # 32 channels -> 8 hidden units in the channel MLP (with 8 channels, 2 hidden ReLUs can both be dead)
    att = InterTaskAttention(cls_channels=32, seg_channels=4).eval()
    cls_feat = torch.randn(1, 32, 6, 6)
    a = att(cls_feat, torch.randn(1, 4, 6, 6))
    b = att(cls_feat, torch.randn(1, 4, 6, 6))
    assert not torch.allclose(a, b)


# ---------------------------------------------------------------- saliency


def _linear_logits(scale: torch.Tensor):
    # logits = [s·<a, x>, -s·<a, x>] per image, so d(top)/dx = ±s·a.
    a = torch.tensor([[[1.0, -4.0], [2.0, 0.0]], [[-3.0, 1.0], [0.5, 0.0]]])  # (C=2, 2, 2)

    def fn(x: torch.Tensor) -> torch.Tensor:
        z = (x * a).sum(dim=(1, 2, 3)) * scale
        return torch.stack([z, -z], dim=1)

    return fn


def test_saliency_hand_computed() -> None:
    x = torch.randn(2, 2, 2, 2)
    sal = saliency_map(_linear_logits(torch.tensor([1.0, 0.0])), x)
    # image 0: max over channels of |a| = [[max(1,3), max(4,1)], [max(2,.5), 0]] = [[3, 4], [2, 0]];
    # divided by its max 4 -> [[0.75, 1], [0.5, 0]].
    torch.testing.assert_close(sal[0, 0], torch.tensor([[0.75, 1.0], [0.5, 0.0]]))
    # image 1: scale 0 -> zero gradient -> an all-zero map, not NaN.
    torch.testing.assert_close(sal[1, 0], torch.zeros(2, 2))
    assert sal.shape == (2, 1, 2, 2) and not sal.requires_grad


def test_saliency_on_classifier_no_param_grads_and_modes() -> None:
    net = HermesClsNet(use_attention=False)
    x = _x()
    maps = [saliency_map(net.forward_logits, x)]
    with torch.no_grad():
        maps.append(saliency_map(net.forward_logits, x))
    net.eval()
    with torch.inference_mode():
        maps.append(saliency_map(net.forward_logits, torch.randn(B, 1, H, W)))
    for sal in maps:
        assert sal.shape == (B, 1, H, W)
        assert not sal.requires_grad
        assert (sal >= 0).all() and (sal <= 1).all()
        torch.testing.assert_close(sal.amax(dim=(1, 2, 3)), torch.ones(B))  # non-zero, max-normalised
    assert all(p.grad is None for p in net.parameters())
    assert x.grad is None


def test_hermesnet_saliency_leaves_no_grads_and_works_in_inference_mode() -> None:
    net = HermesNet()
    net(_x())
    assert all(p.grad is None for p in net.parameters())
    net.eval()
    with torch.inference_mode():
        out = net(_x())
    assert out["saliency"].shape == (B, 1, H, W)
    assert out["saliency"].amax() > 0


# ---------------------------------------------------------------- gradient routing


@pytest.mark.parametrize("detach", [False, True])
def test_cls_loss_reaches_seg_only_without_detach(detach: bool) -> None:
    net = HermesNet(detach_seg_features=detach)
    out = net(_x())
    out["cls_logits"].sum().backward()
    seg_grads = [p.grad for p in net.seg.parameters()]
    if detach:
        assert all(g is None for g in seg_grads)
    else:
        assert any(g is not None and g.abs().sum() > 0 for g in seg_grads)
        enc_grads = [p.grad for p in net.seg.encoder.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in enc_grads)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.cls.attention.parameters())


def test_parameter_groups_partition() -> None:
    net = HermesNet()
    groups = net.parameter_groups()
    assert set(groups) == {"seg", "cls"}
    seg_ids = {id(p) for p in groups["seg"]}
    cls_ids = {id(p) for p in groups["cls"]}
    assert not seg_ids & cls_ids
    assert seg_ids | cls_ids == {id(p) for p in net.parameters()}
    assert len(groups["seg"]) + len(groups["cls"]) == len(list(net.parameters()))
    assert {id(p) for p in net.cls.attention.parameters()} <= cls_ids


# ---------------------------------------------------------------- weights


def _imagenet_resnet18_file(tmp_path, wrap: str | None = None) -> tuple[str, dict[str, torch.Tensor]]:
    sd = timm.create_model("resnet18", pretrained=False).state_dict()  # 3 channels, with fc
    assert "fc.weight" in sd and sd["conv1.weight"].shape[1] == 3
    obj = sd if wrap is None else {wrap: {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}
    path = tmp_path / "r18.pth"
    torch.save(obj, path)
    return str(path), sd


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_encoder_weights_round_trip(tmp_path, wrap: str | None) -> None:
    path, sd = _imagenet_resnet18_file(tmp_path, wrap)
    enc = create_encoder("resnet18", in_channels=1, weights_path=path)
    loaded = enc.state_dict()
    torch.testing.assert_close(loaded["layer1.0.conv1.weight"], sd["layer1.0.conv1.weight"])
    torch.testing.assert_close(loaded["bn1.running_mean"], sd["bn1.running_mean"])
    # 3 -> 1 input channel: the stem weights are summed over the RGB axis
    assert loaded["conv1.weight"].shape == (64, 1, 7, 7)
    torch.testing.assert_close(loaded["conv1.weight"], sd["conv1.weight"].sum(dim=1, keepdim=True))


def test_cls_and_hermes_weights(tmp_path) -> None:
    path, sd = _imagenet_resnet18_file(tmp_path)
    cls = HermesClsNet(weights_path=path)
    torch.testing.assert_close(cls.backbone.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])
    assert cls.classifier.weight.shape == (2, 512)  # the file's 1000-class fc is not used
    net = HermesNet(seg_weights_path=path, cls_weights_path=path)
    torch.testing.assert_close(
        net.seg.encoder.state_dict()["layer3.0.conv1.weight"], sd["layer3.0.conv1.weight"]
    )
    torch.testing.assert_close(net.cls.backbone.layer3[0].conv1.weight, sd["layer3.0.conv1.weight"])


def test_weights_errors_name_the_path(tmp_path) -> None:
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        create_encoder("resnet18", weights_path=missing)
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"foo.weight": torch.zeros(3)}, unrelated)
    with pytest.raises(ValueError, match="unrelated.pth"):
        create_encoder("resnet18", weights_path=str(unrelated))


def test_saliency_pass_leaves_classifier_running_statistics_alone() -> None:
    from hermes_monai.networks import HermesNet

    torch.manual_seed(0)
    net = HermesNet(encoder="resnet18", decoder_channels=(32, 16, 16, 8)).train()
    x = torch.rand(2, 1, 32, 32)
    stats = {k: v.clone() for k, v in net.cls.state_dict().items() if "running_mean" in k}
    # the saliency pass alone must not move the statistics ...
    from hermes_monai.networks.ias import frozen_norm_statistics, saliency_map

    with frozen_norm_statistics(net.cls):
        saliency_map(net.cls.forward_logits, x)
    assert all(torch.equal(v, net.cls.state_dict()[k]) for k, v in stats.items())
    # ... and momentum is restored afterwards, so the main pass does update them
    net(x)
    assert not all(torch.equal(v, net.cls.state_dict()[k]) for k, v in stats.items())
