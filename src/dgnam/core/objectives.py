"""Objectives: what is maximized. Each maps the recorded layer outputs to one score per image.

Objectives compose with ``+``, ``-`` and scalar ``*`` (as in lucent and captum's optim), e.g.
``units_objective(units) - 0.1 * other``. Every objective knows which layers it reads, so the loop
hooks exactly those.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch

from .hooks import OUTPUT, StopForward, addressable_layers, capture, output_names
from .units import Unit, UnitError, check_unit, read_unit

if TYPE_CHECKING:  # for annotations only: the core sits below the nets (any module with Target's interface works)
    from ..nets import Target

Acts = dict[str, torch.Tensor]


class Objective:
    """A score per batch element, computed from recorded activations.

    Args:
        fn: ``acts -> (N,) tensor``; ``acts`` holds each layer in ``layers`` and ``"output"``.
        layers: Layer names that ``fn`` reads.
        name: For display.
    """

    def __init__(self, fn: Callable[[Acts], torch.Tensor], layers: Sequence[str], name: str = "objective"):
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.name = name

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.fn(acts)

    def _combine(self, other, op, symbol: str) -> "Objective":
        if isinstance(other, Objective):
            return Objective(lambda a: op(self(a), other(a)), self.layers + other.layers, f"({self.name} {symbol} {other.name})")
        if isinstance(other, (int, float)):
            return Objective(lambda a: op(self(a), other), self.layers, f"({self.name} {symbol} {other})")
        return NotImplemented

    def __add__(self, other):
        return self._combine(other, torch.add, "+")

    __radd__ = __add__

    def __sub__(self, other):
        return self._combine(other, torch.sub, "-")

    def __mul__(self, other):
        if not isinstance(other, (int, float)):
            return NotImplemented
        return self._combine(other, torch.mul, "*")

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1.0

    def __repr__(self) -> str:
        return f"Objective({self.name})"


def units_objective(units: Sequence[Unit]) -> Objective:
    """Batch element ``i`` scores the activation of ``units[i]`` (units may sit in different layers)."""
    units = list(units)
    by_layer: dict[str, list[int]] = {}
    for i, u in enumerate(units):
        by_layer.setdefault(u.layer, []).append(i)

    def fn(acts: Acts) -> torch.Tensor:
        first = acts[units[0].layer]
        out = first.new_zeros(len(units))
        for layer, idx in by_layer.items():
            a = acts[layer]
            if a.shape[0] != len(units):
                raise ValueError(f"batch of {a.shape[0]} images for {len(units)} units")
            rows = torch.tensor(idx, device=a.device)
            out = out.index_put((rows,), read_unit(a[rows], [units[i] for i in idx]))
        return out

    name = str(units[0]) if len(units) == 1 else f"{len(units)} units"
    return Objective(fn, list(by_layer), name)


def run_objective(target: Target, images: torch.Tensor, objective: Objective) -> torch.Tensor:
    """Forward ``images`` through ``target`` and return the objective's (N,) scores (differentiable).

    When the objective reads no net output (hidden units only), the pass stops after the deepest
    layer it reads: the rest of the net would change nothing (e.g. VGG16's conv5 block for a conv3
    unit; a BatchNorm-statistics term then covers the layers up to there)."""
    returned = output_names(target.model)
    early = not set(returned) & set(objective.layers)
    out = None
    with capture(target.model, objective.layers, stop=early) as acts:
        try:
            out = target(images)
        except StopForward:
            pass
    acts = dict(acts)
    if out is not None:
        acts.update(dict.fromkeys(returned, out))
    return objective(acts)


def check_units(target: Target, units: Sequence[Unit]) -> dict[str, tuple[int, ...]]:
    """Validate units against the target's layer shapes at its native input size.

    Returns:
        ``layer -> output shape`` for the layers the units use.

    Raises:
        UnitError: an unknown layer (nearest names listed), a unit out of range, a bad location.
    """
    layers = list(dict.fromkeys(u.layer for u in units))
    h, w = target.spec.size
    probe = torch.zeros(1, target.spec.channels, h, w, device=next(target.buffers()).device)
    with torch.no_grad():
        with capture(target.model, layers) as acts:  # unknown names raise here, with suggestions
            out = target(probe)
    shapes = {k: tuple(v.shape) for k, v in acts.items()}
    shapes.update({name: tuple(out.shape) for name in output_names(target.model) if name in layers})
    for u in units:
        if u.layer not in shapes:
            raise UnitError(f"layer {u.layer!r} returned no tensor (or was not called by the forward pass); `dgnam layers NET` lists the readable layers")
        check_unit(u, shapes[u.layer])
    return shapes


def receptive_field_box(target: Target, unit: Unit, image_size: tuple[int, int], trials: int = 2, seed: int = 0) -> tuple[int, int, int, int] | None:
    """The pixels of an ``image_size`` image that ``unit`` depends on, as (top, left, bottom, right), end exclusive.

    Computed, not looked up: the support of the unit's gradient with respect to the image the loop
    feeds the target (so the target's resize or crop is accounted for), over a few random images.
    Used to crop visualizations of hidden units to what they see, as the paper did.

    Returns:
        The box, or None where the unit depends on the whole image.
    """
    rng = torch.Generator().manual_seed(seed)
    device = next(target.buffers()).device
    support = torch.zeros(image_size, device=device)
    objective = units_objective([unit])
    for _ in range(trials):
        image = torch.rand(1, target.spec.channels, *image_size, generator=rng).to(device).requires_grad_(True)
        (grad,) = torch.autograd.grad(run_objective(target, image, objective).sum(), image)
        support += grad.abs().sum(dim=(0, 1))
    rows = torch.nonzero(support.sum(1) > 0).flatten()
    cols = torch.nonzero(support.sum(0) > 0).flatten()
    if len(rows) == 0:
        return None
    box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    return None if box == (0, 0, *image_size) else box


def all_layer_shapes(target: Target) -> dict[str, tuple[int, ...]]:
    """Output shape of every addressable layer of ``target`` at its native size (for ``dgnam layers``)."""
    h, w = target.spec.size
    returned = output_names(target.model)
    names = [n for n in addressable_layers(target.model) if n not in returned]
    with torch.no_grad(), capture(target.model, names) as acts:
        out = target(torch.zeros(1, target.spec.channels, h, w, device=next(target.buffers()).device))
    shapes = {n: tuple(a.shape) for n, a in acts.items() if isinstance(a, torch.Tensor)}
    shapes.update(dict.fromkeys(returned, tuple(out.shape)))
    return {n: shapes[n] for n in names + list(returned) if n in shapes}


__all__ = ["Objective", "units_objective", "run_objective", "check_units", "all_layer_shapes", "receptive_field_box", "UnitError"]
