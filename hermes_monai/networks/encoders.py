"""Encoder factory for the Hermes branches, with local ImageNet weights through timm.

The segmentation branch's U-Net encoder is any timm CNN that can return its first four feature
stages at strides 2, 4, 8 and 16 (HERMES.md §1): ``"res2net101d"`` (the deep-stem 26w×4s
Res2Net-101 of the paper), ``"resnet18"``/``"resnet34"`` for CPU work. Nothing is downloaded:
ImageNet weights come from a local file that timm itself reads and loads
(:func:`create_timm_model`): ``timm.models.load_state_dict`` reads it with ``weights_only=True``, unwraps a
``state_dict`` / ``model`` entry and strips ``module.`` prefixes; ``timm.create_model(..., pretrained=True,
pretrained_cfg_overlay={"state_dict": ...}, in_chans=1)`` drops a classifier whose class count differs
and adapts the 3-channel stem to ``in_chans`` (summing over RGB for one channel). timm loads feature
extractors non-strictly, so a file for another architecture would leave the model at random init
without an error: :func:`create_timm_model` refuses a file that supplies fewer than half of the
model's tensors, naming the file.

:data:`ENCODER_PRESETS` aliases (``"paper"``, ``"cpu"``) are resolved before the name goes to timm;
every other name is passed to timm unchanged.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import timm
from timm.models import load_state_dict
from torch import nn

__all__ = ["ENCODER_PRESETS", "create_encoder", "create_timm_model"]

#: Short aliases for the encoders used by the bundle configs; other names go straight to timm.
ENCODER_PRESETS: dict[str, str] = {"paper": "res2net101d", "cpu": "resnet18"}


def create_timm_model(name: str, weights_path: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, **kwargs)``, with weights from the local file ``weights_path`` when given.

    Raises:
        FileNotFoundError: ``weights_path`` does not exist (the message names it).
        ValueError: the file does not hold weights for this architecture (naming the file and the cause).
    """
    if weights_path is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    path = os.fspath(weights_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Encoder weights file not found: {path!r}")
    try:
        state_dict = load_state_dict(path)
        model = timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay={"state_dict": state_dict}, **kwargs
        )
    except (RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as err:
        raise ValueError(f"Weights file {path!r} does not fit timm model {name!r}: {err}") from err
    keys = list(model.state_dict())
    found = sum(k in state_dict for k in keys)
    if found < len(keys) / 2:
        raise ValueError(
            f"Weights file {path!r} holds {found} of the {len(keys)} tensors of timm model {name!r} "
            f"(model keys e.g. {keys[:3]}, file keys e.g. {list(state_dict)[:3]}): wrong architecture?"
        )
    return model


def create_encoder(name: str, in_channels: int = 1, weights_path: str | None = None) -> nn.Module:
    """Build a timm feature extractor returning 4 feature maps at strides 2, 4, 8 and 16.

    Args:
        name: a timm model name (``"resnet18"``, ``"resnet34"``, ``"res2net101d"``, ...) or a key
            of :data:`ENCODER_PRESETS`.
        in_channels: image channels (1 for grey ultrasound).
        weights_path: optional local ImageNet checkpoint of that timm model (see :func:`create_timm_model`).

    Returns:
        A module mapping (B, in_channels, H, W) to a list of 4 tensors of shapes
        (B, C_k, H / s_k, W / s_k), s = (2, 4, 8, 16), C_k = ``module.feature_info.channels()[k]``.

    Raises:
        ValueError: the model's feature strides are not (2, 4, 8, 16).
    """
    timm_name = ENCODER_PRESETS.get(name, name)
    encoder = create_timm_model(
        timm_name, weights_path, features_only=True, out_indices=(0, 1, 2, 3), in_chans=in_channels
    )
    strides = list(encoder.feature_info.reduction())
    if strides != [2, 4, 8, 16]:
        raise ValueError(f"Encoder {timm_name!r} has feature strides {strides}; Hermes needs [2, 4, 8, 16].")
    return encoder
