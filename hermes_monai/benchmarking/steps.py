"""One Hermes training step built from the bundle's own configs, fed in-memory synthetic batches.

:func:`build_step` parses ``train.yaml`` (plus ``paper.yaml`` for the paper preset) with
:class:`monai.bundle.ConfigParser`, so the network, optimisers, selectors, contrastive losses, loss
weights, switches and schedules are exactly those a bundle run gets; only the data is replaced
(:func:`synthetic_batches`), the memory banks are pre-filled as after warm-up
(:func:`fill_memory_banks`) and the iteration counter starts late in training so every term is on.
:class:`StepSetup` then runs one iteration of the trainer's ignite process function per call.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hermes_monai.benchmarking.timing import synchronize

#: The bundle's config folder in a source checkout (this package sits beside ``bundle/``).
BUNDLE_CONFIG_DIR = Path(__file__).resolve().parents[2] / "bundle" / "configs"

#: Presets: "cpu" is the bundle default (train.yaml), "paper" adds bundle/configs/paper.yaml.
PRESETS = ("paper", "cpu")

_ALL_TERMS_ON = {
    "semi_supervised": True,
    "use_image_contrast": True,
    "use_pixel_contrast": True,
    "use_consistency": True,
    "contrast_warmup": 0,
}

#: Step configurations: (preset, overrides). ``paper_method_equal`` matches the public reference code.
STEP_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "paper_method_equal": ("paper", {**_ALL_TERMS_ON, "use_attention": False, "use_saliency": False}),
    "paper_full": ("paper", {**_ALL_TERMS_ON, "use_attention": True, "use_saliency": True}),
    "cpu_full": ("cpu", {**_ALL_TERMS_ON, "use_attention": True, "use_saliency": True}),
}


def config_files(preset: str, config_dir: Path = BUNDLE_CONFIG_DIR) -> list[Path]:
    """The bundle config files of a preset: train.yaml, plus paper.yaml for the paper preset."""
    names = ["train.yaml", "paper.yaml"] if preset == "paper" else ["train.yaml"]
    return [Path(config_dir) / name for name in names]


def make_parser(
    preset: str, overrides: Mapping[str, Any], device: torch.device, config_dir: Path = BUNDLE_CONFIG_DIR
) -> Any:
    """A :class:`monai.bundle.ConfigParser` over the preset's bundle files (in ``config_dir``, the bundle
    root its parent) with ``overrides`` applied and ``device`` set."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files(preset, config_dir)])
    merged = {
        "bundle_root": str(Path(config_dir).parent),
        **overrides,
        "device": f"$torch.device({str(device)!r})",
    }
    parser.update(merged)
    return parser


@dataclasses.dataclass
class StepSetup:
    """A configured trainer with its in-memory data; ``step()`` runs one training iteration."""

    trainer: Any
    labeled_batches: list[dict[str, torch.Tensor]]
    settings: dict[str, Any]
    device: torch.device
    _cycle: Any = None

    def step(self) -> None:
        """One training iteration (the ignite process function), synchronised on GPU."""
        if self._cycle is None:
            self._cycle = itertools.cycle(self.labeled_batches)
        batch = next(self._cycle)
        state = self.trainer.state
        state.iteration += 1
        state.batch = batch
        state.output = self.trainer._iteration(self.trainer, batch)
        synchronize(self.device)


def synthetic_batches(
    num_batches: int,
    batch_size: int,
    image_size: int,
    generator: torch.Generator,
    num_cls_classes: int = 2,
    labeled: bool = True,
) -> list[dict[str, torch.Tensor]]:
    """In-memory batches standing in for the data pipeline's output.

    Each image is a bright disc (radius 25-35 % of the side, so both classes cover > 100 pixels of the
    1/8-scale embedding grid at 224) on a darker background, plus uniform noise, clipped to [0, 1].

    Returns:
        ``num_batches`` dicts with ``image`` (B, 1, S, S) float32 in [0, 1] and, when ``labeled``,
        ``label`` (B, 1, S, S) float {0, 1} (the disc) and ``class`` (B,) long in [0, num_cls_classes).
    """
    n = num_batches * batch_size
    s = image_size
    centre = 0.35 + 0.3 * torch.rand(n, 2, generator=generator)  # (n, 2), fraction of the side
    radius = 0.25 + 0.1 * torch.rand(n, generator=generator)  # (n,)
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s  # (S,)
    dy = coords[None, :, None] - centre[:, 0, None, None]  # (n, S, 1)
    dx = coords[None, None, :] - centre[:, 1, None, None]  # (n, 1, S)
    disc = (dy**2 + dx**2 <= radius[:, None, None] ** 2).float()  # (n, S, S)
    noise = torch.rand(n, s, s, generator=generator)
    image = (0.2 + 0.5 * disc + 0.3 * noise).clamp(0.0, 1.0)[:, None]  # (n, 1, S, S)
    classes = torch.randint(0, num_cls_classes, (n,), generator=generator)
    out = []
    for b in range(num_batches):
        sl = slice(b * batch_size, (b + 1) * batch_size)
        item = {"image": image[sl].contiguous()}
        if labeled:
            item["label"] = disc[sl, None].contiguous()
            item["class"] = classes[sl].contiguous()
        out.append(item)
    return out


def fill_memory_banks(image_contrast: Any, pixel_contrast: Any, generator: torch.Generator) -> None:
    """Fill the contrastive memory banks with random unit vectors (as after warm-up in a real run)."""
    if image_contrast is not None:
        queue = image_contrast.queue
        feats = F.normalize(torch.randn(queue.size, queue.dim, generator=generator), dim=1)
        labels = torch.arange(queue.size) % 2
        queue.enqueue(feats.to(queue.features.device), labels.to(queue.labels.device))
    if pixel_contrast is not None:
        bank = pixel_contrast.bank
        n = bank.num_classes * bank.size
        feats = F.normalize(torch.randn(n, bank.dim, generator=generator), dim=1)
        labels = torch.arange(bank.num_classes).repeat_interleave(bank.size)
        bank.enqueue(feats.to(bank.bank.device), labels.to(bank.ptr.device))


def build_step(
    name: str,
    device: torch.device,
    extra_overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    late_fraction: float = 0.9,
    amp_dtype: torch.dtype | None = None,
    config_dir: Path = BUNDLE_CONFIG_DIR,
) -> StepSetup:
    """Build the trainer of step configuration ``name`` from the bundle config, fed synthetic batches.

    The network, optimisers, selectors, contrastive losses, loss weights, switches, T and AMP setting
    come from the parsed bundle config, the memory layout too (``channels_last``); ``amp_dtype`` turns
    autocast on with that dtype. The batches are NCHW-contiguous, as the data pipeline delivers them.
    ``config_dir``: the bundle's config folder (default: this checkout's ``bundle/configs``).
    """
    from hermes_monai.engines import HermesTrainer

    preset, overrides = STEP_CONFIGS[name]
    parser = make_parser(preset, {**overrides, **(extra_overrides or {})}, device, config_dir)
    get = parser.get_parsed_content
    network = get("network")
    image_contrast, pixel_contrast = get("image_contrast"), get("pixel_contrast")
    size, n_l, n_u = get("image_size"), get("labeled_batch_size"), get("unlabeled_batch_size")
    max_epochs, epoch_length = get("max_epochs"), get("epoch_length")
    gen = torch.Generator().manual_seed(seed)
    fill_memory_banks(image_contrast, pixel_contrast, gen)
    labeled = synthetic_batches(2, n_l, size, gen, get("num_cls_classes"), labeled=True)
    unlabeled = synthetic_batches(2, n_u, size, gen, labeled=False)
    amp = bool(get("amp")) or amp_dtype is not None
    trainer = HermesTrainer(
        device=device,
        max_epochs=max_epochs,
        epoch_length=epoch_length,
        train_data_loader=labeled,
        unlabeled_data_loader=unlabeled if get("semi_supervised") else None,
        network=network,
        seg_optimizer=get("seg_optimizer"),
        cls_optimizer=get("cls_optimizer"),
        num_seg_classes=get("num_seg_classes"),
        num_cls_classes=get("num_cls_classes"),
        image_selector=get("image_selector").to(device),
        pixel_selector=get("pixel_selector").to(device),
        image_contrast=image_contrast,
        pixel_contrast=pixel_contrast,
        use_consistency=get("use_consistency"),
        separate_student_passes=get("separate_student_passes"),
        teacher_momentum=get("teacher_momentum"),
        strong_augment=get("strong_augment"),
        cutmix=get("cutmix"),
        contrast_warmup=get("contrast_warmup"),
        contrast_rampup=get("contrast_rampup"),
        consistency_rampup=get("consistency_rampup"),
        weights=get("loss_weights"),
        seed=get("seed"),
        amp=amp,
        amp_kwargs={"dtype": amp_dtype} if amp_dtype is not None else None,
    )
    # as monai.engines.Trainer.run does before the loop
    trainer.scaler = torch.amp.GradScaler("cuda") if amp and amp_dtype in (None, torch.float16) else None
    total = trainer.total_iterations()
    start = max(int(late_fraction * total), int(get("contrast_warmup")))
    trainer.state.iteration = start
    trainer.state.epoch = start // max(int(epoch_length), 1)
    settings = {
        "preset": preset,
        "config_files": [
            str(Path(*f.parts[-3:])) for f in config_files(preset, config_dir)
        ],  # bundle/configs/*
        "overrides": {**overrides, **(extra_overrides or {})},
        "encoder": get("encoder"),
        "decoder_channels": list(get("decoder_channels")),
        "image_size": size,
        "labeled_batch_size": n_l,
        "unlabeled_batch_size": n_u,
        "use_attention": get("use_attention"),
        "use_saliency": get("use_saliency"),
        "image_contrast": image_contrast is not None,
        "pixel_contrast": pixel_contrast is not None,
        "consistency": get("use_consistency"),
        "contrast_warmup": get("contrast_warmup"),
        "total_iterations_T": total,
        "start_iteration": start,
        "amp_dtype": None if not amp else str(amp_dtype or "float16"),
        "channels_last": bool(get("channels_last")),
        "num_parameters": sum(p.numel() for p in network.parameters()),
    }
    return StepSetup(trainer=trainer, labeled_batches=labeled, settings=settings, device=device)
