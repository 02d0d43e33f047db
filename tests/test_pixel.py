"""Pixel-space baselines: parameterizations, transforms, regularizers and the four methods, on a tiny net."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import dgnam
from dgnam.core.objectives import run_objective, units_objective
from dgnam.core.param import FourierImage, PixelImage, color_correlation_normalized
from dgnam.methods.pixel import METHODS, PixelConfig, pixel_am, yosinski_regularize
from dgnam.core.regularizers import BatchNormStatsLoss, l2, total_variation
from dgnam.core.transforms import (
    Compose, GaussianBlur, Jitter, Pad, RandomRotate, RandomScale, gaussian_blur, standard_transforms,
)


class BNNet(nn.Module):
    """Two conv + BatchNorm blocks and a linear classifier."""

    def __init__(self, classes: int = 6):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(12)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(self.pool(x))


def smooth_images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def make_bn_target() -> dgnam.Target:
    """A BNNet whose running statistics come from smooth random images (like a trained net's)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BNNet()
    with torch.no_grad():
        model.fc.weight.mul_(10.0)  # logits of a few units, like a trained net's, not of a few tenths
    target = dgnam.wrap_model(model, dgnam.InputSpec(size=(32, 32), min_size=8), name="bnnet")
    model.train()
    for bn in (model.bn1, model.bn2):
        bn.momentum = None  # cumulative average
    with torch.no_grad():
        for i in range(8):
            model(target.preprocess(smooth_images(16, 100 + i)))
    model.eval()
    return target


@pytest.fixture(scope="module")
def bn_target():
    return make_bn_target()


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# Small transforms for 32 px images, and few steps: each run takes well under a second. The pixel amounts are stated
# for 224 px and scaled to the image (dgnam.core.transforms.at_side): the defaults give pad 2, jitter 2 and 1 here,
# yosinski's 14 px jitter 2 px.
SMALL = dict(angle=5)
CONFIGS = {
    "pixel": dict(steps=30, lr=0.02),
    "yosinski": dict(steps=30, lr=0.03, jitter=14, norm_pct=10, contrib_pct=10),
    "fourier": dict(steps=30, lr=0.2, **SMALL),
    "deepinversion": dict(steps=30, lr=0.2, **{**SMALL, "pad": 0}),
    "maco": dict(steps=30, **SMALL),
}
UNITS = [dgnam.Unit("fc", 0), dgnam.Unit("fc", 4), dgnam.Unit("conv2", 1, "mean")]


def run(target, method, seeds=(0, 1, 2), units=UNITS, **changes):
    cfg = PixelConfig(method=method, **{**CONFIGS[method], **changes})
    return pixel_am(target, list(units)[: len(seeds)], list(seeds), cfg, progress=False)


# --- the methods ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_method_raises_the_objective(bn_target, method):
    r = run(bn_target, method)
    start, final = r.history[:, 0], r.final
    assert r.history.shape == (3, 30)
    assert (final - start > 0.5).all(), (method, start, final)
    assert (final > start + 0.5 * (r.best - start)).all()  # the last image keeps most of the gain
    assert r.images.shape == (3, 3, 32, 32) and r.best_images.shape == (3, 3, 32, 32)
    assert r.images.min() >= 0.0 and r.images.max() <= 1.0
    assert r.best_images.min() >= 0.0 and r.best_images.max() <= 1.0
    # `final` is the activation of the returned images without random transforms
    again = run_objective(bn_target, r.images, units_objective(UNITS))
    assert torch.allclose(again, r.final, atol=1e-5)
    assert torch.allclose(run_objective(bn_target, r.best_images, units_objective(UNITS)), r.best, atol=1e-5)
    assert r.method == method and r.config["method"] == method
    assert r.config["size"] == (32, 32) and r.config["steps"] == 30 and r.config["lr"] is not None
    assert r.codes is None and r.seeds == [0, 1, 2]
    assert hook_count(bn_target.model) == 0


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_image_other_seed_other_image(bn_target, method):
    a = run(bn_target, method, seeds=(0, 1), steps=8)
    b = run(bn_target, method, seeds=(0, 1), steps=8)
    assert torch.equal(a.images, b.images) and torch.equal(a.history, b.history)
    c = run(bn_target, method, seeds=(0, 2), steps=8)
    assert (c.images[1] - a.images[1]).abs().mean() > 1e-3
    if method != "deepinversion":  # elements are independent: an image depends only on its own seed
        assert torch.allclose(c.images[0], a.images[0], atol=1e-6)


def test_deepinversion_couples_the_batch(bn_target):
    a = run(bn_target, "deepinversion", seeds=(0, 1), steps=8)
    c = run(bn_target, "deepinversion", seeds=(0, 2), steps=8)
    assert (c.images[0] - a.images[0]).abs().mean() > 1e-5  # the batch statistics changed


def test_deepinversion_needs_batchnorm():
    net = dgnam.wrap_model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1)),
                           dgnam.InputSpec(size=(16, 16), min_size=8))
    with pytest.raises(ValueError, match="no BatchNorm2d.*fourier"):
        pixel_am(net, [dgnam.Unit("output", 0)], [0], PixelConfig(method="deepinversion", steps=2, **SMALL), progress=False)


def test_bn_loss_falls_under_deepinversion(bn_target):
    """The BatchNorm prior pulls the batch statistics towards the running ones (vs. plain Fourier)."""
    units = [dgnam.Unit("fc", i) for i in range(4)]
    seeds = list(range(4))

    def gap(method):
        extra = dict(bn=0.5, tv=0.0, l2=0.0) if method == "deepinversion" else {}  # the BatchNorm term alone
        r = run(bn_target, method, seeds=seeds, units=units, steps=25, **extra)
        with BatchNormStatsLoss(bn_target.model) as bn, torch.no_grad():
            bn_target(r.images)
            return bn.loss().item()

    assert gap("deepinversion") < 0.8 * gap("fourier")


def test_config_defaults_per_method():
    assert PixelConfig().method == "fourier" and PixelConfig().steps == 200 and PixelConfig().size is None
    yosinski = PixelConfig(method="yosinski")
    assert yosinski.decay is None and yosinski.resolved().decay == pytest.approx(0.9999)  # given values only, until resolved
    assert yosinski.resolved().blur_every == 4 and yosinski.resolved().blur_sigma == 1.0
    assert PixelConfig(method="pixel").resolved().bn is None and PixelConfig(method="deepinversion").resolved().bn > 0
    assert PixelConfig(method="fourier", lr=0.2).resolved().lr == 0.2
    # the trap that was: replace() of the method takes the new method's defaults, not the old one's
    assert replace(yosinski, method="fourier").resolved() == PixelConfig(method="fourier").resolved()
    with pytest.raises(ValueError, match="pixel, yosinski, fourier, deepinversion"):
        PixelConfig(method="lucid")
    with pytest.raises(ValueError, match="seed per unit"):
        pixel_am(None, UNITS, [0], PixelConfig(method="pixel"))


def test_pixel_step_is_the_normalized_update(bn_target):
    """One 'pixel' step moves the mean-subtracted image by lr * g / mean|g|, then decays it."""
    cfg = PixelConfig(method="pixel", steps=1, lr=0.01, decay=0.9)
    r = pixel_am(bn_target, UNITS[:1], [5], cfg, progress=False)
    p = PixelImage([5], (32, 32))
    images = p.pixels.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(run_objective(bn_target, images, units_objective(UNITS[:1])).sum(), images)
    mean = p.mean
    expected = ((images.detach() - mean + 0.01 * g / g.abs().mean()) * 0.9 + mean).clamp(0, 1)
    assert torch.allclose(r.images, expected, atol=1e-6)


def test_yosinski_clipping_zeroes_small_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 20, 20, generator=g)
    grad = torch.randn(2, 3, 20, 20, generator=g)
    cfg = PixelConfig(method="yosinski", decay=1.0, blur_every=0, norm_pct=50, contrib_pct=0)
    out = yosinski_regularize(x, grad, 1, cfg)
    zero = (out == 0).all(1)
    assert zero.flatten(1).float().mean(1).tolist() == pytest.approx([0.5, 0.5], abs=0.01)
    norms = x.norm(dim=1)
    for i in range(2):  # the smallest half of each image
        assert norms[i][zero[i]].max() <= norms[i][~zero[i]].min()
    cfg = PixelConfig(method="yosinski", decay=1.0, blur_every=0, norm_pct=0, contrib_pct=90)
    out = yosinski_regularize(x, grad, 1, cfg)
    assert (out == 0).all(1).float().mean().item() == pytest.approx(0.9, abs=0.01)
    # decay and blur: blurring happens only on multiples of blur_every
    cfg = PixelConfig(method="yosinski", decay=0.5, blur_every=4, blur_sigma=1.0, norm_pct=0, contrib_pct=0)
    assert torch.allclose(yosinski_regularize(x, grad, 3, cfg), 0.5 * x)
    assert torch.allclose(yosinski_regularize(x, grad, 4, cfg), gaussian_blur(0.5 * x, 1.0))


# --- parameterizations ---------------------------------------------------------------------------


def radial_power(images: torch.Tensor) -> tuple[float, float]:
    """Mean spectral power of (N, C, H, W) images in a low and a high frequency band."""
    spec = torch.fft.fft2(images - images.mean(dim=(-2, -1), keepdim=True)).abs().pow(2).mean(dim=(0, 1))
    h, w = spec.shape
    f = (torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.fftfreq(w)[None, :] ** 2).sqrt()
    low = spec[(f > 0) & (f < 0.1)].mean().item()
    high = spec[f > 0.35].mean().item()
    return low, high


def test_fourier_image_has_a_falling_spectrum():
    four = FourierImage(list(range(4)), (64, 64))
    with torch.no_grad():
        low, high = radial_power(four.linear_image())
        img = four()
    assert low > 50 * high  # ~1/f^2 power
    plow, phigh = radial_power(PixelImage(list(range(4)), (64, 64)).pixels.detach())
    assert 0.5 < plow / phigh < 2  # white noise: flat
    assert img.shape == (4, 3, 64, 64) and 0 < img.min() and img.max() < 1
    assert abs(img.mean().item() - 0.5) < 0.02  # a near-grey start (sd 0.01)


def test_fourier_image_colours_are_correlated():
    """Decorrelated parameters, correlated RGB: the channels of the output move together."""
    four = FourierImage(list(range(4)), (48, 48), sd=0.05)
    with torch.no_grad():
        x = four.linear_image().permute(1, 0, 2, 3).reshape(3, -1)
        flat = FourierImage(list(range(4)), (48, 48), sd=0.05, decorrelate=False).linear_image()
    corr = torch.corrcoef(x)
    assert corr[0, 1] > 0.5 and corr[1, 2] > 0.5
    c = color_correlation_normalized()
    assert c.norm(dim=0).max().item() == pytest.approx(1.0)
    assert torch.allclose(x.reshape(3, 4, 48, 48).permute(1, 0, 2, 3), torch.einsum("ij,njhw->nihw", c, flat), atol=1e-6)


def test_initial_image_depends_only_on_its_seed():
    for cls in (PixelImage, FourierImage):
        a, b = cls([7, 3], (16, 16)), cls([3], (16, 16))
        with torch.no_grad():
            assert torch.equal(a()[1], b()[0])
            assert not torch.equal(a()[0], a()[1])


def test_fourier_image_odd_sizes():
    four = FourierImage([0], (15, 21))
    assert four().shape == (1, 3, 15, 21)


# --- transforms ----------------------------------------------------------------------------------


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


RANDOM = [Jitter(3), RandomScale((0.8, 1.0, 1.25)), RandomRotate(range(-20, 21)), GaussianBlur(1.0),
          standard_transforms(0, 3, (0.9, 1.1), 10, 2)]


@pytest.mark.parametrize("t", RANDOM, ids=lambda t: type(t).__name__)
def test_transforms_keep_shape_and_are_deterministic(t):
    x = smooth_images(3, 1, 24).requires_grad_(True)
    a, b = t(x, gen(0)), t(x, gen(0))
    assert a.shape == x.shape and torch.equal(a, b)
    a.sum().backward()  # differentiable
    assert x.grad is not None and x.grad.abs().sum() > 0
    if not isinstance(t, GaussianBlur):
        draws = [t(x.detach(), gen(s)) for s in range(1, 6)]
        assert any(not torch.equal(a.detach(), d) for d in draws)


def test_per_image_generators_make_images_independent():
    t = standard_transforms(2, 3, (0.9, 1.1), 10, 2)
    x = smooth_images(3, 2, 24)
    a = t(x, [gen(0), gen(1), gen(2)])
    b = t(x[1:2], [gen(1)])
    assert a.shape == (3, 3, 28, 28) and torch.allclose(a[1:2], b)
    with pytest.raises(ValueError, match="one per image"):
        t(x, [gen(0)])


def test_pad_jitter_scale_rotate_values():
    x = smooth_images(2, 3, 20)
    padded = Pad(3)(x, gen())
    assert padded.shape == (2, 3, 26, 26) and (padded[..., :3, :] == 0.5).all()
    assert torch.equal(padded[..., 3:-3, 3:-3], x)
    # jitter is an integer translation within the range
    out = Jitter(2)(x, gen(4))
    for i in range(2):
        assert any(torch.equal(out[i, :, 2:-2, 2:-2], x[i, :, 2 - dy : 18 - dy, 2 - dx : 18 - dx])
                   for dy in range(-2, 3) for dx in range(-2, 3))
    assert torch.allclose(RandomScale((1.0,))(x, gen()), x, atol=1e-6)
    assert torch.allclose(RandomRotate((0,))(x, gen()), x, atol=1e-6)
    rot = RandomRotate((90,))(x, gen())
    assert torch.allclose(rot, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5) or torch.allclose(rot, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5)
    zoom = RandomScale((2.0,))(x, gen())  # the centre, enlarged: smoother than the input
    assert total_variation(zoom).mean() < total_variation(x).mean()
    assert Compose([Pad(1), Jitter(1)])(x, gen()).shape == (2, 3, 22, 22)


def test_gaussian_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    x = torch.rand(1, 2, 20, 24, generator=gen(5))
    ours = gaussian_blur(x, 1.0)[0].numpy()
    ref = np.stack([gaussian_filter(c, 1.0, mode="mirror") for c in x[0].numpy()])
    assert np.allclose(ours, ref, atol=1e-5)
    const = torch.full((1, 3, 10, 10), 0.3)
    assert torch.allclose(gaussian_blur(const, 2.0), const)


# --- regularizers --------------------------------------------------------------------------------


def match_running_stats(model: nn.Module, inputs: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to the (biased) statistics of ``inputs``' batch."""
    for bn in [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]:
        seen = {}
        handle = bn.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0]))
        try:
            with torch.no_grad():
                model(inputs)
        finally:
            handle.remove()
        bn.running_mean.copy_(seen["x"].mean(dim=(0, 2, 3)))
        bn.running_var.copy_(seen["x"].var(dim=(0, 2, 3), unbiased=False))


def test_bn_stats_loss_is_zero_on_matching_batch_and_positive_otherwise():
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = BNNet().eval()
    x = smooth_images(8, 7)
    match_running_stats(model, x)
    with BatchNormStatsLoss(model) as bn:
        assert hook_count(model) == 2
        model(x)
        assert bn.loss().item() < 1e-5
        model(x * 0.5 + 0.3)  # other statistics
        per_layer = bn.per_layer()
        assert (per_layer > 1e-2).all() and bn.loss().item() == pytest.approx(per_layer.sum().item())
        model(x[:4])  # half the batch: close, but not equal
        assert 0 < bn.loss().item()
    assert hook_count(model) == 0
    with BatchNormStatsLoss(model, first_weight=10.0) as bn:
        model(x * 0.5 + 0.3)
        assert bn.loss().item() == pytest.approx((per_layer * torch.tensor([10.0, 1.0])).sum().item(), rel=1e-5)
    # differentiable in the input, and the hooks are gone after an error too
    y = (x * 0.5 + 0.3).requires_grad_(True)
    with pytest.raises(RuntimeError, match="boom"):
        with BatchNormStatsLoss(model) as bn:
            model(y)
            bn.loss().backward()
            assert y.grad.abs().sum() > 0
            raise RuntimeError("boom")
    assert hook_count(model) == 0


def test_bn_stats_loss_needs_a_forward_pass():
    model = BNNet()
    with BatchNormStatsLoss(model) as bn, pytest.raises(RuntimeError, match="forward pass"):
        bn.loss()


def test_tv_and_l2():
    const = torch.full((2, 3, 8, 8), 0.5)
    assert torch.equal(total_variation(const), torch.zeros(2)) and torch.equal(l2(const), torch.zeros(2))
    stripes = torch.zeros(1, 1, 4, 4)
    stripes[..., ::2] = 1.0  # vertical stripes: every horizontal and diagonal neighbour differs
    assert total_variation(stripes).item() == pytest.approx(3.0)
    assert l2(torch.ones(1, 3, 4, 4)).item() == pytest.approx(0.5)
    assert l2(torch.ones(1, 3, 4, 4), center=(1.0, 1.0, 0.0)).item() == pytest.approx(1 / 3 ** 0.5)


def test_deepinversion_on_a_hidden_unit_matches_the_batchnorms_before_it(bn_target):
    """The pass stops after the unit's layer; the BatchNorm term covers the layers it reached."""
    unit = [dgnam.Unit("conv2", 2), dgnam.Unit("conv2", 5)]
    r = pixel_am(bn_target, unit, [0, 1], PixelConfig(method="deepinversion", steps=20, lr=0.2), progress=False)  # CONFIGS' step
    assert (r.final > r.history[:, 0]).all()  # runs, and ascends (the image terms weigh a lot on this tiny net)
    with BatchNormStatsLoss(bn_target.model) as bn:
        run_objective(bn_target, r.images, units_objective(unit))
        assert bn.per_layer().shape == (1,)  # bn1 only: bn2 comes after the stop at conv2
