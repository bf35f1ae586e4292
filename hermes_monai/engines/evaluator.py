"""The evaluator of validation, test evaluation and inference: MONAI's, with autocast on any device.

``monai.engines.SupervisedEvaluator`` (MONAI 1.6) enters ``torch.autocast("cuda", ...)`` when ``amp`` is on,
so on a CPU ``amp=True`` changes nothing and the network runs in float32, while :class:`HermesTrainer`
autocasts on its own device type. :class:`HermesEvaluator` is the same evaluator with autocast entered on
the device the engine runs on (``cpu`` or ``cuda``), so ``--amp true --amp_dtype bfloat16`` evaluates in
bf16 on a CPU with bf16 units as it trains in bf16. On CUDA it does what MONAI's does.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.engines import SupervisedEvaluator

__all__ = ["HermesEvaluator"]


class HermesEvaluator(SupervisedEvaluator):
    """:class:`monai.engines.SupervisedEvaluator` whose ``amp`` autocasts on the engine's device type
    (``amp_kwargs`` as for :func:`torch.autocast`, e.g. ``{"dtype": torch.bfloat16}``); every other
    argument and behaviour is MONAI's."""

    def _iteration(self, engine: SupervisedEvaluator, batchdata: dict[str, Any]) -> dict:
        if not engine.amp:
            return super()._iteration(engine, batchdata)
        device = engine.state.device
        device_type = "cpu" if device is None else torch.device(device).type
        # MONAI's iteration would enter CUDA autocast itself: switched off for the call, ours is entered
        engine.amp = False
        try:
            with torch.autocast(device_type=device_type, **(engine.amp_kwargs or {})):
                return super()._iteration(engine, batchdata)
        finally:
            engine.amp = True
