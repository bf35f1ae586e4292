"""Checkpoint saving that never leaves a half-written or missing file behind.

MONAI's :class:`~monai.handlers.CheckpointSaver` writes in place (``atomic=False``) and, for a fixed
file name such as ``model.pt``, removes the previous best file before writing the new one, so a
crash at the wrong moment loses the best model. :class:`AtomicCheckpointSaver` keeps MONAI's
handler (same arguments, same events) and swaps its disk writer for one that serialises to a
temporary file in the same folder and renames it over the target (``os.replace``), and that does
not delete a fixed-name file it is about to replace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver


class _AtomicDiskSaver(DiskSaver):
    """ignite ``DiskSaver`` with atomic writes (temp file + ``os.replace``) and an optional fixed name."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint=checkpoint, filename=self.filename or filename, metadata=metadata)

    def remove(self, filename: str) -> None:
        if self.filename is not None:
            return  # the fixed-name file is replaced atomically by the next write; never delete it first
        super().remove(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """:class:`monai.handlers.CheckpointSaver` whose files are written atomically.

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


def require_file(path: str | os.PathLike, what: str = "file") -> str:
    """Return ``path`` if it is an existing file, else raise FileNotFoundError naming it and ``what``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path} (train first, or point to an existing file)")
    return str(path)
