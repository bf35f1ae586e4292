"""Gradient budget: keep each auxiliary loss term from out-pulling the supervised one on the seg encoder.

The semi-supervised terms of the segmentation side (unsupervised Dice ``loss_seg_u``, pixel contrast
``loss_contrast_seg``, inter-task consistency ``loss_itc``) share the segmentation encoder with the
supervised term ``loss_seg_l``. Their fixed weights (HERMES §5) were set for one preset; on another preset
or dataset the same weights can give a term a gradient several times the supervised one's (measured at the
CPU preset: pixel contrast 2-3.6x and consistency 1.1-2.2x the supervised gradient over the last sixth of a
300-iteration run, consistency nearly opposed to it), and the model then learns the auxiliary task at the
expense of the masks.

:class:`GradientBudget` turns the trainer's gradient monitor into a control: at every monitored
iteration it reads each term's gradient norm on the shared encoder relative to the supervised term's,
keeps a geometric running mean of that ratio (unscaled by the budget's own factor), and from then on
multiplies the term by ``min(1, budget / ratio)``. A term within budget keeps its configured weight; a term
above it is scaled down to the budget. ``budget=None`` switches the control off (every factor 1).

Under ``torch.distributed`` the log-ratios are averaged over ranks, so every rank applies the same factors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist

from hermes_monai.overrides import parse_value

__all__ = ["BUDGETED_TERMS", "GradientBudget"]

#: Terms the budget may scale: the auxiliary terms of the segmentation side of the total loss.
BUDGETED_TERMS: tuple[str, ...] = ("loss_seg_u", "loss_contrast_seg", "loss_itc")


class GradientBudget:
    """Per-term weight factors that cap a term's seg-encoder gradient at ``budget`` × the supervised one's.

    Args:
        budget: the largest allowed ratio ``‖∇ term‖ / ‖∇ loss_seg_l‖`` on the shared encoder (e.g. 1.0:
            no term may out-pull the supervised one); ``None`` disables the control.
        momentum: weight of the previous running mean in the geometric running mean of each ratio
            (0: use the latest measurement alone).
        terms: names of the terms the budget applies to (keys of the trainer's weighted-term dict).
    """

    def __init__(
        self, budget: float | None = 1.0, momentum: float = 0.5, terms: Iterable[str] = BUDGETED_TERMS
    ) -> None:
        if isinstance(budget, str):  # e.g. "null" or "0.5" from the bundle command line
            budget = parse_value(budget)
        if budget is not None and not (isinstance(budget, (int, float)) and budget > 0):
            raise ValueError(f"grad_budget must be positive or null, got {budget!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"grad_budget_momentum must be in [0, 1), got {momentum!r}")
        self.budget = None if budget is None else float(budget)
        self.momentum = float(momentum)
        self.terms = tuple(terms)
        self.log_ratio: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return self.budget is not None

    def factor(self, term: str) -> float:
        """The factor the term is multiplied by now (1 until the term has been measured above budget)."""
        if self.budget is None or term not in self.log_ratio:
            return 1.0
        return min(1.0, self.budget / math.exp(self.log_ratio[term]))

    def update(self, shares: dict[str, float], device: torch.device | str = "cpu") -> None:
        """Fold one gradient measurement into the running ratios.

        Args:
            shares: the trainer's :meth:`~hermes_monai.engines.HermesTrainer.gradient_shares` output,
                measured on terms already multiplied by :meth:`factor` (``grad_norm_<term>`` without the
                ``loss_`` prefix). Terms with zero gradient (switched off, warming up) are not updated.
            device: where the ranks' ratios are all-reduced (the trainer's device: NCCL needs CUDA).
        """
        if self.budget is None:
            return
        ref = shares.get("grad_norm_seg_l", 0.0)
        logs = torch.full((len(self.terms),), float("nan"), dtype=torch.float64)
        if ref > 0:
            for i, term in enumerate(self.terms):
                norm = shares.get(f"grad_norm_{term.removeprefix('loss_')}", 0.0)
                if norm > 0:
                    logs[i] = math.log(norm / (self.factor(term) * ref))
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # mean over the ranks that measured the term (a NaN marks "not measured here")
            valid = ~torch.isnan(logs)
            packed = torch.stack([torch.where(valid, logs, torch.zeros_like(logs)), valid.double()]).to(
                device
            )
            dist.all_reduce(packed)
            packed = packed.cpu()
            logs = torch.where(packed[1] > 0, packed[0] / packed[1].clamp(min=1), torch.nan)
        for term, value in zip(self.terms, logs.tolist()):
            if math.isnan(value):
                continue
            prev = self.log_ratio.get(term)
            self.log_ratio[term] = (
                value if prev is None else self.momentum * prev + (1 - self.momentum) * value
            )

    def factors(self) -> dict[str, float]:
        """``grad_scale_<term>`` for logging: the factor of each budgeted term."""
        return {f"grad_scale_{t.removeprefix('loss_')}": self.factor(t) for t in self.terms}

    def state_dict(self) -> dict[str, float]:
        return dict(self.log_ratio)

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.log_ratio = {str(k): float(v) for k, v in state.items()}
