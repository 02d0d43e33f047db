import pytest
import torch

from dgnam import DGNAMConfig, Unit, dgn_am
from dgnam.methods.dgn_am import dgn_am_step
from dgnam.run import make_jobs, visualize

from conftest import hook_count

UNITS = [Unit("logits", 1), Unit("conv2", 3), Unit("act1", 2, "mean")]


def test_step_is_the_papers_update(tiny_generator):
    code = torch.tensor([[0.5, 1.0, 1.9, 0.0, 0.1, 0.2, 0.3, 0.4]])
    grad = torch.tensor([[1.0, -2.0, 4.0, -1.0, 0.0, 0.0, 0.0, 1.0]])  # mean |g| = 1.125
    new = dgn_am_step(code, grad, lr=0.9, decay=0.99, bounds=(tiny_generator.lower, tiny_generator.upper))
    expected = (code + 0.9 * grad / 1.125).clamp(0.0, 2.0) * 0.99
    assert torch.allclose(new, expected)
    # the mean absolute change before clipping is lr, per batch element
    unclipped = dgn_am_step(code.repeat(2, 1), torch.cat([grad, 10 * grad]), lr=0.5, decay=1.0, bounds=None)
    assert torch.allclose((unclipped - code).abs().mean(1), torch.tensor([0.5, 0.5]))


def whitened_prior(mean: float, std: float):
    """A tiny trained-style prior whose 6 code units all have the given mean and std."""
    from dgnam.generators.prior import PriorConfig, PriorGenerator

    torch.manual_seed(0)
    gen = PriorGenerator(PriorConfig(code_shape=(6,), output_size=16, fc_width=16, channels=(16, 8, 8))).eval()
    gen.set_code_stats(torch.full((6,), mean), torch.full((6,), std), torch.full((6,), mean - 10 * std))
    return gen


def test_steps_are_in_units_of_the_codes_std_and_decay_towards_its_mean(tiny_target):
    gen = whitened_prior(mean=5.0, std=0.1)
    unit = [Unit("logits", 1)]
    start = gen.clip(gen.random_code([0]))

    def final_code(**changes):
        cfg = DGNAMConfig(**{"steps": 1, "lr_start": 0.5, "lr_end": 0.5, "decay": 1.0, **changes})
        return dgn_am(tiny_target, gen, unit, [0], cfg, progress=False).codes

    # one step of lr 0.5 moves each unit by 0.5 std on average (0.05 here), not by 0.5
    assert ((final_code() - start).abs().mean() / 0.1).item() == pytest.approx(0.5, rel=1e-4)
    # the decay pulls the code towards the data mean: (start - mean) halves; in raw units it halves the code itself
    no_step = dict(lr_start=1e-9, lr_end=1e-9, decay=0.5, clip=False)
    assert torch.allclose(final_code(**no_step), 5.0 + 0.5 * (start - 5.0), atol=1e-6)
    assert torch.allclose(final_code(**no_step, whiten=False), 0.5 * start, atol=1e-6)


def test_lr_schedule_is_linear():
    cfg = DGNAMConfig(steps=200)
    assert cfg.lr_at(0) == 8.0
    assert cfg.lr_at(100) == pytest.approx((8.0 + 1e-10) / 2)
    assert cfg.lr_at(199) == pytest.approx(8.0 * 1 / 200, rel=1e-6)


@pytest.mark.parametrize("optimizer", ["paper", "adam"])
def test_activation_rises_and_code_stays_in_bounds(tiny_target, tiny_generator, optimizer):
    cfg = DGNAMConfig(steps=40, lr_start=1.0, optimizer=optimizer, adam_lr=0.1)
    r = dgn_am(tiny_target, tiny_generator, UNITS, [0, 0, 0], cfg, progress=False)
    assert r.history.shape == (3, 40)
    assert (r.final > r.history[:, 0]).all(), (r.history[:, 0], r.final)
    # better than the best of 64 random codes from the prior, for every unit
    from dgnam import run_objective, units_objective

    codes = tiny_generator.clip(tiny_generator.random_code(list(range(100, 164))))
    with torch.no_grad():
        images = tiny_generator(codes)
        random_best = torch.stack([run_objective(tiny_target, images, units_objective([u] * 64)).max() for u in UNITS])
    assert (r.final > random_best).all(), (r.final, random_best)
    assert (r.best >= r.final).all() and (r.best >= r.history.max(1).values - 1e-6).all()
    assert r.codes.min() >= 0.0 and r.codes.max() <= 2.0
    assert r.images.shape == (3, 3, 32, 32) and 0 <= r.images.min() and r.images.max() <= 1
    assert hook_count(tiny_target.model) == 0


def test_best_image_has_the_best_activation(tiny_target, tiny_generator):
    from dgnam import run_objective, units_objective

    r = dgn_am(tiny_target, tiny_generator, UNITS, [3, 4, 5], DGNAMConfig(steps=15, lr_start=3.0), progress=False)
    again = run_objective(tiny_target, r.best_images, units_objective(UNITS))
    assert torch.allclose(again, r.best, atol=1e-5)
    final = run_objective(tiny_target, r.images, units_objective(UNITS))
    assert torch.allclose(final, r.final, atol=1e-5)


def test_seeds_are_reproducible_and_independent_of_the_batch(tiny_target, tiny_generator):
    cfg = DGNAMConfig(steps=10, lr_start=1.0)
    a = dgn_am(tiny_target, tiny_generator, UNITS[:2], [7, 8], cfg, progress=False)
    b = dgn_am(tiny_target, tiny_generator, UNITS[:2], [7, 8], cfg, progress=False)
    c = dgn_am(tiny_target, tiny_generator, UNITS[1:2], [8], cfg, progress=False)
    assert torch.equal(a.images, b.images)
    assert torch.allclose(a.images[1], c.images[0], atol=1e-6)
    d = dgn_am(tiny_target, tiny_generator, UNITS[:1], [9], cfg, progress=False)
    assert not torch.allclose(a.images[0], d.images[0])


def test_visualize_batches_units_by_seeds(tiny_target, tiny_generator):
    jobs = make_jobs(UNITS[:2], [0, 1, 2])
    assert [(j.unit.index, j.seed) for j in jobs] == [(1, 0), (1, 1), (1, 2), (3, 0), (3, 1), (3, 2)]
    whole = visualize(tiny_target, UNITS[:2], [0, 1, 2], tiny_generator, DGNAMConfig(steps=5), batch_size=4, progress=False)
    assert whole.history.shape == (6, 5) and whole.seeds == [0, 1, 2, 0, 1, 2]
    single = visualize(tiny_target, UNITS[1:2], [2], tiny_generator, DGNAMConfig(steps=5), batch_size=1, progress=False)
    assert torch.allclose(whole.images[5], single.images[0], atol=1e-6)


def test_mismatched_seeds(tiny_target, tiny_generator):
    with pytest.raises(ValueError, match="one seed per unit"):
        dgn_am(tiny_target, tiny_generator, UNITS, [0], progress=False)


def test_generator_rejects_wrong_code_shape(tiny_generator):
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        tiny_generator(torch.zeros(2, 9))


def test_batchnorm_statistics_term_in_code_space(tiny_target, tiny_generator):
    from dgnam.core.regularizers import BatchNormStatsLoss

    def bn_gap(images):
        with torch.no_grad(), BatchNormStatsLoss(tiny_target.model) as bn:
            tiny_target(images)
            return float(bn.loss())

    units, seeds = [Unit("logits", 1)] * 4, [0, 1, 2, 3]
    plain = dgn_am(tiny_target, tiny_generator, units, seeds, DGNAMConfig(steps=30, lr_start=1.0), progress=False)
    with_bn = dgn_am(tiny_target, tiny_generator, units, seeds, DGNAMConfig(steps=30, lr_start=1.0, bn_weight=1000.0), progress=False)
    assert bn_gap(with_bn.images) < 0.95 * bn_gap(plain.images)  # the tiny 8-d prior cannot go much lower
    assert hook_count(tiny_target.model) == 0


def test_transforms_ascend_through_random_views_but_track_the_plain_activation(tiny_target, tiny_generator):
    plain_cfg = DGNAMConfig(steps=20, lr_start=1.0)
    robust_cfg = DGNAMConfig(steps=20, lr_start=1.0, transforms="standard")
    plain = dgn_am(tiny_target, tiny_generator, UNITS, [0, 1, 2], plain_cfg, progress=False)
    robust = dgn_am(tiny_target, tiny_generator, UNITS, [0, 1, 2], robust_cfg, progress=False)
    # same start (the code depends only on its seed), and the history is the untransformed activation
    assert torch.allclose(plain.history[:, 0], robust.history[:, 0], atol=1e-6)
    assert not torch.allclose(plain.images, robust.images, atol=1e-3)  # the transforms changed the path
    assert (robust.final > robust.history[:, 0]).all()
    # reproducible, and a unit's transforms depend on its seed, not on its batch
    alone = dgn_am(tiny_target, tiny_generator, UNITS[2:], [2], robust_cfg, progress=False)
    assert torch.allclose(robust.images[2], alone.images[0], atol=1e-6)
    assert robust.config["transforms"] == "standard"
    with pytest.raises(ValueError, match="transforms must be"):
        DGNAMConfig(transforms="jitter")


def test_dgn_am_equals_a_hand_rolled_reference_loop(tiny_target):
    """Several steps of dgn_am against the paper's update written out here: whitened code, linearly falling
    step (lr_start != lr_end), normalized gradient, clip to the bounds, decay; every step's activation too."""
    gen = whitened_prior(mean=0.3, std=0.5)
    units, seeds = [Unit("logits", 1), Unit("logits", 3)], [0, 1]
    cfg = DGNAMConfig(steps=6, lr_start=0.8, lr_end=0.1, decay=0.97)
    result = dgn_am(tiny_target, gen, units, seeds, cfg, progress=False)

    mean, std = gen.code_mean.reshape(6), gen.code_std.reshape(6)
    lo, hi = (gen.lower - mean) / std, (gen.upper - mean) / std
    z = (torch.maximum(torch.minimum(gen.random_code(seeds), gen.upper), gen.lower) - mean) / std
    history, clipped = [], 0
    for t in range(6):
        z = z.detach().requires_grad_(True)
        logits = tiny_target(gen(mean + std * z))
        acts = torch.stack([logits[0, 1], logits[1, 3]])
        history.append(acts.detach())
        (g,) = torch.autograd.grad(acts.sum(), z)
        lr = 0.8 + (0.1 - 0.8) * t / 6
        with torch.no_grad():
            stepped = z + lr * g / g.abs().mean(1, keepdim=True)
            clipped += int(((stepped < lo) | (stepped > hi)).sum())
            z = torch.minimum(torch.maximum(stepped, lo), hi) * 0.97
    code = mean + std * z.detach()
    assert clipped > 0  # the bounds were reached: clipping is part of what is compared
    assert torch.allclose(result.codes, code, atol=1e-5)
    assert torch.allclose(result.history[:, :6], torch.stack(history, 1), atol=1e-5)
    with torch.no_grad():
        final = tiny_target(gen(code))
    assert torch.allclose(result.final, torch.stack([final[0, 1], final[1, 3]]), atol=1e-5)
    # a loop that stepped at lr_start throughout ends elsewhere: the schedule is really used
    flat = dgn_am(tiny_target, gen, units, seeds, DGNAMConfig(steps=6, lr_start=0.8, lr_end=0.8, decay=0.97), progress=False)
    assert not torch.allclose(flat.codes, code, atol=1e-3)


def test_eot_averages_the_gain_over_k_views_per_step(tiny_target):
    """eot K: each step's gradient is that of the mean gain over K views drawn in turn from the element's own transform
    RNG (the first view is the one K = 1 takes), checked against a loop written out here; K = 1 is the one-view loop."""
    from dgnam.core.transforms import standard_transforms, transform_generators

    gen = whitened_prior(mean=0.3, std=0.5)
    units, seeds = [Unit("logits", 1), Unit("logits", 3)], [0, 1]
    cfg = DGNAMConfig(steps=3, lr_start=0.8, lr_end=0.1, decay=0.97, transforms="standard", eot=3)
    result = dgn_am(tiny_target, gen, units, seeds, cfg, progress=False)

    mean, std = gen.code_mean.reshape(6), gen.code_std.reshape(6)
    lo, hi = (gen.lower - mean) / std, (gen.upper - mean) / std
    z = (torch.maximum(torch.minimum(gen.random_code(seeds), gen.upper), gen.lower) - mean) / std
    views, rngs = standard_transforms(side=16), transform_generators(seeds)
    for t in range(3):
        z = z.detach().requires_grad_(True)
        images = gen(mean + std * z)
        gains = [tiny_target(views(images, rngs))[[0, 1], [1, 3]] for _ in range(3)]
        (g,) = torch.autograd.grad(torch.stack(gains).mean(0).sum(), z)
        with torch.no_grad():
            z = torch.minimum(torch.maximum(z + (0.8 + (0.1 - 0.8) * t / 3) * g / g.abs().mean(1, keepdim=True), lo), hi) * 0.97
    assert torch.allclose(result.codes, mean + std * z.detach(), atol=1e-5)
    one = dgn_am(tiny_target, gen, units, seeds, DGNAMConfig(steps=3, lr_start=0.8, lr_end=0.1, decay=0.97, transforms="standard"), progress=False)
    assert not torch.allclose(one.codes, result.codes, atol=1e-3)  # the extra views changed the path
    assert result.config["eot"] == 3
    with pytest.raises(ValueError, match="eot 2 averages over random views"):
        DGNAMConfig(eot=2)
    with pytest.raises(ValueError, match="eot must be 1-16"):
        DGNAMConfig(eot=0, transforms="standard")


def test_cosine_schedule_falls_along_half_a_cosine():
    cfg = DGNAMConfig(steps=100, lr_start=1.0, lr_end=0.0, schedule="cosine")
    assert cfg.lr_at(0) == pytest.approx(1.0)
    assert cfg.lr_at(50) == pytest.approx(0.5)
    assert cfg.lr_at(25) == pytest.approx(0.5 * (1 + 2**-0.5))  # above the linear schedule's 0.75 early on
    assert cfg.lr_at(75) == pytest.approx(0.5 * (1 - 2**-0.5))
    with pytest.raises(ValueError, match="schedule must be one of linear, cosine"):
        DGNAMConfig(schedule="step")


def test_track_every_skips_the_plain_pass_but_not_the_path(tiny_target, tiny_generator, tmp_path):
    """track_every k scores the untransformed images only every k steps: the ascent (codes, last images) is the same
    as k = 1, the history is NaN between (None in results.json), and the best image is one of the scored steps'."""
    import json

    from dgnam.io.write import save_result

    every = dgn_am(tiny_target, tiny_generator, UNITS, [0, 1, 2], DGNAMConfig(steps=12, lr_start=1.0, transforms="standard", track_every=1),
                   progress=False)  # fmt: skip
    sparse = dgn_am(tiny_target, tiny_generator, UNITS, [0, 1, 2], DGNAMConfig(steps=12, lr_start=1.0, transforms="standard", track_every=5),
                    progress=False)  # fmt: skip
    assert torch.equal(every.codes, sparse.codes) and torch.equal(every.images, sparse.images)
    scored = [0, 5, 10]
    assert torch.equal(sparse.history[:, scored], every.history[:, scored])
    assert torch.isnan(sparse.history[:, [1, 2, 3, 4, 6, 11]]).all()
    assert set(sparse.best_step.tolist()) <= {0, 5, 10, 12}  # 12: the last image, always scored
    save_result(sparse, tmp_path / "run")
    history = json.loads((tmp_path / "run" / "results.json").read_text())["items"][0]["history"]
    assert [h is None for h in history] == [i not in scored for i in range(12)]
    with pytest.raises(ValueError, match="track_every must be at least 1"):
        DGNAMConfig(track_every=0)


def test_early_stop_ends_a_batch_whose_activation_has_plateaued(tiny_target, tiny_generator):
    from dgnam.methods.base import BestTracker

    tracker = BestTracker(2, 10)
    tracker.history[:, :6] = torch.tensor([[1.0, 2.0, 3.0, 3.01, 3.02, 3.02], [-4.0, -2.0, -1.0, -0.995, -0.99, -0.99]])
    assert tracker.plateaued(5, 3)  # both rose by less than 1 % of their magnitude over the last 3 steps
    assert not tracker.plateaued(4, 3)  # over steps 1-4 the first rose from 2 to 3.02
    assert not tracker.plateaued(2, 3)  # too early to tell
    flat = DGNAMConfig(steps=30, lr_start=1e-9, lr_end=1e-9, decay=1.0, early_stop=4)
    result = dgn_am(tiny_target, tiny_generator, UNITS, [0, 1, 2], flat, progress=False)
    assert torch.isfinite(result.history[:, :5]).all() and torch.isnan(result.history[:, 5:]).all()  # stopped after step 4
    moving = dgn_am(tiny_target, tiny_generator, UNITS, [0, 1, 2], DGNAMConfig(steps=30, lr_start=1.0, early_stop=25), progress=False)
    assert torch.isfinite(moving.history).all()  # still rising: every step ran


def test_bf16_precision_runs_the_nets_in_bfloat16_and_returns_fp32(tiny_target, tiny_generator):
    from dgnam.infra.hardware import cpu_has_fast_bf16, resolve_precision

    cfg = dict(steps=8, lr_start=1.0, transforms="standard")
    fp32 = dgn_am(tiny_target, tiny_generator, UNITS, [0, 1, 2], DGNAMConfig(**cfg), progress=False)
    bf16 = dgn_am(tiny_target, tiny_generator, UNITS, [0, 1, 2], DGNAMConfig(**cfg, precision="bf16"), progress=False)
    assert bf16.images.dtype == bf16.best_images.dtype == bf16.codes.dtype == torch.float32
    assert not torch.equal(fp32.codes, bf16.codes)  # the ascent ran in bf16 ...
    assert (bf16.history[:, 0] - fp32.history[:, 0]).abs().max() < 0.05 * fp32.history[:, 0].abs().max()  # ... close to fp32
    assert all(p.is_contiguous() for p in tiny_generator.parameters())  # the generator's layout is restored
    assert resolve_precision("auto") == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="precision must be"):
        DGNAMConfig(precision="fp16")
