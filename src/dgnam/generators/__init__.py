"""Generators: learned image priors G mapping a code y to an RGB image in [0, 1].

A :class:`Generator` (:mod:`.base`) is an ``nn.Module`` with a code shape, per-unit code bounds (the paper
clips the code to each unit's natural range, [0, 3 sigma] of the encoder's activations) and a native
output size. The registry mirrors the nets' registry: its entries (:class:`GeneratorSpec`, :mod:`.spec`),
the built-in ones (:mod:`.registry`), lookups and loading (:mod:`.catalog`); DeePSiM (:mod:`.deepsim`) and
dgnam's own priors (:mod:`.prior`). This module only re-exports.
"""

from .base import Generator, code_center_scale
from .catalog import get_generator_spec, is_generator_file, list_generators, load_generator
from .spec import GeneratorSpec, register_generator

__all__ = ["Generator", "GeneratorSpec", "code_center_scale", "get_generator_spec", "is_generator_file", "list_generators",
           "load_generator", "register_generator"]
