"""What the PACS runner needs from a PACS, whatever the protocol: :class:`InstanceRef` and :class:`Pacs`.

:mod:`~hermes_monai.pacs.dicomweb` (QIDO-RS / WADO-RS / STOW-RS) and :mod:`~hermes_monai.pacs.dimse`
(C-FIND / C-GET / C-STORE) implement :class:`Pacs`; the runner only calls these three methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["InstanceRef", "Pacs", "RESULT_MODALITIES"]

#: Modalities of results (never inputs, whatever the configured modalities say).
RESULT_MODALITIES = frozenset({"SEG", "SR", "KO", "PR"})


@dataclass(frozen=True)
class InstanceRef:
    """One instance on a PACS: its study, series and SOP instance UIDs (and modality when known)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str = ""

    @classmethod
    def of(cls, ds: Any) -> InstanceRef:
        """The reference of a pydicom dataset."""
        return cls(
            str(ds.StudyInstanceUID),
            str(ds.SeriesInstanceUID),
            str(ds.SOPInstanceUID),
            str(ds.get("Modality", "") or ""),
        )


class Pacs(Protocol):
    """Find, retrieve and store instances."""

    def find(self, modalities: Sequence[str] | None) -> list[InstanceRef]:
        """Every instance whose series modality is one of ``modalities`` (``None``: any image)."""
        ...

    def retrieve(self, ref: InstanceRef) -> Any:
        """The instance as a pydicom dataset (with ``file_meta``)."""
        ...

    def store(self, datasets: Sequence[Any]) -> None:
        """Store the datasets; raise when any of them was refused."""
        ...


def wanted(modality: str, modalities: Sequence[str] | None) -> bool:
    """Whether an instance of ``modality`` is an input: one of ``modalities`` (any when ``None``), never a
    result modality."""
    m = (modality or "").upper()
    if m in RESULT_MODALITIES:
        return False
    return modalities is None or m in {x.upper() for x in modalities}
