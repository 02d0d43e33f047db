"""Pixel-space activation maximization: the baselines DGN-AM is compared with.

Each method optimizes an image directly (no generator) to maximize the same objective as
:func:`dgnam.dgn_am`, and returns the same :class:`~dgnam.methods.base.AMResult`:

- ``"pixel"``: plain gradient ascent on the pixels with an L2 decay towards the mean colour
  (Simonyan et al. 2014), using the DGN-AM ascent (:func:`~dgnam.methods.base.normalized_step`: steps of
  ``lr * g / mean|g|``).
- ``"yosinski"``: Yosinski et al. 2015 ("Understanding Neural Networks Through Deep Visualization"):
  L2 decay, a Gaussian blur every few steps, clipping of pixels with small norm or small
  contribution, plus jitter.
- ``"fourier"``: lucid/lucent (Olah et al. 2017): a :class:`~dgnam.core.param.FourierImage` (1/f-scaled
  spectrum, colour decorrelation, sigmoid) optimized with Adam through random pad, jitter, scale and
  rotation.
- ``"deepinversion"``: ``"fourier"`` plus DeepInversion's BatchNorm-statistics prior (Yin et al.
  2020) and small total-variation and L2 terms.
- ``"maco"``: Fel et al. 2023 (:mod:`dgnam.methods.maco`): the Fourier amplitude fixed to that of photos, only
  the phase optimized (NAdam), through the same random transforms plus pixel noise; its result also
  carries a transparency map (``AMResult.maps["transparency"]``).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields, replace
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..nets import Target
from ..core.objectives import Objective, units_objective
from ..core.param import FourierImage, PixelImage
from ..core.regularizers import BatchNormStatsLoss, has_batchnorm, l2, total_variation
from ..core.transforms import PIXEL_AMOUNTS, Compose, Jitter, Transform, at_side, gaussian_blur, image_size, standard_transforms, transform_generators
from ..core.units import Unit
from .base import AMResult, BestTracker, check_batch, linear_lr, normalized_step, quiet_objective, track_step, tracked_result
from .maco import MacoConfig, maco_am

METHODS = ("pixel", "yosinski", "fourier", "deepinversion", "maco")
DEFAULT_PIXEL_METHOD = "deepinversion"  # a net with BatchNorm statistics: DeepInversion matches them
FALLBACK_PIXEL_METHOD = "fourier"  # ... a net without them: the Fourier baseline

# Per-method defaults for the fields of PixelConfig left at None. Tuned on efficientnet_lite0
# (224 px, 200 steps); the reasons are next to each value.
_DEFAULTS: dict[str, dict] = {
    "pixel": dict(
        lr=0.01,  # mean |change| per pixel per step, in [0, 1] units (the DGN-AM update, in pixel space)
        decay=0.99,  # (x - mean) *= decay per step: the L2 prior, as DGN-AM's 0.99 on the code
        init_std=10 / 255,  # Yosinski's mean_plus_rand start: mean colour + N(0, 10/255)
    ),
    # Yosinski et al. 2015, Table 1, third row -- "used for most of the images in the paper":
    # theta_decay = 0.0001, blur radius 1.0 every 4 steps, no pixel clipping (n_pct = c_pct = 0).
    # Their learning rate (100, unnormalized, on a 0-255 Caffe input) does not transfer across nets, so
    # the step is normalized as in "pixel". Jitter is not in their Table 1; a small one is added, as in
    # later practice (DeepDream, lucid); jitter=0 gives the paper's setting exactly.
    "yosinski": dict(
        lr=0.01,
        decay=1 - 0.0001,
        init_std=10 / 255,
        blur_sigma=1.0,
        blur_every=4,
        norm_pct=0.0,
        contrib_pct=0.0,
        jitter=4,
    ),
    # lucent's render_vis defaults: Adam(lr=0.05), fft_image(sd=0.01), decorrelated colour, sigmoid,
    # standard_transforms with the pixel methods' amounts (PIXEL_AMOUNTS: lucent's, stated for 224 px).
    # Unlike lucent, the lr falls linearly to 0.005: with a constant lr the last image of a 200-step
    # run oscillates (lite0: final logits 12-24 vs best 17-27); with the decay final ~ best (21-27).
    "fourier": dict(lr=0.05, lr_end=0.005, init_std=0.01, **PIXEL_AMOUNTS),
}
# As "fourier", plus DeepInversion's priors. DeepInversion (ResNet-50, cross-entropy, 2k steps)
# uses r_feature 0.01-0.05 with first_bn_multiplier 10 and tiny TV/L2 terms. Here the main term
# is a raw logit over only 200 steps and a small batch. On lite0 (4 classes, 1 seed, judged by
# lite1): bn=0.05 (tv 1, l2 0.1, constant lr) gave natural-looking scenes of the wrong content
# (final logits 2-14, 1/4 top-1); with the values below, bn=0.01 gave logits 22-34 (3/4),
# bn=0.003 32-46 (4/4) and bn=0.001 39-53 (3/4), looking more like "fourier". tv and l2 are set so that their gradients are a few percent of the logit's (DeepInversion's
# values, 1e-4 and 1e-5, would do nothing here). No grey pad: the statistics are measured on the
# transformed image, and with a border the optimizer would match the statistics of image +
# border, not of the image (DeepInversion itself only rolls and flips, which keep them).
_DEFAULTS["deepinversion"] = {**_DEFAULTS["fourier"], "pad": 0, "bn": 0.003, "bn_first": 10.0, "tv": 200.0, "l2": 1.0}

# MACO (Fel et al. 2023; dgnam.methods.maco): its own loop and defaults (MacoConfig: the authors' NAdam(1.0) and
# pixel noise, the "fourier" transforms), read from there so that they are stated in one place.
_DEFAULTS["maco"] = {f.name: f.default for f in fields(MacoConfig) if f.name not in ("steps", "size")}


@dataclass
class PixelConfig:
    """Settings of a pixel-space method. Fields left at ``None`` take the method's defaults.

    The fields keep what was given (None: the method's default), so :func:`dataclasses.replace` of
    ``method`` takes the new method's defaults; :meth:`resolved` fills them in, and the resolved values
    (what actually ran) are stored in ``AMResult.config``.
    """

    method: str = "fourier"  # "pixel", "yosinski", "fourier", "deepinversion" or "maco"
    steps: int = 200  # as DGN-AM, so the comparison is at equal numbers of forward/backward passes
    size: int | tuple[int, int] | None = None  # image size; None: the target's native size
    lr: float | None = None  # pixel/yosinski: mean |step| per pixel; fourier/deepinversion: Adam's lr
    lr_end: float | None = None  # lr falls linearly from lr to this over the run (None: constant lr)
    init_std: float | None = None  # initial noise: pixel std around the mean colour, or the spectrum's std
    # pixel / yosinski
    decay: float | None = None  # (x - mean colour) multiplied by this after each step (L2 decay)
    blur_sigma: float | None = None  # yosinski: Gaussian blur width in pixels (theta_b_width)
    blur_every: int | None = None  # yosinski: blur every this many steps (theta_b_every)
    norm_pct: float | None = None  # yosinski: zero pixels whose RGB norm is under this percentile (theta_n_pct)
    contrib_pct: float | None = None  # yosinski: zero pixels whose |contribution| is under this percentile (theta_c_pct)
    # transforms (yosinski uses jitter only), pixel amounts stated for a 224 px image and scaled to the image's side
    #   (dgnam.core.transforms.at_side: the one size rule, also DGN-AM's)
    jitter: int | None = None  # random translation, pixels
    pad: int | None = None  # grey border added before the random transforms, pixels
    scale: tuple[float, float] | None = None  # random zoom range (11 evenly spaced factors)
    angle: int | None = None  # random rotation, whole degrees in [-angle, angle]
    fine_jitter: int | None = None  # second, smaller translation after scale and rotation
    # fourier / deepinversion
    decorrelate: bool = True  # colour decorrelation of the FourierImage
    decay_power: float = 1.0  # spectrum scaled by 1/f**decay_power
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's betas
    # deepinversion
    bn: float | None = None  # weight of the BatchNorm-statistics loss
    bn_first: float | None = None  # extra multiplier of the first BatchNorm layer's term
    tv: float | None = None  # weight of the total-variation loss (mean squared neighbour difference)
    l2: float | None = None  # weight of the L2 loss (RMS distance from grey)
    # maco (lr: NAdam's on the phase; init_std: the initial phase's std)
    noise: float | None = None  # std of the pixel noise added to each transformed view, [0, 1] units
    spectrum: str | None = None  # the fixed amplitude spectrum: a name in dgnam.methods.maco.SPECTRA or a .safetensors file

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown pixel method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if self.scale is not None:
            self.scale = tuple(self.scale)

    def resolved(self) -> "PixelConfig":
        """This config with every field left at None set to its method's default (what :func:`pixel_am` runs).

        Example:
            >>> PixelConfig(method="yosinski").resolved().blur_every
            4
        """
        filled = {key: value for key, value in _DEFAULTS[self.method].items() if getattr(self, key) is None}
        return replace(self, **filled) if filled else self

    @property
    def uses_adam(self) -> bool:
        return self.method in ("fourier", "deepinversion")

    def maco_config(self) -> MacoConfig:
        """This config as :class:`~dgnam.methods.maco.MacoConfig` (method ``"maco"`` only)."""
        if self.method != "maco":
            raise ValueError(f"maco_config() is for method 'maco', not {self.method!r}")
        return MacoConfig(**{f.name: getattr(self, f.name) for f in fields(MacoConfig)})

    def lr_at(self, step: int) -> float:
        if self.lr_end is None:
            return self.lr
        return linear_lr(self.lr, self.lr_end, step, self.steps)

    def transforms(self, side: int | None = None) -> Transform | None:
        """The random transforms this config applies before each forward pass (None: none), for images of
        ``side`` px (the amounts are stated for 224 px and scaled to it; None: as stated)."""
        if self.uses_adam:
            return standard_transforms(self.pad, self.jitter, self.scale, self.angle, self.fine_jitter, side=side)
        if self.jitter:
            return Compose([Jitter(at_side(self.jitter, side))])
        return None


def default_pixel_method(net) -> str:
    """The pixel-space default for a net (a :class:`~dgnam.nets.Target` or an ``nn.Module``):
    DeepInversion where it has BatchNorm statistics to match, else the Fourier baseline. What
    :func:`~dgnam.methods.choose.resolve` picks for a net without a prior, and :func:`pixel_am` runs without a config.

    Also the default of nets without a prior of their own (foreign nets): by ``FOREIGN_RULE`` of
    ``benchmarks/generalization.py`` DGN-AM through the Lite0 prior would need to match it on every foreign
    layer, and it tied Fourier on SqueezeNet's logits (BENCHMARKS.md, "Which method a foreign net gets by default").
    """
    model = getattr(net, "model", net)
    return DEFAULT_PIXEL_METHOD if has_batchnorm(model) else FALLBACK_PIXEL_METHOD


def _percentile_mask(values: torch.Tensor, pct: float) -> torch.Tensor:
    """Per image, True where ``values`` (N, H, W) is under its ``pct``-th percentile."""
    flat = values.flatten(1)
    q = torch.quantile(flat, pct / 100.0, dim=1, keepdim=True)
    return (flat < q).view_as(values)


def yosinski_regularize(centered: torch.Tensor, grad: torch.Tensor, step: int, config: PixelConfig) -> torch.Tensor:
    """Yosinski et al.'s regularizers, applied after each ascent step to the mean-subtracted image.

    In their order: L2 decay, blur every ``blur_every`` steps, zero pixels of small RGB norm, zero
    pixels of small |contribution| ``|sum_c grad * -x|`` (the first-order change of the activation if
    the pixel were set to the mean). "Zero" is the mean colour, as in their mean-subtracted Caffe input.
    """
    x = centered * config.decay
    if config.blur_every and config.blur_sigma and step % config.blur_every == 0:
        x = gaussian_blur(x, config.blur_sigma)
    if config.norm_pct:
        x = x.masked_fill(_percentile_mask(x.norm(dim=1), config.norm_pct).unsqueeze(1), 0.0)
    if config.contrib_pct:
        contribution = (grad * -x).sum(1).abs()
        x = x.masked_fill(_percentile_mask(contribution, config.contrib_pct).unsqueeze(1), 0.0)
    return x


def pixel_am(
    target: Target,
    units: Sequence[Unit],
    seeds: Sequence[int],
    config: PixelConfig | None = None,
    objective: Objective | None = None,
    progress: bool = True,
    init_images: torch.Tensor | None = None,
) -> AMResult:
    """Synthesize the preferred input of each unit directly in pixel space (one batch).

    Args:
        target: The net whose units are maximized (:func:`dgnam.load_net` or :func:`dgnam.wrap_model`).
        units: One unit per batch element.
        seeds: One seed per batch element; the initial image depends only on its seed, and so do the
            random transforms (each element has its own generator). With ``"deepinversion"`` the
            images still interact through the batch statistics (see below).
        config: The method and its settings (:class:`PixelConfig`); None: the net's default method
            (:func:`default_pixel_method`) with its defaults, what :func:`~dgnam.methods.choose.resolve` gives.
        objective: Override of the score to maximize; default ``units_objective(units)``.
        progress: Show a tqdm bar.
        init_images: (N, 3, H, W) images in [0, 1] to start from instead of noise (feature
            accentuation, :mod:`dgnam.methods.accentuate`); resized to the method's size.

    Returns:
        An :class:`~dgnam.methods.base.AMResult` with ``method`` set to the config's method and the
        resolved config as a dict. ``images`` are the last images, and ``final`` their activation
        without any random transform. ``history[:, t]`` is the activation of the image at step ``t``,
        also without transforms (methods with random transforms spend one extra forward pass per
        step on it). ``codes`` is None.

    Note:
        ``"deepinversion"`` matches BatchNorm statistics computed over the whole batch (and all
        positions), so batch composition matters: the same seed and unit give a different image in a
        different batch, and a batch of one image, or of one class, fits the net's dataset-wide
        statistics less well than a varied batch. Use batches of several different units. It needs
        the net's BatchNorm layers, so pass the unfused target (not ``target.fast()``); the other
        methods use ``target.fast()`` internally.
        It is the slowest method per step, since it cannot use the BatchNorm-folded net.

    Example:
        >>> net = load_net("efficientnet_lite0")
        >>> r = pixel_am(net, parse_unit("logits:945"), seeds=[0], config=PixelConfig(method="fourier"))
        >>> r.final, r.method
    """
    config = config if config is not None else PixelConfig(method=default_pixel_method(target))  # a fresh one per call
    check_batch(units, seeds)
    config = config.resolved()
    if config.method == "maco":  # its own loop: phase of a fixed spectrum, transparency map (dgnam.methods.maco)
        return _maco(target, units, seeds, config, objective, progress, init_images)
    objective = objective or units_objective(units)
    config = replace(config, size=image_size(config.size, target.spec.size))
    seeds = [int(s) for s in seeds]
    gens = transform_generators(seeds)
    init = _start_images(init_images, len(units), target.spec.channels, config.size)
    param = _pixel_param(config, seeds, target.spec.channels, init).to(next(target.buffers()).device)
    tracker = BestTracker(len(units), config.steps, units)
    images, final = _ascend_pixels(target, param, config, objective, tracker, gens, progress)
    return tracked_result(tracker, units, seeds, images, final, config.method, asdict(config))


def _maco(target: Target, units: Sequence[Unit], seeds: Sequence[int], config: PixelConfig, objective: Objective | None, progress: bool,
          init_images: torch.Tensor | None) -> AMResult:  # fmt: skip
    """:func:`pixel_am` with method "maco": :func:`~dgnam.methods.maco.maco_am`, once its limits are checked."""
    if init_images is not None:
        raise ValueError("maco starts from a random phase: init_images (feature accentuation) needs another pixel method")
    if target.spec.channels != 3:
        raise ValueError(f"maco makes RGB images; {target.name} takes {target.spec.channels} channel(s): use --pixel fourier")
    return maco_am(target, units, seeds, config.maco_config(), objective, progress)


def _start_images(init_images: torch.Tensor | None, n: int, channels: int, size: tuple[int, int]) -> torch.Tensor | None:
    """``init_images`` checked (``n`` images), in the net's ``channels`` (a colour photo's luminance for a grey net)
    and resized to ``size`` on the CPU; None stays None (a start from noise)."""
    if init_images is None:
        return None
    if init_images.dim() != 4 or len(init_images) != n:
        raise ValueError(f"init_images has shape {tuple(init_images.shape)}; expected ({n}, {channels}, H, W)")
    if channels == 1 and init_images.shape[1] == 3:  # a colour photo for a grey net: its luminance
        init_images = (init_images * torch.tensor([0.299, 0.587, 0.114], device=init_images.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if init_images.shape[1] != channels:
        raise ValueError(f"init_images have {init_images.shape[1]} channels; the net takes {channels}")
    return torch.nn.functional.interpolate(init_images.float().cpu(), size=size, mode="bilinear", align_corners=False, antialias=True)


def _pixel_param(config: PixelConfig, seeds: list[int], channels: int, init: torch.Tensor | None) -> torch.nn.Module:
    """The image parameterization of ``config``'s method: a FourierImage for the Adam methods, else PixelImage."""
    if config.uses_adam:
        return FourierImage(seeds, config.size, sd=config.init_std, decay_power=config.decay_power, decorrelate=config.decorrelate,
                            channels=channels, init=init)  # fmt: skip
    return PixelImage(seeds, config.size, init_std=config.init_std, channels=channels, init=init)


def _ascend_pixels(target: Target, param: torch.nn.Module, config: PixelConfig, objective: Objective, tracker: BestTracker, gens,
                   progress: bool) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The loop of :func:`pixel_am`: ``config.steps`` tracked steps on ``param``; returns the last images and their activation."""
    transform = config.transforms(min(config.size))
    adam = torch.optim.Adam(param.parameters(), lr=config.lr, betas=config.betas) if config.uses_adam else None
    bn = BatchNormStatsLoss(target.model, config.bn_first) if config.method == "deepinversion" else None
    # BatchNorm-folded where the model offers it (same activations, faster); the BatchNorm loss
    # needs the BatchNorm layers, so "deepinversion" ascends through the original model.
    fast = target.fast(objective.layers)
    ascend = target if bn is not None else fast
    with bn if bn is not None else nullcontext():
        for step in tqdm(range(config.steps), desc=config.method, disable=not progress, leave=False):
            images = param()
            acts = track_step(step, images, tracker, objective, ascend, fast, transform, gens, bn)
            if adam is not None:
                _adam_step(adam, acts, images, step, config, bn)
            else:
                _pixel_step(param, acts, step, config)
        images = param().detach()
        return images, quiet_objective(fast, images, objective, bn)


def _adam_step(adam: torch.optim.Optimizer, acts: torch.Tensor, images: torch.Tensor, step: int, config: PixelConfig, bn) -> None:
    """One Adam step of the Fourier methods on minus the mean activation (plus DeepInversion's priors where ``bn``)."""
    # The mean over the batch, as DeepInversion's cross-entropy: the balance between the
    # activation and the (batch-level) BatchNorm loss does not depend on the batch size.
    loss = -acts.mean()
    if bn is not None:
        loss = loss + config.bn * bn.loss() + config.tv * total_variation(images).mean() + config.l2 * l2(images).mean()
    for group in adam.param_groups:
        group["lr"] = config.lr_at(step)
    adam.zero_grad()
    loss.backward()
    adam.step()


def _pixel_step(param: PixelImage, acts: torch.Tensor, step: int, config: PixelConfig) -> None:
    """One normalized ascent step of "pixel" / "yosinski" on the mean-subtracted pixels (then their regularizers)."""
    (grad,) = torch.autograd.grad(acts.sum(), param.pixels)
    with torch.no_grad():
        centered = param.pixels - param.mean  # PixelImage's start colour: the "zero" of the mean-subtracted updates
        if config.method == "pixel":
            centered = normalized_step(centered, grad, config.lr_at(step)) * config.decay
        else:
            centered = normalized_step(centered, grad, config.lr_at(step))
            centered = yosinski_regularize(centered, grad, step, config)
        param.pixels.copy_(centered + param.mean)
        param.clamp_()


__all__ = ["DEFAULT_PIXEL_METHOD", "FALLBACK_PIXEL_METHOD", "METHODS", "PixelConfig", "default_pixel_method", "pixel_am", "yosinski_regularize"]
