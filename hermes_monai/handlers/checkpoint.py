"""Checkpoints that survive a kill at any instant, and resuming from them.

MONAI's :class:`~monai.handlers.CheckpointSaver` writes in place (``atomic=False``); ignite deletes the oldest
interval checkpoint *before* writing the new one, and MONAI deletes the final checkpoint before rewriting
it, so a kill at the wrong moment leaves no resumable file. :class:`AtomicCheckpointSaver` keeps MONAI's
handler (same arguments, same events) and swaps its disk writer for one that

* writes to a temporary file in the same folder and renames it over the target
  (:func:`hermes_monai.io.atomic.atomic_path`), so a reader sees the old file or the new one;
* removes the files ignite retires only **after** the new file is in place (write new, then remove old),
  and never deletes a fixed-name file (``model.pt``, ``checkpoint_final.pt``) it is about to replace;

and at start-up it removes stray temporary files a killed save left in ``save_dir`` and registers the
interval checkpoints already there (as older than anything this run saves), so ``n_saved`` holds across
resumes.

:class:`ResumableBest` puts the validator's best metric, its epoch and the best-model saver's record into
the resumable checkpoint, so after a resume ``model.pt`` is only replaced by a better model.
:func:`resolve_resume` turns ``--resume_from latest`` into the newest intact checkpoint, and
:class:`SafeCheckpointLoader` loads with ``weights_only=True`` and refuses a checkpoint that needs pickle.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver

from hermes_monai.distributed import is_rank_zero
from hermes_monai.io.atomic import atomic_path

__all__ = [
    "AtomicCheckpointSaver",
    "ResumableBest",
    "SafeCheckpointLoader",
    "clean_stray_temp_files",
    "require_file",
    "resolve_resume",
]

# temporary files of hermes_monai.io.atomic (".<name>.<random>.tmp") and of ignite's DiskSaver ("tmpXXXXXXXX")
_TEMP = re.compile(r"^(\..+\.tmp|tmp[a-z0-9_]{8})$")
# offset that ranks interval checkpoints found on disk below everything this run saves
_OLDER = 1 << 40


def clean_stray_temp_files(folder: str | os.PathLike) -> list[str]:
    """Remove the temporary files a killed save left in ``folder``; return their names."""
    removed = []
    if os.path.isdir(folder):
        for entry in os.scandir(folder):
            if entry.is_file() and _TEMP.match(entry.name):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(entry.name)
    return removed


class _AtomicDiskSaver(DiskSaver):
    """ignite ``DiskSaver``: atomic writes, optional fixed name, and retired files removed after the write."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename
        self._retired: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        name = self.filename or filename
        with atomic_path(os.path.join(self.dirname, name)) as tmp:
            torch.save(checkpoint, tmp)
        retired, self._retired = self._retired, []
        for old in retired:
            if old != name:
                super().remove(old)

    def remove(self, filename: str) -> None:
        if self.filename is not None:
            return  # the fixed-name file is replaced atomically by the next write; never delete it first
        self._retired.append(filename)  # ignite retires a file before writing its successor: remove it after


class AtomicCheckpointSaver(CheckpointSaver):
    """:class:`monai.handlers.CheckpointSaver` whose files are written atomically, new before old removed.

    Takes exactly the arguments of MONAI's handler.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fixed = {
            "_final_checkpoint": self._final_filename,
            "_key_metric_checkpoint": kwargs.get("key_metric_filename"),
            "_interval_checkpoint": None,
        }
        for attr, filename in fixed.items():
            ckpt = getattr(self, attr)
            if ckpt is not None:
                ckpt.save_handler = _AtomicDiskSaver(self.save_dir, filename)
        if is_rank_zero():  # under torchrun only rank 0 saves: the others leave the folder alone
            clean_stray_temp_files(self.save_dir)
        if self._interval_checkpoint is not None:
            self._adopt_interval_files(self._interval_checkpoint)

    def attach(self, engine: Engine) -> None:
        """MONAI's ``attach``; the final-checkpoint save on an exception is then moved first in line: ignite
        runs only the first ``EXCEPTION_RAISED`` handler that re-raises, and a ``StatsHandler`` attached
        earlier (with the trainer) would otherwise pre-empt the save of the last good state."""
        super().attach(engine)
        handlers = getattr(engine, "_event_handlers", {}).get(Events.EXCEPTION_RAISED)
        if self._final_checkpoint is not None and isinstance(handlers, list):
            mine = [h for h in handlers if h and h[0] == self.exception_raised]
            handlers[:] = mine + [h for h in handlers if h not in mine]

    def _adopt_interval_files(self, ckpt: Checkpoint) -> None:
        """Register interval checkpoints already in ``save_dir`` (a previous or resumed run) as the oldest."""
        name = "checkpoint" if len(self.save_dict) > 1 else next(iter(self.save_dict))
        prefix = f"{ckpt.filename_prefix}_" if ckpt.filename_prefix else ""
        pattern = re.compile(rf"^{re.escape(prefix + name)}_{re.escape(str(ckpt.score_name))}=(\d+)\.pt$")
        found = []
        if os.path.isdir(self.save_dir):
            for entry in os.scandir(self.save_dir):
                match = pattern.match(entry.name)
                if match and entry.is_file():
                    found.append(Checkpoint.Item(int(match.group(1)) - _OLDER, entry.name))
        ckpt._saved = sorted([*ckpt._saved, *found], key=lambda item: item[0])

    def _delete_previous_final_ckpt(self) -> None:
        """MONAI deletes the final checkpoint before rewriting it; the atomic writer replaces it instead."""
        if self._final_checkpoint is not None:
            self._final_checkpoint._saved.clear()


class ResumableBest:
    """The best validation metric, its epoch and the best-model saver's record, as one resumable state.

    Put it in the trainer's ``save_dict`` / ``load_dict``: after a resume the validator compares against
    the restored best, and the saver of ``model.pt`` replaces it only with a better model.

    Args:
        evaluator: the validation engine (its ``state.best_metric`` / ``best_metric_epoch``).
        saver: the :class:`AtomicCheckpointSaver` with ``save_key_metric=True`` (None: none on this rank).
    """

    def __init__(self, evaluator: Engine, saver: CheckpointSaver | None = None) -> None:
        self.evaluator = evaluator
        self.saver = saver

    def state_dict(self) -> dict[str, Any]:
        key = getattr(self.saver, "_key_metric_checkpoint", None)
        return {
            "best_metric": float(self.evaluator.state.best_metric),
            "best_metric_epoch": int(self.evaluator.state.best_metric_epoch),
            "key_metric_saved": None if key is None else key.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.evaluator.state.best_metric = state["best_metric"]
        self.evaluator.state.best_metric_epoch = state["best_metric_epoch"]
        key = getattr(self.saver, "_key_metric_checkpoint", None)
        if key is not None and state.get("key_metric_saved") is not None:
            key.load_state_dict(state["key_metric_saved"])


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", **kwargs: Any) -> Any:
    """``torch.load(path, weights_only=True)``; a file that needs pickle is refused with a clear message."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: refused: this checkpoint holds Python objects that only pickle can load, and pickle "
            "can run arbitrary code. Load it only if you trust its origin, and re-save its state dicts "
            f"(tensors, numbers, strings) with torch.save. ({str(err).splitlines()[0]})"
        ) from err


def _intact(path: Path) -> bool:
    try:
        ckpt = load_checkpoint(path, mmap=True)
    except Exception:  # truncated, corrupt, or refused
        return False
    return isinstance(ckpt, Mapping) and "trainer" in ckpt


def resolve_resume(resume_from: str | os.PathLike | None, ckpt_dir: str | os.PathLike) -> str | None:
    """``resume_from`` as a checkpoint path: ``None`` stays None; ``"latest"`` is the newest intact resumable
    checkpoint (``checkpoint*.pt`` holding a trainer state) in ``ckpt_dir``; anything else must exist.

    Raises:
        FileNotFoundError: no such file, or ``latest`` with no intact checkpoint in ``ckpt_dir``.
    """
    if resume_from is None:
        return None
    if str(resume_from) != "latest":
        return require_file(resume_from, "resume_from checkpoint")
    candidates = sorted(Path(ckpt_dir).glob("checkpoint*.pt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        if _intact(path):
            return str(path)
    raise FileNotFoundError(
        f"resume_from latest: no intact resumable checkpoint (checkpoint*.pt) in {ckpt_dir}"
        + (f"; unreadable: {[p.name for p in candidates]}" if candidates else "")
    )


class SafeCheckpointLoader(CheckpointLoader):
    """:class:`monai.handlers.CheckpointLoader` (which loads with ``weights_only=True``) that names the file
    and the reason when a checkpoint needs pickle."""

    def __call__(self, engine: Engine) -> None:
        try:
            super().__call__(engine)
        except pickle.UnpicklingError:
            load_checkpoint(self.load_path)  # raises the explanatory ValueError
            raise


def require_file(path: str | os.PathLike, what: str = "file") -> str:
    """Return ``path`` if it is an existing file, else raise FileNotFoundError naming it and ``what``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path} (train first, or point to an existing file)")
    return str(path)
