"""CutMix of the strong view: boxes on the embedding grid, pasted alike into images, labels and embeddings."""

from __future__ import annotations

import pytest
import torch

from hermes_monai.data import CutMix, MixBoxes
from hermes_monai.pseudo_labels import DualThresholdSelector


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_box_mask_is_the_hand_drawn_one_at_every_resolution() -> None:
    # one image mixed with box rows 1..2, cols 2..4 of a 4 x 6 grid; the other not mixed
    boxes = MixBoxes(torch.tensor([1, 0]), torch.tensor([[1, 2, 3, 5], [0, 0, 0, 0]]), grid=(4, 6))
    grid = boxes.masks((4, 6))
    expected = torch.zeros(2, 4, 6, dtype=torch.bool)
    expected[0, 1:3, 2:5] = True
    assert torch.equal(grid, expected)
    full = boxes.masks((32, 48))  # cell 8
    assert torch.equal(full[:, ::8, ::8], expected)
    assert int(full[0].sum()) == 2 * 3 * 64 and not full[1].any()
    assert boxes.mixed.tolist() == [True, False]
    with pytest.raises(ValueError, match="multiple"):
        boxes.masks((30, 48))


def test_apply_pastes_the_partner_inside_the_box_only() -> None:
    box_cells = torch.tensor([[0, 0, 2, 2], [1, 1, 3, 3], [0, 0, 0, 0]])
    boxes = MixBoxes(torch.tensor([1, 2, 0]), box_cells, grid=(3, 3))
    images = torch.stack([torch.full((1, 24, 24), float(i)) for i in range(3)])  # image i is all i
    labels = torch.arange(3)[:, None, None].expand(3, 24, 24).clone()
    embed = torch.stack([torch.full((5, 3, 3), float(i)) for i in range(3)])  # (B, D, h, w) at 1/8
    out_img, out_lab, out_emb = boxes.apply(images), boxes.apply(labels), boxes.apply(embed)
    assert out_lab.dtype == labels.dtype and out_img.shape == images.shape
    assert float(out_img[0, 0, 0, 0]) == 1.0 and float(out_img[0, 0, 20, 20]) == 0.0  # box from image 1
    assert float(out_img[1, 0, 10, 10]) == 2.0 and float(out_img[1, 0, 2, 2]) == 1.0
    assert torch.equal(out_img[2], images[2])  # not mixed
    # images, labels and embeddings take the same box: nearest-sampling the mixed labels to the grid gives the
    # mixed embeddings' values
    assert torch.equal(out_lab[:, 4::8, 4::8].float(), out_emb[:, 0])
    assert torch.equal(out_img[:, 0], out_lab.float())


def test_sample_respects_prob_area_grid_and_seed() -> None:
    cut = CutMix(prob=1.0, area=(0.1, 0.4), aspect_min=0.5, cell=8)
    mix = cut.sample(64, (96, 96), generator=_gen(0))
    assert mix.grid == (12, 12) and bool(mix.mixed.all())
    y0, x0, y1, x1 = mix.boxes.unbind(1)
    assert bool((y0 >= 0).all() and (x0 >= 0).all() and (y1 <= 12).all() and (x1 <= 12).all())
    share = ((y1 - y0) * (x1 - x0)).float() / 144
    assert float(share.min()) >= 0.05 and float(share.max()) <= 0.5  # the area range, up to cell rounding
    assert mix.partner.tolist() == [(i + 1) % 64 for i in range(64)]
    again = cut.sample(64, (96, 96), generator=_gen(0))
    assert torch.equal(mix.boxes, again.boxes)
    assert not bool(CutMix(prob=0.0).sample(16, (96, 96), generator=_gen(1)).mixed.any())
    assert not bool(cut.sample(1, (96, 96), generator=_gen(2)).mixed.any())  # no partner in a batch of one
    half = CutMix(prob=0.5).sample(4000, (96, 96), generator=_gen(3)).mixed.float().mean()
    assert 0.45 < float(half) < 0.55
    with pytest.raises(ValueError, match="cell"):
        cut.sample(2, (100, 96))
    with pytest.raises(ValueError, match="area"):
        CutMix(area=(0.5, 0.2))


def test_trainer_mixes_pixel_targets_and_drops_mixed_images_from_image_level_terms() -> None:
    from tests.test_engine import _trainer, _unlabeled

    trainer = _trainer(_unlabeled(1), epoch_length=1, cutmix=CutMix(prob=1.0, area=(0.25, 0.25)))
    u_s = torch.stack([torch.full((1, 32, 32), 0.2), torch.full((1, 32, 32), 0.8)])
    seg_probs = torch.zeros(2, 2, 32, 32)
    seg_probs[0, 0], seg_probs[1, 1] = 1.0, 1.0  # image 0 all background, image 1 all lesion
    sel_pix = DualThresholdSelector(2)(seg_probs, 1.0)
    sel_img = DualThresholdSelector(2)(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 1.0)
    teacher = {"seg_embed": torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])}
    mixed, teacher, sel_img, sel_pix = trainer._cutmix(u_s, teacher, sel_img, sel_pix, _gen(0))
    box = mixed[0, 0] == 0.8  # where image 0 took image 1's pixels
    assert 0 < int(box.sum()) < 32 * 32
    assert torch.equal(sel_pix.pseudo_label[0] == 1, box)  # its pseudo-labels took the same box
    assert torch.equal(teacher["seg_embed"][0, 0] == 1, box[4::8, 4::8])  # and its teacher embedding
    assert not bool(sel_img.mask.any())  # both images mixed: no image-level pseudo-label left
