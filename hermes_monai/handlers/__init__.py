"""ignite/MONAI handlers specific to Hermes: atomic checkpoints and the evaluation metrics report."""

from hermes_monai.handlers.checkpoint import (
    AtomicCheckpointSaver,
    ResumableBest,
    SafeCheckpointLoader,
    load_checkpoint,
    resolve_resume,
)
from hermes_monai.handlers.metrics_report import MetricsReport, compute_metrics

__all__ = [
    "AtomicCheckpointSaver",
    "MetricsReport",
    "ResumableBest",
    "SafeCheckpointLoader",
    "compute_metrics",
    "load_checkpoint",
    "resolve_resume",
]
