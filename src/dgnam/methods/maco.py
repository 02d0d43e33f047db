"""MACO: feature visualization with the Fourier magnitude fixed to that of photographs (Fel et al. 2023).

"Unlocking Feature Visualization for Deeper Networks with MAgnitude Constrained Optimization"
(NeurIPS 2023). The image is ``sigmoid(C @ standardize(irfft2(M * exp(i * standardize(phase)))))``:
the amplitude spectrum ``M`` of the decorrelated colour channels is the *average spectrum of natural
photos* and stays fixed; only the phase is optimized (NAdam, as the authors' Horama and Xplique code),
through random transforms and a little pixel noise. Phase carries the structure of an image, so the
optimizer can only arrange edges and textures whose energy per frequency is that of a photo: no
high-frequency excess, no 1/f prior to tune. ``C`` is lucid's ImageNet colour-correlation square root
(:func:`dgnam.core.param.color_correlation_normalized`, the matrix both reference implementations use).

The **transparency map** (MACO's attribution-like by-product): the |gradient| of the objective with
respect to the image, summed over colours and accumulated over the steps. Pixels the unit never
looked at stay transparent when the map is used as an alpha channel.

The spectrum ships with the package (:data:`SPECTRA`, a few KB of float16, sha256-checked); it is the
mean amplitude spectrum of photos computed by ``scripts/maco_spectrum.py``: ``pool`` (the default) from
the ``dgnam pool build`` pool, ``skimage_photos`` from scikit-image's colour photos (reproducible on any
machine; a little flatter: more energy at high frequencies). It is stored at 64 x 64 and
brought to any image size by :func:`dgnam.core.param.resize_spectrum` (bilinear in log-amplitude over frequency in
cycles per pixel, the DC term handled apart so its ratio to the image's contrast is kept).

Differences from the reference implementations, each for the comparison at equal budgets in this
package: the image is optimized at the target's native size with the package's standard random
transforms (pad, jitter, scale, rotation) instead of many zoomed crops of a 512-1280 px canvas, and
for 200 steps like every other method.

Example:
    >>> r = maco_am(load_net("efficientnet_lite0"), [Unit("logits", 945)], seeds=[0])
    >>> r.maps["transparency"].shape       # (1, 224, 224)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..infra.hub import WeightsError, sha256_file
from ..nets import Target
from ..core.objectives import Objective, run_objective, units_objective
from ..core.param import MacoImage, color_correlation_normalized
from ..core.transforms import PIXEL_AMOUNTS, image_size, standard_transforms, transform_generators
from ..core.units import Unit
from .base import AMResult, BestTracker

#: Shipped spectra: name -> (file under dgnam/data, sha256, how it was made).
SPECTRA: dict[str, tuple[str, str, str]] = {
    "pool": (
        "maco_spectrum_pool.safetensors",
        "2be1f6166a93162754f0e7fc18a78153b3ead2be431a55f8686eb67d73b60c55",
        "scripts/maco_spectrum.py --pool POOL --size 64 --crops 1 --seed 0 on the pool of `dgnam pool build` "
        "(23356 images of 160 px, seed 0): one random square crop of each",
    ),
    "skimage_photos": (
        "maco_spectrum_skimage.safetensors",
        "950805ba4579d08a2098c9920fb6a40935b754539ecde94bffe45485ed4a5bae",
        "scripts/maco_spectrum.py --skimage --size 64 --crops 64 --seed 0: the 6 colour photos of scikit-image "
        "(astronaut, chelsea, coffee, rocket, hubble_deep_field, motorcycle), 64 random square crops each",
    ),
}
DEFAULT_SPECTRUM = "pool"  # "the average spectrum of the pool's photos"; skimage_photos: reproducible anywhere

# Offset between an image's seed and the seed of its pixel-noise generator (another stream than the
# phase's initialization and the transforms').
NOISE_STREAM = 2_000_003


# --------------------------------------------------------------------------------------------------
# The magnitude spectrum
# --------------------------------------------------------------------------------------------------


def decorrelate(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> lucid's decorrelated colour space (the inverse of the colour mixing of :class:`~dgnam.core.param.MacoImage`)."""
    inverse = torch.linalg.inv(color_correlation_normalized().double()).to(images.dtype)
    return torch.einsum("ij,njhw->nihw", inverse, images)


def average_spectrum(images: torch.Tensor) -> torch.Tensor:
    """Mean amplitude spectrum of images in decorrelated colour, per channel.

    Args:
        images: (N, 3, S, S) RGB in [0, 1] (square crops, already at the spectrum's size).

    Returns:
        (3, S, S // 2 + 1) float64: the mean over images of ``|rfft2(decorrelate(x), norm="ortho")|``.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, S, S), got {tuple(images.shape)}")
    spectra = torch.fft.rfft2(decorrelate(images.double()), norm="ortho").abs()
    return spectra.mean(0)


def spectrum_path(name: str = DEFAULT_SPECTRUM) -> Path:
    """The shipped spectrum file of ``name`` (see :data:`SPECTRA`)."""
    if name not in SPECTRA:
        raise ValueError(f"unknown MACO spectrum {name!r}: choose one of {', '.join(SPECTRA)} or give a .safetensors file")
    return Path(str(resources.files("dgnam").joinpath("data", SPECTRA[name][0])))


def load_spectrum(spectrum: str | Path = DEFAULT_SPECTRUM) -> torch.Tensor:
    """Read a MACO amplitude spectrum: a shipped name (sha256-checked) or a safetensors file with a ``magnitude`` tensor.

    Returns:
        (3, S, S // 2 + 1) float32.

    Raises:
        WeightsError: a shipped file whose hash differs, or a file without a valid ``magnitude``.
    """
    from safetensors.torch import load_file

    if isinstance(spectrum, str) and spectrum in SPECTRA:
        path = spectrum_path(spectrum)
        digest = sha256_file(path)
        if digest != SPECTRA[spectrum][1]:
            raise WeightsError(f"{path} has sha256 {digest}, expected {SPECTRA[spectrum][1]}: reinstall dgnam")
    else:
        path = Path(spectrum)
        if not path.is_file():
            raise ValueError(f"MACO spectrum {spectrum!r} is neither a shipped name ({', '.join(SPECTRA)}) nor a file")
    magnitude = load_file(str(path)).get("magnitude")
    if magnitude is None or magnitude.dim() != 3 or magnitude.shape[0] != 3 or magnitude.shape[2] != magnitude.shape[1] // 2 + 1:
        raise WeightsError(f"{path} must hold a 'magnitude' tensor of shape (3, S, S // 2 + 1)")
    if not torch.isfinite(magnitude).all() or (magnitude < 0).any():
        raise WeightsError(f"{path}: the magnitude must be finite and non-negative")
    return magnitude.float()


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


@dataclass
class MacoConfig:
    """Settings of MACO. Defaults: the authors' optimizer and noise, this package's transforms and budget."""

    steps: int = 200  # as DGN-AM and the other baselines (the references: 256-1000 on a GPU)
    size: int | tuple[int, int] | None = None  # image size; None: the target's native size
    lr: float = 1.0  # NAdam's learning rate on the phase (Horama and Xplique: NAdam(1.0))
    noise: float = 0.04  # std of the Gaussian noise added to the transformed image, in [0, 1] units, plus
    #   uniform noise of the same width (Xplique: 0.08 on a [-1, 1] input, i.e. 0.04 here)
    spectrum: str = DEFAULT_SPECTRUM  # a name in SPECTRA or a .safetensors file with a 'magnitude' tensor
    init_std: float = 1.0  # initial phase std (standardized in the forward pass)
    # random transforms before each forward pass: those of "fourier" (dgnam.core.transforms.PIXEL_AMOUNTS), pixel
    #   amounts stated for a 224 px image and scaled to the image's side (at_side: the one size rule)
    pad: int = PIXEL_AMOUNTS["pad"]
    jitter: int = PIXEL_AMOUNTS["jitter"]
    scale: tuple[float, float] = PIXEL_AMOUNTS["scale"]
    angle: int = PIXEL_AMOUNTS["angle"]
    fine_jitter: int = PIXEL_AMOUNTS["fine_jitter"]

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if self.noise < 0:
            raise ValueError("noise must be >= 0")
        self.scale = tuple(self.scale)


def maco_am(
    target: Target,
    units: Sequence[Unit],
    seeds: Sequence[int],
    config: MacoConfig | None = None,
    objective: Objective | None = None,
    progress: bool = True,
) -> AMResult:
    """Synthesize each unit's preferred input with MACO (one batch; each element independent of the others).

    Args:
        target: The net whose units are maximized.
        units: One unit per batch element.
        seeds: One seed per batch element: its initial phase, transforms and noise depend only on it.
        config: :class:`MacoConfig` (None: the defaults).
        objective: Override of the score to maximize; default ``units_objective(units)``.
        progress: Show a tqdm bar.

    Returns:
        An :class:`~dgnam.methods.base.AMResult` (method ``"maco"``) whose ``maps["transparency"]`` is the
        accumulated |d objective / d image| summed over colours, (N, H, W), scaled to a maximum of 1
        per image. ``history`` and ``final`` are activations without transforms or noise.

    Example:
        >>> r = maco_am(net, [Unit("logits", 945)], seeds=[0], config=MacoConfig(steps=100))
    """
    if len(units) != len(seeds):
        raise ValueError(f"{len(units)} units but {len(seeds)} seeds: give one seed per unit")
    config = MacoConfig(**asdict(config)) if config is not None else MacoConfig()
    config.size = image_size(config.size, target.spec.size)
    objective = objective or units_objective(units)
    device = next(target.buffers()).device
    seeds = [int(s) for s in seeds]
    gens = transform_generators(seeds)
    noise_gens = [torch.Generator().manual_seed(s + NOISE_STREAM) for s in seeds]
    transform = standard_transforms(config.pad, config.jitter, config.scale, config.angle, config.fine_jitter, side=min(config.size))
    param = MacoImage(seeds, config.size, load_spectrum(config.spectrum), config.init_std).to(device)
    optimizer = torch.optim.NAdam([param.phase], lr=config.lr)
    fast = target.fast(objective.layers)
    tracker = BestTracker(len(units), config.steps, units)
    transparency = torch.zeros(len(units), *config.size, device=device)

    for step in tqdm(range(config.steps), desc="maco", disable=not progress, leave=False):
        images = param()
        with torch.no_grad():
            tracker.update(step, run_objective(fast, images, objective), images)
        viewed = transform(images, gens)
        if config.noise > 0:
            shape = viewed.shape[1:]
            gauss = torch.stack([torch.randn(*shape, generator=g) for g in noise_gens])
            uniform = torch.stack([torch.rand(*shape, generator=g) for g in noise_gens]) - 0.5
            viewed = viewed + config.noise * (gauss + uniform).to(device)
        acts = run_objective(fast, viewed, objective)
        # the sum: each image's gradient is its own unit's, whatever the batch
        phase_grad, image_grad = torch.autograd.grad(-acts.sum(), [param.phase, images])
        transparency += image_grad.abs().sum(1)
        optimizer.zero_grad()
        param.phase.grad = phase_grad
        optimizer.step()

    with torch.no_grad():
        images = param().detach()
        final = run_objective(fast, images, objective)
    tracker.update(config.steps, final, images)
    peak = transparency.flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1)
    return AMResult(
        units=list(units),
        seeds=seeds,
        images=images.cpu(),
        best_images=tracker.best_images,
        history=tracker.history,
        final=final.detach().cpu(),
        best=tracker.best,
        best_step=tracker.best_step,
        codes=None,
        method="maco",
        config={"method": "maco", **asdict(config)},
        maps={"transparency": (transparency / peak).cpu()},
    )


__all__ = [
    "DEFAULT_SPECTRUM", "MacoConfig", "SPECTRA", "average_spectrum", "decorrelate", "load_spectrum", "maco_am", "spectrum_path",
]  # fmt: skip
