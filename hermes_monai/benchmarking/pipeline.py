"""The data pipeline measured: images/s of the bundle's ``train#preprocessing`` (MONAI transforms and
``DataLoader``, no caching) over a generated dataset, per worker count."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from hermes_monai.benchmarking.options import Options, seed_everything
from hermes_monai.benchmarking.steps import make_parser


def _timed_pass(loader: Iterable) -> tuple[int, float]:
    """Images and seconds of one full pass over a loader (iterator creation, i.e. worker start, included)."""
    t0 = time.perf_counter()
    n = 0
    for batch in loader:
        n += int(batch["image"].shape[0])
    return n, time.perf_counter() - t0


def benchmark_pipeline(preset: str, opts: Options, dataset_dir: Path) -> dict[str, Any]:
    """Images/s of ``train#preprocessing`` over the synthetic dataset, for each worker count."""
    from monai.data import DataLoader, Dataset

    from hermes_monai.data import load_datalist

    device = torch.device(opts.device)
    parser = make_parser(preset, dict(opts.extra_overrides), device)
    transform = parser.get_parsed_content("train#preprocessing")
    configured_workers = int(parser.get_parsed_content("num_workers"))
    n_l = int(parser.get_parsed_content("labeled_batch_size"))
    n_u = int(parser.get_parsed_content("unlabeled_batch_size"))
    datalist = dataset_dir / "datalist.json"
    splits = {
        "labeled": (load_datalist(datalist, "labeled"), n_l),
        "unlabeled": (load_datalist(datalist, "unlabeled"), n_u),
    }
    by_workers: dict[str, Any] = {}
    for workers in dict.fromkeys(configured_workers if w is None else w for w in opts.pipeline_workers):
        seed_everything(opts.seed)
        loaders = [
            DataLoader(
                Dataset(items, transform=transform),
                batch_size=bs,
                shuffle=True,
                drop_last=True,
                num_workers=workers,
            )
            for items, bs in splits.values()
        ]
        for loader in loaders:  # warm-up pass: file cache, lazy imports
            _timed_pass(loader)
        images, seconds = 0, 0.0
        for _ in range(opts.pipeline_passes):
            for loader in loaders:
                n, s = _timed_pass(loader)
                images, seconds = images + n, seconds + s
        by_workers[str(workers)] = {
            "images": images,
            "seconds": seconds,
            "images_per_second": images / seconds,
        }
    return {
        "settings": {
            "preset": preset,
            "image_size": int(parser.get_parsed_content("image_size")),
            "source_image_size": opts.pipeline_image_size,
            "labeled_images": len(splits["labeled"][0]),
            "unlabeled_images": len(splits["unlabeled"][0]),
            "configured_num_workers": configured_workers,
            "caching": False,
        },
        "by_num_workers": by_workers,
        "configured_images_per_second": by_workers[str(configured_workers)]["images_per_second"],
    }
