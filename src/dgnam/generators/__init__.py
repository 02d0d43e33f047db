"""Generators: learned image priors G mapping a code y to an RGB image in [0, 1].

A :class:`Generator` is an ``nn.Module`` with a code shape, per-unit code bounds (the paper clips
the code to each unit's natural range, [0, 3 sigma] of the encoder's activations) and a native
output size. The registry (:class:`GeneratorSpec`) mirrors the nets' registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..infra.hub import WeightSource, check_explicit, load_state_dict, load_strict, resolve_weights


class Generator(nn.Module):
    """Base class: subclasses define ``decode(code) -> image in [0, 1]``.

    Attributes:
        code_shape: Shape of one code, e.g. ``(4096,)`` or ``(256, 6, 6)``.
        output_size: Native (height, width) of the images.
        lower, upper: Buffers of shape ``code_shape`` with the per-unit clipping bounds
            (``-inf``/``inf`` where unknown).
        dgn_am_defaults: :class:`~dgnam.methods.dgn_am.DGNAMConfig` fields measured to suit this generator
            (e.g. ``{"lr_start": 0.5}`` for a prior whose codes saturate under the paper's step of 8);
            :func:`~dgnam.methods.dgn_am.dgnam_config` applies them under the caller's own settings. Empty:
            the paper's settings.
    """

    def __init__(self, code_shape: tuple[int, ...], output_size: tuple[int, int]):
        super().__init__()
        self.code_shape = tuple(code_shape)
        self.output_size = tuple(output_size)
        self.dgn_am_defaults: dict = {}
        self.register_buffer("lower", torch.full(self.code_shape, float("-inf")), persistent=False)
        self.register_buffer("upper", torch.full(self.code_shape, float("inf")), persistent=False)

    def set_bounds(self, lower: torch.Tensor | float | None = None, upper: torch.Tensor | float | None = None) -> "Generator":
        """Set the clipping range of the code (broadcast to ``code_shape``)."""
        if lower is not None:
            self.lower = torch.as_tensor(lower, dtype=torch.float32, device=self.lower.device).expand(self.code_shape).clone()
        if upper is not None:
            self.upper = torch.as_tensor(upper, dtype=torch.float32, device=self.upper.device).expand(self.code_shape).clone()
        if bool((self.lower > self.upper).any()):
            raise ValueError("lower bound above upper bound for some code units")
        return self

    def clip(self, code: torch.Tensor) -> torch.Tensor:
        """``code`` clipped to this generator's ``[lower, upper]`` (:func:`~dgnam.core.codes.clip_to`)."""
        from ..core.codes import clip_to

        return clip_to(code, (self.lower, self.upper))

    def random_code(self, seeds: list[int] | int, std: float = 1.0) -> torch.Tensor:
        """Initial codes drawn from N(0, std^2), one per seed (each from its own RNG, so a code
        depends only on its seed and not on the batch it runs in)."""
        seeds = [seeds] if isinstance(seeds, int) else list(seeds)
        codes = [torch.randn(self.code_shape, generator=torch.Generator().manual_seed(int(s))) * std for s in seeds]
        return torch.stack(codes).to(self.lower.device)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        if tuple(code.shape[1:]) != self.code_shape:
            raise ValueError(f"expected codes of shape (N, {', '.join(map(str, self.code_shape))}), got {tuple(code.shape)}")
        return self.decode(code)


def code_center_scale(generator: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and per-unit scale of a generator's codes, both of ``code_shape`` on its device:
    ``code_mean``/``code_std`` where the generator has them (priors trained by dgnam), else 0 and 1
    (N(0, 1) codes, as DeePSiM's fc6). Gradient-free searches step in units of the scale
    (:mod:`dgnam.methods.blackbox`); PPGN-h sampling whitens the code with it (:mod:`dgnam.methods.ppgn`).

    Args:
        generator: Any :class:`Generator`.

    Returns:
        ``(center, scale)``.

    Example:
        >>> center, scale = code_center_scale(load_generator("deepsim_fc6"))  # zeros and ones: no statistics
    """
    like = generator.lower
    center = getattr(generator, "code_mean", None)
    scale = getattr(generator, "code_std", None)
    center = torch.zeros_like(like) if not isinstance(center, torch.Tensor) else center.to(like).reshape(like.shape)
    scale = torch.ones_like(like) if not isinstance(scale, torch.Tensor) else scale.to(like).reshape(like.shape)
    return center, scale


@dataclass(frozen=True)
class GeneratorSpec:
    """One registry entry: a named, pretrained generator."""

    name: str
    builder: Callable[[], Generator] | None  # None: a dgnam prior file that carries its own config
    weights: WeightSource
    encoder: str = ""  # "net:layer" whose features the generator inverts
    license: str = "unknown"
    description: str = ""
    bounds: Callable[[Generator], None] | None = None  # sets the paper's clipping bounds after loading
    default: bool = False  # the default prior of `dgnam visualize` for the encoder's net
    output_size: tuple[int, int] | None = None  # (height, width) of its images
    dgn_am: dict = field(default_factory=dict)  # DGNAMConfig fields measured for it, applied over the paper's
    #   by dgnam.methods.resolve (a shipped prior's file header carries the same: tests/test_registries.py)


_REGISTRY: dict[str, GeneratorSpec] = {}
_BUILTIN_LOADED = False


def register_generator(spec: GeneratorSpec) -> GeneratorSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"generator {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_builtin() -> None:
    global _BUILTIN_LOADED
    if not _BUILTIN_LOADED:
        _BUILTIN_LOADED = True
        from . import registry  # noqa: F401


def list_generators() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_generator_spec(name: str) -> GeneratorSpec:
    _ensure_builtin()
    if name not in _REGISTRY:
        from ..infra.messages import unknown_name

        raise unknown_name("generator", name, _REGISTRY)
    return _REGISTRY[name]


def is_generator_file(name: str) -> bool:
    """Whether a generator argument names a file (``.safetensors`` or a path) rather than a registry entry."""
    return name.endswith(".safetensors") or "/" in name or "\\" in name


def load_generator(name: str, weights: str | Path | None = None, download: bool = False) -> Generator:
    """Build a registered generator with its weights and clipping bounds.

    Args:
        name: Registry name (see :func:`list_generators`), or the path of a ``.safetensors`` prior
            written by ``dgnam train-generator --export``.
        weights: Optional local weight file instead of the registry's source.
        download: Allow downloading weights that are not found offline.

    Returns:
        The generator in eval mode with frozen parameters.
    """
    if is_generator_file(name):
        from ..infra.hub import WeightsError
        from ..infra.messages import short
        from .prior import load_prior

        if not Path(name).is_file():
            what = "is a folder" if Path(name).is_dir() else "does not exist"
            raise WeightsError(f"generator file {short(name)} {what}: give a .safetensors prior (from train-generator --export), "
                               f"or a registered name (`dgnam generators`)")
        gen = load_prior(name)
    else:
        spec = get_generator_spec(name)
        path = resolve_weights(spec.weights, weights, download=download)
        if spec.builder is None:  # a dgnam prior: the file carries its architecture and code statistics
            from .prior import load_prior

            gen = load_prior(path)
        else:
            gen = spec.builder()
            load_strict(gen, load_state_dict(path), what=name)
        if weights is not None:  # the user's file, loaded strictly above: a warning when it is not the registry's
            check_explicit(path, spec.weights, f"generator {name}")
        if spec.bounds is not None:
            spec.bounds(gen)
    gen.eval()
    for p in gen.parameters():
        p.requires_grad_(False)
    return gen
