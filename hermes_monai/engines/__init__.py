"""Engines: the Hermes semi-supervised trainer built on ``monai.engines.Trainer``, and the evaluator
(MONAI's, with autocast on the engine's own device)."""

from hermes_monai.engines.evaluator import HermesEvaluator
from hermes_monai.engines.gradient_budget import BUDGETED_TERMS, GradientBudget
from hermes_monai.engines.teacher import ema_decay, make_teacher
from hermes_monai.engines.trainer import (
    DEFAULT_WEIGHTS,
    LOSS_TERMS,
    MONITOR_KEYS,
    HermesTrainer,
    loggable_output,
)

__all__ = [
    "BUDGETED_TERMS",
    "GradientBudget",
    "HermesEvaluator",
    "DEFAULT_WEIGHTS",
    "LOSS_TERMS",
    "MONITOR_KEYS",
    "HermesTrainer",
    "loggable_output",
    "ema_decay",
    "make_teacher",
]
