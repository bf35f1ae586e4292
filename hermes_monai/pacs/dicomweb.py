"""DICOMweb access to a PACS (dicomweb-client): QIDO-RS to find instances, WADO-RS to fetch them, STOW-RS
to store results.

:meth:`DicomWebPacs.find` asks for instances of each configured modality (``Modality`` is a series
attribute; QIDO-RS servers such as Orthanc match it at the instance level), page by page (``limit`` /
``offset``), and keeps those whose modality is wanted (:func:`~hermes_monai.pacs.base.wanted`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests

from hermes_monai.pacs.base import InstanceRef, wanted

__all__ = ["DicomWebPacs"]

_STUDY, _SERIES, _SOP, _MODALITY = "0020000D", "0020000E", "00080018", "00080060"


def _value(item: dict, tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


class DicomWebPacs:
    """A DICOMweb server at ``url`` (its root, e.g. ``http://127.0.0.1:8042/dicom-web``)."""

    def __init__(self, url: str, timeout_s: float = 30, page_size: int = 500) -> None:
        from dicomweb_client.api import DICOMwebClient

        self.url = url
        self.page_size = page_size
        self.client = DICOMwebClient(url=url, session=_TimeoutSession(timeout_s))

    def find(self, modalities: Sequence[str] | None) -> list[InstanceRef]:
        refs: list[InstanceRef] = []
        for modality in modalities if modalities is not None else [None]:
            filters = {"Modality": modality} if modality else {}
            offset = 0
            while True:
                page = self.client.search_for_instances(
                    search_filters=filters, fields=["Modality"], limit=self.page_size, offset=offset
                )
                for item in page:
                    ref = InstanceRef(
                        _value(item, _STUDY),
                        _value(item, _SERIES),
                        _value(item, _SOP),
                        _value(item, _MODALITY) or (modality or ""),
                    )
                    if wanted(ref.modality, modalities):
                        refs.append(ref)
                if len(page) < self.page_size:
                    break
                offset += len(page)
        return refs

    def retrieve(self, ref: InstanceRef) -> Any:
        return self.client.retrieve_instance(ref.study_uid, ref.series_uid, ref.sop_uid)

    def store(self, datasets: Sequence[Any]) -> None:
        response = self.client.store_instances(list(datasets))
        failed = response.get("FailedSOPSequence", []) if response is not None else []
        if failed:
            uids = [str(item.get("ReferencedSOPInstanceUID", "?")) for item in failed]
            raise RuntimeError(f"STOW-RS refused {len(failed)} instance(s): {', '.join(uids)}")


class _TimeoutSession(requests.Session):
    """A ``requests`` session with a default timeout (dicomweb-client sets none)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout_s)
        return super().request(*args, **kwargs)
