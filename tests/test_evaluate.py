"""Quality measures (dgnam.eval.metrics) on inputs whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import dgnam
from dgnam.eval.metrics import diversity, frechet_distance, judge_topk, mean_saturation, natural_max_activations, relative_activation, spectrum_slope
from dgnam.core.hooks import capture
from dgnam.core.units import Unit

from conftest import require


def power_law_noise(n: int, size: int, alpha: float, seed: int = 0) -> np.ndarray:
    """Grey (n, size, size, 3) images in [0, 1] with amplitude ~ 1/f**alpha, i.e. power ~ 1/f**(2 alpha)."""
    rng = np.random.default_rng(seed)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    amp = np.zeros_like(f)
    amp[f > 0] = f[f > 0] ** -alpha
    x = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, size, size))) * amp).real
    lo, hi = x.min((1, 2), keepdims=True), x.max((1, 2), keepdims=True)
    return np.repeat(((x - lo) / (hi - lo))[..., None], 3, -1)


@pytest.mark.parametrize("alpha", [1.0, 1.5])
def test_spectrum_slope_recovers_power_law(alpha):
    images = power_law_noise(16, 128, alpha)
    slopes = spectrum_slope(images)
    assert slopes.shape == (16,)
    assert np.median(slopes) == pytest.approx(-2 * alpha, abs=0.15)
    # the same images as uint8 NHWC and as a float NCHW tensor give the same slopes
    as_uint8 = spectrum_slope((images * 255).round().astype(np.uint8))
    as_tensor = spectrum_slope(torch.from_numpy(images).permute(0, 3, 1, 2).float())
    assert np.median(as_uint8) == pytest.approx(np.median(slopes), abs=0.02)
    np.testing.assert_allclose(as_tensor, slopes, atol=1e-3)


def test_spectrum_slope_white_noise_is_flat_and_constant_is_nan():
    white = np.random.default_rng(0).random((8, 128, 128, 3))
    assert abs(np.median(spectrum_slope(white))) < 0.1
    assert np.isnan(spectrum_slope(np.full((1, 64, 64, 3), 0.5))).all()
    assert np.isnan(spectrum_slope(np.full((2, 64, 64, 3), [[[[37, 99, 201]]]], dtype=np.uint8))).all()  # 8-bit rounding
    with pytest.raises(ValueError, match="16 px"):
        spectrum_slope(np.zeros((1, 8, 8, 3)))


def test_mean_saturation_grey_red_and_mixed():
    grey = torch.full((1, 3, 8, 8), 0.4)
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 1.0
    half = red.clone()
    half[..., :4] = 0.0  # left half black (saturation 0), right half red (1)
    np.testing.assert_allclose(mean_saturation(torch.cat([grey, red, half])), [0.0, 1.0, 0.5])
    pink = np.array([[[[255, 128, 128]]]], dtype=np.uint8)  # (1, 1, 1, 3): (255 - 128) / 255
    assert mean_saturation(pink)[0] == pytest.approx(127 / 255)


class LookupNet(nn.Module):
    """Returns row ``round(10 * pixel[0, 0, 0])`` of a fixed table: known logits per image."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table)

    def forward(self, x):
        return self.table[(x[:, 0, 0, 0] * 10).round().long()]


def test_judge_topk_known_logits():
    table = torch.tensor(
        [
            [5.0, 1.0, 0.0, 0.0, 0.0, 0.0],  # label 0 -> rank 1
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 1 -> rank 5
            [1.0, 1.0, 1.0, 9.0, 1.0, 1.0],  # label 2 -> rank 2 (ties count in its favour)
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 0 -> rank 6
        ]
    )
    net = dgnam.wrap_model(LookupNet(table), dgnam.InputSpec(size=(8, 8), mean=(0, 0, 0), std=(1, 1, 1), min_size=4))
    images = torch.stack([torch.full((3, 8, 8), i / 10) for i in range(4)])
    out = judge_topk(net, images, [0, 1, 2, 0], ks=(1, 2, 5), batch_size=3)
    np.testing.assert_array_equal(out["rank"], [1, 5, 2, 6])
    np.testing.assert_array_equal(out["pred"], [0, 5, 3, 5])
    assert (out["top1"], out["top2"], out["top5"]) == (0.25, 0.5, 0.75)
    with pytest.raises(ValueError, match="labels"):
        judge_topk(net, images, [0, 1])


def test_relative_activation_math():
    rel = relative_activation(torch.tensor([2.0, 1.0, 3.0, 6.0]), np.array([4.0, 2.0, -1.0, 0.0]))
    np.testing.assert_allclose(rel[:2], [0.5, 0.5])
    assert np.isnan(rel[2:]).all()  # no meaningful ratio to a non-positive maximum
    np.testing.assert_allclose(relative_activation([1.0, 3.0], 2.0), [0.5, 1.5])


def test_natural_max_activations_matches_direct_max(tiny_target):
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (7, 20, 20, 3), dtype=np.uint8)  # resized to 32 px by the target
    units = [Unit("logits", 2), Unit("logits", 0), Unit("act2", 3), Unit("act2", 1, "mean")]
    top = natural_max_activations(tiny_target, units, pool, batch_size=3)
    x = torch.from_numpy(pool).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad(), capture(tiny_target.model, ["act2"]) as acts:
        logits = tiny_target(x)
    maps = acts["act2"]
    h, w = maps.shape[-2:]
    expected = [logits[:, 2].max(), logits[:, 0].max(), maps[:, 3, h // 2, w // 2].max(), maps[:, 1].mean((1, 2)).max()]
    np.testing.assert_allclose(top, [float(e) for e in expected], rtol=1e-5, atol=1e-6)


def test_diversity():
    same = np.tile(np.array([[1.0, 2.0, 3.0]]), (4, 1))
    assert diversity({"a": same, "b": 2 * same}) == pytest.approx(0.0, abs=1e-12)
    orthogonal = np.eye(3)  # every pair has cosine 0
    opposite = np.array([[1.0, 0.0], [-1.0, 0.0]])  # cosine -1: distance 2
    assert diversity([orthogonal, opposite, np.ones((1, 3))]) == pytest.approx((1.0 + 2.0) / 2)  # 1-seed unit skipped
    assert np.isnan(diversity([np.ones((1, 3))]))


@pytest.mark.parametrize("method", ["eigh", "scipy"])
def test_frechet_distance(method):
    if method == "scipy":
        require("scipy", "scipy (installed with scikit-image, test extra)")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6))  # correlated features
    assert frechet_distance(a, a, method=method) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
    assert frechet_distance(a, a + shift, method=method) == pytest.approx(float(shift @ shift), abs=1e-6)
    # different covariances: the two routes give the same number, and it is symmetric
    b = rng.standard_normal((400, 6)) * 2.0
    d = frechet_distance(a, b, method=method)
    assert d == pytest.approx(frechet_distance(a, b, method="eigh"), rel=1e-6)
    assert d == pytest.approx(frechet_distance(b, a, method=method), rel=1e-6)
    # 1-d Gaussians: (mu_a - mu_b)^2 + (s_a - s_b)^2
    x = rng.standard_normal((1000, 1))
    x -= x.mean()  # mean 0, so 3x + 2 has mean 2
    assert frechet_distance(x, 3.0 * x + 2.0, method=method) == pytest.approx(4.0 + (2.0 * x.std(ddof=1)) ** 2, rel=1e-6)


def test_frechet_distance_works_without_scipy(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy", None)  # `import scipy...` now raises ImportError
    monkeypatch.setitem(sys.modules, "scipy.linalg", None)
    a = np.random.default_rng(1).standard_normal((200, 3))
    assert frechet_distance(a, a + 2.0) == pytest.approx(12.0, abs=1e-6)
    with pytest.raises(ValueError, match="method"):
        frechet_distance(a, a, method="svd")
