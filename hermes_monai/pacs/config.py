"""The PACS runner's settings: a small YAML file (``bundle/configs/pacs.yaml``) plus ``--set key=value``.

Keys (see ``bundle/configs/pacs.yaml`` for the defaults and the model card's "Connecting to PACS"):

- ``source``: the PACS to read from - ``protocol`` ``dicomweb`` (``url``: the DICOMweb root) or ``dimse``
  (``host``, ``port``, ``ae_title``: the PACS's AE title);
- ``destination``: where the results go, the same keys; ``null`` = the source;
- ``calling_ae_title``: this runner's AE title (DIMSE); ``timeout_s``: network timeout;
- ``modalities``: the series modalities processed (``[US]``); results (SEG, SR) are never inputs;
- ``state_file``; ``work_dir`` (downloads and inference outputs, removed per batch; ``null`` = a
  temporary folder); ``batch_size``; ``poll_interval_s``; ``retry_failed``;
- ``bundle``: ``config_file`` (inference.yaml), ``bundle_root``, ``checkpoint`` (``models/model.pt``, or
  the TorchScript ``models/model.ts``), ``class_names`` and ``overrides`` (inference.yaml keys, e.g.
  ``dicom_frame``);
- ``listen``: the storage SCP of ``--listen``: ``ae_title``, ``host``, ``port``.

Relative paths are relative to the working directory.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

__all__ = ["DEFAULTS", "load_config"]

DEFAULTS: dict[str, Any] = {
    "source": {
        "protocol": "dicomweb",
        "url": "http://127.0.0.1:8042/dicom-web",
        "host": "127.0.0.1",
        "port": 4242,
        "ae_title": "ORTHANC",
    },
    "destination": None,
    "calling_ae_title": "HERMES",
    "timeout_s": 30,
    "modalities": ["US"],
    "state_file": "pacs_state.sqlite",
    "work_dir": None,
    "batch_size": 8,
    "poll_interval_s": 30,
    "retry_failed": False,
    "bundle": {
        "config_file": "bundle/configs/inference.yaml",
        "bundle_root": "bundle",
        "checkpoint": "bundle/models/model.pt",
        "class_names": ["benign", "malignant"],
        "overrides": {"dicom_frame": 0},
    },
    "listen": {"ae_title": "HERMES", "host": "127.0.0.1", "port": 11112},
}


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set(config: dict[str, Any], item: str) -> None:
    """Apply one ``a.b.c=value`` (value parsed as YAML)."""
    if "=" not in item:
        raise ValueError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node = config
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = yaml.safe_load(raw)


def load_config(path: str | os.PathLike | None = None, sets: Sequence[str] = ()) -> dict[str, Any]:
    """The settings: :data:`DEFAULTS`, then the YAML file at ``path``, then each ``key=value`` of ``sets``.

    Raises:
        ValueError: an unknown protocol or a malformed ``--set``.
    """
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        with open(path) as f:
            config = _merge(config, yaml.safe_load(f) or {})
    for item in sets:
        _set(config, item)
    if config["destination"] is not None:
        config["destination"] = _merge(config["source"], config["destination"])
    for side in ("source", "destination"):
        if config[side] is not None and config[side]["protocol"] not in ("dicomweb", "dimse"):
            raise ValueError(f"{side}.protocol must be dicomweb or dimse, got {config[side]['protocol']!r}")
    return config
