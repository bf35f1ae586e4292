"""The PACS runner: find new instances, run the bundle's inference on them, store a SEG and an SR for each.

:meth:`PacsRunner.run_once` is one pass: ``source.find(modalities)``, minus what the state file says is
finished (:class:`~hermes_monai.pacs.state.ProcessedState`), in batches of ``batch_size``: each instance
is retrieved into a batch folder, the batch goes through inference.yaml
(:class:`~hermes_monai.pacs.predict.BundlePredictor`), and per instance the SEG and SR
(:func:`~hermes_monai.pacs.results.build_results`, deterministic UIDs) are stored on the destination,
then the instance is marked done. Any error of one instance (retrieve, decode, inference, building or
storing its results) is logged with its SOP Instance UID and reason, recorded as failed (not retried
unless ``retry_failed``) and the others go on. :meth:`PacsRunner.listen` does the same for instances
sent to this runner's storage SCP (:class:`~hermes_monai.pacs.dimse.StorageReceiver`).

Restarts: an instance is marked done only after both results are stored; one killed before that is
processed again, and its results get the same UIDs, so the PACS holds one of each (see
:mod:`~hermes_monai.pacs.results`). Nothing here depends on the protocol, so wrapping
:meth:`PacsRunner.process_files` as a MONAI Deploy operator is a small step.
"""

from __future__ import annotations

import logging
import queue
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hermes_monai.inference.dicom_seg import algorithm_version
from hermes_monai.pacs.base import InstanceRef, Pacs, wanted
from hermes_monai.pacs.predict import BundlePredictor, model_id
from hermes_monai.pacs.results import build_results
from hermes_monai.pacs.state import ProcessedState

__all__ = ["PacsRunner", "RunSummary", "make_pacs"]

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What one pass did: instances found, processed, and failed (SOP Instance UID -> reason)."""

    found: int = 0
    pending: int = 0
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def make_pacs(settings: dict[str, Any], calling_ae_title: str, timeout_s: float) -> Pacs:
    """The client for one ``source`` / ``destination`` block of the settings."""
    if settings["protocol"] == "dicomweb":
        from hermes_monai.pacs.dicomweb import DicomWebPacs

        return DicomWebPacs(settings["url"], timeout_s=timeout_s)
    from hermes_monai.pacs.dimse import DimsePacs

    return DimsePacs(settings["host"], settings["port"], settings["ae_title"], calling_ae_title, timeout_s)


class PacsRunner:
    """The runner for the settings of :func:`~hermes_monai.pacs.config.load_config`.

    ``source``, ``destination`` and ``predictor`` default to those the settings describe.
    """

    def __init__(
        self,
        config: dict[str, Any],
        source: Pacs | None = None,
        destination: Pacs | None = None,
        predictor: BundlePredictor | None = None,
    ) -> None:
        self.config = config
        ae, timeout = config["calling_ae_title"], float(config["timeout_s"])
        self.source = source or make_pacs(config["source"], ae, timeout)
        if destination is not None:
            self.destination = destination
        elif config["destination"] is not None:
            self.destination = make_pacs(config["destination"], ae, timeout)
        else:
            self.destination = self.source
        bundle = config["bundle"]
        self.predictor = predictor or BundlePredictor(
            bundle["config_file"], bundle["bundle_root"], bundle["checkpoint"], bundle.get("overrides")
        )
        self.class_names = list(bundle["class_names"])
        self.version = algorithm_version()
        self.model = model_id(self.predictor.checkpoint, self.version)
        self.modalities = config["modalities"]
        self.state = ProcessedState(config["state_file"])
        work = config.get("work_dir")
        self.work_dir = Path(work) if work else Path(tempfile.mkdtemp(prefix="hermes-pacs-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.state.close()

    # ------------------------------------------------------------------------------ one pass
    def run_once(self) -> RunSummary:
        """Process every instance on the source that is not finished yet."""
        refs = self.source.find(self.modalities)
        todo = self.state.pending(refs, retry_failed=bool(self.config["retry_failed"]))
        summary = RunSummary(found=len(refs), pending=len(todo))
        logger.info("%d instance(s) found, %d to process (model %s)", len(refs), len(todo), self.model)
        size = max(1, int(self.config["batch_size"]))
        for start in range(0, len(todo), size):
            batch = self.new_batch_dir()
            try:
                files = []
                for ref in todo[start : start + size]:
                    try:
                        path = batch / f"{ref.sop_uid}.dcm"
                        self.source.retrieve(ref).save_as(path, enforce_file_format=True)
                        files.append((ref, path))
                    except Exception as e:  # noqa: BLE001 - one instance fails alone
                        self._fail(summary, ref, f"retrieve failed: {e}")
                self.process_files(files, summary)
            finally:
                shutil.rmtree(batch, ignore_errors=True)
        logger.info("pass finished: %d done, %d failed", len(summary.done), len(summary.failed))
        return summary

    def new_batch_dir(self) -> Path:
        """A new empty folder under ``work_dir`` for one batch's input files."""
        return Path(tempfile.mkdtemp(prefix="batch-", dir=self.work_dir))

    def _fail(self, summary: RunSummary, ref: InstanceRef, reason: str) -> None:
        logger.error("instance %s failed: %s", ref.sop_uid, reason)
        summary.failed[ref.sop_uid] = reason
        self.state.mark_failed(ref, reason, self.model)

    # ------------------------------------------------------------------------------ a batch
    def process_files(self, files: Sequence[tuple[InstanceRef, Path]], summary: RunSummary) -> None:
        """Inference on ``files`` (all in one folder, nothing else in it), then each one's results stored."""
        import pydicom

        if not files:
            return
        out = Path(tempfile.mkdtemp(prefix="out-", dir=self.work_dir))
        try:
            predictions, failures = self.predictor.predict(files[0][1].parent, out)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        for ref, path in files:
            if str(path) in failures:
                self._fail(summary, ref, failures[str(path)])
                continue
            try:
                prediction = predictions[path.name]
                source = pydicom.dcmread(path, stop_before_pixels=True)
                seg, sr = build_results(
                    source, prediction.mask, prediction.record, self.class_names, self.model, self.version
                )
                self.destination.store([seg, sr])
            except Exception as e:  # noqa: BLE001 - one instance fails alone
                self._fail(summary, ref, f"{type(e).__name__}: {e}")
                continue
            self.state.mark_done(ref, str(seg.SOPInstanceUID), str(sr.SOPInstanceUID), self.model)
            summary.done.append(ref.sop_uid)
            logger.info(
                "instance %s: SEG %s and SR %s stored", ref.sop_uid, seg.SOPInstanceUID, sr.SOPInstanceUID
            )

    # ------------------------------------------------------------------------------ loops
    def poll(self, passes: int | None = None) -> RunSummary:
        """:meth:`run_once` every ``poll_interval_s`` (``passes`` times, or until interrupted); the summary
        of all passes. Polling forever, a pass that fails as a whole (the PACS unreachable) is logged and
        the next one tried; with ``passes`` its error is raised."""
        total = RunSummary()
        n = 0
        while passes is None or n < passes:
            try:
                s = self.run_once()
            except Exception:
                if passes is not None:
                    raise
                # polling forever: a PACS that is down now is tried again at the next pass
                logger.exception("pass failed; next pass in %s s", self.config["poll_interval_s"])
                s = RunSummary()
            total.found, total.pending = s.found, total.pending + s.pending
            total.done += s.done
            total.failed.update(s.failed)
            n += 1
            if passes is None or n < passes:
                time.sleep(float(self.config["poll_interval_s"]))
        return total

    def listen(self, stop_after_s: float | None = None) -> RunSummary:
        """Run the storage SCP of ``listen`` and process what arrives (batches of up to ``batch_size``,
        gathered for up to a second), results to the destination, until interrupted (or ``stop_after_s``)."""
        import pydicom

        from hermes_monai.pacs.dimse import StorageReceiver

        settings = self.config["listen"]
        receiver = StorageReceiver(
            self.work_dir / "incoming", settings["ae_title"], settings["host"], settings["port"]
        )
        receiver.start()
        summary = RunSummary()
        end = None if stop_after_s is None else time.monotonic() + stop_after_s
        try:
            while end is None or time.monotonic() < end:
                paths = _drain(receiver.queue, int(self.config["batch_size"]))
                if not paths:
                    continue
                batch = self.new_batch_dir()
                files = []
                for path in paths:
                    try:
                        ref = InstanceRef.of(pydicom.dcmread(path, stop_before_pixels=True))
                    except Exception as e:  # noqa: BLE001 - a bad file must not stop the receiver
                        logger.error("received file %s is unusable: %s", path.name, e)
                        path.unlink(missing_ok=True)
                        continue
                    summary.found += 1
                    retry = bool(self.config["retry_failed"])
                    if not wanted(ref.modality, self.modalities) or not self.state.pending([ref], retry):
                        logger.info(
                            "instance %s (%s): not an input or already processed", ref.sop_uid, ref.modality
                        )
                        path.unlink(missing_ok=True)
                        continue
                    files.append((ref, Path(shutil.move(path, batch / path.name))))
                summary.pending += len(files)
                try:
                    self.process_files(files, summary)
                finally:
                    shutil.rmtree(batch, ignore_errors=True)
        finally:
            receiver.stop()
        return summary


def _drain(q: queue.Queue, limit: int, wait_s: float = 1.0) -> list[Path]:
    """Up to ``limit`` items: the first waited for up to ``wait_s``, then whatever arrives within it."""
    out: list[Path] = []
    deadline = time.monotonic() + wait_s
    while len(out) < limit:
        try:
            out.append(q.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            break
    return out
