"""The random robustness transforms (dgnam.core.transforms): the size rule, shapes, and randomness that
comes only from the generators passed in (per image, never from the global RNG)."""

from __future__ import annotations

import pytest
import torch

from dgnam.core.transforms import (
    TRANSFORM_STREAM, Jitter, Pad, RandomRotate, at_side, gaussian_blur, gaussian_kernel1d, image_size, scales,
    standard_transforms, transform_generators,
)


def images(n: int = 2, h: int = 20, w: int = 28) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(11))


def test_pixel_amounts_are_stated_at_224_px_and_scaled_to_the_image():
    assert [at_side(8, 128), at_side(4, 32), at_side(0, 32), at_side(12, 128, least=0), at_side(16, None)] == [5, 1, 0, 7, 16]
    assert at_side(16, 224) == 16 and at_side(16, 448) == 32
    pad, jitter, _, _, fine = standard_transforms(12, 8, side=32).transforms  # 12 -> 1.7, 8 -> 1.1, 4 -> 0.6 (at least 1)
    assert (pad.width, jitter.max_shift, fine.max_shift) == (2, 1, 1)
    pad, jitter, _, _, fine = standard_transforms(12, 8).transforms  # no side: the amounts as given
    assert (pad.width, jitter.max_shift, fine.max_shift) == (12, 8, 4)


def test_image_size_is_the_given_size_or_the_nets():
    assert image_size(None, (32, 40)) == (32, 40)
    assert image_size(24, (32, 40)) == (24, 24)
    assert image_size((20, 28), (32, 40)) == (20, 28)
    assert scales(0.9, 1.1, 11) == (0.9, 0.92, 0.94, 0.96, 0.98, 1.0, 1.02, 1.04, 1.06, 1.08, 1.1) and scales(1.5, 2.0, 1) == (1.5,)


def test_standard_transforms_grow_by_the_pad_only_and_draw_per_image():
    x = images()
    t = standard_transforms(pad=3, jitter=2, fine_jitter=1)
    out = t(x, transform_generators([5, 9]))
    assert out.shape == (2, 3, 20 + 6, 28 + 6)  # non-square kept, grown by 2 * pad on each axis
    alone = t(x[1:], transform_generators([9]))
    assert torch.equal(out[1:], alone)  # image 1's transforms come from its own seed, whatever the batch
    swapped = t(x.flip(0), transform_generators([9, 5]))
    assert torch.equal(swapped, out.flip(0))


def test_transform_streams_are_offset_from_the_seeds_and_leave_the_global_rng_alone():
    gens = transform_generators([0, 7])
    assert [g.initial_seed() for g in gens] == [TRANSFORM_STREAM, 7 + TRANSFORM_STREAM]
    t, state = standard_transforms(pad=2, jitter=2), torch.random.get_rng_state()
    t(images(), transform_generators([0, 7]))
    one = t(images(), torch.Generator().manual_seed(3))  # one generator for the whole batch, drawn in batch order
    assert torch.equal(torch.random.get_rng_state(), state)  # randomness only from the generators passed in
    assert torch.equal(t(images(), torch.Generator().manual_seed(3)), one)


def test_half_turn_of_a_non_square_image_is_an_exact_flip():
    x = images(1, 12, 18)
    turned = RandomRotate((180,))(x, torch.Generator().manual_seed(0))
    assert torch.allclose(turned, x.flip(-2, -1), atol=1e-5)  # the rotation is about the centre, in pixel units


def test_amounts_too_large_for_the_image_are_refused_with_their_size():
    with pytest.raises(ValueError, match="jitter of 12 px needs images larger than 12 px, got 12x30"):
        Jitter(12)(images(1, 12, 30), torch.Generator())
    with pytest.raises(ValueError, match="too wide"):
        gaussian_blur(images(1, 6, 6), 2.0)  # radius 8
    k = gaussian_kernel1d(1.5)
    assert k.numel() == 2 * 6 + 1 and float(k.sum()) == pytest.approx(1.0) and int(k.argmax()) == 6
    assert torch.equal(Pad(0)(images(), torch.Generator()), images())


def test_harsh_transforms_flip_shift_and_scale_more_than_standard():
    from dgnam.core.transforms import RandomFlip, TRANSFORM_SETS, harsh_transforms

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    flipped = [RandomFlip()(x, torch.Generator().manual_seed(s)) for s in range(8)]
    # each image is either itself or its mirror, and both happen
    kinds = {(bool(torch.equal(f[i], x[i])), bool(torch.equal(f[i], x[i].flip(-1)))) for f in flipped for i in range(2)}
    assert kinds == {(True, False), (False, True)}
    harsh = harsh_transforms(side=128)
    jitters = [t.max_shift for t in harsh.transforms if type(t).__name__ == "Jitter"]
    assert jitters == [15, 2]  # 12 % of 128 px, then lucid's fine jitter of 4 px at 224 scaled to 128
    scale = next(t for t in harsh.transforms if type(t).__name__ == "RandomScale")
    assert min(scale.scales) == 0.75 and max(scale.scales) == 1.15
    assert set(TRANSFORM_SETS) == {"standard", "harsh"}
    img = torch.rand(3, 3, 128, 128)
    out = harsh(img, torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 142, 142)  # lucid's pad of 12 px at 224, 7 px at 128, on each side
