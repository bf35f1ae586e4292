"""Method comparisons at fixed label budgets: does semi-supervision pay? (``scripts/compare.py``)

* :mod:`.runs` - the compared methods (Hermes, SupOnly, one ablation per switch) and one (method, budget,
  seed) run planned, trained and evaluated through the real bundle, re-used when already finished.
* :mod:`.summary` - test metrics over seeds, paired differences, the plateau check, Markdown tables.
* :mod:`.plots` - validation learning curves and gradient shares as PNG.

The label-budget draw itself is :mod:`hermes_monai.data.budgets`.
"""

from hermes_monai.comparison.plots import GRAD_TERMS, grad_share_curves, plot_curves, plot_grad_shares
from hermes_monai.comparison.runs import (
    EXPERIMENT,
    METHODS,
    RESERVED_KEYS,
    Method,
    RunSpec,
    config_value,
    evaluate_final,
    evaluate_on,
    evaluate_under,
    execute,
    final_weights,
    metric_curve,
    mlflow_client,
    plan_runs,
    run_name,
)
from hermes_monai.comparison.summary import (
    CURVE_KEYS,
    CURVE_TITLES,
    TABLE_METRICS,
    format_plateau_table,
    format_table,
    mean_curves,
    plateau_change,
    plateau_rows,
    report_markdown,
    summarise,
)

__all__ = [
    "CURVE_KEYS",
    "CURVE_TITLES",
    "EXPERIMENT",
    "GRAD_TERMS",
    "METHODS",
    "Method",
    "RESERVED_KEYS",
    "RunSpec",
    "TABLE_METRICS",
    "config_value",
    "evaluate_final",
    "evaluate_on",
    "evaluate_under",
    "execute",
    "final_weights",
    "format_plateau_table",
    "format_table",
    "grad_share_curves",
    "mean_curves",
    "metric_curve",
    "mlflow_client",
    "plan_runs",
    "plateau_change",
    "plateau_rows",
    "plot_curves",
    "plot_grad_shares",
    "report_markdown",
    "run_name",
    "summarise",
]
