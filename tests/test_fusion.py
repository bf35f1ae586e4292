"""Batch-norm folding (``hermes_monai.networks.fusion.fold_batch_norm``): which (conv, BN) pairs it folds,
that outputs are kept, and that a fold changing outputs is undone."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from hermes_monai.networks.fusion import fold_batch_norm


def _bn(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.3, 0.3)
    return bn.eval()


class Twice(nn.Module):
    """One conv → BN pair run twice on different inputs (as the deploy net's classifier)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.bn = _bn(3)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x)) + self.bn(self.conv(x.flip(-1)))


class Crossed(nn.Module):
    """A BN fed by two different convs: folding it into either would be wrong for the other."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.conv_b = nn.Conv2d(2, 3, 1, bias=False)
        self.bn = _bn(3)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv_a(x)) * self.bn(self.conv_b(x))


def test_pair_run_twice_folds_and_keeps_outputs() -> None:
    torch.manual_seed(0)
    m = Twice().eval()
    x = torch.rand(2, 2, 8, 8)
    with torch.no_grad():
        ref = m(x)
    assert fold_batch_norm(m, x) == 1
    assert isinstance(m.bn, nn.Identity) and m.conv.bias is not None
    with torch.no_grad():
        assert (m(x) - ref).abs().max() < 1e-5


def test_bn_shared_by_two_convs_is_left_alone() -> None:
    torch.manual_seed(0)
    m = Crossed().eval()
    x = torch.rand(2, 2, 8, 8)
    assert fold_batch_norm(m, x) == 0
    assert isinstance(m.bn, nn.BatchNorm2d) and m.conv_a.bias is None


def test_run_callable_is_checked_and_a_changing_fold_is_undone() -> None:
    """``run`` replaces the forward for finding pairs and for the check; with atol below float rounding
    of a large-scale BN the fold is refused and the original modules are restored."""
    torch.manual_seed(0)
    m = Twice().eval()
    m.bn.running_var.fill_(1e-6)  # slope ~1000: the folded weights round differently
    x = torch.rand(2, 2, 8, 8)
    calls = []

    def run(t: Tensor) -> Tensor:
        calls.append(t.shape)
        return m(t)

    with pytest.raises(ValueError, match="fold undone"):
        fold_batch_norm(m, x, atol=0.0, run=run)
    assert calls  # the callable was used
    assert isinstance(m.bn, nn.BatchNorm2d) and m.conv.bias is None
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batch_norm(Twice().train(), x)


def _deploy_checkpoint(tmp_path) -> tuple[str, dict[str, Tensor]]:
    from hermes_monai.networks import HermesNet

    torch.manual_seed(1)
    net = HermesNet(decoder_channels=[32, 16, 16, 8])
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    path = str(tmp_path / "model.pt")
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


@pytest.mark.parametrize("enabled", [True, False])
def test_fold_handler_runs_after_the_checkpoint_loader(tmp_path, enabled: bool) -> None:
    """As in inference.yaml: MONAI's CheckpointLoader then FoldBatchNorm on Events.STARTED. The loaded
    weights are folded (or left, when disabled) and predictions equal the unfolded network's."""
    from ignite.engine import Engine
    from monai.handlers import CheckpointLoader

    from hermes_monai.handlers import FoldBatchNorm
    from hermes_monai.networks import HermesDeployNet

    path, state = _deploy_checkpoint(tmp_path)
    ref = HermesDeployNet(decoder_channels=[32, 16, 16, 8])
    ref.load_state_dict(state)
    net = HermesDeployNet(decoder_channels=[32, 16, 16, 8])
    engine = Engine(lambda e, b: None)
    CheckpointLoader(load_path=path, load_dict={"model": net}).attach(engine)
    fold = FoldBatchNorm(net, enabled=enabled, image_size=32)
    fold.attach(engine)
    engine.run([0], max_epochs=1)
    remaining = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    if enabled:
        assert fold.folded and remaining == 1  # only the training-only contrast head's
    else:
        assert fold.folded is None and remaining == sum(isinstance(m, nn.BatchNorm2d) for m in ref.modules())
    x = torch.rand(1, 1, 64, 48)
    with torch.no_grad():
        for a, b in zip(net.predict(x), ref.predict(x)):
            assert (a - b).abs().max() < 1e-4


def test_fold_before_loading_breaks_the_loader(tmp_path) -> None:
    """Why the order matters: a folded network has no batch-norm keys, so a checkpoint no longer loads."""
    from hermes_monai.networks import HermesDeployNet

    path, state = _deploy_checkpoint(tmp_path)
    net = HermesDeployNet(decoder_channels=[32, 16, 16, 8])
    net.fold_batch_norm(image_size=32)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        net.load_state_dict(torch.load(path, weights_only=True))
