"""The net registry's entries (:class:`NetSpec`) and where they are kept (:func:`register_net`); the ImageNet
class names the built-in entries carry (:func:`imagenet_categories`).

The built-in entries (:mod:`.registry`) register through here when :mod:`.catalog` first looks one up.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..infra.hub import WeightSource
from .target import InputSpec


@dataclass(frozen=True)
class NetSpec:
    """One registry entry: a named, pretrained target network."""

    name: str
    builder: Callable[[], nn.Module]
    weights: WeightSource
    input: InputSpec
    categories: tuple[str, ...] | None = None  # names of the output units of ``logits``
    license: str = "unknown"
    description: str = ""
    output_layer: str = "logits"  # the layer that holds pre-softmax class scores
    # reads a weight file into a state dict of this net's keys (default: torch/safetensors files)
    loader: Callable[[Path], dict[str, torch.Tensor]] | None = None
    # architecture family ("efficientnet-lite", "squeezenet", ...): a judge of the target's own family
    # can share its blind spots, one of another family is an independent vote (None: unknown)
    family: str | None = None
    role: str = "target"  # "judge": scores images and is never optimized against, nor used to choose settings


_REGISTRY: dict[str, NetSpec] = {}


def register_net(spec: NetSpec) -> NetSpec:
    """Add an entry to the net registry (names are unique)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"net {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class descriptions in the standard index order (synonyms comma-separated)."""
    text = resources.files("dgnam").joinpath("data/imagenet_classes.txt").read_text()
    names = tuple(line for line in text.splitlines() if line)
    assert len(names) == 1000, len(names)
    return names
