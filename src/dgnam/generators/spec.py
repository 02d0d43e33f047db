"""The generator registry's entries (:class:`GeneratorSpec`) and where they are kept (:func:`register_generator`).

The built-in entries (:mod:`.registry`) register through here when :mod:`.catalog` first looks one up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..infra.hub import WeightSource
from .base import Generator


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
    #   (the DGN-AM settings measured for a prior are stored in its file's header only: dgnam.methods.dgn_am.dgn_am_settings)


_REGISTRY: dict[str, GeneratorSpec] = {}
_BUILTIN_LOADED = False


def register_generator(spec: GeneratorSpec) -> GeneratorSpec:
    """Add an entry to the generator registry (names are unique)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"generator {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec
