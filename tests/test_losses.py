"""Tests for the Hermes losses and memory banks (HERMES.md §5); hand-computed values in comments."""

import math

import pytest
import torch

from hermes_monai.losses import (
    ClassFeatureBank,
    FeatureQueue,
    IgnoreDiceLoss,
    ImageContrastLoss,
    PixelContrastLoss,
    SegSupervisedLoss,
    inter_task_consistency,
    masked_cross_entropy,
    sample_pixel_anchors,
    supervised_contrastive_loss,
)

# --------------------------------------------------------------------------- supervised / unsupervised


def test_seg_supervised_loss_hand_value():
    # B=1, C=2, 1x2 image, zero logits -> p = 0.5 everywhere; target [1, 0]
    # CE = ln 2 = 0.693147
    # Dice_fg: I = 0.5, sum_p + sum_t = 1 + 1 -> 1 - (2*0.5 + 1e-5)/(2 + 1e-5) = 0.5
    # loss = (0.5 * 0.693147 + 0.5) / 2 = 0.423287
    loss_fn = SegSupervisedLoss()
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    assert loss_fn(logits, target).item() == pytest.approx(0.423287, abs=1e-5)
    # (B, 1, H, W) float target gives the same value
    assert loss_fn(logits, target[:, None].float()).item() == pytest.approx(0.423287, abs=1e-5)


def test_seg_supervised_loss_equals_hand_written_dice_ce():
    """The DiceCELoss weights reproduce (0.5 * CE + Dice_fg) / 2 on random logits and masks."""
    from monai.losses import DiceLoss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 8, 8, generator=g)
    target = (torch.rand(3, 1, 8, 8, generator=g) > 0.6).long()
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0])
    dice = DiceLoss(include_background=False, to_onehot_y=True, softmax=True)(logits, target)
    expected = (0.5 * ce + dice) / 2
    assert SegSupervisedLoss()(logits, target).item() == pytest.approx(expected.item(), abs=1e-6)
    assert SegSupervisedLoss(ce_weight=1.0)(logits, target).item() == pytest.approx(
        ((ce + dice) / 2).item(), abs=1e-6
    )


def test_masked_cross_entropy_hand_value():
    # sample 0: logits (0, 0), target 0 -> CE = ln 2 = 0.693147
    # sample 1: logits (0, ln 3), target 1 -> p = 3/4 -> CE = -ln 0.75 = 0.287682
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]])
    target = torch.tensor([0, 1])
    # mask (T, F): 0.693147 / B=2 = 0.346574
    assert masked_cross_entropy(logits, target, torch.tensor([True, False])).item() == pytest.approx(
        0.346574, abs=1e-5
    )
    # mask (T, T): (0.693147 + 0.287682) / 2 = 0.490415
    assert masked_cross_entropy(logits, target, torch.tensor([True, True])).item() == pytest.approx(
        0.490415, abs=1e-5
    )
    # changing an unselected sample (logits and even an ignore target) changes nothing
    logits2 = logits.clone()
    logits2[1] = torch.tensor([5.0, -5.0])
    loss = masked_cross_entropy(logits2, torch.tensor([0, -1]), torch.tensor([True, False]))
    assert loss.item() == pytest.approx(0.346574, abs=1e-5)


def test_ignore_dice_hand_value():
    # zero logits -> fg prob 0.5 at both pixels, target fg [1, 0]
    # all valid: I = 0.5, sum_p = 1, sum_t = 1 -> 1 - 1/2 = 0.5
    # second pixel ignored: I = 0.5, sum_p = 0.5, sum_t = 1 -> 1 - 1/1.5 = 0.333333
    loss_fn = IgnoreDiceLoss()
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    assert loss_fn(logits, target, torch.ones(1, 1, 2, dtype=torch.bool)).item() == pytest.approx(
        0.5, abs=1e-4
    )
    valid = torch.tensor([[[True, False]]])
    assert loss_fn(logits, target, valid).item() == pytest.approx(1 / 3, abs=1e-4)


def test_ignore_dice_ignored_pixels_do_not_matter_and_perfect_is_zero():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 8, 8, generator=g)
    target = (torch.rand(2, 8, 8, generator=g) > 0.5).long()
    valid = torch.rand(2, 8, 8, generator=g) > 0.3
    loss_fn = IgnoreDiceLoss()
    ref = loss_fn(logits, target, valid)
    assert (~valid).any()
    # new random logits and flipped targets at the ignored pixels only
    logits2 = torch.where(valid[:, None], logits, torch.randn(2, 2, 8, 8, generator=g) * 10)
    target2 = torch.where(valid, target, 1 - target)
    assert loss_fn(logits2, target2, valid).item() == pytest.approx(ref.item(), abs=1e-6)
    # perfect prediction on the valid pixels -> ~0
    perfect = (torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 2 - 1) * 30
    assert loss_fn(perfect, target, valid).item() < 1e-4
    # nothing valid -> 0, graph kept
    x = logits.clone().requires_grad_(True)
    zero = loss_fn(x, target, torch.zeros_like(valid))
    assert zero.item() == 0.0 and zero.requires_grad


# --------------------------------------------------------------------------- supervised contrast


def _three_vectors():
    return torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])


def test_supcon_hand_value():
    v = _three_vectors()
    labels = torch.tensor([0, 0, 1])
    # tau = 1, self excluded:
    # anchor 0: s = (v0.v1, v0.v2) = (0, -1), positive v1: -log(e^0 / (e^0 + e^-1)) = log(1.367879) = 0.313262
    # anchor 1: s = (v1.v0, v1.v2) = (0, 0), positive v0: -log(1/2) = 0.693147
    # anchor 2: label 1 has no other member -> no positive -> excluded
    # mean = (0.313262 + 0.693147) / 2 = 0.503205
    loss = supervised_contrastive_loss(v, labels, v, labels, temperature=1.0)
    assert loss.item() == pytest.approx(0.503205, abs=1e-5)
    # anchor mask keeps only anchor 0
    masked = supervised_contrastive_loss(
        v, labels, v, labels, 1.0, anchor_mask=torch.tensor([1, 0, 1]).bool()
    )
    assert masked.item() == pytest.approx(0.313262, abs=1e-5)
    # averaged over all three anchors instead of the one that contributes: 0.313262 / 3
    over_all = supervised_contrastive_loss(
        v, labels, v, labels, 1.0, anchor_mask=torch.tensor([1, 0, 1]).bool(), mean_over="all"
    )
    assert over_all.item() == pytest.approx(0.104421, abs=1e-5)


def test_supcon_external_contrast_set():
    # anchor v0 (label 0) against contrast [v0 (0), v1 (0), v2 (1)], tau = 0.5, nothing excluded:
    # s = (1, 0, -1) / 0.5 = (2, 0, -2); log Z = log(e^2 + 1 + e^-2) = log(8.524391) = 2.142931
    # positives v0, v1: -(2 - 2.142931 + 0 - 2.142931) / 2 = 1.142931
    v = _three_vectors()
    loss = supervised_contrastive_loss(
        v[:1], torch.tensor([0]), v, torch.tensor([0, 0, 1]), 0.5, self_in_contrast=False
    )
    assert loss.item() == pytest.approx(1.142931, abs=1e-5)


def test_supcon_ignore_labels_and_empty():
    v = _three_vectors().requires_grad_(True)
    # -1 never matches: anchors 0 and 1 lose their positives -> nothing contributes -> 0 with graph
    labels = torch.tensor([-1, -1, 1])
    loss = supervised_contrastive_loss(v, labels, v, labels, 1.0)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.isfinite(v.grad).all()


def test_supcon_separable_lower_than_shuffled_and_has_gradient():
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat_interleave(6)
    centres = torch.nn.functional.normalize(torch.randn(3, 16, generator=g), dim=1)
    feats = torch.nn.functional.normalize(centres[labels] + 0.1 * torch.randn(18, 16, generator=g), dim=1)
    feats.requires_grad_(True)
    sep = supervised_contrastive_loss(feats, labels, feats, labels, 0.07)
    shuffled_labels = labels[torch.randperm(18, generator=g)]
    shuf = supervised_contrastive_loss(feats, shuffled_labels, feats, shuffled_labels, 0.07)
    assert sep.item() < shuf.item()
    sep.backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0


def test_supcon_numerically_stable_for_large_logits():
    feats = torch.tensor([[100.0, 0.0], [99.0, 1.0], [-100.0, 0.0], [-99.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    loss = supervised_contrastive_loss(feats, labels, feats, labels, 0.07)
    assert torch.isfinite(loss)


def test_image_contrast_loss_uses_and_fills_queue():
    g = torch.Generator().manual_seed(2)
    loss_fn = ImageContrastLoss(dim=4, temperature=0.5, bank_size=8)
    feats = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    labels = torch.tensor([0, 1, 0, 0, 1, 0])
    mask = torch.tensor([True, True, False, True, True, False])
    # empty queue: same as plain SupCon on the batch with the anchor mask
    first = loss_fn(feats, labels, mask)
    expected = supervised_contrastive_loss(
        feats, labels, feats, labels, 0.5, anchor_mask=mask, mean_over="all"
    )
    assert first.item() == pytest.approx(expected.item(), abs=1e-6)
    # only the 4 selected embeddings were enqueued, in order
    bank_f, bank_l = loss_fn.queue.get()
    assert bank_l.tolist() == [0, 1, 0, 1]
    assert torch.allclose(bank_f, feats[mask])
    # second call: contrast = batch + queue
    feats2 = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    second = loss_fn(feats2, labels, mask)
    expected2 = supervised_contrastive_loss(
        feats2,
        labels,
        torch.cat([feats2, bank_f]),
        torch.cat([labels, bank_l]),
        0.5,
        anchor_mask=mask,
        mean_over="all",
    )
    assert second.item() == pytest.approx(expected2.item(), abs=1e-6)
    assert loss_fn.queue.get()[0].shape == (8, 4)


# --------------------------------------------------------------------------- pixel anchors


def _anchor_maps():
    """Two 20x20 images (400 pixels each, flat order).

    image 0: pixels 0-149 class 1 (30 hard: 0-29 predicted 0), 150-349 class 0 (all easy), 350-399 ignored.
    image 1: pixels 0-79 class 1 (80 <= 100 -> skipped), 80-399 class 0 (320: 300 hard, 20 easy).
    Channel 0 of the embedding holds the global flat index so a sampled anchor can be traced back.
    """
    labels = torch.full((2, 400), -1, dtype=torch.long)
    pred = torch.zeros(2, 400, dtype=torch.long)
    labels[0, :150], labels[0, 150:350] = 1, 0
    pred[0, 30:150] = 1
    labels[1, :80], labels[1, 80:] = 1, 0
    pred[1, :80] = 1
    pred[1, 80:380] = 1  # hard for class 0
    embed = torch.zeros(2, 3, 400)
    embed[:, 0] = torch.arange(800, dtype=torch.float).view(2, 400)
    embed[:, 1] = 1.0
    return embed.view(2, 3, 20, 20), labels.view(2, 20, 20), pred.view(2, 20, 20)


def _group_counts(feats, out_labels, labels, pred):
    idx = feats[:, 0].round().long()
    flat_l, flat_p = labels.reshape(-1), pred.reshape(-1)
    assert torch.equal(flat_l[idx], out_labels)  # labels returned match the map
    assert (flat_l[idx] >= 0).all()  # ignored pixels never sampled
    assert idx.unique().numel() == idx.numel()  # no pixel drawn twice
    counts = {}
    for i in idx.tolist():
        key = (i // 400, int(flat_l[i]), "hard" if flat_p[i] != flat_l[i] else "easy")
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_pixel_anchor_counts_per_group():
    embed, labels, pred = _anchor_maps()
    feats, out_labels = sample_pixel_anchors(embed, labels, pred, generator=torch.Generator().manual_seed(0))
    counts = _group_counts(feats, out_labels, labels, pred)
    # quota 100 per group (3 groups * 100 <= 1024), 50 hard asked:
    # (0,1): only 30 hard -> 30 hard + 70 easy ; (0,0): no hard -> 100 easy ;
    # (1,0): only 20 easy -> 20 easy + 80 hard ; (1,1): 80 pixels -> skipped
    assert counts == {(0, 1, "hard"): 30, (0, 1, "easy"): 70, (0, 0, "easy"): 100, (1, 0, "hard"): 80,
                      (1, 0, "easy"): 20}  # fmt: skip
    assert feats.shape == (300, 3)


def test_pixel_anchor_max_anchors_cap():
    embed, labels, pred = _anchor_maps()
    feats, out_labels = sample_pixel_anchors(embed, labels, pred, max_anchors=150)
    counts = _group_counts(feats, out_labels, labels, pred)
    # 3 groups * 100 > 150 -> quota 150 // 3 = 50, 25 hard asked:
    # (0,1): 25 hard + 25 easy ; (0,0): 50 easy ; (1,0): 20 easy + 30 hard
    assert counts == {(0, 1, "hard"): 25, (0, 1, "easy"): 25, (0, 0, "easy"): 50, (1, 0, "hard"): 30,
                      (1, 0, "easy"): 20}  # fmt: skip
    assert feats.shape[0] == 150


def test_pixel_anchor_min_pixels_is_strict():
    labels = torch.full((1, 1, 201), -1, dtype=torch.long)
    labels[0, 0, :100] = 0  # exactly 100 -> skipped
    labels[0, 0, 100:] = 1  # 101 -> kept
    embed = torch.randn(1, 2, 1, 201)
    _, out = sample_pixel_anchors(embed, labels, labels.clone())
    assert out.tolist() == [1] * 100


def test_pixel_anchor_determinism_and_empty():
    embed, labels, pred = _anchor_maps()
    a = sample_pixel_anchors(embed, labels, pred, generator=torch.Generator().manual_seed(5))[0]
    b = sample_pixel_anchors(embed, labels, pred, generator=torch.Generator().manual_seed(5))[0]
    c = sample_pixel_anchors(embed, labels, pred, generator=torch.Generator().manual_seed(6))[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    feats, out = sample_pixel_anchors(embed, torch.full_like(labels, -1), pred)
    assert feats.shape == (0, 3) and out.shape == (0,)


def test_pixel_contrast_loss_and_bank():
    g = torch.Generator().manual_seed(3)
    _, labels, pred = _anchor_maps()
    embed = torch.randn(2, 8, 20, 20, generator=g, requires_grad=True)
    loss_fn = PixelContrastLoss(num_classes=2, dim=8, bank_size=50, enqueue_per_class=10)
    loss = loss_fn(embed, labels, pred, generator=g)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert embed.grad is not None and embed.grad.abs().sum() > 0
    # 10 anchors of each class enqueued, unit length
    assert loss_fn.bank.count.tolist() == [10, 10]
    bank_f, bank_l = loss_fn.bank.get()
    assert bank_l.tolist() == [0] * 10 + [1] * 10
    assert torch.allclose(bank_f.norm(dim=1), torch.ones(20), atol=1e-5)
    loss_fn(embed.detach(), labels, pred, generator=g)
    assert loss_fn.bank.count.tolist() == [20, 20]
    # no usable anchors -> 0 with graph
    zero = loss_fn(embed, torch.full_like(labels, -1), pred)
    assert zero.item() == 0.0 and zero.requires_grad


# --------------------------------------------------------------------------- memory banks


def test_feature_queue_order_and_wraparound():
    q = FeatureQueue(dim=2, size=4)
    assert q.get()[0].shape == (0, 2)
    q.enqueue(torch.tensor([[1.0, 1], [2, 2], [3, 3]]), torch.tensor([1, 2, 3]))
    f, lab = q.get()
    assert f[:, 0].tolist() == [1, 2, 3] and lab.tolist() == [1, 2, 3] and int(q.ptr) == 3
    # two more: slots 3 and 0 (wrap) -> [5, 2, 3, 4]
    q.enqueue(torch.tensor([[4.0, 4], [5, 5]]), torch.tensor([4, 5]))
    f, lab = q.get()
    assert f[:, 0].tolist() == [5, 2, 3, 4] and lab.tolist() == [5, 2, 3, 4] and int(q.ptr) == 1
    # six at once from ptr 1: only the last four (12..15) are kept, written at slots 1, 2, 3, 0
    x = torch.arange(10.0, 16.0)[:, None].repeat(1, 2).requires_grad_(True)
    q.enqueue(x, torch.arange(10, 16))
    f, lab = q.get()
    assert f[:, 0].tolist() == [15, 12, 13, 14] and lab.tolist() == [15, 12, 13, 14] and int(q.ptr) == 1
    assert not q.features.requires_grad
    assert {"features", "labels", "ptr"} <= set(q.state_dict())


def test_class_feature_bank_per_class():
    bank = ClassFeatureBank(num_classes=2, dim=1, size=3)
    bank.enqueue(torch.tensor([[1.0], [2.0], [3.0], [4.0]]), torch.tensor([0, 1, 0, -1]))
    f, lab = bank.get()
    # class 0: [1, 3]; class 1: [2]; the -1 entry is dropped
    assert f[:, 0].tolist() == [1, 3, 2] and lab.tolist() == [0, 0, 1]
    bank.enqueue(torch.tensor([[5.0], [6.0], [7.0]]), torch.tensor([0, 0, 1]))
    # class 0 slots 2, 0 (wrap) -> [6, 3, 5]; class 1 -> [2, 7]
    f, lab = bank.get()
    assert f[:, 0].tolist() == [6, 3, 5, 2, 7] and lab.tolist() == [0, 0, 0, 1, 1]
    assert bank.count.tolist() == [3, 2] and bank.ptr.tolist() == [1, 2]


# --------------------------------------------------------------------------- consistency


def test_inter_task_consistency():
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    assert inter_task_consistency(a, 5 * a).item() == pytest.approx(0.0, abs=1e-6)  # same direction
    assert inter_task_consistency(a, -a).item() == pytest.approx(2.0, abs=1e-6)  # opposite
    # rows: cos = 1 and cos((0,1,0),(1,0,0)) = 0 -> 1 - 0.5 = 0.5
    b = torch.tensor([[2.0, 4.0, 6.0], [1.0, 0.0, 0.0]])
    assert inter_task_consistency(a, b).item() == pytest.approx(0.5, abs=1e-6)
