"""Reading layer outputs with forward hooks, always removed afterwards (in ``finally``).

Outputs rule (one for the net's return value and for every hooked module): a tensor is itself; a
dict or a transformers ``ModelOutput`` gives its ``logits`` entry, else its first tensor value; a
tuple or list gives its first element (recursively). The classifier output is the layer ``logits``:
a module of that name where the model has one (EfficientNet-Lite), else the model's return value.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn

from .units import UnitError
from ..infra.messages import nearest_names

OUTPUT = "output"  # the pseudo-layer for whatever the model returns
LOGITS = "logits"  # the classifier output: a module of this name, else an alias of OUTPUT


class NoTensorError(TypeError, ValueError):
    """A model or module returned nothing tensor-like: an expected error (one line, exit 2), and still a
    ``TypeError`` for the callers that skip such modules."""


def unwrap_output(value, what: str = "model") -> torch.Tensor:
    """One tensor from what a model or module returns, by the rule in this module's docstring.

    Raises:
        NoTensorError: nothing tensor-like to take (e.g. ``None`` or a string); a ``TypeError`` and a ``ValueError``.
    """
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):  # dicts and transformers' ModelOutput (an OrderedDict)
        if isinstance(value.get(LOGITS), torch.Tensor):
            return value[LOGITS]
        for item in value.values():
            if isinstance(item, torch.Tensor):
                return item
    if isinstance(value, (tuple, list)) and value:
        return unwrap_output(value[0], what)
    raise NoTensorError(f"{what} returned {type(value).__name__}, which holds no tensor to read: make it return a tensor, a tuple, a dict or a ModelOutput")


def output_names(model: nn.Module) -> tuple[str, ...]:
    """The layer names that mean the model's return value: ``output``, and ``logits`` unless a module has that name."""
    has_logits = any(name == LOGITS for name, _ in model.named_modules())
    return (OUTPUT,) if has_logits else (LOGITS, OUTPUT)


def addressable_layers(model: nn.Module) -> list[str]:
    """Names of every submodule of ``model`` (the names a unit's layer may take), plus the output names."""
    return [name for name, _ in model.named_modules() if name] + list(output_names(model))


def get_module(model: nn.Module, layer: str) -> nn.Module:
    """The submodule called ``layer``; an unknown name raises :class:`UnitError` naming the nearest ones."""
    modules = dict(model.named_modules())
    if layer in modules and layer:
        return modules[layer]
    close = nearest_names(layer, addressable_layers(model))
    hint = f" Nearest names: {', '.join(close)}." if close else ""
    raise UnitError(f"unknown layer {layer!r}.{hint} `dgnam layers NET` lists all layers.")


class StopForward(Exception):
    """Raised inside a forward pass once everything asked for has been computed (see :func:`capture`)."""

    def __init__(self, output=None):
        self.output = output


@contextmanager
def capture(model: nn.Module, layers: Sequence[str], stop: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named submodules during the forward passes inside the block.

    Args:
        model: The module whose submodules are hooked (for a :class:`~dgnam.nets.Target`, pass
            ``target.model``).
        layers: Module names, or the output names (:func:`output_names`: ``output``, and ``logits``
            where no module has that name), which record the model's return value by the outputs rule.
        stop: Raise :class:`StopForward` as soon as every module layer has its output, so the rest of
            the pass is not computed (the caller catches it; output names never stop a pass).

    Yields:
        A dict ``layer -> output`` filled by each forward pass (the last pass wins).

    Example:
        >>> with capture(net.model, ["_blocks.15"]) as acts:
        ...     net(images)
        >>> acts["_blocks.15"].shape
    """
    store: dict[str, torch.Tensor] = {}
    handles = []
    returned = output_names(model)
    wanted = [layer for layer in dict.fromkeys(layers) if layer not in returned]
    aliases = [layer for layer in dict.fromkeys(layers) if layer in returned]
    try:
        if aliases:  # "output" / "logits" as a layer: the model's own return value (by the outputs rule), never a stop

            def root_hook(_module, _inputs, output):
                value = unwrap_output(output, f"the model ({type(model).__name__})")
                store.update(dict.fromkeys(aliases, value))

            handles.append(model.register_forward_hook(root_hook))
        for layer in wanted:
            module = get_module(model, layer)

            def hook(_module, _inputs, output, layer=layer):
                try:
                    store[layer] = unwrap_output(output, f"module {layer!r}")
                except TypeError:  # a module that returns no tensor (None, a cache object): nothing to read
                    return
                if stop and all(name in store for name in wanted):
                    raise StopForward()

            handles.append(module.register_forward_hook(hook))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def layer_output(target, layer: str, images: torch.Tensor) -> torch.Tensor:
    """``layer``'s output for ``images`` through ``target`` (a :class:`~dgnam.nets.Target`, its input
    preprocessing included): the pass stops at a module layer; ``output`` gives what the target returns.

    Example:
        >>> layer_output(net, "_blocks.15", images).shape
    """
    result = None
    with capture(target.model, [layer], stop=layer != OUTPUT) as acts:
        try:
            result = target(images)
        except StopForward:
            pass
    return result if layer == OUTPUT else acts[layer]


def forward_until(model: nn.Module, layer: str, *inputs) -> torch.Tensor:
    """Run ``model`` only as far as ``layer`` and return that layer's output (saves the rest of the pass).

    Works for any model whose forward calls ``layer``: a hook raises once the output exists, and the
    hook is removed in ``finally``.
    """

    def hook(_module, _inputs, output):
        raise StopForward(unwrap_output(output, f"module {layer!r}"))

    handle = get_module(model, layer).register_forward_hook(hook)
    try:
        model(*inputs)
    except StopForward as stop:
        return stop.output
    finally:
        handle.remove()
    raise RuntimeError(f"layer {layer!r} was not called by the forward pass")
