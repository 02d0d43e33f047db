"""Differentiable robustness transforms for pixel-space activation maximization.

Optimizing an image through random small translations, scalings and rotations (lucid's
"transformation robustness", Olah et al. 2017) suppresses the high-frequency patterns that fool a
single view of the net. Every transform maps (N, C, H, W) to (N, C, H, W) (:class:`Pad` grows H and
W) and is differentiable in the image.

Randomness comes only from the generator passed in, never from the global RNG. Pass either one
``torch.Generator`` (all draws from it, in batch order) or one generator per batch element; with
per-element generators, element ``i``'s transforms depend only on its own generator, so an image
does not depend on what else is in the batch. Each element gets its own draw, unlike lucent, which
moves the whole batch by the same amount.

Example:
    >>> tf = Compose([Pad(12), Jitter(8), RandomScale(scales(0.9, 1.1, 11)), RandomRotate(range(-10, 11)), Jitter(4)])
    >>> out = tf(images, torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Sequence, Union

import torch
import torch.nn.functional as F

Generators = Union[torch.Generator, Sequence[torch.Generator]]

# Offset between the seed that initializes an image (or code) and the seed of its transform
# generator, so the two random streams differ.
TRANSFORM_STREAM = 1_000_003


def transform_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One transform RNG per batch element, from its seed: a unit's transforms do not depend on its batch."""
    return [torch.Generator().manual_seed(int(s) + TRANSFORM_STREAM) for s in seeds]


def _randint(gen: Generators, n: int, low: int, high: int, k: int = 1) -> torch.Tensor:
    """(n, k) integers in [low, high): from one generator, or ``k`` from each of ``n`` generators."""
    if isinstance(gen, torch.Generator):
        return torch.randint(low, high, (n, k), generator=gen)
    gens = list(gen)
    if len(gens) != n:
        raise ValueError(f"{len(gens)} generators for a batch of {n}: give one generator, or one per image")
    return torch.stack([torch.randint(low, high, (k,), generator=g) for g in gens])


def _choice(gen: Generators, n: int, options: Sequence[float]) -> torch.Tensor:
    """(n,) values drawn uniformly from ``options``."""
    idx = _randint(gen, n, 0, len(options))[:, 0]
    return torch.tensor([float(options[i]) for i in idx.tolist()])


def scales(low: float, high: float, n: int) -> tuple[float, ...]:
    """``n`` evenly spaced scale factors from ``low`` to ``high`` (lucent: 0.9 to 1.1 in 11 steps)."""
    return tuple(round(low + (high - low) * i / (n - 1), 6) for i in range(n)) if n > 1 else (low,)


class Transform:
    """A batched random transform: ``transform(images, gen) -> images``."""

    def __call__(self, x: torch.Tensor, gen: Generators) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Compose(Transform):
    """Apply ``transforms`` in order, all drawing from the same generator(s)."""

    transforms: tuple[Transform, ...]

    def __init__(self, transforms: Sequence[Transform]):
        object.__setattr__(self, "transforms", tuple(transforms))

    def __call__(self, x: torch.Tensor, gen: Generators) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, gen)
        return x


@dataclass(frozen=True)
class Pad(Transform):
    """Pad every side by ``width`` pixels, with a constant ``value`` or ``mode="reflect"``.

    lucid pads with grey (0.5) before jittering, so the borders the net sees are not the image's own
    edges (which it would otherwise learn to decorate). Deterministic; grows H and W by ``2 * width``.
    """

    width: int
    value: float = 0.5
    mode: str = "constant"

    def __call__(self, x: torch.Tensor, gen: Generators) -> torch.Tensor:
        if self.width <= 0:
            return x
        p = (self.width,) * 4
        return F.pad(x, p, mode="constant", value=self.value) if self.mode == "constant" else F.pad(x, p, mode=self.mode)


@dataclass(frozen=True)
class Jitter(Transform):
    """Translate each image by a random integer shift in ``[-max_shift, max_shift]`` on each axis.

    The vacated border is filled by reflection, so the output keeps the input's shape (lucid crops
    instead, which shrinks the image).
    """

    max_shift: int

    def __call__(self, x: torch.Tensor, gen: Generators) -> torch.Tensor:
        d = self.max_shift
        if d <= 0:
            return x
        n, _, h, w = x.shape
        if d >= min(h, w):
            raise ValueError(f"jitter of {d} px needs images larger than {d} px, got {h}x{w}")
        shifts = _randint(gen, n, -d, d + 1, k=2).tolist()
        xp = F.pad(x, (d, d, d, d), mode="reflect")
        return torch.stack([xp[i, :, d - dy : d - dy + h, d - dx : d - dx + w] for i, (dy, dx) in enumerate(shifts)])


def _affine(x: torch.Tensor, theta: torch.Tensor, padding_mode: str) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


@dataclass(frozen=True)
class RandomScale(Transform):
    """Zoom each image about its centre by a factor drawn from ``scales`` (>1 enlarges the content).

    The output keeps the input's size; when zooming out, the border is filled by ``padding_mode``.
    """

    scales: tuple[float, ...]
    padding_mode: str = "reflection"

    def __init__(self, scales: Sequence[float], padding_mode: str = "reflection"):
        object.__setattr__(self, "scales", tuple(float(s) for s in scales))
        object.__setattr__(self, "padding_mode", padding_mode)

    def __call__(self, x: torch.Tensor, gen: Generators) -> torch.Tensor:
        s = _choice(gen, x.shape[0], self.scales)
        theta = torch.zeros(x.shape[0], 2, 3)
        theta[:, 0, 0] = 1.0 / s
        theta[:, 1, 1] = 1.0 / s
        return _affine(x, theta, self.padding_mode)


@dataclass(frozen=True)
class RandomFlip(Transform):
    """Mirror each image left-right with probability 1/2 (a draw per image)."""

    def __call__(self, x: torch.Tensor, gen: Generators) -> torch.Tensor:
        flip = _randint(gen, x.shape[0], 0, 2)[:, 0].bool()
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


@dataclass(frozen=True)
class RandomRotate(Transform):
    """Rotate each image about its centre by an angle (degrees) drawn from ``angles``."""

    angles: tuple[float, ...]
    padding_mode: str = "reflection"

    def __init__(self, angles: Sequence[float], padding_mode: str = "reflection"):
        object.__setattr__(self, "angles", tuple(float(a) for a in angles))
        object.__setattr__(self, "padding_mode", padding_mode)

    def __call__(self, x: torch.Tensor, gen: Generators) -> torch.Tensor:
        n, _, h, w = x.shape
        a = _choice(gen, n, self.angles) * (math.pi / 180.0)
        cos, sin = a.cos(), a.sin()
        # A rotation in pixel coordinates, written in affine_grid's [-1, 1] coordinates (which
        # stretch non-square images differently along each axis).
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = cos
        theta[:, 0, 1] = -sin * h / w
        theta[:, 1, 0] = sin * w / h
        theta[:, 1, 1] = cos
        return _affine(x, theta, self.padding_mode)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Normalized 1-D Gaussian of standard deviation ``sigma``, cut at ``truncate`` sigmas (scipy's default)."""
    radius = max(1, int(truncate * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each channel with a Gaussian of ``sigma`` pixels (separable, reflected borders).

    Matches ``scipy.ndimage.gaussian_filter`` (which Yosinski et al. used) up to its border rule.
    """
    if sigma <= 0:
        return x
    n, c, h, w = x.shape
    k = gaussian_kernel1d(sigma).to(x)
    r = k.numel() // 2
    if r >= min(h, w):
        raise ValueError(f"blur sigma {sigma} is too wide for a {h}x{w} image")
    y = F.pad(x.reshape(n * c, 1, h, w), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


@dataclass(frozen=True)
class GaussianBlur(Transform):
    """Gaussian blur of ``sigma`` pixels (deterministic; the generator is unused)."""

    sigma: float

    def __call__(self, x: torch.Tensor, gen: Generators) -> torch.Tensor:
        return gaussian_blur(x, self.sigma)


#: The one size rule of the random transforms: their pixel amounts (pad, jitter) are stated for an image this
#: many pixels on a side and scaled to the image's own side (:func:`at_side`), for DGN-AM and the pixel methods alike.
REFERENCE_SIDE = 224

#: The pixel methods' amounts ("fourier", "deepinversion", "maco"), at 224 px: lucent's ``standard_transforms``
#: (pad 12, jitter 8, jitter 4), which lucent runs at 128 px and upsamples to 224, so here a little larger
#: (lucent's x ~1.75 would be 21, 14 and 7). DGN-AM's "standard" transforms use lucent's own amounts
#: (:func:`standard_transforms`' defaults).
PIXEL_AMOUNTS = MappingProxyType({"pad": 16, "jitter": 16, "scale": (0.9, 1.1), "angle": 10, "fine_jitter": 8})


def at_side(pixels: int, side: int | None, least: int = 1) -> int:
    """An amount of ``pixels`` stated for a :data:`REFERENCE_SIDE` image, for an image ``side`` px on a side:
    rounded, and at least ``least`` unless it is 0 (None: ``side`` unknown, the amount as stated).

    Example:
        >>> at_side(8, 128), at_side(4, 32), at_side(0, 32), at_side(12, 128, least=0)
        (5, 1, 0, 7)
    """
    if side is None or not pixels:
        return pixels
    return max(least, round(pixels * side / REFERENCE_SIDE))


def image_size(size: int | Sequence[int] | None, native: Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of an image: ``size`` (one int: square) or, when None, the ``native`` size (a net's)."""
    if size is None:
        return tuple(int(s) for s in native)
    return (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)


def standard_transforms(pad: int = 12, jitter: int = 8, scale: tuple[float, float] = (0.9, 1.1), angle: int = 10, fine_jitter: int = 4,
                        side: int | None = None) -> Compose:  # fmt: skip
    """lucid/lucent's ``standard_transforms``: pad, jitter, scale, rotate, jitter.

    lucent: ``pad(12, constant 0.5), jitter(8), random_scale(0.9..1.1 in 11 steps),
    random_rotate(-10..10 degrees, with 0 weighted 6x), jitter(4)``. With ``side`` the pixel amounts are
    those of a 224 px image, scaled to an image of ``side`` px (:func:`at_side`); None: as given.
    """
    angles = list(range(-angle, angle + 1)) + 5 * [0]
    pad, jitter, fine_jitter = at_side(pad, side, least=0), at_side(jitter, side), at_side(fine_jitter, side)
    return Compose([Pad(pad), Jitter(jitter), RandomScale(scales(*scale, 11)), RandomRotate(angles), Jitter(fine_jitter)])


def harsh_transforms(side: int | None = None) -> Compose:
    """A harsher view set than lucid's (issue 29's candidate): pad, a shift of up to 12 % of the side, scale 0.75-1.15,
    rotation up to 15 degrees, a left-right flip, a fine jitter. Pixel amounts as :func:`standard_transforms`' (at
    ``side`` px; None: 224 px)."""
    ref = side or REFERENCE_SIDE
    angles = list(range(-15, 16)) + 5 * [0]
    return Compose([Pad(at_side(12, side, least=0)), Jitter(max(1, round(0.12 * ref))), RandomScale(scales(0.75, 1.15, 9)), RandomRotate(angles),
                    RandomFlip(), Jitter(at_side(4, side))])  # fmt: skip


#: The named random view sets of DGN-AM's ``transforms`` setting: name -> builder(side=) of the transform.
TRANSFORM_SETS = MappingProxyType({"standard": standard_transforms, "harsh": harsh_transforms})


__all__ = [
    "Compose", "GaussianBlur", "Generators", "Jitter", "Pad", "RandomFlip", "RandomRotate", "RandomScale", "Transform",
    "PIXEL_AMOUNTS", "REFERENCE_SIDE", "TRANSFORM_SETS", "TRANSFORM_STREAM", "at_side", "gaussian_blur", "gaussian_kernel1d",
    "harsh_transforms", "image_size", "scales", "standard_transforms", "transform_generators",
]
