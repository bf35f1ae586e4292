"""What the PACS runner has processed: a small sqlite file, one row per source SOP Instance UID.

A row is written only when an instance is finished: ``done`` after both its SEG and its SR were stored
(with their UIDs), or ``failed`` with the reason. Instances with a row are not processed again (failed
ones only with ``retry_failed``), so a restart neither repeats finished work nor skips unfinished work.
A kill between storing the results and writing the row leaves no row: the instance is processed again
on restart and its results are stored again under the same deterministic UIDs
(:func:`hermes_monai.pacs.results.result_uids`), which the PACS keeps as one instance each.
Each write is its own transaction (sqlite's journal makes it atomic).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from hermes_monai.pacs.base import InstanceRef

__all__ = ["ProcessedState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    reason TEXT,
    seg_uid TEXT,
    sr_uid TEXT,
    model TEXT,
    updated REAL NOT NULL
)
"""


class ProcessedState:
    """The state file (created with its folder when missing)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def status(self, sop_uid: str) -> str | None:
        """``"done"``, ``"failed"`` or ``None`` (never finished)."""
        row = self._db.execute("SELECT status FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone()
        return row[0] if row else None

    def pending(self, refs: list[InstanceRef], retry_failed: bool = False) -> list[InstanceRef]:
        """``refs`` not finished yet (and failed ones when ``retry_failed``), in order, without repeats."""
        out, seen = [], set()
        for ref in refs:
            state = self.status(ref.sop_uid)
            if ref.sop_uid in seen or state == "done" or (state == "failed" and not retry_failed):
                continue
            seen.add(ref.sop_uid)
            out.append(ref)
        return out

    def _put(
        self,
        ref: InstanceRef,
        status: str,
        reason: str | None,
        seg: str | None,
        sr: str | None,
        model: str | None,
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ref.sop_uid, ref.study_uid, ref.series_uid, status, reason, seg, sr, model, time.time()),
        )

    def mark_done(self, ref: InstanceRef, seg_uid: str, sr_uid: str, model: str) -> None:
        self._put(ref, "done", None, seg_uid, sr_uid, model)

    def mark_failed(self, ref: InstanceRef, reason: str, model: str | None = None) -> None:
        self._put(ref, "failed", reason, None, None, model)

    def rows(self) -> list[dict]:
        """Every row, oldest first (for reports and tests)."""
        cur = self._db.execute("SELECT * FROM instances ORDER BY updated")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
