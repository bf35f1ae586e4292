"""Export a trained Hermes bundle to ONNX (the full model: seg logits, class logits, saliency).

    python scripts/export_onnx.py --ckpt_file bundle/models/model.pt --filepath bundle/models/model.onnx

The network is ``network_def`` of ``--config_file`` (default ``bundle/configs/inference.yaml``); the input
(H, W) is ``spatial_shape`` of ``--meta_file``'s ``image`` input unless ``--spatial_shape H W`` is given.
The exported file is run once with onnxruntime on random images and compared with PyTorch; the
command fails when the class or segmentation logits differ by more than ``--atol``.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from hermes_monai.export import export_onnx, load_deploy_network, verify_onnx


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt_file", required=True)
    p.add_argument("--filepath", required=True, help="output .onnx file")
    p.add_argument("--config_file", default="bundle/configs/inference.yaml")
    p.add_argument("--meta_file", default="bundle/configs/metadata.json")
    p.add_argument("--spatial_shape", type=int, nargs=2, default=None, metavar=("H", "W"))
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--atol", type=float, default=1e-4)
    args = p.parse_args(argv)

    shape = args.spatial_shape
    if shape is None:
        with open(args.meta_file) as f:
            shape = json.load(f)["network_data_format"]["inputs"]["image"]["spatial_shape"]
    net = load_deploy_network(args.config_file, args.ckpt_file)
    path = export_onnx(net, args.filepath, shape, opset=args.opset)
    diffs = verify_onnx(net, path, torch.rand(2, net.cls.backbone.conv1.in_channels, *shape))
    print(
        f"exported {path}; max abs difference to PyTorch: "
        + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
    )
    if max(diffs["pred"], diffs["cls_logits"]) > args.atol:
        print(f"error: logits differ by more than {args.atol}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
