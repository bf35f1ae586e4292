"""The PACS runner's processing step as a MONAI Deploy application (optional: needs monai-deploy-app-sdk,
which this package does not install; see the model card's "Connecting to PACS").

    python -m hermes_monai.pacs.deploy_app --input DIR --config bundle/configs/pacs.yaml

MONAI Deploy's ``DICOMDataLoaderOperator`` reads the DICOM files in ``DIR`` (as a MONAI Application
Package receives them, e.g. from the MONAI Deploy Informatics Gateway), ``DICOMSeriesSelectorOperator``
keeps every series of the configured ``modalities``, and :class:`HermesResultsOperator` (built by
:func:`build_app`) writes their instances into a batch folder and hands them to
:meth:`~hermes_monai.pacs.runner.PacsRunner.process_files`: the bundle's inference, then the SEG and SR
stored on the settings' destination (or source) and the state file updated, as the PACS runner does.
Nothing in the package or the tests imports this module.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from hermes_monai.pacs.base import InstanceRef
from hermes_monai.pacs.config import load_config
from hermes_monai.pacs.runner import PacsRunner, RunSummary

__all__ = ["build_app", "main"]


def build_app(runner: PacsRunner, input_dir: str | Path, summary: RunSummary) -> Any:
    """The MONAI Deploy ``Application``: DICOM loader -> series selector -> Hermes results (``summary``)."""
    from monai.deploy.conditions import CountCondition
    from monai.deploy.core import Application, Operator, OperatorSpec
    from monai.deploy.operators import DICOMDataLoaderOperator, DICOMSeriesSelectorOperator

    class HermesResultsOperator(Operator):
        """Selected series in; SEG and SR of each new instance stored (see the module docstring)."""

        def setup(self, spec: OperatorSpec) -> None:
            spec.input("study_selected_series_list")

        def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
            batch = runner.new_batch_dir()
            try:
                files = []
                for study in op_input.receive("study_selected_series_list"):
                    for selected in study.selected_series:
                        for instance in selected.series.get_sop_instances():
                            ds = instance.get_native_sop_instance()
                            ref = InstanceRef.of(ds)
                            if runner.state.pending([ref], retry_failed=bool(runner.config["retry_failed"])):
                                path = batch / f"{ref.sop_uid}.dcm"
                                ds.save_as(path, enforce_file_format=True)
                                files.append((ref, path))
                summary.pending += len(files)
                runner.process_files(files, summary)
            finally:
                shutil.rmtree(batch, ignore_errors=True)

    rules = json.dumps(
        {"selections": [{"name": m, "conditions": {"Modality": m}} for m in runner.modalities or []]}
    )

    class HermesApp(Application):
        def compose(self) -> None:
            loader = DICOMDataLoaderOperator(
                self, CountCondition(self, 1), input_folder=Path(input_dir), name="dicom_loader"
            )
            selector = DICOMSeriesSelectorOperator(
                self, rules=rules, all_matched=True, name="series_selector"
            )
            results = HermesResultsOperator(self, name="hermes_results")
            self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
            self.add_flow(selector, results, {("study_selected_series_list", "study_selected_series_list")})

    return HermesApp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hermes_monai.pacs.deploy_app")
    parser.add_argument("--input", required=True, help="folder of DICOM files")
    parser.add_argument("--config", help="settings YAML (bundle/configs/pacs.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runner = PacsRunner(load_config(args.config, args.set))
    summary = RunSummary()
    try:
        build_app(runner, args.input, summary).run()
    finally:
        runner.close()
    logging.getLogger(__name__).info("%d done, %d failed", len(summary.done), len(summary.failed))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
