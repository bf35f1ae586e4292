"""DIMSE access to a PACS (pynetdicom): C-FIND to find instances, C-GET to fetch them, C-STORE to store
results, and :class:`StorageReceiver`, a storage SCP that accepts instances sent to this runner.

:meth:`DimsePacs.find` walks the Study Root hierarchy: every study, its series (kept when the series
``Modality`` is wanted, :func:`~hermes_monai.pacs.base.wanted`), their images. :meth:`DimsePacs.retrieve`
C-GETs one image on the same association as its C-STORE sub-operations, offering SCP role for the
image storage classes in :data:`IMAGE_STORAGE` with every transfer syntax pynetdicom knows (the PACS
sends the stored syntax; pydicom decodes it). The PACS must know this runner's AE title (calling AE
title) and allow it C-FIND, C-GET and C-STORE.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hermes_monai.pacs.base import InstanceRef, wanted

__all__ = ["IMAGE_STORAGE", "DimseError", "DimsePacs", "StorageReceiver"]

logger = logging.getLogger(__name__)

#: Storage SOP classes retrieved (C-GET) and accepted (storage SCP): ultrasound and secondary capture.
IMAGE_STORAGE = (
    "1.2.840.10008.5.1.4.1.1.6.1",  # US Image Storage
    "1.2.840.10008.5.1.4.1.1.3.1",  # US Multi-frame Image Storage
    "1.2.840.10008.5.1.4.1.1.6",  # US Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.3",  # US Multi-frame Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
)
_PENDING = (0xFF00, 0xFF01)


class DimseError(RuntimeError):
    """A DIMSE association or operation failed."""


class DimsePacs:
    """A PACS at ``host``:``port`` with AE title ``ae_title``; this side calls as ``calling_ae_title``."""

    def __init__(
        self, host: str, port: int, ae_title: str, calling_ae_title: str = "HERMES", timeout_s: float = 30
    ) -> None:
        self.host, self.port, self.ae_title = host, int(port), ae_title
        self.calling_ae_title = calling_ae_title
        self.timeout_s = timeout_s

    def _ae(self) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self.calling_ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        return ae

    def _associate(self, ae: Any, **kwargs: Any) -> Any:
        assoc = ae.associate(self.host, self.port, ae_title=self.ae_title, **kwargs)
        if not assoc.is_established:
            raise DimseError(f"no association with {self.ae_title}@{self.host}:{self.port}")
        return assoc

    # ------------------------------------------------------------------------------ find
    def find(self, modalities: Sequence[str] | None) -> list[InstanceRef]:
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as Find

        ae = self._ae()
        ae.add_requested_context(Find)
        assoc = self._associate(ae)
        try:
            refs = []
            for study in self._query(assoc, Find, "STUDY", StudyInstanceUID=""):
                for series in self._query(
                    assoc,
                    Find,
                    "SERIES",
                    StudyInstanceUID=study.StudyInstanceUID,
                    SeriesInstanceUID="",
                    Modality="",
                ):
                    modality = str(series.get("Modality", "") or "")
                    if not wanted(modality, modalities):
                        continue
                    for image in self._query(
                        assoc,
                        Find,
                        "IMAGE",
                        StudyInstanceUID=study.StudyInstanceUID,
                        SeriesInstanceUID=series.SeriesInstanceUID,
                        SOPInstanceUID="",
                    ):
                        refs.append(
                            InstanceRef(
                                str(study.StudyInstanceUID),
                                str(series.SeriesInstanceUID),
                                str(image.SOPInstanceUID),
                                modality,
                            )
                        )
            return refs
        finally:
            assoc.release()

    @staticmethod
    def _query(assoc: Any, model: Any, level: str, **keys: str) -> list[Any]:
        from pydicom.dataset import Dataset

        query = Dataset()
        query.QueryRetrieveLevel = level
        for key, value in keys.items():
            setattr(query, key, value)
        out = []
        for status, identifier in assoc.send_c_find(query, model):
            if not status:
                raise DimseError(f"C-FIND {level}: no response (timeout or aborted association)")
            if status.Status in _PENDING and identifier is not None:
                out.append(identifier)
            elif status.Status not in _PENDING and status.Status != 0x0000:
                raise DimseError(f"C-FIND {level} failed with status 0x{status.Status:04X}")
        return out

    # ------------------------------------------------------------------------------ retrieve
    def retrieve(self, ref: InstanceRef) -> Any:
        from pydicom.dataset import Dataset
        from pynetdicom import ALL_TRANSFER_SYNTAXES, build_role, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as Get

        ae = self._ae()
        ae.add_requested_context(Get)
        for sop_class in IMAGE_STORAGE:
            ae.add_requested_context(sop_class, ALL_TRANSFER_SYNTAXES)
        received: list[Any] = []

        def on_store(event: Any) -> int:
            ds = event.dataset
            ds.file_meta = event.file_meta
            received.append(ds)
            return 0x0000

        assoc = self._associate(
            ae,
            ext_neg=[build_role(c, scp_role=True) for c in IMAGE_STORAGE],
            evt_handlers=[(evt.EVT_C_STORE, on_store)],
        )
        try:
            query = Dataset()
            query.QueryRetrieveLevel = "IMAGE"
            query.StudyInstanceUID, query.SeriesInstanceUID = ref.study_uid, ref.series_uid
            query.SOPInstanceUID = ref.sop_uid
            final = None
            for status, _ in assoc.send_c_get(query, Get):
                if not status:
                    raise DimseError("C-GET: no response (timeout or aborted association)")
                final = status.Status
        finally:
            assoc.release()
        match = [ds for ds in received if str(ds.SOPInstanceUID) == ref.sop_uid]
        if not match:
            raise DimseError(f"C-GET of {ref.sop_uid} returned no instance (final status 0x{final or 0:04X})")
        return match[0]

    # ------------------------------------------------------------------------------ store
    def store(self, datasets: Sequence[Any]) -> None:
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        ae = self._ae()
        for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        assoc = self._associate(ae)
        try:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                if not status or status.Status not in (0x0000, 0xB000, 0xB007, 0xB006):
                    code = f"0x{status.Status:04X}" if status else "no response"
                    raise DimseError(f"C-STORE of {ds.SOPInstanceUID} failed: {code}")
        finally:
            assoc.release()


class StorageReceiver:
    """A storage SCP (C-STORE receiver, with C-ECHO): every storage SOP class is accepted (the runner
    skips instances that are not inputs); each instance is written to ``folder`` as
    ``<SOPInstanceUID>.dcm`` and its path put on :attr:`queue`."""

    def __init__(
        self, folder: str | Path, ae_title: str = "HERMES", host: str = "127.0.0.1", port: int = 11112
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ae_title, self.host, self.port = ae_title, host, int(port)
        self.queue: queue.Queue[Path] = queue.Queue()
        self._server: Any = None

    def _on_store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        path = self.folder / f"{ds.SOPInstanceUID}.dcm"
        try:
            ds.save_as(path, enforce_file_format=True)
        except Exception as e:  # noqa: BLE001 - refuse the instance, keep serving
            logger.error("could not keep received instance %s: %s", ds.get("SOPInstanceUID", "?"), e)
            return 0xA700
        self.queue.put(path)
        return 0x0000

    def start(self) -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:  # a PACS may route anything here: inputs chosen later
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self._server = ae.start_server(
            (self.host, self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )
        logger.info("storage SCP %s listening on %s:%d", self.ae_title, self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
