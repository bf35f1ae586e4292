"""The weak-view teacher: the student itself (HERMES §3) or an exponential moving average of it.

Pseudo-labels, selection masks and the teacher-side contrast embeddings come from a forward pass over the
weak view without gradient. By default that pass runs the student network itself, as in the paper. With a
``teacher_momentum`` m the trainer keeps instead a mean teacher (Tarvainen & Valpola, 2017): a copy of the
network whose parameters follow the student's after every optimiser step,

    θ_teacher ← a · θ_teacher + (1 − a) · θ_student,   a = min(m, 1 − 1/(n + 1)),

n the number of updates so far (the first update copies the student; the ramp keeps the early teacher from
lagging behind a student that is still moving fast). The averaging is
:class:`torch.optim.swa_utils.AveragedModel`'s; this module only supplies the ramped decay. The teacher runs
in training mode like the student's own weak-view pass (batch statistics); its batch-norm buffers are copied
from the student at each update, not averaged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.swa_utils import AveragedModel

__all__ = ["ema_decay", "make_teacher"]


def ema_decay(momentum: float, num_averaged: int) -> float:
    """Decay ``a = min(momentum, 1 − 1/(n + 1))`` of the update after ``n = num_averaged`` earlier ones."""
    return min(float(momentum), 1.0 - 1.0 / (int(num_averaged) + 1))


def _ramped_ema(momentum: float) -> Callable[[list, list, torch.Tensor | int], None]:
    def update(averaged: list, current: list, num_averaged: torch.Tensor | int) -> None:
        a = ema_decay(momentum, int(num_averaged))
        torch._foreach_lerp_(averaged, current, 1.0 - a)

    return update


def make_teacher(network: torch.nn.Module, momentum: float | None) -> AveragedModel | None:
    """A mean teacher of ``network`` (unwrapped from DDP), or ``None`` for the student-as-teacher default.

    Call ``teacher.update_parameters(student)`` after each optimiser step; the first call copies the student.
    """
    if momentum is None:
        return None
    momentum = float(momentum)
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"teacher_momentum must be in [0, 1) or null, got {momentum}")
    module = getattr(network, "module", network)  # DistributedDataParallel holds the network in .module
    teacher = AveragedModel(module, multi_avg_fn=_ramped_ema(momentum), use_buffers=False)
    for p in teacher.parameters():
        p.requires_grad_(False)  # the saliency pass differentiates the input only
    return teacher
