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

import math
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterator, Sequence

import torch
from tqdm.auto import tqdm

from ..generators import Generator, code_center_scale
from ..nets import Target
from ..core.objectives import Objective, run_objective, units_objective
from ..core.param import CodeParam
from ..core.regularizers import BatchNormStatsLoss
from ..core.transforms import TRANSFORM_SETS, Transform, transform_generators
from ..core.units import Unit
from .base import AMResult, BestTracker, check_batch, linear_lr, normalized_step, track_step, tracked_result
from ..core.codes import clip_to
from ..infra.hardware import PRECISIONS, resolve_precision
from ..infra.messages import short


#: The step-size schedules of :attr:`DGNAMConfig.schedule`.
SCHEDULES = ("linear", "cosine")
#: Most random views per step (:attr:`DGNAMConfig.eot`): each costs a forward and backward pass of the target.
MAX_EOT = 16


@dataclass
class DGNAMConfig:
    """Settings of the code-space optimization; the defaults are the paper's. A run through a prior gets the
    prior's measured settings over them (:func:`dgnam_config`; :func:`dgn_am` and ``resolve`` without a config)."""

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
    #   rotation of G(y) (sizes relative to a 224 px image), as the pixel baselines do; "harsh" through larger ones
    #   (scale 0.75-1.15, rotation 15 degrees, shift 12 %, flips: core.transforms.harsh_transforms); "none" = the paper
    eot: int = 1  # beyond the paper: random views of G(y) whose gain is averaged per step (expectation over
    #   transformations; needs transforms); 1 = one view, as before. Each view costs a forward and backward pass
    schedule: str = "linear"  # the step size from lr_start to lr_end: "linear" (the paper's) or "cosine" (half a cosine)
    precision: str = "fp32"  # "bf16": the generator and the target run under bfloat16 autocast during the ascent (faster
    #   on CPUs with AVX-512 BF16 or AMX); the code, its update and the returned images stay fp32
    track_every: int = 10  # with transforms, the untransformed images are scored for the history and the best image every
    #   k steps (each time an extra forward pass: 1.38x faster at 10 than at 1, BENCHMARKS.md "Speed on the CPU"); the other
    #   steps' history is empty (NaN). The ascent and the last images do not depend on it. Without transforms every step is scored
    early_stop: int = 0  # stop once no image's tracked activation rose by 1 % over this many steps (0: run every step)

    def __post_init__(self):
        if self.optimizer not in ("paper", "adam"):
            raise ValueError(f"optimizer must be 'paper' or 'adam', got {self.optimizer!r}")
        if self.transforms not in ("none", *TRANSFORM_SETS):
            raise ValueError(f"transforms must be 'none' or one of {', '.join(TRANSFORM_SETS)}, got {self.transforms!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if not 1 <= self.eot <= MAX_EOT:
            raise ValueError(f"eot must be 1-{MAX_EOT} views per step, got {self.eot}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (resolve 'auto' first), got {self.precision!r}")
        if self.track_every < 1 or self.early_stop < 0:
            raise ValueError(f"track_every must be at least 1 and early_stop at least 0, got {self.track_every} and {self.early_stop}")
        if self.eot > 1 and self.transforms == "none":
            raise ValueError(f"eot {self.eot} averages over random views: give transforms 'standard' or 'harsh' (--transforms)")

    def lr_at(self, step: int) -> float:
        """The step size at ``step``: falling linearly (the paper's code) or along half a cosine from lr_start to lr_end."""
        if self.schedule == "cosine":
            return self.lr_end + (self.lr_start - self.lr_end) * 0.5 * (1.0 + math.cos(math.pi * step / self.steps))
        return linear_lr(self.lr_start, self.lr_end, step, self.steps)


def dgn_am_settings(generator) -> dict:
    """A prior's ``dgn_am`` settings: the :class:`DGNAMConfig` fields measured for it, stored once, in its file's
    header (``save_prior(extra={"dgn_am": ...})``; empty: the paper's settings).

    Args:
        generator: A loaded :class:`~dgnam.generators.Generator` (its ``dgn_am``, read from the header when it
            was loaded), a ``.safetensors`` prior file (its header, read without the weights) or a registered
            name (a shipped prior's file header; entries built by code, as DeePSiM's, have none); None: none.

    Raises:
        WeightsError: a file that is not a safetensors prior, or a registered prior whose file is not here.
    """
    if generator is None:
        return {}
    if not isinstance(generator, (str, Path)):
        return dict(getattr(generator, "dgn_am", None) or {})
    from ..generators import get_generator_spec, is_generator_file
    from ..generators.prior import prior_metadata
    from ..infra.hub import WeightsError, resolve_weights

    if is_generator_file(str(generator)):
        if not Path(generator).is_file():
            return {}  # load_generator names the missing file
        path = generator
    else:
        spec = get_generator_spec(str(generator))
        if spec.builder is not None:
            return {}
        path = resolve_weights(spec.weights)
    try:
        return dict(prior_metadata(path).get("dgn_am") or {})
    except Exception as exc:  # not a safetensors prior: load_generator says so in full
        raise WeightsError(f"cannot read the DGN-AM settings of {short(str(generator))} ({str(exc)[:120]}): give a .safetensors prior") from exc


def dgnam_config(generator=None, **settings) -> DGNAMConfig:
    """The :class:`DGNAMConfig` of a run through ``generator``: the paper's settings (the defaults of
    :class:`DGNAMConfig`), then the prior's measured ones (:func:`dgn_am_settings`), then ``settings`` (None
    values are ignored). What :func:`dgnam.methods.choose.resolve` gives, and :func:`dgn_am` runs without a config.

    Args:
        generator: A loaded generator, a ``.safetensors`` prior file or a registered name; None: the paper's settings.
        **settings: :class:`DGNAMConfig` fields that win over both.

    Raises:
        ValueError: a setting :class:`DGNAMConfig` does not have (named, with the known ones).

    Example:
        >>> dgnam_config(load_generator("my_prior.safetensors"), steps=100).lr_start  # the prior's own step
    """
    known = {f.name for f in fields(DGNAMConfig)}
    base = dgn_am_settings(generator)
    given = {k: v for k, v in settings.items() if v is not None}
    if given.get("precision") == "auto":  # on the CPU: bf16 where it computes bf16 natively (the CLI resolves it for --device)
        given["precision"] = resolve_precision("auto")
    for what, keys in (("the prior's dgn_am settings", base), ("the DGN-AM settings", given)):
        unknown = sorted(set(keys) - known)
        if unknown:
            raise ValueError(f"{what} name unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for key, value in base.items():  # read from a file: data, checked before it reaches the config
        default = getattr(DGNAMConfig, key)
        kind = (int, float) if isinstance(default, float) else type(default)
        if not isinstance(value, kind) or (isinstance(value, bool) and not isinstance(default, bool)):
            raise ValueError(f"the prior's dgn_am settings give {key} = {short(repr(value), 40)}, which is not of type {type(default).__name__}: "
                             "export the prior again with right settings (scripts/ship_prior.py --dgn-am)")
    return DGNAMConfig(**{**base, **given})


def dgn_am_step(code: torch.Tensor, grad: torch.Tensor, lr: float, decay: float, bounds: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """The paper's update, per batch element: ascend, clip to the code's range, decay.

    ``code += lr * g / mean|g|`` (so ``lr`` is the mean absolute change per code unit), then clip to
    ``bounds = (lower, upper)`` when given, then ``code *= decay``.
    """
    return clip_to(normalized_step(code, grad, lr), bounds) * decay


@contextmanager
def low_precision(generator: Generator, device: torch.device) -> Iterator[None]:
    """bfloat16 autocast on ``device`` with the generator's weights channels-last (the layout oneDNN's bf16 kernels
    are fastest in, measured: BENCHMARKS.md "Speed on the CPU"), the generator's layout restored afterwards."""
    generator.to(memory_format=torch.channels_last)
    try:
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
            yield
    finally:
        generator.to(memory_format=torch.contiguous_format)


def _dgn_am_transforms(config: DGNAMConfig, size: int) -> Transform | None:
    """The random transforms of ``config.transforms`` for generator images of ``size`` px: lucid's, scaled from 224 px."""
    return None if config.transforms == "none" else TRANSFORM_SETS[config.transforms](side=size)


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
        config: Step schedule and optimizer; None: :func:`dgnam_config` of the generator, as ``resolve`` gives it.
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
    config = config if config is not None else dgnam_config(generator)  # a fresh one per call, never shared
    check_batch(units, seeds)
    objective = objective or units_objective(units)
    if init_code is not None and tuple(init_code.shape) != (len(units), *generator.code_shape):
        raise ValueError(f"init_code has shape {tuple(init_code.shape)}; expected ({len(units)}, {', '.join(map(str, generator.code_shape))})")
    # the optimization variable: whitened code z, code = center + scale * z
    center, scale = code_center_scale(generator) if config.whiten else (None, None)
    param = CodeParam(seeds, generator, config.init_std, config.clip, center, scale, init=init_code)
    tracker = BestTracker(len(units), config.steps, units)
    _ascend_code(target, generator, param, config, objective, tracker, transform_generators(seeds), progress)
    with torch.no_grad():
        code = param().detach()
        images = generator(code)
        final = run_objective(target, images, objective)
    return tracked_result(tracker, units, seeds, images, final, "dgn-am", asdict(config), codes=code)


def _ascend_code(target: Target, generator: Generator, param: CodeParam, config: DGNAMConfig, objective: Objective, tracker: BestTracker,
                 gens, progress: bool) -> None:  # fmt: skip
    """The loop of :func:`dgn_am`: ``config.steps`` tracked steps on the code ``param`` (the paper's update or Adam)."""
    adam = torch.optim.Adam(param.parameters(), lr=config.adam_lr) if config.optimizer == "adam" else None
    transform = _dgn_am_transforms(config, min(generator.output_size))
    with ExitStack() as stack:
        bn = stack.enter_context(BatchNormStatsLoss(target.model)) if config.bn_weight > 0 else None
        if config.precision == "bf16":
            stack.enter_context(low_precision(generator, param.z.device))
        for step in tqdm(range(config.steps), desc="dgn-am", disable=not progress, leave=False):
            images = generator(param())
            track = transform is None or step % config.track_every == 0
            acts = track_step(step, images, tracker, objective, target, target, transform, gens, bn, track=track)
            if config.eot > 1:  # the other views of this step; their gains averaged with the first's
                acts = (acts + sum(run_objective(target, transform(images, gens), objective) for _ in range(config.eot - 1))) / config.eot
            gain = acts.float().sum() - (config.bn_weight * bn.loss() if bn is not None else 0.0)
            if adam is None:
                (grad,) = torch.autograd.grad(gain, param.z)
                with torch.no_grad():
                    param.z.copy_(dgn_am_step(param.z, grad, config.lr_at(step), config.decay, param.bounds))
            else:
                adam.zero_grad()
                (config.adam_l2 * param.z.pow(2).sum() - gain).backward()
                adam.step()
                param.clamp_()
            if config.early_stop and track and tracker.plateaued(step, config.early_stop):
                break
