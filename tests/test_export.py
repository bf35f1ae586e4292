"""Export of the full model (both heads and the saliency branch): TorchScript via ``monai.bundle
ckpt_export``, ONNX via ``scripts/export_onnx.py``, checked against eager PyTorch on random and on
trained weights; ``verify_net_in_out`` and offline ``verify_metadata`` on the bundle's files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out
from torch import nn

from hermes_monai.export import export_onnx, load_deploy_network, verify_onnx
from hermes_monai.networks import ExportError, HermesDeployNet, HermesNet
from hermes_monai.networks.deploy import check_explicit_saliency_supported

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"
INFER = str(CONFIGS / "inference.yaml")
META = str(CONFIGS / "metadata.json")
DECODER = [128, 64, 32, 16]  # inference.yaml's decoder_channels
#: the ONNX graph's (H, W): metadata.json's input spatial_shape (what scripts/export_onnx.py uses)
SHAPE = tuple(json.loads(Path(META).read_text())["network_data_format"]["inputs"]["image"]["spatial_shape"])


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A randomly initialised HermesNet with non-trivial batch-norm statistics and affine parameters."""
    torch.manual_seed(seed)
    net = HermesNet(decoder_channels=DECODER)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return net.state_dict()


@pytest.fixture(scope="module", params=["random", "trained"])
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if request.param == "trained":
        return request.getfixturevalue("trained_bundle") / "models" / "model.pt"
    path = tmp_path_factory.mktemp("random") / "model.pt"
    torch.save(_random_state(), path)
    return path


def test_explicit_saliency_equals_autograd(checkpoint: Path) -> None:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ref = HermesNet(decoder_channels=DECODER).eval()
    ref.load_state_dict(state)
    dep = HermesDeployNet(decoder_channels=DECODER)
    dep.load_state_dict(state)
    x = torch.rand(3, 1, 64, 96)
    with torch.no_grad():
        out = ref(x)
        seg, cls, sal = dep.predict(x)
    assert out["saliency"].amax() > 0
    assert (sal - out["saliency"]).abs().max() < 1e-5
    assert (seg - out["seg_logits"]).abs().max() < 1e-5
    assert (cls - out["cls_logits"]).abs().max() < 1e-5


def test_deploy_net_refuses_training_and_unsupported_layers() -> None:
    dep = HermesDeployNet(decoder_channels=DECODER)
    with pytest.raises(RuntimeError, match="inference model"):
        dep.train()
    dep.cls.backbone.layer2[0].act1 = nn.GELU()
    with pytest.raises(ExportError, match=r"layer2\.0: only ReLU"):
        check_explicit_saliency_supported(dep)


def test_torchscript_ckpt_export_matches_eager(checkpoint: Path, tmp_path: Path) -> None:
    ts_path = tmp_path / "model.ts"
    ckpt_export(
        "network_def", filepath=str(ts_path), ckpt_file=str(checkpoint), meta_file=META, config_file=INFER
    )
    ts = torch.jit.load(str(ts_path))
    eager = load_deploy_network(INFER, checkpoint)
    x = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        ref = eager.predict(x)
        got = ts.predict(x)
        pred = ts(x)
    assert (got[0] - ref[0]).abs().max() < 1e-4  # seg logits
    assert (got[1] - ref[1]).abs().max() < 1e-4  # class logits
    assert (got[2] - ref[2]).abs().max() < 1e-4  # saliency
    assert torch.equal(pred, got[0])


def test_onnx_export_matches_eager(checkpoint: Path, tmp_path: Path) -> None:
    onnx_path = tmp_path / "model.onnx"
    if "random" in str(checkpoint.parent.name):  # the command-line front end
        sys.path.insert(0, str(REPO / "scripts"))
        try:
            import export_onnx as cli
        finally:
            sys.path.remove(str(REPO / "scripts"))
        rc = cli.main(
            [
                "--ckpt_file",
                str(checkpoint),
                "--filepath",
                str(onnx_path),
                "--config_file",
                INFER,
                "--meta_file",
                META,
            ]
        )
        assert rc == 0
    else:
        export_onnx(load_deploy_network(INFER, checkpoint), onnx_path, SHAPE)
    net = load_deploy_network(INFER, checkpoint)
    diffs = verify_onnx(net, onnx_path, torch.rand(3, 1, *SHAPE))  # batch 3: the batch axis is dynamic
    assert diffs["pred"] < 1e-4 and diffs["cls_logits"] < 1e-4
    # the saliency is a gradient through ReLU masks: a pre-activation within rounding of 0 can switch its
    # mask between runtimes, a local jump; the logits (the seg logits read the saliency) are the contract
    assert diffs["saliency"] < 1e-2


def test_verify_net_in_out_and_metadata_offline(tmp_path: Path) -> None:
    verify_net_in_out("network_def", meta_file=META, config_file=INFER)
    schema = str(CONFIGS / "schema.json")
    verify_metadata(meta_file=META, filepath=schema)
    meta = json.loads(Path(META).read_text())
    assert next(iter(meta["network_data_format"]["inputs"])) == "image"
    assert next(iter(meta["network_data_format"]["outputs"])) == "pred"
    assert "hermes-monai" in meta["required_packages_version"]
    del meta["task"]
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="task"):
        verify_metadata(meta_file=str(bad), filepath=schema)


def test_paper_layout_with_stem_pool_deploys() -> None:
    """The paper preset's networks (two-block decoder, stock ResNet-18 stem max-pool): the explicit
    saliency backward (max-pool routed by scatter_add) equals autograd, eagerly and in TorchScript."""
    kwargs = {"decoder_layout": "paper", "decoder_channels": [32, 16, 8], "cls_stem_pool": True}
    torch.manual_seed(1)
    ref = HermesNet(**kwargs)
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    ref.eval()
    dep = HermesDeployNet(**kwargs)
    dep.load_state_dict(ref.state_dict())
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        out = ref(x)
        seg, cls, sal = dep.predict(x)
        scripted = torch.jit.script(dep).predict(x)
    assert out["saliency"].amax() > 0
    for got in ((seg, cls, sal), scripted):
        assert (got[2] - out["saliency"]).abs().max() < 1e-5
        assert (got[0] - out["seg_logits"]).abs().max() < 1e-5
        assert (got[1] - out["cls_logits"]).abs().max() < 1e-5
    dep.cls.backbone.maxpool = nn.MaxPool2d(2, 2)
    with pytest.raises(ExportError, match="maxpool"):
        check_explicit_saliency_supported(dep)


@pytest.mark.parametrize(("layout", "stem_pool"), [("light", True), ("paper", False)])
def test_folding_batch_norm_keeps_outputs_and_saliency(layout: str, stem_pool: bool) -> None:
    """Every batch norm of both branches folded into its convolution (torch's fuse_conv_bn_eval, the
    classifier's although it runs twice): seg logits, class logits and the explicit saliency equal the
    unfolded network's, eager and scripted; the export path folds the same way."""
    channels = [32, 16, 8] if layout == "paper" else [32, 16, 16, 8]
    kwargs = {"decoder_layout": layout, "decoder_channels": channels, "cls_stem_pool": stem_pool}
    torch.manual_seed(2)
    dep = HermesDeployNet(**kwargs)
    for m in dep.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ref = dep.predict(x)
    # every batch norm that prediction runs (the training-only contrast head is not run)
    used = [n for n, m in dep.named_modules() if isinstance(m, nn.BatchNorm2d) and "contrast_head" not in n]
    # ResNet-18: stem, 2 per block, 3 downsamples
    assert sum(n.startswith("cls.backbone.") for n in used) == 20
    assert dep.fold_batch_norm() == len(used)
    left = [n for n, m in dep.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert left and all("contrast_head" in n for n in left)
    with torch.no_grad():
        got = dep.predict(x)
        scripted = torch.jit.script(dep).predict(x)
    assert ref[2].amax() > 0
    for out in (got, scripted):
        for a, b in zip(out, ref):
            assert (a - b).abs().max() < 1e-4
    # a wrong slope is caught: scaling one folded classifier conv changes the saliency
    dep.cls.backbone.layer2[0].conv1.weight.data.mul_(2.0)
    with torch.no_grad():
        assert (dep.predict(x)[2] - ref[2]).abs().max() > 1e-3
