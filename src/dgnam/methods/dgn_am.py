"""The DGN-AM loop: gradient ascent on a generator's code to maximize a unit of a target net.

    y* = argmax_y  Phi_h(G(y)) - lambda * ||y||       (Nguyen et al. 2016, eq. 2)

The paper's code (Caffe, ``act_max.py``) took steps of ``lr_t * g / mean|g|`` in code space with
``lr_t`` falling linearly from 8 to ~0 over 200 steps, clipped the code to [lower, upper] and
multiplied it by 0.99 per step (the L2 term). :func:`dgn_am_step` is that update, in one place.

The update runs in whitened code units ``z = (y - mean) / std`` of the generator's code statistics
(:func:`~dgnam.generators.code_center_scale`): for the paper's generators (no statistics: mean 0,
std 1) that is exactly the paper's update; for priors trained here, whose code units differ in scale
and are not centred on 0 (e.g. EfficientNet's linear bottleneck outputs), a step of ``lr`` moves each
unit by ``lr`` of its own std on average and the decay pulls towards the data mean, not towards 0
(measured: in raw units the decay shrank such codes to a grey image by the last step).
"""

from __future__ import annotations

from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..generators import Generator, code_center_scale
from ..nets import Target
from ..core.objectives import Objective, run_objective, units_objective
from ..core.regularizers import BatchNormStatsLoss
from ..core.transforms import Transform, standard_transforms, transform_generators
from ..core.units import Unit
from .base import AMResult, BestTracker, initial_code, linear_lr, normalized_step
from ..core.codes import clip_to


@dataclass
class DGNAMConfig:
    """Settings of the code-space optimization; the defaults are the paper's."""

    steps: int = 200  # the paper's number of iterations
    lr_start: float = 8.0  # step size at the first step (paper: 8)
    lr_end: float = 1e-10  # step size at the last step (paper: ~0); falls linearly in between
    decay: float = 0.99  # code multiplied by this per step: the paper's L2 prior on the code
    optimizer: str = "paper"  # "paper" (normalized gradient steps) or "adam"
    adam_lr: float = 0.05  # Adam's learning rate in code space
    adam_l2: float = 1e-3  # with Adam, lambda of the explicit -lambda * ||z||^2 term on the whitened code (no decay)
    init_std: float = 1.0  # initial code ~ N(0, init_std^2), one RNG per seed (paper: N(0, 1))
    clip: bool = True  # clip the code to the generator's [lower, upper] after each step
    whiten: bool = True  # step and decay in units of the generator's code statistics (a no-op for
    #   generators without statistics, e.g. the paper's); False: raw code units
    bn_weight: float = 0.0  # beyond the paper: weight of DeepInversion's BatchNorm-statistics loss on the
    #   target, subtracted from the objective in code space (0 = the paper's method; needs BatchNorm layers)
    transforms: str = "none"  # beyond the paper: "standard" ascends through lucid's random pad, jitter, scale and
    #   rotation of G(y) (sizes relative to a 224 px image), as the pixel baselines do; "none" = the paper

    def __post_init__(self):
        if self.optimizer not in ("paper", "adam"):
            raise ValueError(f"optimizer must be 'paper' or 'adam', got {self.optimizer!r}")
        if self.transforms not in ("none", "standard"):
            raise ValueError(f"transforms must be 'none' or 'standard', got {self.transforms!r}")
        if self.steps < 1:
            raise ValueError("steps must be at least 1")

    def lr_at(self, step: int) -> float:
        """Linearly decreasing step size, as in the paper's code."""
        return linear_lr(self.lr_start, self.lr_end, step, self.steps)


def dgnam_config(generator: Generator | None = None, **settings) -> DGNAMConfig:
    """A :class:`DGNAMConfig`: the paper's defaults, then the generator's measured ones (a registered
    name's entry, a prior file's header, or a loaded generator's ``dgn_am_defaults``), then ``settings``
    (None values are ignored). The same rule as :func:`dgnam.methods.choose.resolve`.

    Example:
        >>> dgnam_config(load_generator("my_prior.safetensors"), steps=100).lr_start  # the prior's own step
    """
    from .choose import dgn_am_config

    return dgn_am_config(generator, overrides=settings)


def dgn_am_step(code: torch.Tensor, grad: torch.Tensor, lr: float, decay: float, bounds: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """The paper's update, per batch element: ascend, clip to the code's range, decay.

    ``code += lr * g / mean|g|`` (so ``lr`` is the mean absolute change per code unit), then clip to
    ``bounds = (lower, upper)`` when given, then ``code *= decay``.
    """
    return clip_to(normalized_step(code, grad, lr), bounds) * decay


def _dgn_am_transforms(kind: str, size: int) -> Transform | None:
    """The random transforms of ``DGNAMConfig.transforms`` for generator images of ``size`` px."""
    if kind == "none":
        return None
    k = size / 224  # lucid's sizes are for 224 px images
    return standard_transforms(pad=round(12 * k), jitter=max(1, round(8 * k)), angle=10, fine_jitter=max(1, round(4 * k)))


def dgn_am(
    target: Target,
    generator: Generator,
    units: Sequence[Unit],
    seeds: Sequence[int],
    config: DGNAMConfig | None = None,
    objective: Objective | None = None,
    progress: bool = True,
    init_code: torch.Tensor | None = None,
) -> AMResult:
    """Synthesize the preferred input of each unit through the generator (one batch).

    Args:
        target: The net whose units are maximized (:func:`dgnam.load_net` or :func:`dgnam.wrap_model`).
        generator: The image prior (:func:`dgnam.load_generator`).
        units: One unit per batch element (repeat a unit to run it from several seeds).
        seeds: One seed per batch element; the initial code depends only on its seed.
        config: Step schedule and optimizer.
        objective: Override of the score to maximize; default ``units_objective(units)``.
        progress: Show a tqdm bar.
        init_code: (N, *code_shape) codes to start from instead of random ones (feature
            accentuation starts from the code of a photo, :mod:`dgnam.methods.accentuate`); clipped like them.

    Returns:
        An :class:`AMResult` with last and best images, activation history and final codes.

    Example:
        >>> net, gen = load_net("caffenet"), load_generator("deepsim_fc6")
        >>> r = dgn_am(net, gen, parse_unit("fc8:945") * 2, seeds=[0, 1])
        >>> r.final  # activation of each returned image
    """
    config = config if config is not None else DGNAMConfig()  # a fresh default per call, never shared
    if len(units) != len(seeds):
        raise ValueError(f"{len(units)} units but {len(seeds)} seeds: give one seed per unit")
    objective = objective or units_objective(units)
    if init_code is not None and tuple(init_code.shape) != (len(units), *generator.code_shape):
        raise ValueError(f"init_code has shape {tuple(init_code.shape)}; expected ({len(units)}, {', '.join(map(str, generator.code_shape))})")
    code = initial_code(generator, seeds, config.init_std, config.clip, start=init_code)
    # the optimization variable: whitened code z, code = center + scale * z
    center, scale = code_center_scale(generator) if config.whiten else (torch.zeros_like(generator.lower), torch.ones_like(generator.lower))
    z = (code - center) / scale
    bounds = ((generator.lower - center) / scale, (generator.upper - center) / scale) if config.clip else None
    tracker = BestTracker(len(units), config.steps, units)
    adam = torch.optim.Adam([z.requires_grad_(True)], lr=config.adam_lr) if config.optimizer == "adam" else None
    transform = _dgn_am_transforms(config.transforms, min(generator.output_size))
    gens = transform_generators(seeds)
    with ExitStack() as stack:
        bn = stack.enter_context(BatchNormStatsLoss(target.model)) if config.bn_weight > 0 else None
        for step in tqdm(range(config.steps), desc="dgn-am", disable=not progress, leave=False):
            if adam is None:
                z = z.detach().requires_grad_(True)
            images = generator(center + scale * z)
            if transform is None:
                acts = run_objective(target, images, objective)
                tracker.update(step, acts, images)
            else:  # the history and the best image follow the activation without transforms
                with torch.no_grad(), bn.paused() if bn is not None else nullcontext():
                    tracker.update(step, run_objective(target, images, objective), images)
                acts = run_objective(target, transform(images, gens), objective)
            gain = acts.sum() - (config.bn_weight * bn.loss() if bn is not None else 0.0)
            if adam is None:
                (grad,) = torch.autograd.grad(gain, z)
                with torch.no_grad():
                    z = dgn_am_step(z, grad, config.lr_at(step), config.decay, bounds)
            else:
                adam.zero_grad()
                (config.adam_l2 * z.pow(2).sum() - gain).backward()
                adam.step()
                with torch.no_grad():
                    z.copy_(clip_to(z, bounds))
    with torch.no_grad():
        code = center + scale * z.detach()
        images = generator(code)
        final = run_objective(target, images, objective)
    tracker.update(config.steps, final, images)
    return AMResult(
        units=list(units),
        seeds=list(seeds),
        images=images.cpu(),
        best_images=tracker.best_images,
        history=tracker.history,
        final=final.cpu(),
        best=tracker.best,
        best_step=tracker.best_step,
        codes=code.cpu(),
        method="dgn-am",
        config=asdict(config),
    )
