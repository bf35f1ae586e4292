"""Experiment tracking that never stops training and never loses a number.

:class:`ResilientMLFlowHandler` is MONAI's :class:`~monai.handlers.MLFlowHandler` (same arguments: a local
sqlite store by default, any MLflow server with ``tracking_uri=http://host:port``) that also

* writes every param and metric it logs to a local JSON-lines record first
  (``local_record``, e.g. ``<bundle>/eval/tracking/<run_name>.jsonl``), so nothing is lost whatever
  happens to the server;
* catches a tracking failure (server unreachable, or gone mid-run), says so **once** (a warning naming the
  server and the local record) and goes on training without calling the server again;
* bounds MLflow's HTTP retries for ``http(s)://`` servers (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` /
  ``MLFLOW_HTTP_REQUEST_TIMEOUT``, unless already set), so an unreachable server costs seconds, not minutes.

:func:`write_executed_config` writes the configuration the bundle is running (files merged, command-line
overrides applied) to a file, to be logged as an artifact. :func:`tracking_params` flattens the settings
to log as run params, leaving out anything that names a file or folder (image paths and patient data never
go into params or tags).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine
from monai.handlers import MLFlowHandler

from hermes_monai.io.atomic import write_text_atomic

__all__ = ["ResilientMLFlowHandler", "config_params", "tracking_params", "write_executed_config"]

logger = logging.getLogger(__name__)


def tracking_params(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten ``settings`` (nested dicts) into ``{"a.b": value}`` run params, dropping path-like entries.

    A key containing ``dir``, ``path``, ``file``, ``uri`` or ``datalist``, or a string value holding a path
    separator, is left out, so no image path, dataset location or patient identifier reaches the tracker.
    """
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if any(word in str(key).lower() for word in ("dir", "path", "file", "uri", "datalist")):
            continue
        if isinstance(value, Mapping):
            out.update(tracking_params(value, prefix=f"{name}."))
        elif isinstance(value, str) and ("/" in value or "\\" in value):
            continue
        else:
            out[name] = value
    return out


def _running_parser() -> Any:
    """The :class:`monai.bundle.ConfigParser` whose config is being parsed (found on the call stack)."""
    from monai.bundle import ConfigParser

    for frame_info in inspect.stack():
        candidate = frame_info.frame.f_locals.get("self")
        if isinstance(candidate, ConfigParser):
            return candidate
    return None


_NOT_PARAMS = ("imports", "train", "validate", "initialize", "run", "training", "finalize", "network_def")


def config_params() -> dict[str, Any]:
    """The running bundle's settings as run params: every literal value of the config (files merged,
    command-line overrides applied; ``$`` expressions and ``@`` references left out, being derived), with
    the path-like entries dropped by :func:`tracking_params`. Empty when no bundle config is being parsed."""
    parser = _running_parser()
    if parser is None:
        return {}

    def literal(value: Any) -> Any:
        if isinstance(value, Mapping):
            kept = {k: literal(v) for k, v in value.items() if k != "_target_" and not str(k).startswith("_")}
            return {k: v for k, v in kept.items() if v is not None}
        if isinstance(value, (list, tuple)):
            items = [literal(v) for v in value]
            return None if any(v is None for v in items) else items
        if isinstance(value, str) and value.startswith(("$", "@", "%")):
            return None
        return value

    settings = {k: literal(v) for k, v in parser.get().items() if k not in _NOT_PARAMS}
    return tracking_params({k: v for k, v in settings.items() if v is not None and v != {}})


def write_executed_config(path: str | os.PathLike) -> str | None:
    """Write the running bundle config (merged files, overrides applied, unresolved) as JSON to ``path``.

    Call it from a config expression (``"$hermes_monai.tracking.write_executed_config(...)"``); returns the
    path, or None when no bundle config is being parsed.
    """
    parser = _running_parser()
    if parser is None:
        return None
    write_text_atomic(path, json.dumps(parser.get(), indent=2, default=str) + "\n")
    return str(path)


class ResilientMLFlowHandler(MLFlowHandler):
    """:class:`monai.handlers.MLFlowHandler` with a local record and no failure that stops training.

    Args:
        local_record: JSON-lines file every param and metric is appended to (None: no local record).
        *args, **kwargs: as for :class:`~monai.handlers.MLFlowHandler`.
    """

    _failed_uris: set[str] = set()  # a server that failed once is not called again (one warning)

    def __init__(self, *args: Any, local_record: str | os.PathLike | None = None, **kwargs: Any) -> None:
        uri = str(kwargs.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or "")
        if uri.startswith(("http://", "https://")):
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        super().__init__(*args, **kwargs)
        self.uri = uri
        self.local_record = None if local_record is None else Path(local_record)

    @property
    def failed(self) -> bool:
        return self.uri in self._failed_uris

    # ------------------------------------------------------------------ local record
    def _record(self, kind: str, values: Mapping[str, Any], step: int | None = None) -> None:
        if self.local_record is None or not values:
            return
        self.local_record.parent.mkdir(parents=True, exist_ok=True)
        entry = {"time": time.time(), "kind": kind, "step": step, "values": dict(values)}
        with open(self.local_record, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, default=str) + "\n")

    def _failure(self, what: str, err: BaseException) -> None:
        if self.uri not in self._failed_uris:
            self._failed_uris.add(self.uri)
            where = f"; the local record goes on in {self.local_record}" if self.local_record else ""
            logger.warning(
                f"MLflow tracking at {self.uri} failed ({what}: {type(err).__name__}: {str(err)[:200]}); "
                f"training goes on without it{where}"
            )

    def _guard(self, what: str, fn: Any, *args: Any) -> None:
        if self.failed:
            return
        try:
            fn(*args)
        except Exception as err:  # noqa: BLE001 - any tracking failure must not stop training
            self._failure(what, err)

    # ------------------------------------------------------------------ MLFlowHandler hooks
    def _log_params(self, params: dict[str, Any]) -> None:
        self._record("params", params)
        items = list(params.items())
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params a request
            if not self.failed:
                super()._log_params(dict(items[i : i + 100]))

    def _log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self._record("metrics", metrics, step)
        if not self.failed:
            super()._log_metrics(metrics, step)

    def start(self, engine: Engine) -> None:
        if self.failed:  # still record the params locally
            self._record("params", dict(self.experiment_param or {}))
            return
        self._guard("start", super().start, engine)
        if self.failed:
            self._record("params", dict(self.experiment_param or {}))

    def iteration_completed(self, engine: Engine) -> None:
        if self.failed:
            if self.iteration_logger is None:
                self._default_iteration_log(engine)  # to the local record only
            return
        self._guard("log metrics", super().iteration_completed, engine)

    def epoch_completed(self, engine: Engine) -> None:
        if self.failed:
            if self.epoch_logger is None:
                self._default_epoch_log(engine)  # to the local record only
            return
        self._guard("log metrics", super().epoch_completed, engine)

    def complete(self) -> None:
        files = [str(p) for p in self._parse_artifacts()] if self.artifacts else []
        self._record("artifacts", {"files": files} if files else {})
        self._guard("log artifacts", super().complete)

    def close(self) -> None:
        self._guard("close run", super().close)
