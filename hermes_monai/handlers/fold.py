"""Batch norm folded into the convolutions once an inference run has loaded its weights.

Evaluation-mode batch norm is a per-channel affine map, so it can be merged into the convolution that feeds
it (:meth:`~hermes_monai.networks.HermesDeployNet.fold_batch_norm`): the same outputs with one operation
fewer per norm. The folded network has no batch-norm ``state_dict`` keys, so folding must come after the
checkpoint is loaded: :class:`FoldBatchNorm` runs on ``Events.STARTED`` and is listed after the
``CheckpointLoader`` in ``bundle/configs/inference.yaml`` (ignite calls handlers of one event in the order
they were attached). A fold that would change the outputs beyond float rounding is undone and logged, and
the run goes on with the unfolded network.
"""

from __future__ import annotations

import logging
from typing import Any

from ignite.engine import Engine, Events
from torch import nn

from hermes_monai.overrides import as_bool

__all__ = ["FoldBatchNorm"]

logger = logging.getLogger(__name__)


class FoldBatchNorm:
    """Fold ``network``'s batch norms when the engine starts (after the weights are loaded).

    Args:
        network: a network with a ``fold_batch_norm(image_size) -> int`` method
            (:class:`~hermes_monai.networks.HermesDeployNet`); wrappers with ``.module`` are unwrapped.
        enabled: false leaves the network as it is (the bundle's ``fold_batch_norm`` key).
        image_size: side of the square example the fold is checked on (divisible by 16).
    """

    def __init__(self, network: nn.Module, enabled: Any = True, image_size: int = 64) -> None:
        self.network = network
        self.enabled = as_bool(enabled, "fold_batch_norm")
        self.image_size = int(image_size)
        self.folded: int | None = None  # batch norms folded by the last call (None: not run)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        if not self.enabled:
            return
        net = getattr(self.network, "module", self.network)
        if not hasattr(net, "fold_batch_norm"):
            name = type(net).__name__
            raise TypeError(f"{name} has no fold_batch_norm(); use HermesDeployNet for inference.")
        try:
            self.folded = net.fold_batch_norm(image_size=self.image_size)
        except ValueError as err:  # the fold changed outputs beyond rounding and was undone
            self.folded = 0
            logger.warning("batch norms not folded (%s); running the unfolded network", err)
            return
        logger.info("folded %d batch norms into their convolutions", self.folded)
