"""ignite/MONAI handlers specific to Hermes: atomic checkpoints and the evaluation metrics report."""

from hermes_monai.handlers.checkpoint import AtomicCheckpointSaver
from hermes_monai.handlers.metrics_report import MetricsReport, compute_metrics

__all__ = ["AtomicCheckpointSaver", "MetricsReport", "compute_metrics"]
