"""Pixel-level dual-threshold contrast ``L_c^seg`` (HERMES.md §5) with vectorised anchor sampling.

:func:`sample_pixel_anchors` draws anchor pixels from an embedding map. A *group* is an (image, class)
pair; only groups with more than ``min_pixels`` valid pixels (label ≠ −1) are used. Each group gets a
quota ``q = max_per_group`` lowered to ``max_anchors // n_groups`` when ``n_groups · max_per_group``
would exceed ``max_anchors``. Half of ``q`` (``q // 2``) is asked of *hard* pixels (prediction ≠ label)
and the rest of *easy* ones (prediction == label); when one kind runs short the other fills the gap, so
a group yields ``min(q, #valid pixels)`` anchors. Pixels are drawn uniformly at random within each
(group, hardness) run. Sampling is fully vectorised: every valid pixel gets a random key, pixels are
sorted by (group, hardness, key), their rank inside their run is ``position − run start`` and a pixel is
kept when its rank is below its run's quota. No Python loop over pixels or groups. (When there are more
than ``max_anchors`` groups the quota is 0 and nothing is sampled — far outside Hermes' settings.)

:class:`PixelContrastLoss` L2-normalises the sampled anchors (the engine passes the *mean* of the two
views' normalised embeddings, which is shorter than unit length), computes the SupCon loss of the anchors
against (anchors + the per-class memory bank), then enqueues, per class, up to ``enqueue_per_class``
anchors of that class drawn at random from the current anchors (detached, normalised). Anchors are
already reliable — ground truth for labeled images, dual-threshold certainty labels for unlabeled ones —
so both hard and easy anchors are eligible for the bank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .contrast import supervised_contrastive_loss
from .memory_bank import ClassFeatureBank

__all__ = ["sample_pixel_anchors", "PixelContrastLoss"]


def _random_keys(n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=gen_device).to(device)


def _rank_within_runs(run_id: Tensor, num_runs: int, keys: Tensor) -> tuple[Tensor, Tensor]:
    """Order elements by (run_id, key) and rank them inside their run.

    Args:
        run_id: ``(n,)`` long in ``[0, num_runs)``.
        num_runs: number of possible runs.
        keys: ``(n,)`` random sort keys.

    Returns:
        ``order (n,)`` (indices into the inputs, sorted by run then key) and ``rank (n,)`` (0-based rank
        of ``order[j]`` inside its run).
    """
    by_key = torch.argsort(keys)
    order = by_key[torch.argsort(run_id[by_key], stable=True)]
    run_sizes = torch.bincount(run_id, minlength=num_runs)
    run_start = torch.cumsum(run_sizes, 0) - run_sizes
    rank = torch.arange(run_id.numel(), device=run_id.device) - run_start[run_id[order]]
    return order, rank


def sample_pixel_anchors(
    embed: Tensor,
    labels: Tensor,
    pred: Tensor,
    max_anchors: int = 1024,
    max_per_group: int = 100,
    min_pixels: int = 100,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample hard/easy anchor pixels per (image, class) group.

    Args:
        embed: ``(B, D, h, w)`` pixel embeddings.
        labels: ``(B, h, w)`` long class labels, −1 = ignore.
        pred: ``(B, h, w)`` long predicted classes (hard = ``pred != labels``).
        max_anchors: cap on the total number of anchors.
        max_per_group: cap per (image, class) group.
        min_pixels: groups need strictly more valid pixels than this.
        generator: optional RNG for reproducible sampling.

    Returns:
        ``features (N, D)`` and ``labels (N,)`` of the anchors, grouped by image then class.
    """
    b, d, h, w = embed.shape
    if labels.shape != (b, h, w) or pred.shape != (b, h, w):
        raise ValueError(
            f"labels/pred must have shape {(b, h, w)}, got {tuple(labels.shape)}, {tuple(pred.shape)}"
        )
    device = embed.device
    flat_labels = labels.reshape(-1).to(device).long()
    flat_pred = pred.reshape(-1).to(device).long()
    empty = (embed.new_zeros(0, d), flat_labels.new_zeros(0))

    pix = torch.nonzero(flat_labels >= 0).squeeze(1)
    if pix.numel() == 0:
        return empty
    lab = flat_labels[pix]
    num_labels = int(lab.max()) + 1
    group = (pix // (h * w)) * num_labels + lab
    num_groups_total = b * num_labels
    group_size = torch.bincount(group, minlength=num_groups_total)
    group_ok = group_size > min_pixels
    n_groups = int(group_ok.sum())
    if n_groups == 0:
        return empty
    quota = min(max_per_group, max_anchors // n_groups)

    keep = group_ok[group]
    pix, lab, group = pix[keep], lab[keep], group[keep]
    hard = (flat_pred[pix] != lab).long()
    n_hard = torch.zeros(num_groups_total, dtype=torch.long, device=device).index_add_(0, group, hard)
    n_easy = group_size - n_hard
    want_hard = torch.clamp(n_hard, max=quota // 2)
    take_easy = torch.minimum(quota - want_hard, n_easy)
    take_hard = torch.minimum(quota - take_easy, n_hard)

    run = group * 2 + hard  # run 2g: easy pixels of group g, run 2g + 1: hard ones
    take = torch.stack([take_easy, take_hard], dim=1).reshape(-1)  # (2 · num_groups_total,)
    order, rank = _rank_within_runs(run, 2 * num_groups_total, _random_keys(run.numel(), device, generator))
    chosen = order[rank < take[run[order]]]

    features = embed.permute(0, 2, 3, 1).reshape(-1, d)[pix[chosen]]
    return features, lab[chosen]


class PixelContrastLoss(nn.Module):
    """Pixel-level SupCon with a per-class memory bank.

    Args:
        num_classes: number of segmentation classes (bank queues).
        dim: embedding dimension ``D``.
        temperature: SupCon temperature.
        bank_size: entries per class in the bank.
        max_anchors, max_per_group, min_pixels: see :func:`sample_pixel_anchors`.
        enqueue_per_class: anchors of each class pushed into the bank per call.
        normalize: L2-normalise the anchors before use.
    """

    def __init__(
        self,
        num_classes: int = 2,
        dim: int = 256,
        temperature: float = 0.07,
        bank_size: int = 2000,
        max_anchors: int = 1024,
        max_per_group: int = 100,
        min_pixels: int = 100,
        enqueue_per_class: int = 100,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.temperature = float(temperature)
        self.max_anchors = int(max_anchors)
        self.max_per_group = int(max_per_group)
        self.min_pixels = int(min_pixels)
        self.enqueue_per_class = int(enqueue_per_class)
        self.normalize = bool(normalize)
        self.bank = ClassFeatureBank(num_classes, dim, bank_size)

    def forward(
        self, embed: Tensor, labels: Tensor, pred: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Args:
            embed: ``(B, D, h, w)`` pixel embeddings.
            labels: ``(B, h, w)`` long labels on the embedding grid (−1 = ignore).
            pred: ``(B, h, w)`` long predictions on the embedding grid.
            generator: optional RNG for the anchor and enqueue sampling.

        Returns:
            scalar loss (0, graph-connected, without usable anchors). Side effect: enqueues anchors.
        """
        labels = labels.long().masked_fill(labels.long() >= self.num_classes, -1)
        anchors, anchor_labels = sample_pixel_anchors(
            embed, labels, pred, self.max_anchors, self.max_per_group, self.min_pixels, generator
        )
        if anchors.shape[0] == 0:
            if self.enqueue_per_class > 0:  # a collective under torch.distributed: every rank enqueues
                self.bank.enqueue(anchors.detach(), anchor_labels)
            return embed.sum() * 0.0
        if self.normalize:
            anchors = F.normalize(anchors, dim=1)
        bank_features, bank_labels = self.bank.get()
        contrast = torch.cat([anchors, bank_features.to(anchors)], dim=0)
        contrast_labels = torch.cat([anchor_labels, bank_labels.to(anchor_labels.device)], dim=0)
        loss = supervised_contrastive_loss(
            anchors, anchor_labels, contrast, contrast_labels, self.temperature
        )

        if self.enqueue_per_class > 0:
            keys = _random_keys(anchor_labels.numel(), anchors.device, generator)
            order, rank = _rank_within_runs(anchor_labels, self.num_classes, keys)
            picked = order[rank < self.enqueue_per_class]
            self.bank.enqueue(anchors[picked].detach(), anchor_labels[picked])
        return loss
