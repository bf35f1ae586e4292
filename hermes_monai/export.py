"""Deployment files from a trained bundle: the inference network with its weights, and ONNX export.

TorchScript comes from MONAI's own command (``python -m monai.bundle ckpt_export network_def ...``,
see the model card): ``inference.yaml``'s ``network_def`` is a
:class:`~hermes_monai.networks.HermesDeployNet`, which scripts whole; the file's ``forward`` gives
the segmentation logits and its ``predict`` method ``(seg_logits, cls_logits, saliency)``.

ONNX graphs have one entry point, so :func:`export_onnx` exports
:class:`~hermes_monai.networks.HermesExportNet` (outputs ``pred``, ``cls_logits``, ``saliency``) with
``torch.onnx.export(dynamo=True)``; the batch size is dynamic, height and width are fixed to the
export shape (the saliency backward's transposed convolutions need fixed output paddings). Both
branches' batch norms are folded into their convolutions before export (``fold_bn``; the explicit
saliency backward then skips their slopes, which the folded weights carry); MONAI's TorchScript export
builds the network from the config and keeps them. ``scripts/export_onnx.py`` is the command-line
front end.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser

from hermes_monai.networks.deploy import HermesDeployNet, HermesExportNet

__all__ = ["ONNX_OUTPUTS", "export_onnx", "load_deploy_network", "verify_onnx"]

logger = logging.getLogger(__name__)

#: Output names of the ONNX graph, in order.
ONNX_OUTPUTS = ("pred", "cls_logits", "saliency")


def load_deploy_network(
    config_file: str | os.PathLike,
    ckpt_file: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    net_id: str = "network_def",
) -> HermesDeployNet:
    """Build ``net_id`` of a bundle config and load the checkpoint into it (strictly, weights only).

    The checkpoint may be a state dict or hold one under ``"model"`` / ``"network"`` / ``"state_dict"``.
    """
    parser = ConfigParser()
    parser.read_config(os.fspath(config_file))
    for k, v in (overrides or {}).items():
        parser[k] = v
    net = parser.get_parsed_content(net_id)
    if not isinstance(net, HermesDeployNet):
        raise TypeError(f"{net_id} of {config_file} is a {type(net).__name__}, not a HermesDeployNet.")
    state = torch.load(os.fspath(ckpt_file), map_location="cpu", weights_only=True)
    for key in ("model", "network", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    net.load_state_dict(state, strict=True)
    return net.eval()


def export_onnx(
    net: HermesDeployNet,
    filepath: str | os.PathLike,
    spatial_shape: Sequence[int],
    opset: int = 18,
    fold_bn: bool = True,
) -> str:
    """Export the full model (seg logits, class logits, saliency) to ONNX at ``filepath``.

    Args:
        net: the network, in evaluation mode (left unchanged).
        filepath: output ``.onnx`` file.
        spatial_shape: (H, W) of the graph's input, both divisible by 16.
        opset: ONNX opset version.
        fold_bn: export a copy whose batch norms (both branches) are folded into the convolutions
            (:meth:`HermesDeployNet.fold_batch_norm`; same outputs, fewer graph nodes).

    Returns:
        The written path.
    """
    h, w = (int(s) for s in spatial_shape)
    if h % 16 or w % 16:
        raise ValueError(f"ONNX export shape must be divisible by 16, got {h}x{w}.")
    if fold_bn:
        net = copy.deepcopy(net).eval()
        net.fold_batch_norm(image_size=min(h, w))
    model = HermesExportNet(net.eval())
    in_ch = net.cls.backbone.conv1.in_channels
    example = torch.rand(2, in_ch, h, w)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(
        model,
        (example,),
        input_names=["image"],
        output_names=list(ONNX_OUTPUTS),
        opset_version=opset,
        dynamo=True,
        dynamic_shapes={"x": {0: batch}},
        verbose=False,
    )
    path = os.fspath(filepath)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    program.save(path)
    logger.info("exported ONNX model to %s (input image: (batch, %d, %d, %d))", path, in_ch, h, w)
    return path


def verify_onnx(net: HermesDeployNet, filepath: str | os.PathLike, x: torch.Tensor) -> dict[str, float]:
    """Run the ONNX file with onnxruntime on ``x`` and return the max abs difference per output vs eager."""
    import onnxruntime as ort

    sess = ort.InferenceSession(os.fspath(filepath), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x.numpy()})
    with torch.no_grad():
        ref = net.predict(x)
    return {n: float(np.abs(g - r.numpy()).max()) for n, g, r in zip(ONNX_OUTPUTS, got, ref)}
