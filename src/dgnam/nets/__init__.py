"""Target networks: a registry of named nets, and :class:`Target`, the wrapper the loop talks to.

A registry entry (:class:`NetSpec`, after torchvision's ``Weights`` and timm's pretrained configs)
holds everything needed to use a net: builder, weight source with sha256, input spec, category names
and licence. Any user ``nn.Module`` becomes a target with :func:`wrap_model` and an :class:`InputSpec`.
The wrapper is :mod:`.target`, the entries :mod:`.spec`, the built-in ones :mod:`.registry`, lookups and loading
:mod:`.catalog`, ``--net`` strings :mod:`.adapters`. This module only re-exports.
"""

from .catalog import CLASS_LAYERS, class_layers, get_net_spec, judge_family, known_class_layers, list_judges, list_nets, load_net
from .spec import NetSpec, imagenet_categories, register_net
from .target import LUMINANCE, InputSpec, Target, frozen_eval, wrap_model

__all__ = ["CLASS_LAYERS", "LUMINANCE", "InputSpec", "NetSpec", "Target", "class_layers", "frozen_eval", "get_net_spec",
           "imagenet_categories", "judge_family", "known_class_layers", "list_judges", "list_nets", "load_net", "register_net",
           "wrap_model"]
