"""The image parameterizations (dgnam.core.param): shapes, ranges, starts, and gradients reaching the parameter."""

from __future__ import annotations

import pytest
import torch

from dgnam.core.param import IMAGENET_MEAN, CodeParam, FourierImage, MacoImage, PixelImage, channel_mean, initial_code, resize_spectrum


def one_over_f(s: int = 16) -> torch.Tensor:
    """A (3, s, s // 2 + 1) 1/f amplitude spectrum (the shape of a stored MACO spectrum)."""
    fy = torch.fft.fftfreq(s)[:, None].abs()
    fx = torch.fft.rfftfreq(s)[None, :]
    return (1.0 / (fx**2 + fy**2).sqrt().clamp_min(1.0 / s)).expand(3, -1, -1).clone()


PARAMS = {
    "pixel": lambda seeds, size: PixelImage(seeds, size, init_std=0.2),
    "fourier": lambda seeds, size: FourierImage(seeds, size, sd=0.05),
    "maco": lambda seeds, size: MacoImage(seeds, size, one_over_f()),
}


@pytest.mark.parametrize("name", PARAMS)
def test_images_have_the_asked_shape_stay_in_range_and_pass_gradients(name):
    param = PARAMS[name]([4, 9], (12, 20))
    x = param()
    values = x.detach()
    assert x.shape == (2, 3, 12, 20) and x.dtype == torch.float32
    assert float(values.min()) >= 0 and float(values.max()) <= 1 and float(values.std()) > 0.01
    (weights,) = [p for p in param.parameters()]  # one optimized tensor, buffers apart
    (x * torch.linspace(-1, 1, 20)).sum().backward()
    assert weights.grad is not None and float(weights.grad.abs().sum()) > 0
    alone = PARAMS[name]([9], (12, 20))().detach()[0]
    assert torch.allclose(alone, values[1], atol=1e-6) and not torch.allclose(values[0], values[1], atol=1e-2)  # by its seed alone


def test_pixel_image_starts_at_the_mean_colour_and_takes_a_start_image():
    flat = PixelImage([0, 1], (4, 6), init_std=0.0)()
    assert torch.allclose(flat, torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(2, 3, 4, 6))
    grey = PixelImage([0], 5, init_std=0.0, channels=1)()
    assert grey.shape == (1, 1, 5, 5) and torch.allclose(grey, torch.full_like(grey, sum(IMAGENET_MEAN) / 3))
    assert torch.allclose(channel_mean(IMAGENET_MEAN, 2), torch.full((2,), sum(IMAGENET_MEAN) / 3))
    start = torch.rand(2, 3, 4, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(PixelImage([0, 1], (4, 6), init=start)(), start)
    with pytest.raises(ValueError, match=r"expected \(2, 3, 4, 6\)"):
        PixelImage([0, 1], (4, 6), init=start[:1])
    param = PixelImage([0], 3)
    with torch.no_grad():
        param.pixels.fill_(1.7)
    param.clamp_()
    assert float(param.pixels.detach().max()) == 1.0


def test_fourier_image_inverts_its_start_image():
    start = 0.1 + 0.8 * torch.rand(2, 3, 10, 14, generator=torch.Generator().manual_seed(2))
    for channels in (3, 1):
        init = start[:, :channels]
        assert torch.allclose(FourierImage([0, 1], (10, 14), channels=channels, init=init)(), init, atol=1e-5)
    assert FourierImage([0], 8, channels=1).decorrelate is False  # colour mixing only for RGB


def test_maco_image_keeps_the_magnitude_and_standardizes_the_image():
    magnitude = one_over_f(16)
    param = MacoImage([0, 1], (12, 20), magnitude)
    assert [n for n, _ in param.named_parameters()] == ["phase"] and param.phase.shape == (2, 3, 12, 11)
    assert torch.allclose(param.magnitude[0], resize_spectrum(magnitude, (12, 20)))
    assert resize_spectrum(magnitude, (16, 16)).shape == (3, 16, 9)
    assert torch.allclose(resize_spectrum(magnitude, (16, 16))[:, 1:, 1:], magnitude[:, 1:, 1:], rtol=1e-4)  # same size: same spectrum (DC apart)
    linear = param.linear_image().detach()
    assert torch.allclose(linear.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(linear.std(dim=(1, 2, 3), unbiased=False), torch.ones(2), atol=1e-3)


class _Codes:
    """What CodeParam reads of a generator: codes of shape (4,) in [-1, 2], one RNG per seed."""

    code_shape = (4,)
    lower, upper = torch.full((4,), -1.0), torch.full((4,), 2.0)

    def random_code(self, seeds, std=1.0):
        return torch.stack([torch.randn(4, generator=torch.Generator().manual_seed(s)) * std for s in seeds])

    def clip(self, code):
        return torch.maximum(torch.minimum(code, self.upper), self.lower)


def test_code_param_starts_from_its_seeds_whitens_and_clips():
    gen = _Codes()
    center, scale = torch.tensor([0.0, 1.0, 0.5, 0.0]), torch.tensor([1.0, 2.0, 0.5, 4.0])
    param = CodeParam([3, 7], gen, init_std=3.0, center=center, scale=scale)
    start = initial_code(gen, [3, 7], 3.0)
    assert torch.equal(start, gen.clip(gen.random_code([3, 7], 3.0))) and float(start.abs().max()) > 1  # clipped, not all inside
    assert [n for n, _ in param.named_parameters()] == ["z"] and torch.equal(param.z.detach(), (start - center) / scale)
    assert torch.allclose(param().detach(), start) and torch.equal(CodeParam([7], gen, 3.0, center=center, scale=scale).z.detach()[0], param.z.detach()[1])
    with torch.no_grad():
        param.z.fill_(100.0)
    param.clamp_()
    assert torch.allclose(param().detach(), gen.upper.expand(2, 4))  # the bounds hold in code units
    free = CodeParam([3], gen, init_std=3.0, clip=False, init=torch.full((1, 4), 9.0))
    assert free.bounds is None and torch.equal(free().detach(), torch.full((1, 4), 9.0))  # raw units, start kept, unbounded
    free.clamp_()
    assert torch.equal(free.z.detach(), torch.full((1, 4), 9.0))
