"""Encoder factory and local-checkpoint loading for the Hermes branches.

The segmentation branch's U-Net encoder is any timm CNN that can return its first four feature
stages at strides 2, 4, 8 and 16 (HERMES.md §1): ``"res2net101d"`` (the deep-stem 26w×4s
Res2Net-101 of the paper), ``"resnet18"``/``"resnet34"`` for CPU work. Networks are always built
with ``pretrained=False`` (no downloads); ImageNet weights come from a local file through
:func:`load_weights`.

Choices where the spec is silent:

- :data:`ENCODER_PRESETS` aliases (``"paper"``, ``"cpu"``) are resolved before the name goes to
  timm; every other name is passed to timm unchanged.
- Checkpoint keys with a leading ``"module."`` (DataParallel/DDP) are stripped.
- A checkpoint tensor whose shape differs from the model's only in the input-channel dimension of
  a 4-D conv weight (the stem conv of a 3-channel ImageNet checkpoint loaded into a 1-channel
  model) is converted with :func:`timm.models.adapt_input_conv` (channel sum for 1 channel).
  Any other shape mismatch is skipped with a warning rather than failing the whole load.
- Classifier keys (``"fc.*"``) are dropped; keys the model does not have (e.g. ``layer4.*`` for a
  four-stage feature extractor) are ignored and logged at DEBUG level; model keys missing from
  the file are logged at WARNING level.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

__all__ = ["ENCODER_PRESETS", "create_encoder", "load_weights"]

logger = logging.getLogger(__name__)

#: Short aliases for the encoders used by the bundle configs; other names go straight to timm.
ENCODER_PRESETS: dict[str, str] = {"paper": "res2net101d", "cpu": "resnet18"}

_CLASSIFIER_PREFIXES = ("fc.",)


def _unwrap_state_dict(obj: object, path: str) -> dict[str, torch.Tensor]:
    """Return the tensor mapping inside a loaded checkpoint (plain, ``"state_dict"`` or ``"model"``)."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise ValueError(f"Checkpoint {path!r} does not hold a state dict of tensors.")


def load_weights(module: nn.Module, weights_path: str | os.PathLike, in_channels: int) -> list[str]:
    """Load a local (ImageNet-style) checkpoint into ``module`` non-strictly.

    Args:
        module: the network to fill (a timm model or timm ``features_only`` wrapper).
        weights_path: a file saved with ``torch.save``: a state dict, or a dict holding one under
            ``"state_dict"`` or ``"model"``.
        in_channels: the model's input channels; 3-channel stem conv weights are adapted to it.

    Returns:
        The model keys that were loaded from the file.

    Raises:
        FileNotFoundError: the file does not exist (the message names the path).
        ValueError: the file holds no tensors, or none of its keys matched the model.
    """
    path = os.fspath(weights_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Encoder weights file not found: {path!r}")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    ckpt = _unwrap_state_dict(raw, path)
    ckpt = {k.removeprefix("module."): v for k, v in ckpt.items()}
    ckpt = {k: v for k, v in ckpt.items() if not k.startswith(_CLASSIFIER_PREFIXES)}

    target = module.state_dict()
    to_load: dict[str, torch.Tensor] = {}
    for key, value in ckpt.items():
        if key not in target:
            continue
        expected = target[key]
        if value.shape != expected.shape:
            same_but_inputs = (
                value.ndim == 4
                and expected.ndim == 4
                and value.shape[0] == expected.shape[0]
                and value.shape[2:] == expected.shape[2:]
            )
            if same_but_inputs:
                value = adapt_input_conv(in_channels, value, base_chans=value.shape[1])
            if value.shape != expected.shape:
                logger.warning(
                    "Skipping %s from %s: shape %s does not fit the model's %s.",
                    key,
                    path,
                    tuple(value.shape),
                    tuple(expected.shape),
                )
                continue
        to_load[key] = value.to(dtype=expected.dtype)

    if not to_load:
        raise ValueError(
            f"No key of weights file {path!r} matched the model "
            f"(file keys e.g. {sorted(ckpt)[:3]}, model keys e.g. {sorted(target)[:3]})."
        )
    result = module.load_state_dict(to_load, strict=False)
    if result.missing_keys:
        logger.warning(
            "%d model keys were not in %s (kept at their initial values): %s",
            len(result.missing_keys),
            path,
            result.missing_keys,
        )
    unused = sorted(set(ckpt) - set(to_load))
    if unused:
        logger.debug("%d keys of %s were not used: %s", len(unused), path, unused)
    logger.info("Loaded %d tensors from %s.", len(to_load), path)
    return sorted(to_load)


def create_encoder(name: str, in_channels: int = 1, weights_path: str | None = None) -> nn.Module:
    """Build a timm feature extractor returning 4 feature maps at strides 2, 4, 8 and 16.

    Args:
        name: a timm model name (``"resnet18"``, ``"resnet34"``, ``"res2net101d"``, ...) or a key
            of :data:`ENCODER_PRESETS`.
        in_channels: image channels (1 for grey ultrasound).
        weights_path: optional local checkpoint, see :func:`load_weights`.

    Returns:
        A module mapping (B, in_channels, H, W) to a list of 4 tensors of shapes
        (B, C_k, H / s_k, W / s_k), s = (2, 4, 8, 16), C_k = ``module.feature_info.channels()[k]``.

    Raises:
        ValueError: the model's feature strides are not (2, 4, 8, 16).
    """
    timm_name = ENCODER_PRESETS.get(name, name)
    encoder = timm.create_model(
        timm_name, features_only=True, out_indices=(0, 1, 2, 3), in_chans=in_channels, pretrained=False
    )
    strides = list(encoder.feature_info.reduction())
    if strides != [2, 4, 8, 16]:
        raise ValueError(f"Encoder {timm_name!r} has feature strides {strides}; Hermes needs [2, 4, 8, 16].")
    if weights_path is not None:
        load_weights(encoder, weights_path, in_channels)
    return encoder
