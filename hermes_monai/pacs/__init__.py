"""PACS round trip: find ultrasound instances on a PACS, run the bundle's inference, store a DICOM SEG and a
TID 1500 SR back (``python -m hermes_monai.pacs``; the model card's "Connecting to PACS").

Modules: :mod:`~hermes_monai.pacs.config` (YAML settings), :mod:`~hermes_monai.pacs.base` (what a PACS
client offers), :mod:`~hermes_monai.pacs.dicomweb` (QIDO-RS / WADO-RS / STOW-RS, dicomweb-client),
:mod:`~hermes_monai.pacs.dimse` (C-FIND / C-GET / C-STORE and the storage SCP, pynetdicom),
:mod:`~hermes_monai.pacs.predict` (inference.yaml on a folder), :mod:`~hermes_monai.pacs.results` (SEG
and SR with deterministic UIDs), :mod:`~hermes_monai.pacs.state` (what is done), and
:mod:`~hermes_monai.pacs.runner` (the loop); :mod:`~hermes_monai.pacs.deploy_app` wraps the processing
step as a MONAI Deploy application (optional SDK).
"""
