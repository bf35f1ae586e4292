"""HermesTrainer: one iteration's outputs, both branches updated, SupOnly mode, warm-up, loader cycling."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Events

from hermes_monai.engines import (
    LOSS_TERMS,
    MONITOR_KEYS,
    HermesTrainer,
    ema_decay,
    loggable_output,
    make_teacher,
)
from hermes_monai.engines.trainer import GRAD_TERMS
from hermes_monai.losses import ImageContrastLoss, PixelContrastLoss
from hermes_monai.networks import HermesNet

SIZE = 32


def _labeled(n_batches: int, bs: int = 2) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n_batches):
        label = torch.zeros(bs, 1, SIZE, SIZE)
        label[:, :, 8:24, 8:24] = 1
        image = torch.rand(bs, 1, SIZE, SIZE, generator=g) * 0.3 + 0.5 * (1 - label)
        out.append({"image": image, "label": label, "class": torch.arange(bs) % 2})
    return out


def _unlabeled(n_batches: int, bs: int = 2) -> list[dict]:
    return [{"image": b["image"]} for b in _labeled(n_batches, bs)]


def _trainer(unlabeled: list | None, epoch_length: int = 2, max_epochs: int = 1, **kw) -> HermesTrainer:
    torch.manual_seed(0)
    net = HermesNet(encoder="resnet18", decoder_channels=(32, 16, 16, 8))
    groups = net.parameter_groups()
    return HermesTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=_labeled(1),
        unlabeled_data_loader=unlabeled,
        epoch_length=epoch_length,
        network=net,
        seg_optimizer=torch.optim.Adam(groups["seg"], lr=1e-3),
        cls_optimizer=torch.optim.SGD(groups["cls"], lr=1e-2, momentum=0.9),
        image_contrast=ImageContrastLoss(bank_size=16),
        pixel_contrast=PixelContrastLoss(min_pixels=2, max_per_group=4, bank_size=32),
        **kw,
    )


def test_iteration_outputs_every_term_and_updates_both_branches() -> None:
    trainer = _trainer(_unlabeled(1), contrast_warmup=0, epoch_length=1)
    before = {k: v.detach().clone() for k, v in trainer.network.state_dict().items()}
    trainer.run()
    out = trainer.state.output
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    for key in (*LOSS_TERMS, *MONITOR_KEYS):
        assert key in out and math.isfinite(out[key]), key
    assert 0.0 <= out["select_rate_pixel"] <= 1.0
    assert out["loss_contrast_seg"] > 0  # pixel anchors exist (square lesion, min_pixels=2)
    after = trainer.network.state_dict()
    changed = {
        k.split(".")[0] for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])
    }
    assert changed == {"seg", "cls"}
    assert set(loggable_output(out)) >= set(LOSS_TERMS)


def test_loss_is_the_weighted_sum_of_its_terms() -> None:
    trainer = _trainer(_unlabeled(1), contrast_warmup=0, epoch_length=1)
    trainer.run()
    o = trainer.state.output
    w = trainer.weights
    c = o["contrast_weight"]
    assert c == 1.0  # no warm-up, no ramp
    cls = w["cls_total"] * (
        o["loss_cls_l"] + w["cls_unsup"] * o["loss_cls_u"] + w["cls_contrast"] * c * o["loss_contrast_cls"]
    )
    unsup_and_contrast = w["seg_unsup"] * o["loss_seg_u"] + w["seg_contrast"] * c * o["loss_contrast_seg"]
    seg = w["seg_total"] * (o["loss_seg_l"] + unsup_and_contrast) + o["itc_weight"] * o["loss_itc"]
    assert o["loss_cls"] == pytest.approx(cls, rel=1e-5)
    assert o["loss_seg"] == pytest.approx(seg, rel=1e-5)
    assert float(o["loss"]) == pytest.approx(cls + seg, rel=1e-5)


def test_contrast_terms_wait_for_warmup() -> None:
    trainer = _trainer(_unlabeled(1), contrast_warmup=0.5, epoch_length=1)  # T = 1: t = 0 < 0.5 T
    trainer.run()
    assert trainer.state.output["loss_contrast_seg"] == 0.0
    assert trainer.state.output["loss_contrast_cls"] == 0.0
    assert trainer.state.output["contrast_weight"] == 0.0
    with pytest.raises(ValueError, match="warmup"):
        _trainer(_unlabeled(1), contrast_warmup=5)  # a fraction of T, not an iteration count


def test_gradient_shares_are_measured_without_changing_training() -> None:
    def run(**kw) -> HermesTrainer:
        trainer = _trainer(_unlabeled(1), contrast_warmup=0, epoch_length=1, **kw)
        trainer.run()
        return trainer

    monitored, plain = run(grad_monitor_interval=1), run()
    out = monitored.state.output
    # the reference term against itself; detached features (the default): the cls loss puts exactly zero
    # gradient on the seg encoder
    assert out["grad_norm_seg_l"] > 0 and out["grad_cos_seg_l"] == pytest.approx(1.0, abs=1e-5)
    assert out["grad_norm_cls_l"] == 0.0 and out["grad_norm_cls_u"] == 0.0
    assert out["grad_norm_contrast_seg"] > 0 and -1.0 <= out["grad_cos_contrast_seg"] <= 1.0
    assert {k for k in loggable_output(out) if k.startswith("grad_")} == {
        f"grad_{kind}_{t.removeprefix('loss_')}" for kind in ("norm", "cos") for t in GRAD_TERMS
    }
    assert not any(k.startswith("grad_") for k in plain.state.output)
    # measuring reads gradients with autograd.grad only: the step is the same as without the monitor
    for a, b in zip(monitored.network.state_dict().values(), plain.network.state_dict().values()):
        assert torch.equal(a, b)


def test_attached_features_let_the_cls_loss_reach_the_seg_encoder() -> None:
    torch.manual_seed(0)
    trainer = _trainer(_unlabeled(1), contrast_warmup=0, epoch_length=1, grad_monitor_interval=1)
    trainer.network.cls.detach_seg = False  # the ablation switch (detach_seg_features: false)
    trainer.run()
    assert trainer.state.output["grad_norm_cls_l"] > 0


def test_supervised_only_has_no_unlabeled_terms() -> None:
    trainer = _trainer(None, use_consistency=False, epoch_length=1)
    trainer.run()
    out = trainer.state.output
    assert out["loss_seg_u"] == out["loss_cls_u"] == out["loss_contrast_seg"] == 0.0
    assert "select_rate_image" not in out
    assert float(out["loss"]) == pytest.approx(
        trainer.weights["cls_total"] * out["loss_cls_l"] + trainer.weights["seg_total"] * out["loss_seg_l"],
        rel=1e-5,
    )


def test_smaller_unlabeled_loader_is_cycled() -> None:
    trainer = _trainer(_unlabeled(1), epoch_length=3, max_epochs=1)  # 3 iterations, 1 unlabeled batch
    trainer.run()
    assert trainer.state.iteration == 3


def test_unknown_loss_weight_is_rejected() -> None:
    with pytest.raises(ValueError, match="seg_contrastt"):
        _trainer(None, weights={"seg_contrastt": 1.0})


def test_empty_unlabeled_loader_fails_clearly() -> None:
    trainer = _trainer([], epoch_length=1)
    with pytest.raises(ValueError, match="unlabeled data loader yields no batch"):
        trainer.run()


@pytest.mark.parametrize("amp_kwargs", [{"dtype": torch.bfloat16}, None])
def test_bf16_autocast_on_cpu_needs_no_scaler(amp_kwargs: dict | None) -> None:
    # no dtype: CPU autocast's default, bfloat16 (a float16 scaler made here would be the GPU default's)
    trainer = _trainer(_unlabeled(1), epoch_length=1, amp=True, amp_kwargs=amp_kwargs)
    trainer.run()
    assert trainer.scaler is None  # a GradScaler is only for float16
    assert torch.isfinite(trainer.state.output["loss"])


def test_images_without_class_train_segmentation_only() -> None:
    """Class -1 (unknown, e.g. TN3K or MONAI Label data): the cls loss skips those images."""
    trainer = _trainer(None, use_consistency=False, epoch_length=1)
    for batch in trainer.data_loader:
        batch["class"] = torch.tensor([-1, 1])  # one known class
    trainer.run()
    partial = trainer.state.output["loss_cls_l"]
    assert math.isfinite(partial) and partial > 0
    trainer = _trainer(None, use_consistency=False, epoch_length=1)
    for batch in trainer.data_loader:
        batch["class"] = torch.full((2,), -1)  # none known: no classification signal at all
    trainer.run()
    assert trainer.state.output["loss_cls_l"] == 0.0
    grad = trainer.network.cls.classifier.weight.grad
    assert grad is None or not grad.any()  # the linear head got no classification gradient


@pytest.mark.parametrize("separate", [True, False])
def test_separate_student_passes_keep_labeled_normalisation_apart(separate: bool) -> None:
    """In two passes the labeled images' batch-norm statistics ignore the strong views: the supervised loss
    is the same whatever the unlabeled images are; in one shared pass it is not."""

    def first_sup_loss(unlabeled: list[dict]) -> float:
        trainer = _trainer(unlabeled, epoch_length=1, separate_student_passes=separate)
        trainer.run()
        return trainer.state.output["loss_seg_l"]

    plain = _unlabeled(1)
    brighter = [{"image": b["image"] * 0.2 + 0.7} for b in plain]
    same = first_sup_loss(plain) == first_sup_loss(brighter)
    assert same is separate


def test_ema_decay_ramps_to_the_momentum() -> None:
    # a = min(m, 1 - 1/(n+1)): n = 1 -> 0.5, n = 3 -> 0.75, n = 199 -> 0.995 capped at m = 0.99
    assert ema_decay(0.99, 1) == 0.5
    assert ema_decay(0.99, 3) == 0.75
    assert ema_decay(0.99, 199) == 0.99
    with pytest.raises(ValueError, match="teacher_momentum"):
        make_teacher(torch.nn.Linear(2, 2), 1.0)
    assert make_teacher(torch.nn.Linear(2, 2), None) is None


def test_mean_teacher_follows_the_student_by_the_ramped_average() -> None:
    trainer = _trainer(_unlabeled(1), contrast_warmup=0, epoch_length=3, teacher_momentum=0.9)
    name = next(n for n, _ in trainer.network.named_parameters() if n.startswith("seg."))
    student_after: list[torch.Tensor] = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine: HermesTrainer) -> None:
        student_after.append(dict(engine.network.named_parameters())[name].detach().clone())

    trainer.run()
    # update 1 copies; update 2 has n = 1: a = 0.5; update 3 has n = 2: a = 2/3
    expected = student_after[0]
    expected = 0.5 * expected + 0.5 * student_after[1]
    expected = (2 / 3) * expected + (1 / 3) * student_after[2]
    teacher = dict(trainer.teacher.module.named_parameters())[name]
    torch.testing.assert_close(teacher, expected)
    assert not torch.equal(teacher, student_after[2])
    assert int(trainer.teacher.n_averaged) == 3
    assert "teacher" in trainer.hermes_state_dict()


def test_mean_teacher_at_momentum_zero_trains_as_the_student_teacher_does() -> None:
    # m = 0 keeps the teacher equal to the student after every step, so every loss matches the default
    # run's, iteration by iteration (both teachers run in training mode on the same weak view)
    outputs = {}
    for m in (None, 0.0):
        trainer = _trainer(_unlabeled(2), contrast_warmup=0, epoch_length=3, teacher_momentum=m)
        outputs[m] = []
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED, lambda e, out=outputs[m]: out.append(dict(e.state.output))
        )
        trainer.run()
    for a, b in zip(outputs[None], outputs[0.0]):
        for key in LOSS_TERMS:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    # the weak-view pass does run the teacher: a perturbed teacher changes the first iteration's selection
    rates = []
    for perturb in (False, True):
        trainer = _trainer(_unlabeled(1), contrast_warmup=0, epoch_length=1, teacher_momentum=0.99)
        if perturb:
            with torch.no_grad():
                for p in trainer.teacher.module.seg.parameters():
                    p.mul_(-1.0)
        trainer.run()
        rates.append((trainer.state.output["select_rate_pixel"], trainer.state.output["loss_seg_u"]))
    assert rates[0] != rates[1]


class _DtypeNet(torch.nn.Module):
    """A linear layer over the channel axis: its output dtype shows whether autocast was entered."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.movedim(1, -1)).movedim(-1, 1)


@pytest.mark.parametrize("amp", [False, True])
def test_evaluator_autocasts_on_the_cpu_when_amp_is_on(amp: bool) -> None:
    """MONAI's ``SupervisedEvaluator`` autocasts only on CUDA, so on a CPU it returns float32 even with
    ``amp``; ``HermesEvaluator`` returns bf16 there, and float32 as MONAI's without ``amp``."""
    from monai.engines import SupervisedEvaluator

    from hermes_monai.engines import HermesEvaluator

    data = [{"image": torch.rand(2, 4, 5, 5), "label": torch.zeros(2, 1, 5, 5)}]
    dtypes = {}
    for cls in (SupervisedEvaluator, HermesEvaluator):
        torch.manual_seed(0)
        evaluator = cls(
            device=torch.device("cpu"),
            val_data_loader=data,
            network=_DtypeNet(),
            amp=amp,
            amp_kwargs={"dtype": torch.bfloat16},
            decollate=False,
        )
        evaluator.run()
        dtypes[cls] = evaluator.state.output["pred"].dtype
        assert evaluator.amp is amp  # restored after the iteration
    assert dtypes[SupervisedEvaluator] == torch.float32
    assert dtypes[HermesEvaluator] == (torch.bfloat16 if amp else torch.float32)
