"""ignite/MONAI handlers specific to Hermes: atomic checkpoints, the evaluation metrics report and batch-norm
folding at inference."""

from hermes_monai.handlers.checkpoint import (
    AtomicCheckpointSaver,
    ResumableBest,
    SafeCheckpointLoader,
    load_checkpoint,
    resolve_resume,
)
from hermes_monai.handlers.fold import FoldBatchNorm
from hermes_monai.handlers.metrics_report import MetricsReport, compute_metrics

__all__ = [
    "AtomicCheckpointSaver",
    "FoldBatchNorm",
    "MetricsReport",
    "ResumableBest",
    "SafeCheckpointLoader",
    "compute_metrics",
    "load_checkpoint",
    "resolve_resume",
]
