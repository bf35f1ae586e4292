"""The Hermes semi-supervised trainer: one ignite iteration = one labeled + one unlabeled batch.

:class:`HermesTrainer` is a :class:`monai.engines.Trainer`. Its data loader is the **labeled**
loader; the **unlabeled** loader is cycled alongside it; both run as endless resumable streams
(:class:`~hermes_monai.data.ResumableStream`: a new pass, new shuffle, whenever a loader runs out), so
an epoch is ``epoch_length`` iterations whichever loader is smaller. Each iteration (HERMES.md §3–5):

1. the weak unlabeled view ``u_w`` (geometric augmentation only, from the data pipeline) goes
   through the network without gradient: a teacher pass giving pseudo-labels (the student itself, or
   with ``teacher_momentum`` set a mean teacher, :mod:`hermes_monai.engines.teacher`);
2. the strong view ``u_s`` is ``u_w`` plus photometric augmentation (:class:`StrongAugment`, same
   geometry), made on the training device;
3. image- and pixel-level dual-threshold selection on the weak predictions; with ``cutmix`` set, each
   strong view may then take a box from another one (:class:`~hermes_monai.data.CutMix`), and the
   pixel-level pseudo-labels, selection masks and teacher embeddings take the same box, while a mixed
   image leaves the image-level pseudo-label terms (it has no single class);
4. one forward pass with gradient over ``concat(x_labeled, u_s)``;
5. supervised, unsupervised, contrastive (off for the first ``contrast_warmup · T`` iterations, then
   ramped up over ``contrast_rampup · T``) and inter-task consistency (``λ(t) = rampup(t,
   consistency_rampup · T)``) losses, combined as in HERMES §5 with weights from the config; every
   schedule is a fraction of the run's T, so short runs keep the paper's shape;
6. one backward pass of ``L_cls + L_seg`` and a step of both optimisers (seg: Adam; cls: SGD).
   The two totals share no parameters except through IAS and the consistency term, so one
   backward of their sum gives each parameter exactly the gradient two separate backward passes
   would, without keeping a graph alive between them.

The weak-view pass has no gradient, so in the pixel contrast (mean of the two views'
embeddings) and the image contrast (both views as anchors) the gradient flows through the strong
view only; the weak view acts as a teacher. With ``unlabeled_data_loader=None`` only the labeled
losses are computed: the SupOnly baseline.

``engine.state.output`` holds a scalar tensor ``loss`` plus floats for every term
(:data:`LOSS_TERMS`), the selection rates and the schedule values (:data:`MONITOR_KEYS`), so
``StatsHandler``, ``TensorBoardStatsHandler`` and ``MLFlowHandler`` can log them with
``output_transform=hermes_monai.engines.loggable_output``.

**Gradient shares.** Every ``grad_monitor_interval`` iterations the trainer also measures, for each loss
term as weighted in the total, the norm of its gradient on the shared segmentation encoder
(``grad_norm_<term>``) and its cosine with the supervised segmentation term's (``grad_cos_<term>``),
with one extra ``torch.autograd.grad`` per term on the iteration's graph (no parameter ``.grad`` touched).
This is how the loss weights of a preset are chosen (no term should out-pull the supervised one) and
what to look at first when semi-supervised training misbehaves. With ``grad_budget`` set, the same
measurements drive a :class:`~hermes_monai.engines.GradientBudget`, which scales the auxiliary segmentation
terms down whenever their running ratio to the supervised term exceeds the budget (``grad_scale_<term>``).

Each phase runs inside a ``torch.profiler.record_function`` scope named ``hermes::<phase>``
(``strong_view``, ``forward_teacher``, ``pseudo_labels``, ``cutmix``, ``forward_student``, ``losses``,
``contrast``, ``backward``, ``optimizer``) so a profiler run (``scripts/benchmark.py``) can break a step down.

**Resuming.** :meth:`HermesTrainer.state_dict` holds, besides ignite's iteration counters, everything the
next iteration depends on that is not a network, optimiser, scheduler or selector (those are saved next to
it): the contrastive memory banks, the RNG states of torch (CPU and CUDA), numpy, Python and the trainer's
own generator, the position of both data streams (:class:`~hermes_monai.data.ResumableStream`) and the
random states of the data pipeline's transforms. A run resumed from a checkpoint therefore computes the same
iterations as an uninterrupted one (bit-identical on CPU with ``num_workers=0``). When the run's length
``T`` differs from the one the LR schedulers were saved with (a larger ``max_epochs`` on resume),
``resume_schedule="rescale"`` re-plans each ``PolynomialLR`` for the new ``T`` (its closed form at the
current iteration) and says so; ``"refuse"`` stops with a message instead. Never a silent LR of 0.

**Non-finite numbers.** A non-finite input image or loss stops the run before the optimiser step with a
:class:`NonFiniteError` naming the iteration and the offending input or loss terms (the final-checkpoint
saver then writes the last good state: the optimiser has not stepped); ``skip_nonfinite_steps=True``
skips such steps instead, logs each and counts them in ``state.nonfinite_steps``. Under
``torch.distributed`` the decision is all-reduced, so every rank skips or stops together.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.engines import Trainer
from monai.engines.utils import IterationEvents
from monai.engines.workflow import Workflow
from monai.utils import CommonKeys as Keys
from torch.optim import Optimizer
from torch.profiler import record_function

from hermes_monai.data.augment import StrongAugment
from hermes_monai.data.cutmix import CutMix
from hermes_monai.data.stream import ResumableStream, random_states, set_random_states
from hermes_monai.engines.gradient_budget import GradientBudget
from hermes_monai.engines.teacher import make_teacher
from hermes_monai.losses import (
    IgnoreDiceLoss,
    ImageContrastLoss,
    PixelContrastLoss,
    SegSupervisedLoss,
    inter_task_consistency,
    masked_cross_entropy,
)
from hermes_monai.overrides import as_bool
from hermes_monai.pseudo_labels import DualThresholdSelector
from hermes_monai.schedules import (
    PAPER_CONSISTENCY_RAMPUP,
    consistency_weight,
    contrast_weight,
    entropy_ratio,
)

LOSS_TERMS = (
    "loss_seg_l",
    "loss_cls_l",
    "loss_seg_u",
    "loss_cls_u",
    "loss_contrast_cls",
    "loss_contrast_seg",
    "loss_itc",
    "loss_seg",
    "loss_cls",
)
MONITOR_KEYS = ("select_rate_image", "select_rate_pixel", "gamma", "itc_weight", "contrast_weight")
#: Terms whose gradient on the shared segmentation encoder is monitored, with ``loss_seg_l`` the reference.
GRAD_TERMS = (
    "loss_seg_l",
    "loss_seg_u",
    "loss_contrast_seg",
    "loss_itc",
    "loss_cls_l",
    "loss_cls_u",
    "loss_contrast_cls",
)

logger = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    """A non-finite input or loss; the message names the iteration and what was not finite."""


DEFAULT_WEIGHTS = {
    "cls_total": 1.1,
    "cls_unsup": 0.1,
    "cls_contrast": 0.2,
    "seg_total": 0.5,
    "seg_unsup": 0.1,
    "seg_contrast": 0.8,
    "itc": 1.0,
}


def loggable_output(output: dict) -> dict[str, float]:
    """Pick the scalar loss, loss terms and monitors from the trainer output for logging handlers."""
    keys = ("loss", *LOSS_TERMS, *MONITOR_KEYS)
    out = {k: float(output[k]) for k in keys if k in output}
    out.update(
        {k: float(v) for k, v in output.items() if k.startswith(("grad_norm_", "grad_cos_", "grad_scale_"))}
    )
    return out


def _known_class_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the images whose class is known (target ≥ 0; ``-1`` = unknown, e.g. a
    segmentation-only dataset); 0, graph-connected, when no image of the batch has a class."""
    known = target >= 0
    if bool(known.all()):
        return F.cross_entropy(logits, target)
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known], target[known])


class HermesTrainer(Trainer):
    """Semi-supervised two-task trainer (Hermes).

    Args:
        device: training device.
        max_epochs: number of epochs.
        train_data_loader: labeled loader; batches are dicts with ``image`` (B,1,H,W) float,
            ``label`` (B,1,H,W) integer mask and ``class`` (B,) class index.
        network: a :class:`hermes_monai.networks.HermesNet` (or anything returning its output dict).
        seg_optimizer / cls_optimizer: optimisers over ``network.parameter_groups()["seg"/"cls"]``.
        unlabeled_data_loader: unlabeled loader yielding dicts with the weak view ``image``
            (B,1,H,W); ``None`` trains on the labeled losses only (SupOnly).
        epoch_length: iterations per epoch (default: the longer of the two loaders).
        num_seg_classes / num_cls_classes: number of classes of each task.
        image_selector / pixel_selector: dual-threshold selectors (default: HERMES §4 settings).
        image_contrast / pixel_contrast: contrastive losses with their memory banks; ``None``
            switches that term off (ablation).
        strong_augment: builds the strong view from the weak one (default :class:`StrongAugment`).
        cutmix: boxes pasted between the strong views (:class:`~hermes_monai.data.CutMix`); ``None``: off.
        use_consistency: switch for the inter-task consistency term.
        teacher_momentum: ``None`` (default, the paper's): the weak-view pass runs the student itself; a
            momentum m in [0, 1): it runs a mean teacher, an exponential moving average of the student
            (:mod:`hermes_monai.engines.teacher`), updated after every optimiser step.
        separate_student_passes: run the student on the labeled images and on the strong views in two
            forward passes, so batch norm normalises the labeled images with their own statistics (as
            SupOnly does) instead of a half-strong batch's; ``False``: one pass over both.
        contrast_warmup: fraction of T before the contrastive terms switch on.
        contrast_rampup: fraction of T over which they then ramp up (0: at once).
        weights: loss weights, keys of :data:`DEFAULT_WEIGHTS` (missing keys keep their default).
        consistency_rampup: ``λ(t) = weights['itc'] · rampup(t, consistency_rampup · T)``.
        grad_monitor_interval: measure the per-term gradient norms on the seg encoder at every iteration
            number divisible by it (0: never); a multiple of the logging interval gets them logged.
        grad_budget: cap on each auxiliary seg term's encoder gradient relative to the supervised term's,
            applied from the monitor's measurements (:class:`~hermes_monai.engines.GradientBudget`);
            ``None``: the configured weights unchanged. Needs ``grad_monitor_interval > 0``.
        grad_budget_momentum: momentum of the budget's running ratio (geometric mean over measurements).
        entropy_start: γ(0) of the entropy ramp γ(t) = start + (1−start)·rampup(t, T).
        seed: seed of the strong-augmentation and anchor-sampling generators.
        skip_nonfinite_steps: skip (and count) iterations with a non-finite input or loss instead of
            stopping with :class:`NonFiniteError`.
        lr_schedulers: the LR schedulers of the two optimisers, checked against the run's length on resume.
        resume_schedule: ``"rescale"`` or ``"refuse"``: what to do when a resumed scheduler was planned for
            another number of iterations.
        train_handlers, amp, amp_kwargs, non_blocking: as for :class:`monai.engines.SupervisedTrainer`.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        network: torch.nn.Module,
        seg_optimizer: Optimizer,
        cls_optimizer: Optimizer,
        unlabeled_data_loader: Iterable | None = None,
        epoch_length: int | None = None,
        num_seg_classes: int = 2,
        num_cls_classes: int = 2,
        image_selector: DualThresholdSelector | None = None,
        pixel_selector: DualThresholdSelector | None = None,
        image_contrast: ImageContrastLoss | None = None,
        pixel_contrast: PixelContrastLoss | None = None,
        strong_augment: Callable[..., torch.Tensor] | None = None,
        cutmix: CutMix | None = None,
        use_consistency: bool = True,
        separate_student_passes: bool = False,
        teacher_momentum: float | None = None,
        contrast_warmup: float = 0.1,
        contrast_rampup: float = 0.0,
        weights: dict[str, float] | None = None,
        consistency_rampup: float = PAPER_CONSISTENCY_RAMPUP,
        grad_monitor_interval: int = 0,
        grad_budget: float | None = None,
        grad_budget_momentum: float = 0.5,
        entropy_start: float = 0.75,
        seed: int = 0,
        skip_nonfinite_steps: bool = False,
        lr_schedulers: Sequence | None = None,
        resume_schedule: str = "rescale",
        train_handlers: Sequence | None = None,
        amp: bool = False,
        amp_kwargs: dict | None = None,
        non_blocking: bool = False,
    ) -> None:
        if epoch_length is None:
            lengths = [len(train_data_loader)]  # type: ignore[arg-type]
            if unlabeled_data_loader is not None:
                lengths.append(len(unlabeled_data_loader))  # type: ignore[arg-type]
            epoch_length = max(lengths)
        if resume_schedule not in ("rescale", "refuse"):
            raise ValueError(f"resume_schedule must be 'rescale' or 'refuse', got {resume_schedule!r}")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            handlers=train_handlers,
            amp=amp,
            amp_kwargs=amp_kwargs,
            decollate=False,
        )
        unknown = set(weights or {}) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown loss weight(s) {sorted(unknown)}; known: {sorted(DEFAULT_WEIGHTS)}")
        self.network = network
        self.seg_optimizer = seg_optimizer
        self.cls_optimizer = cls_optimizer
        self.unlabeled_data_loader = unlabeled_data_loader
        self.num_seg_classes = num_seg_classes
        self.image_selector = image_selector or DualThresholdSelector(num_cls_classes)
        self.pixel_selector = pixel_selector or DualThresholdSelector(num_seg_classes)
        self.image_contrast = image_contrast
        self.pixel_contrast = pixel_contrast
        self.strong_augment = strong_augment or StrongAugment()
        self.cutmix = cutmix if cutmix is not None and cutmix.prob > 0 else None
        self.use_consistency = as_bool(use_consistency, "use_consistency")
        self.separate_student_passes = as_bool(separate_student_passes, "separate_student_passes")
        self.teacher = make_teacher(network, teacher_momentum) if unlabeled_data_loader is not None else None
        contrast_weight(0, 1, contrast_warmup, contrast_rampup)  # validates the fractions
        self.contrast_warmup = float(contrast_warmup)
        self.contrast_rampup = float(contrast_rampup)
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        self.consistency_rampup = float(consistency_rampup)
        self.grad_monitor_interval = int(grad_monitor_interval)
        self.grad_budget = GradientBudget(grad_budget, grad_budget_momentum)
        if self.grad_budget.enabled and self.grad_monitor_interval <= 0:
            raise ValueError(
                "grad_budget needs the gradient monitor: set grad_monitor_interval > 0 (or grad_budget: null)"
            )
        self.entropy_start = entropy_start
        self.seg_sup_loss = SegSupervisedLoss()
        self.seg_unsup_loss = IgnoreDiceLoss()
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._unlabeled_iter: Iterator | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.labeled_stream = ResumableStream(train_data_loader, seed=seed, name="labeled")  # type: ignore[arg-type]
        self.unlabeled_stream = (
            None
            if unlabeled_data_loader is None
            else ResumableStream(unlabeled_data_loader, seed=seed + 1, name="unlabeled")  # type: ignore[arg-type]
        )
        self.skip_nonfinite_steps = as_bool(skip_nonfinite_steps, "skip_nonfinite_steps")
        self.lr_schedulers = list(lr_schedulers or [])
        self.resume_schedule = resume_schedule
        self.state.nonfinite_steps = 0
        self._schedule_checked = False
        self.add_event_handler(Events.EPOCH_STARTED, self._check_schedule_length)

    def run(self) -> None:
        """Run training. A gradient scaler is made only for float16 autocast (bf16 needs none)."""
        device_type = torch.device(self.state.device).type
        dtype = (self.amp_kwargs or {}).get("dtype", torch.get_autocast_dtype(device_type))
        self.scaler = torch.amp.GradScaler(device_type) if self.amp and dtype == torch.float16 else None
        self._schedule_checked = False
        self._unlabeled_iter = None  # a new run (or a resume) continues each stream from its saved position
        if self.state.epoch_length == 0:
            Workflow.run(self)  # warns and returns
            return
        Engine.run(self, data=self.labeled_stream, max_epochs=self.state.max_epochs)

    # ------------------------------------------------------------------ resumable state
    def state_dict(self) -> dict[str, Any]:
        """ignite's engine state plus ``"hermes"``: banks, RNG states and data-stream positions."""
        sd = dict(super().state_dict())
        sd["hermes"] = self.hermes_state_dict()
        return sd

    def load_state_dict(self, state_dict: Any) -> None:
        sd = dict(state_dict)
        hermes = sd.pop("hermes", None)
        super().load_state_dict(sd)
        if hermes is None:
            logger.warning(
                "the checkpoint has no Hermes trainer state (memory banks, RNG states, data order): "
                "written by an older version; the resumed run will not repeat an uninterrupted one exactly"
            )
        else:
            self.load_hermes_state_dict(hermes)

    def hermes_state_dict(self) -> dict[str, Any]:
        """Banks, RNG states and data positions: what :meth:`state_dict` adds to ignite's."""
        py = random.getstate()
        npst = np.random.get_state()
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "keys": torch.as_tensor(np.asarray(npst[1], dtype=np.int64)),
                "pos": int(npst[2]),
                "has_gauss": int(npst[3]),
                "cached_gaussian": float(npst[4]),
            },
            "python": {
                "version": int(py[0]),
                "state": torch.tensor(py[1], dtype=torch.int64),
                "gauss": py[2],
            },
            "generator": None if self._generator is None else self._generator.get_state(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        streams = {"labeled": self.labeled_stream.state_dict()}
        transforms = {"labeled": random_states(self.labeled_stream.dataset)}
        if self.unlabeled_stream is not None:
            streams["unlabeled"] = self.unlabeled_stream.state_dict()
            transforms["unlabeled"] = random_states(self.unlabeled_stream.dataset)
        return {
            "rng": rng,
            "streams": streams,
            "transforms": transforms,
            "image_contrast": None if self.image_contrast is None else self.image_contrast.state_dict(),
            "pixel_contrast": None if self.pixel_contrast is None else self.pixel_contrast.state_dict(),
            "nonfinite_steps": int(getattr(self.state, "nonfinite_steps", 0)),
            "grad_budget": self.grad_budget.state_dict(),
            "teacher": None if self.teacher is None else self.teacher.state_dict(),
        }

    def load_hermes_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`hermes_state_dict` returned."""
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        n = rng["numpy"]
        np.random.set_state(
            ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
        )
        p = rng["python"]
        random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
        if rng["generator"] is not None:
            self._generator = None
            self._rng(self.state.device).set_state(rng["generator"].cpu())
        self.labeled_stream.load_state_dict(state["streams"]["labeled"])
        set_random_states(self.labeled_stream.dataset, state["transforms"]["labeled"])
        if self.unlabeled_stream is not None and "unlabeled" in state["streams"]:
            self.unlabeled_stream.load_state_dict(state["streams"]["unlabeled"])
            set_random_states(self.unlabeled_stream.dataset, state["transforms"]["unlabeled"])
        for name in ("image_contrast", "pixel_contrast"):
            module, saved = getattr(self, name), state.get(name)
            if module is not None and saved is not None:
                module.load_state_dict(saved)
        if self.teacher is not None:
            if state.get("teacher") is not None:
                self.teacher.load_state_dict(state["teacher"])
            else:
                logger.warning("the checkpoint has no mean teacher: it restarts as a copy of the student")
                self.teacher.n_averaged.zero_()
        self.state.nonfinite_steps = int(state.get("nonfinite_steps", 0))
        self.grad_budget.load_state_dict(state.get("grad_budget", {}))
        self._unlabeled_iter = None

    def _check_schedule_length(self) -> None:
        """Once per run, at the first epoch: a scheduler planned for another T is rescaled or refused."""
        if self._schedule_checked:
            return
        self._schedule_checked = True
        big_t = self.total_iterations()
        for sched in self.lr_schedulers:
            planned = getattr(sched, "total_iters", None)
            if planned is None or int(planned) == big_t:
                continue
            what = (
                f"{type(sched).__name__} was planned for {planned} iterations (restored from the checkpoint) "
                f"but this run has T = max_epochs x epoch_length = {big_t}"
            )
            polynomial = isinstance(sched, torch.optim.lr_scheduler.PolynomialLR)
            if self.resume_schedule == "refuse" or not polynomial:
                raise ValueError(
                    f"{what}; resume with the max_epochs and epoch_length of the checkpoint, or set "
                    "resume_schedule: rescale (PolynomialLR only)"
                )
            sched.total_iters = big_t
            t = min(int(sched.last_epoch), big_t)
            factor = (1.0 - t / big_t) ** sched.power
            for group in sched.optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
            sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]
            logger.warning(f"{what}: the schedule is rescaled to T = {big_t}; lr now {sched._last_lr}")

    def _nonfinite(self, what: str) -> bool:
        """Agree across ranks on a non-finite step; stop (raise) or count it (skip). True: skip this step."""
        flag = torch.tensor([1.0 if what else 0.0], device=self.state.device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if not what and flag.item() > 0:
                what = "on another rank"
        if flag.item() == 0:
            return False
        msg = f"iteration {self.state.iteration}: non-finite {what}"
        if not self.skip_nonfinite_steps:
            raise NonFiniteError(
                f"{msg}. Stopped before the optimiser step; the final checkpoint (if the run saves one) "
                "holds the last good state. Set skip_nonfinite_steps: true to skip such steps instead."
            )
        self.state.nonfinite_steps = int(getattr(self.state, "nonfinite_steps", 0)) + 1
        logger.warning(f"{msg}: step skipped ({self.state.nonfinite_steps} skipped so far)")
        return True

    def _skipped_output(self) -> dict:
        out: dict[str, Any] = {Keys.LOSS: torch.tensor(float("nan"))}
        out["nonfinite_steps"] = float(self.state.nonfinite_steps)
        self.state.output = out
        return out

    # ------------------------------------------------------------------ helpers
    def _next_unlabeled(self) -> torch.Tensor:
        if self._unlabeled_iter is None:
            self._unlabeled_iter = iter(self.unlabeled_stream)  # type: ignore[arg-type]
        batch = next(self._unlabeled_iter)
        image = batch[Keys.IMAGE] if isinstance(batch, dict) else batch
        return torch.as_tensor(image).to(self.state.device, non_blocking=self.non_blocking)

    def _rng(self, device: torch.device) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
        return self._generator

    def total_iterations(self) -> int:
        """T of the schedules: ``max_epochs × epoch_length`` of the current run."""
        return int(self.state.max_epochs * self.state.epoch_length)

    # ---------------------------------------------------------------- iteration
    def _iteration(self, engine: HermesTrainer, batchdata: dict[str, Any]) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        device = engine.state.device
        x_l = torch.as_tensor(batchdata[Keys.IMAGE]).to(device, non_blocking=engine.non_blocking)
        y_seg = torch.as_tensor(batchdata[Keys.LABEL]).to(device, non_blocking=engine.non_blocking)
        y_seg = y_seg.long()[:, 0] if y_seg.ndim == 4 else y_seg.long()
        y_cls = torch.as_tensor(batchdata["class"]).to(device).long().view(-1)
        t = engine.state.iteration - 1
        big_t = engine.total_iterations()
        gen = engine._rng(device)
        engine.network.train()
        semi = engine.unlabeled_data_loader is not None
        u_w = engine._next_unlabeled() if semi else None
        inputs = {"labeled image": x_l} if u_w is None else {"labeled image": x_l, "unlabeled image": u_w}
        bad = [name for name, v in inputs.items() if not bool(torch.isfinite(v).all())]
        if engine._nonfinite(" and ".join(f"input ({b})" for b in bad)):
            return engine._skipped_output()

        autocast = (
            torch.autocast(device_type=torch.device(device).type, **(engine.amp_kwargs or {}))
            if engine.amp
            else torch.autocast(device_type="cpu", enabled=False)
        )
        out: dict[str, Any] = {}
        with autocast:
            if semi:
                with record_function("hermes::strong_view"):
                    u_s = engine.strong_augment(u_w, generator=gen)
                gamma = entropy_ratio(t, big_t, start=engine.entropy_start)
                with torch.no_grad():
                    with record_function("hermes::forward_teacher"):
                        if engine.teacher is None:
                            teacher = engine.network(u_w)
                        else:
                            engine.teacher.train()
                            teacher = engine.teacher(u_w)
                    with record_function("hermes::pseudo_labels"):
                        sel_img = engine.image_selector(teacher["cls_logits"].float().softmax(1), gamma)
                        sel_pix = engine.pixel_selector(teacher["seg_logits"].float().softmax(1), gamma)
                if engine.cutmix is not None:
                    with record_function("hermes::cutmix"):
                        u_s, teacher, sel_img, sel_pix = engine._cutmix(u_s, teacher, sel_img, sel_pix, gen)
            with record_function("hermes::forward_student"):
                if not semi:
                    pred = engine.network(x_l)
                elif engine.separate_student_passes:
                    p_l, p_u = engine.network(x_l), engine.network(u_s)
                    pred = {k: torch.cat([p_l[k], p_u[k]]) for k in p_l}
                else:
                    pred = engine.network(torch.cat([x_l, u_s]))
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            n_l = x_l.shape[0]
            lab = {k: v[:n_l] for k, v in pred.items()}
            with record_function("hermes::losses"):
                loss_seg_l = engine.seg_sup_loss(lab["seg_logits"], y_seg)
                loss_cls_l = _known_class_cross_entropy(lab["cls_logits"], y_cls)
            zero = loss_seg_l.new_zeros(())
            loss_seg_u = loss_cls_u = loss_c_cls = loss_c_seg = loss_itc = zero
            itc_w = contrast_w = 0.0
            if semi:
                unl = {k: v[n_l:] for k, v in pred.items()}
                with record_function("hermes::losses"):
                    loss_cls_u = masked_cross_entropy(unl["cls_logits"], sel_img.pseudo_label, sel_img.mask)
                    # HERMES §4: only pixels failing both tests are ignored here
                    loss_seg_u = engine.seg_unsup_loss(
                        unl["seg_logits"], sel_pix.pseudo_label, sel_pix.mask_any
                    )
                contrast_w = contrast_weight(t, big_t, engine.contrast_warmup, engine.contrast_rampup)
                if contrast_w > 0:
                    with record_function("hermes::contrast"):
                        if engine.image_contrast is not None:
                            loss_c_cls = engine.image_contrast(
                                torch.cat([teacher["cls_embed"], unl["cls_embed"]]).float(),
                                sel_img.pseudo_label.repeat(2),
                                sel_img.mask.repeat(2),
                            )
                        if engine.pixel_contrast is not None:
                            loss_c_seg = engine._pixel_contrast_loss(teacher, sel_pix, unl, lab, y_seg)
            if engine.use_consistency:  # on the strong view; on labeled images when there is none (SupOnly)
                proj = unl if semi else lab
                itc_w = consistency_weight(t, big_t, engine.weights["itc"], engine.consistency_rampup)
                loss_itc = inter_task_consistency(proj["seg_proj"].float(), proj["cls_proj"].float())
            w = engine.weights
            cap = engine.grad_budget.factor
            if engine.grad_budget.enabled:
                out.update(engine.grad_budget.factors())  # the factors this iteration applies
            # each term times its coefficient in the total loss (HERMES §5), the auxiliary seg terms also
            # times their gradient-budget factor (1 unless measured above budget)
            weighted = {
                "loss_seg_l": w["seg_total"] * loss_seg_l,
                "loss_seg_u": cap("loss_seg_u") * w["seg_total"] * w["seg_unsup"] * loss_seg_u,
                "loss_contrast_seg": cap("loss_contrast_seg")
                * w["seg_total"]
                * w["seg_contrast"]
                * contrast_w
                * loss_c_seg,
                "loss_itc": cap("loss_itc") * itc_w * loss_itc,
                "loss_cls_l": w["cls_total"] * loss_cls_l,
                "loss_cls_u": w["cls_total"] * w["cls_unsup"] * loss_cls_u,
                "loss_contrast_cls": w["cls_total"] * w["cls_contrast"] * contrast_w * loss_c_cls,
            }
            loss_cls = sum(weighted[k] for k in ("loss_cls_l", "loss_cls_u", "loss_contrast_cls"))
            loss_seg = sum(weighted[k] for k in ("loss_seg_l", "loss_seg_u", "loss_contrast_seg", "loss_itc"))
            loss = loss_cls + loss_seg
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        if not bool(torch.isfinite(loss)):
            terms = [k for k, v in weighted.items() if not bool(torch.isfinite(v))]
            named = ", ".join(f"{k}={float(weighted[k].detach())}" for k in terms)
            named = named or f"loss={float(loss.detach())}"
            what = f"loss term(s) {named}"
        else:
            what = ""
        if engine._nonfinite(what):
            return engine._skipped_output()
        if engine.grad_monitor_interval > 0 and engine.state.iteration % engine.grad_monitor_interval == 0:
            with record_function("hermes::grad_monitor"):
                shares = engine.gradient_shares(weighted)
            out.update(shares)
            engine.grad_budget.update(shares, device=device)

        engine.seg_optimizer.zero_grad(set_to_none=True)
        engine.cls_optimizer.zero_grad(set_to_none=True)
        scaler = engine.scaler
        with record_function("hermes::backward"):
            (scaler.scale(loss) if scaler is not None else loss).backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        with record_function("hermes::optimizer"):
            if scaler is not None:
                scaler.step(engine.seg_optimizer)
                scaler.step(engine.cls_optimizer)
                scaler.update()
            else:
                engine.seg_optimizer.step()
                engine.cls_optimizer.step()
            if engine.teacher is not None:
                engine.teacher.update_parameters(getattr(engine.network, "module", engine.network))
        engine.fire_event(IterationEvents.MODEL_COMPLETED)

        out[Keys.LOSS] = loss.detach()
        if engine.skip_nonfinite_steps:
            out["nonfinite_steps"] = float(engine.state.nonfinite_steps)
        terms = (
            loss_seg_l,
            loss_cls_l,
            loss_seg_u,
            loss_cls_u,
            loss_c_cls,
            loss_c_seg,
            loss_itc,
            loss_seg,
            loss_cls,
        )
        out.update({k: float(v.detach()) for k, v in zip(LOSS_TERMS, terms)})
        out["itc_weight"] = itc_w
        out["contrast_weight"] = contrast_w
        if semi:
            out["select_rate_image"] = sel_img.rate
            out["select_rate_pixel"] = sel_pix.rate
            out["gamma"] = gamma
        engine.state.output = out
        return out

    def _cutmix(
        self, u_s: torch.Tensor, teacher: dict, sel_img: Any, sel_pix: Any, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict, Any, Any]:
        """Paste CutMix boxes into the strong views and everything pixel-aligned with them (pseudo-labels,
        selection masks, the teacher's seg embeddings); mixed images leave the image-level selection."""
        mix = self.cutmix.sample(u_s.shape[0], u_s.shape[-2:], u_s.device, gen)  # type: ignore[union-attr]
        fields = ("pseudo_label", "mask", "mask_any", "certainty_label")
        sel_pix = dataclasses.replace(sel_pix, **{f: mix.apply(getattr(sel_pix, f)) for f in fields})
        sel_img = dataclasses.replace(sel_img, mask=sel_img.mask & ~mix.mixed)
        teacher = {**teacher, "seg_embed": mix.apply(teacher["seg_embed"])}
        return mix.apply(u_s), teacher, sel_img, sel_pix

    def shared_encoder_parameters(self) -> list[torch.nn.Parameter]:
        """The segmentation encoder's parameters (``network.seg.encoder``; all seg parameters if absent)."""
        net = getattr(self.network, "module", self.network)  # DDP / DataParallel wrappers
        seg = getattr(net, "seg", net)
        return [p for p in getattr(seg, "encoder", seg).parameters() if p.requires_grad]

    def gradient_shares(self, weighted: dict[str, torch.Tensor]) -> dict[str, float]:
        """Norm of each weighted loss term's gradient on the shared seg encoder, and its cosine with
        ``loss_seg_l``'s. Terms that do not reach the encoder (zero, or detached) get norm 0 and cosine 0.

        Args:
            weighted: term name -> scalar loss times its coefficient in the total, graph attached.

        Returns:
            ``grad_norm_<term>`` and ``grad_cos_<term>`` (without the ``loss_`` prefix) for
            :data:`GRAD_TERMS`.
        """
        params = self.shared_encoder_parameters()
        grads: dict[str, list[torch.Tensor | None]] = {}
        for name in GRAD_TERMS:
            term = weighted.get(name)
            reaches = term is not None and term.requires_grad
            grads[name] = (
                list(torch.autograd.grad(term, params, retain_graph=True, allow_unused=True))
                if reaches
                else [None] * len(params)
            )

        def dot(a: list[torch.Tensor | None], b: list[torch.Tensor | None]) -> float:
            # parameters a term does not reach (None) contribute 0
            pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
            return float(sum((x.float() * y.float()).sum() for x, y in pairs))

        ref = grads["loss_seg_l"]
        ref_norm = dot(ref, ref) ** 0.5
        out: dict[str, float] = {}
        for name, g in grads.items():
            short = name.removeprefix("loss_")
            norm = dot(g, g) ** 0.5
            out[f"grad_norm_{short}"] = norm
            out[f"grad_cos_{short}"] = dot(g, ref) / (norm * ref_norm) if norm > 0 and ref_norm > 0 else 0.0
        return out

    def _pixel_contrast_loss(
        self, teacher: dict, sel_pix: Any, unl: dict, lab: dict, y_seg: torch.Tensor
    ) -> torch.Tensor:
        """Pixel-level dual-threshold contrast over unlabeled (certainty labels) and labeled (ground truth).

        Embeddings are (B, D, h, w) at 1/8 scale; labels and predictions are resized to that grid
        with nearest-neighbour sampling. Unlabeled embeddings are the mean of the two views'.
        """
        emb_u = F.normalize((teacher["seg_embed"] + unl["seg_embed"]).float() / 2, dim=1)
        grid = emb_u.shape[-2:]

        def _nearest(lbl: torch.Tensor) -> torch.Tensor:
            return F.interpolate(lbl[:, None].float(), size=grid, mode="nearest")[:, 0].long()

        def _nearest_argmax(logits: torch.Tensor) -> torch.Tensor:
            # nearest sampling picks the same pixel in every channel, so sampling the logits first and
            # taking argmax on the grid equals argmax at full resolution then sampling, at 1/64 of the cost
            return F.interpolate(logits.detach().float(), size=grid, mode="nearest").argmax(1)

        labels = torch.cat([_nearest(sel_pix.certainty_label), _nearest(y_seg)])
        preds = torch.cat([_nearest_argmax(unl["seg_logits"]), _nearest_argmax(lab["seg_logits"])])
        emb = torch.cat([emb_u, lab["seg_embed"].float()])
        return self.pixel_contrast(emb, labels, preds, generator=self._rng(emb.device))
