"""Looking up and loading registered nets: :func:`list_nets`, :func:`get_net_spec`, :func:`load_net`, the class
layers and the judges (the built-in entries of :mod:`.registry` are registered on first use)."""

from __future__ import annotations

from pathlib import Path

from ..infra.hub import check_explicit, load_state_dict, load_strict, resolve_weights
from .spec import _REGISTRY, NetSpec
from .target import InputSpec, Target


def list_nets() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


CLASS_LAYERS = ("logits", "output")  # names every net answers with its class scores (the outputs rule)


def class_layers(net: str | None) -> tuple[str, ...]:
    """The layers whose units are classes for ``net`` (a registry name, or None / a foreign net's string):
    ``logits``, ``output`` and the registry entry's ``output_layer`` (e.g. CaffeNet's ``fc8``)."""
    extra = (get_net_spec(net).output_layer,) if net in list_nets() else ()
    return tuple(dict.fromkeys(CLASS_LAYERS + extra))


def known_class_layers() -> tuple[str, ...]:
    """``logits``, ``output`` and every registered net's ``output_layer``: the class layers of any known net."""
    return tuple(dict.fromkeys(CLASS_LAYERS + tuple(get_net_spec(n).output_layer for n in list_nets())))


def get_net_spec(name: str) -> NetSpec:
    _ensure_builtin()
    if name not in _REGISTRY:
        from ..infra.messages import unknown_name

        raise unknown_name("net", name, _REGISTRY)
    return _REGISTRY[name]


def load_net(name: str, weights: str | Path | None = None, download: bool = False, fit: str | None = None) -> Target:
    """Build a registered net with its weights, as a :class:`Target`.

    Args:
        name: Registry name, e.g. ``"efficientnet_lite0"`` (see :func:`list_nets`).
        weights: Optional local weight file to use instead of the registry's source.
        download: Allow downloading weights that are not found offline.
        fit: Override the input spec's fit rule (``"resize"`` or ``"center-crop"``).

    Returns:
        The net, in eval mode with frozen parameters.

    Example:
        >>> net = load_net("efficientnet_lite0")
        >>> net(torch.rand(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """
    spec = get_net_spec(name)
    model = spec.builder()
    path = resolve_weights(spec.weights, weights, download=download)
    load_strict(model, (spec.loader or load_state_dict)(path), what=name)
    if weights is not None:  # the user's file: loaded when it fits, with a warning when it is not the registry's
        check_explicit(path, spec.weights, f"net {name}")
    input_spec = spec.input if fit is None else _replace(spec.input, fit=fit)
    model.eval().requires_grad_(False)  # our own copy: frozen for good
    return Target(model, input_spec, spec.categories, name=name)


def _replace(spec: InputSpec, **changes) -> InputSpec:
    from dataclasses import replace

    return replace(spec, **changes)


def judge_family(judge: str, target: str | None) -> str | None:
    """``"in-family"`` or ``"out-of-family"``: whether the registered nets ``judge`` and ``target`` share an architecture family.

    None when either is not registered or has no recorded family (a user's own net).

    Example:
        >>> judge_family("squeezenet1_1", "efficientnet_lite0"), judge_family("efficientnet_lite1", "efficientnet_lite0")
        ('out-of-family', 'in-family')
    """
    _ensure_builtin()
    a, b = _REGISTRY.get(judge), _REGISTRY.get(target) if target else None
    if a is None or b is None or a.family is None or b.family is None:
        return None
    return "in-family" if a.family == b.family else "out-of-family"


def list_judges() -> list[str]:
    """Registered nets whose role is ``"judge"`` (never optimized against), in registration order."""
    _ensure_builtin()
    return [name for name, spec in _REGISTRY.items() if spec.role == "judge"]


_BUILTIN_LOADED = False


def _ensure_builtin() -> None:
    """Register the built-in nets on first use (no work at import)."""
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    from . import registry  # noqa: F401  (registers entries)
