"""Image parameterizations for pixel-space activation maximization: how the optimized image is made.

Each is a small ``nn.Module`` holding the optimized tensor; calling it returns (N, C, H, W) images
in [0, 1] (C = 3, RGB, unless ``channels`` says otherwise, for 1- and N-channel nets). Batch element ``i`` is initialized from its own ``torch.Generator().manual_seed(seeds[i])``,
so an image depends only on its seed, never on the rest of the batch or on the global RNG.

- :class:`PixelImage`: the pixels themselves (Simonyan et al. 2014; Yosinski et al. 2015).
- :class:`FourierImage`: lucid's decorrelated parameterization (Olah et al. 2017, "Feature
  Visualization"): the real-FFT spectrum, scaled by 1/frequency so that gradient steps are
  whitened, then a linear colour decorrelation and a sigmoid.
- :class:`MacoImage`: MACO's (Fel et al. 2023): the Fourier amplitude fixed to that of photographs
  (:func:`resize_spectrum` of a stored spectrum), the phase optimized (:mod:`dgnam.methods.maco`).
- :class:`CodeParam`: DGN-AM's (Nguyen et al. 2016): a generator's code, in whitened units; calling it
  returns the code, which the loop decodes with its generator (:mod:`dgnam.methods.dgn_am`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .codes import clip_to

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation, the default of every net's InputSpec
IMAGENET_STD = (0.229, 0.224, 0.225)


# Square root of ImageNet's RGB colour-correlation matrix, as lucid/lucent ship it
# (lucid/optvis/param/color.py, ``color_correlation_svd_sqrt``). Columns are normalized by the
# largest column norm, as lucid does, so a unit step in the decorrelated space stays bounded in RGB.
COLOR_CORRELATION_SVD_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02],
     [0.27, 0.00, -0.05],
     [0.27, -0.09, 0.03]]
)


def color_correlation_normalized() -> torch.Tensor:
    """The (3, 3) matrix mapping decorrelated colour to RGB, normalized like lucid's."""
    c = COLOR_CORRELATION_SVD_SQRT
    return c / c.norm(dim=0).max()


def channel_mean(mean: Sequence[float], channels: int) -> torch.Tensor:
    """``mean`` for 3 channels; otherwise its average, repeated per channel (a grey start)."""
    values = torch.tensor(mean, dtype=torch.float32)
    return values if channels == len(values) else values.mean().repeat(channels)


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _seeded_randn(seeds: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """One N(0, 1) tensor of ``shape`` per seed, stacked; each from its own generator."""
    return torch.stack([torch.randn(*shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


class PixelImage(nn.Module):
    """Raw pixels: the optimized parameter is the image itself.

    Args:
        seeds: One seed per batch element.
        size: ``(height, width)`` or one int for a square.
        init_std: Standard deviation of the initial noise around ``mean``, in [0, 1] units.
            The default, 10/255, is Yosinski et al.'s ``mean_plus_rand`` start (N(0, 10) on a 0-255 scale).
        mean: RGB colour the noise is centred on (ImageNet's mean: the "mean image" start).
        channels: Image channels; other than 3, every channel starts around the mean of ``mean``.
        init: (N, channels, H, W) images in [0, 1] to start from instead (no noise added).

    The forward pass clamps to [0, 1]; loops that update ``pixels`` directly should also clamp the
    data after each step (:meth:`clamp_`), so no pixel sits where the clamp hides its gradient.
    """

    def __init__(self, seeds: Sequence[int], size: int | Sequence[int], init_std: float = 10 / 255, mean: Sequence[float] = IMAGENET_MEAN,
                 channels: int = 3, init: torch.Tensor | None = None):  # fmt: skip
        super().__init__()
        h, w = _size(size)
        self.register_buffer("mean", channel_mean(mean, channels).view(1, channels, 1, 1), persistent=False)
        if init is None:
            init = self.mean + init_std * _seeded_randn(seeds, (channels, h, w))
        elif tuple(init.shape) != (len(seeds), channels, h, w):
            raise ValueError(f"init has shape {tuple(init.shape)}; expected ({len(seeds)}, {channels}, {h}, {w})")
        self.pixels = nn.Parameter(init.detach().float().clone().clamp(0, 1))

    @torch.no_grad()
    def clamp_(self) -> None:
        self.pixels.clamp_(0, 1)

    def forward(self) -> torch.Tensor:
        return self.pixels.clamp(0, 1)


def rfft2d_freqs(h: int, w: int) -> torch.Tensor:
    """Frequency magnitude (cycles per pixel) of each entry of an (h, w // 2 + 1) real-FFT spectrum."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return (fx * fx + fy * fy).sqrt()


class FourierImage(nn.Module):
    """lucid's ``fft_image`` + ``to_valid_rgb(decorrelate=True, sigmoid=True)``.

    The parameter is a real-FFT spectrum (real and imaginary parts) per channel. Each coefficient is
    scaled by ``1 / max(f, 1 / max(h, w)) ** decay_power``, so natural-image-like 1/f amplitudes are
    the "unit" scale and a gradient step moves low frequencies more than high ones (a whitened
    gradient: Olah et al. 2017). The inverse FFT (orthonormal) is divided by 4 (lucid's constant,
    which keeps the sigmoid out of saturation), colours are mixed by the square root of ImageNet's
    colour correlation, and a sigmoid maps to [0, 1].

    Args:
        seeds: One seed per batch element.
        size: ``(height, width)`` or one int.
        sd: Standard deviation of the initial spectrum (lucid: 0.01, a near-grey start).
        decay_power: Exponent of the 1/f scaling (lucid: 1).
        decorrelate: Apply the colour decorrelation (lucid: True; only meaningful, and only applied, for 3 channels).
        channels: Image channels (3: RGB).
        init: (N, channels, H, W) images in [0, 1] to start from instead: the spectrum whose image they
            are (the parameterization inverted; pixels are kept inside (0.001, 0.999) for the sigmoid).
    """

    def __init__(self, seeds: Sequence[int], size: int | Sequence[int], sd: float = 0.01, decay_power: float = 1.0, decorrelate: bool = True,
                 channels: int = 3, init: torch.Tensor | None = None):  # fmt: skip
        super().__init__()
        h, w = _size(size)
        self.size = (h, w)
        self.decorrelate = decorrelate and channels == 3
        freqs = rfft2d_freqs(h, w)
        scale = 1.0 / freqs.clamp_min(1.0 / max(h, w)) ** decay_power
        self.register_buffer("scale", scale[None, None, :, :, None], persistent=False)
        self.register_buffer("color", color_correlation_normalized(), persistent=False)
        if init is None:
            spectrum = sd * _seeded_randn(seeds, (channels, *freqs.shape, 2))
        elif tuple(init.shape) != (len(seeds), channels, h, w):
            raise ValueError(f"init has shape {tuple(init.shape)}; expected ({len(seeds)}, {channels}, {h}, {w})")
        else:
            spectrum = self._spectrum_of(init.detach().float())
        self.spectrum = nn.Parameter(spectrum)

    def _spectrum_of(self, images: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`forward`: the (scaled) spectrum whose image is ``images``."""
        linear = torch.logit(images.clamp(0.001, 0.999))
        if self.decorrelate:
            linear = torch.einsum("ij,njhw->nihw", torch.linalg.inv(self.color), linear)
        spectrum = torch.fft.rfftn(linear * 4.0, dim=(-2, -1), norm="ortho")
        return torch.view_as_real(spectrum) / self.scale

    def linear_image(self) -> torch.Tensor:
        """The image before the sigmoid (decorrelated, roughly zero-mean)."""
        spectrum = torch.view_as_complex((self.spectrum * self.scale).contiguous())
        image = torch.fft.irfftn(spectrum, s=self.size, dim=(-2, -1), norm="ortho") / 4.0
        if self.decorrelate:
            image = torch.einsum("ij,njhw->nihw", self.color, image)
        return image

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.linear_image())


def _without_dc(magnitude: torch.Tensor) -> torch.Tensor:
    """The spectrum with its DC term replaced by the mean of its four lowest neighbours (for interpolation)."""
    m = magnitude.clone()
    neighbours = torch.stack([m[:, 1, 0], m[:, -1, 0], m[:, 0, 1], m[:, 1, 1]], 0)
    m[:, 0, 0] = neighbours.mean(0)
    return m


def resize_spectrum(magnitude: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bring a (3, S, S // 2 + 1) amplitude spectrum to images of ``size = (H, W)``.

    Each entry of the new rfft grid takes the amplitude of the same frequency (cycles per pixel) in
    the stored one: bilinear interpolation of log-amplitude on the centred grid (photos' spectra
    are close to scale-invariant, so a 64 px spectrum read in cycles per pixel fits a 224 px image).
    The DC term is kept out of the interpolation (it would inflate its neighbours) and scaled by
    ``sqrt(H * W) / S``, which keeps the ratio of the mean colour to the contrast (Parseval, ortho FFT).

    Returns:
        (3, H, W // 2 + 1) float32.
    """
    h, w = size
    s = magnitude.shape[-2]
    if magnitude.dim() != 3 or magnitude.shape[0] != 3 or magnitude.shape[-1] != s // 2 + 1:
        raise ValueError(f"expected a (3, S, S // 2 + 1) spectrum, got {tuple(magnitude.shape)}")
    log = torch.fft.fftshift(_without_dc(magnitude.double()), dim=-2).clamp_min(1e-12).log()
    fy = torch.fft.fftfreq(h, dtype=torch.float64)  # target rows, in cycles per pixel
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)
    # source index of a frequency: row = fy * S + S // 2 (centred), column = fx * S
    row = (fy * s + s // 2) / (s - 1) * 2 - 1
    col = (fx * s) / (s // 2) * 2 - 1
    grid = torch.stack(torch.meshgrid(col, row, indexing="xy"), -1)  # (H, W//2+1, 2) as (x, y)
    out = F.grid_sample(log[None], grid[None], mode="bilinear", padding_mode="border", align_corners=True)[0].exp()
    out[:, 0, 0] = magnitude[:, 0, 0].double() * (h * w) ** 0.5 / s
    return out.float()


def _standardize(x: torch.Tensor) -> torch.Tensor:
    """Per batch element: zero mean, unit standard deviation over all other axes."""
    dims = tuple(range(1, x.dim()))
    x = x - x.mean(dims, keepdim=True)
    return x / (x.std(dims, keepdim=True, unbiased=False) + 1e-5)


class MacoImage(nn.Module):
    """Images whose Fourier amplitude is fixed and whose phase is the optimized parameter.

    Args:
        seeds: One seed per batch element (its initial phase ~ N(0, init_std) from its own generator).
        size: ``(height, width)`` or one int.
        magnitude: (3, S, S // 2 + 1) amplitude spectrum of decorrelated colour (:func:`dgnam.methods.maco.load_spectrum`),
            resized to ``size`` here.
        init_std: Standard deviation of the initial phase (the references: 1; it is standardized anyway).

    ``magnitude`` is a buffer (never optimized); ``phase`` (N, 3, H, W // 2 + 1) is the parameter.
    """

    def __init__(self, seeds: Sequence[int], size: int | Sequence[int], magnitude: torch.Tensor, init_std: float = 1.0):
        super().__init__()
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.size = (h, w)
        self.register_buffer("magnitude", resize_spectrum(magnitude, (h, w))[None], persistent=False)
        self.register_buffer("color", color_correlation_normalized(), persistent=False)
        shape = (3, h, w // 2 + 1)
        init = torch.stack([torch.randn(*shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
        self.phase = nn.Parameter(init_std * init)

    def spectrum(self) -> torch.Tensor:
        """The complex spectrum ``magnitude * exp(i * standardized phase)``, (N, 3, H, W // 2 + 1)."""
        phase = _standardize(self.phase)
        return torch.polar(self.magnitude.expand_as(phase), phase)

    def linear_image(self) -> torch.Tensor:
        """The standardized image in decorrelated colour, before the colour mixing and the sigmoid."""
        return _standardize(torch.fft.irfft2(self.spectrum(), s=self.size, norm="ortho"))

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(torch.einsum("ij,njhw->nihw", self.color, self.linear_image()))


def initial_code(generator, seeds: Sequence[int], std: float = 1.0, clip: bool = True, start: torch.Tensor | None = None) -> torch.Tensor:
    """The start of a search in a generator's code space: ``generator.random_code(seeds, std)`` (one RNG
    per seed, so a start depends only on its seed) or a copy of ``start``, clipped to the code's bounds
    unless ``clip`` is False. DGN-AM (:class:`CodeParam`), PPGN-h sampling and the gradient-free searches all start here."""
    code = generator.random_code(list(seeds), std) if start is None else start.detach().to(generator.lower).clone()
    return generator.clip(code) if clip else code


class CodeParam(nn.Module):
    """A generator's code as the optimized parameter (DGN-AM), in whitened units ``z = (code - center) / scale``.

    Calling it returns the code ``center + scale * z`` (N, *code_shape); the loop decodes it with its generator,
    which is read here (its ``random_code``, ``clip``, ``lower``, ``upper``) but not kept.

    Args:
        seeds: One seed per batch element: the start is :func:`initial_code` (one RNG per seed).
        generator: The generator whose codes these are (a :class:`~dgnam.generators.Generator`).
        init_std: Standard deviation of the initial code (the paper: 1).
        clip: Clip the start to the generator's ``[lower, upper]`` and keep :attr:`bounds` (in z units) for
            :meth:`clamp_`; False: unbounded.
        center, scale: The code statistics of the whitening (:func:`~dgnam.generators.code_center_scale`); None:
            0 and 1 (raw code units).
        init: (N, *code_shape) codes to start from instead (copied, clipped as random ones).
    """

    def __init__(self, seeds: Sequence[int], generator, init_std: float = 1.0, clip: bool = True, center: torch.Tensor | None = None,
                 scale: torch.Tensor | None = None, init: torch.Tensor | None = None):  # fmt: skip
        super().__init__()
        lower, upper = generator.lower, generator.upper
        center = torch.zeros_like(lower) if center is None else center
        scale = torch.ones_like(lower) if scale is None else scale
        code = initial_code(generator, seeds, init_std, clip, start=init)
        self.register_buffer("center", center, persistent=False)
        self.register_buffer("scale", scale, persistent=False)
        self.bounds = ((lower - center) / scale, (upper - center) / scale) if clip else None
        self.z = nn.Parameter((code - center) / scale)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clip ``z`` to :attr:`bounds` in place (no-op when unbounded)."""
        self.z.copy_(clip_to(self.z, self.bounds))

    def forward(self) -> torch.Tensor:
        return self.center + self.scale * self.z


__all__ = ["PixelImage", "FourierImage", "MacoImage", "CodeParam", "initial_code", "COLOR_CORRELATION_SVD_SQRT", "color_correlation_normalized", "resize_spectrum", "rfft2d_freqs"]
