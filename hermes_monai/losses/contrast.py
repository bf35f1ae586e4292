"""Supervised contrastive loss and the image-level dual-threshold contrast ``L_c^cls`` (HERMES.md §5).

:func:`supervised_contrastive_loss` is the "L_out" SupCon loss of Khosla et al. (2020). For anchor ``i``
with logits ``s_ia = a_i · c_a / τ`` over the contrast entries ``a`` (the anchor's own entry excluded when
the contrast set starts with the anchors), and positives ``P(i)`` = contrast entries with the anchor's
label (itself excluded)::

    loss_i = − 1/|P(i)| Σ_{p ∈ P(i)} log( exp(s_ip) / Σ_{a ≠ i} exp(s_ia) )

summed over the anchors that are in ``anchor_mask`` and have at least one positive, and divided by their
number (``mean_over="used"``) or by the number of all anchors (``mean_over="all"``). Label −1 matches
nothing (such entries are negatives only). The dot products are taken as given: callers pass
L2-normalised embeddings. Unlike the reference implementation there is no extra
``temperature / base_temperature`` factor (it would be 1 at the paper's settings).

:class:`ImageContrastLoss` applies it to the classification embeddings of both views of the unlabeled
batch, with a :class:`~hermes_monai.losses.memory_bank.FeatureQueue` of past selected embeddings as
extra contrast entries. Each anchor's term is masked by the image-level selection and the sum is
divided by the number of all anchors (``mean_over="all"``), as the masked pseudo-label cross-entropy is:
dividing by the selected count instead would give a handful of selected images the full weight of the
term early in training, when the selection is least reliable. Choices where the specification is
silent: embeddings are (re-)L2-normalised inside (idempotent for the network's normalised output);
unselected images stay in the contrast set with their pseudo-labels (the selection masks the anchor
terms, as in the paper) but are never enqueued.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .memory_bank import FeatureQueue

__all__ = ["supervised_contrastive_loss", "ImageContrastLoss"]


def supervised_contrastive_loss(
    anchors: Tensor,
    anchor_labels: Tensor,
    contrast: Tensor,
    contrast_labels: Tensor,
    temperature: float = 0.07,
    anchor_mask: Tensor | None = None,
    self_in_contrast: bool = True,
    mean_over: str = "used",
) -> Tensor:
    """SupCon ("L_out") loss of anchors against a labelled contrast set.

    Args:
        anchors: ``(N, D)`` anchor embeddings.
        anchor_labels: ``(N,)`` integer labels (−1 = none).
        contrast: ``(M, D)`` contrast embeddings; with ``self_in_contrast`` its first ``N`` rows are the
            anchors themselves (``M >= N``) and entry ``i`` is excluded for anchor ``i``.
        contrast_labels: ``(M,)`` integer labels (−1 = none).
        temperature: ``τ``.
        anchor_mask: ``(N,)`` bool, anchors allowed to contribute (default: all).
        self_in_contrast: whether ``contrast[:N]`` is ``anchors``.
        mean_over: ``"used"`` divides by the anchors that contribute, ``"all"`` by ``N``.

    Returns:
        scalar loss; 0 (graph-connected) when no anchor has a positive.
    """
    n, m = anchors.shape[0], contrast.shape[0]
    if mean_over not in ("used", "all"):
        raise ValueError(f"mean_over must be 'used' or 'all', got {mean_over!r}")
    if self_in_contrast and m < n:
        raise ValueError(f"self_in_contrast needs the contrast set ({m}) to start with the {n} anchors")
    device = anchors.device
    anchor_labels = anchor_labels.to(device).long()
    contrast_labels = contrast_labels.to(device).long()

    logits = anchors @ contrast.to(anchors.dtype).T / temperature  # (N, M)
    allowed = torch.ones(n, m, dtype=torch.bool, device=device)
    if self_in_contrast:
        idx = torch.arange(n, device=device)
        allowed[idx, idx] = False
    positive = (anchor_labels[:, None] == contrast_labels[None, :]) & (anchor_labels[:, None] >= 0) & allowed

    # Stable log-softmax over the allowed entries of each row (rows with none allowed stay finite).
    row_max = logits.detach().masked_fill(~allowed, float("-inf")).amax(dim=1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    shifted = logits - row_max
    denom = shifted.masked_fill(~allowed, float("-inf")).exp().sum(dim=1, keepdim=True)
    log_prob = shifted - denom.clamp_min(torch.finfo(denom.dtype).tiny).log()

    num_pos = positive.sum(dim=1)
    per_anchor = -torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    per_anchor = per_anchor / num_pos.clamp_min(1).to(per_anchor.dtype)

    use = num_pos > 0
    if anchor_mask is not None:
        use = use & anchor_mask.to(device).bool()
    total = torch.where(use, per_anchor, torch.zeros_like(per_anchor)).sum()
    count = use.sum() if mean_over == "used" else torch.tensor(n, device=device)
    return total / count.clamp_min(1).to(total.dtype)


class ImageContrastLoss(nn.Module):
    """Image-level dual-threshold contrast with a queue of past selected embeddings.

    Args:
        dim: embedding dimension ``D``.
        temperature: SupCon temperature.
        bank_size: queue length.
        normalize: L2-normalise the embeddings before use.
    """

    def __init__(
        self, dim: int = 128, temperature: float = 0.07, bank_size: int = 1024, normalize: bool = True
    ) -> None:
        super().__init__()
        self.temperature = float(temperature)
        self.normalize = bool(normalize)
        self.queue = FeatureQueue(dim, bank_size)

    def forward(self, features: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        """Args:
            features: ``(N, D)`` embeddings (the engine stacks both views: ``N = 2B``).
            labels: ``(N,)`` image-level pseudo-labels.
            mask: ``(N,)`` bool image-level selection; only selected anchors contribute and are enqueued.

        Returns:
            scalar loss. Side effect: the selected embeddings (detached) and labels are enqueued after
            the loss has been computed against the previous queue contents.
        """
        if self.normalize:
            features = F.normalize(features, dim=1)
        labels = labels.long()
        mask = mask.bool()
        bank_features, bank_labels = self.queue.get()
        contrast = torch.cat([features, bank_features.to(features)], dim=0)
        contrast_labels = torch.cat([labels, bank_labels.to(labels.device)], dim=0)
        loss = supervised_contrastive_loss(
            features, labels, contrast, contrast_labels, self.temperature, anchor_mask=mask, mean_over="all"
        )
        self.queue.enqueue(features[mask].detach(), labels[mask])
        return loss
