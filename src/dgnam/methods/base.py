"""What every activation-maximization method shares: its result, the best-image tracker, the code clip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..core.units import Unit


@dataclass
class AMResult:
    """What one optimization batch produced; element ``i`` belongs to ``units[i]``, ``seeds[i]``.

    Attributes:
        images: Last images (N, 3, H, W) in [0, 1], as the paper returned.
        best_images: The images with the highest activation seen during the run.
        history: Activation at every step, (N, steps); ``final`` is that of ``images``.
        codes: Final codes (generator methods) or None.
        maps: Per-image maps a method makes beside its images, name -> (N, H, W) in [0, 1] (MACO's
            ``"transparency"``); saved with the run as greyscale PNGs.
    """

    units: list[Unit]
    seeds: list[int]
    images: torch.Tensor
    best_images: torch.Tensor
    history: torch.Tensor
    final: torch.Tensor
    best: torch.Tensor
    best_step: torch.Tensor
    codes: torch.Tensor | None = None
    method: str = "dgn-am"
    config: dict = field(default_factory=dict)
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    categories: tuple[str, ...] | None = None  # the target's class names, for labels (set by dgnam.visualize)

    def subset(self, which) -> "AMResult":
        """The elements picked by ``which``: an index, a slice, a list of indices, or unit string(s) like ``"logits:3"``."""
        n = len(self.units)
        if isinstance(which, slice):
            idx = list(range(n))[which]
        elif isinstance(which, (int, str, Unit)):
            idx = self._pick([which])
        else:
            idx = self._pick(list(which))
        if not idx:
            raise ValueError(f"{which!r} picks no element of this result (units: {', '.join(dict.fromkeys(map(str, self.units)))})")

        def take(t):
            return None if t is None else t[idx]

        return AMResult(units=[self.units[i] for i in idx], seeds=[self.seeds[i] for i in idx], images=take(self.images),
                        best_images=take(self.best_images), history=take(self.history), final=take(self.final), best=take(self.best),
                        best_step=take(self.best_step), codes=take(self.codes), method=self.method, config=self.config,
                        maps={k: v[idx] for k, v in self.maps.items()}, categories=self.categories)  # fmt: skip

    def _pick(self, items: list) -> list[int]:
        idx: list[int] = []
        for item in items:
            if isinstance(item, int):
                if not -len(self.units) <= item < len(self.units):
                    raise ValueError(f"index {item} is out of range for a result of {len(self.units)} image(s)")
                idx.append(item % len(self.units))
            else:
                idx.extend(i for i, u in enumerate(self.units) if str(u) == str(item))
        return idx

    def show(self, which=None) -> "AMResult":
        """A subset to display in a notebook (``result.show([0, 2])``, ``result.show("logits:3")``); None: all.

        Jupyter renders the returned result as its labelled grid (:meth:`_repr_png_`): the same PNG
        bytes as the ``contact_sheet.png`` that :class:`~dgnam.io.write.RunWriter` saves for it.
        """
        return self if which is None else self.subset(which)

    def save(self, out_dir, settings: dict | None = None):
        """Write a run folder (images, best/, contact_sheet.png, results.json) with :class:`~dgnam.io.write.RunWriter`.

        Returns:
            The path of results.json. The folder's ``contact_sheet.png`` holds exactly the bytes of :meth:`_repr_png_`.
        """
        from ..io.write import RunWriter

        writer = RunWriter(out_dir, {"method": self.method, "config": self.config, **(settings or {})}, self.categories)
        writer.add(self, seconds=0.0)
        return writer.finish()

    def _repr_png_(self) -> bytes:
        from ..io.display import sheet_png

        return sheet_png(self)

    def _repr_html_(self) -> str:
        from ..io.display import sheet_html

        return sheet_html(self)


class NonFiniteError(ValueError):
    """An activation or code became NaN or infinite during a run (it would give black images and NaN records)."""


class BestTracker:
    """Records the activation at every step and keeps, per batch element, the best image seen.

    Shared by every optimization loop (DGN-AM and the pixel-space baselines); history and images
    live on the CPU.
    """

    def __init__(self, n: int, steps: int, units: Sequence[Unit] | None = None):
        self.history = torch.zeros(n, steps)
        self.best = torch.full((n,), float("-inf"))
        self.best_step = torch.zeros(n, dtype=torch.long)
        self.best_images: torch.Tensor | None = None
        self.units = units  # for naming the unit whose activation stops being finite

    def update(self, step: int, acts: torch.Tensor, images: torch.Tensor) -> None:
        """Record step ``step``'s activations (and keep better images).

        Raises:
            NonFiniteError: an activation is NaN or infinite (the run stops there, naming unit and step).
        """
        acts = acts.detach().float().cpu()
        bad = (~torch.isfinite(acts)).nonzero().flatten()
        if len(bad):
            i = int(bad[0])
            what = f"unit {self.units[i]}" if self.units is not None else f"batch element {i}"
            raise NonFiniteError(f"the activation of {what} became {float(acts[i])} at step {step}: check the net's weights "
                                 f"(NaN?) and input spec (std 0?), or take a smaller step (--lr-start / --lr)")
        if step < self.history.shape[1]:
            self.history[:, step] = acts
        better = acts > self.best
        if self.best_images is None:
            self.best_images = images.detach().cpu().clone()
        self.best_images[better] = images.detach().cpu()[better]
        self.best[better] = acts[better]
        self.best_step[better] = step


def linear_lr(start: float, end: float, step: int, steps: int) -> float:
    """The step size at ``step``, falling linearly from ``start`` (step 0) to ``end`` (step ``steps``), as
    the paper's code did; shared by DGN-AM and the pixel methods."""
    return start + (end - start) * step / steps


def normalized_step(x: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
    """``x + lr * g / mean|g|`` per batch element: a step whose mean absolute change per unit is ``lr``.

    The ascent of the paper's update (:func:`~dgnam.methods.dgn_am.dgn_am_step` adds its clip and decay)
    and of the plain-pixel and Yosinski baselines, which apply it to pixels; a change to the paper's update
    leaves the baselines alone.
    """
    dims = tuple(range(1, grad.dim()))
    scale = grad.abs().mean(dim=dims, keepdim=True).clamp_min(1e-12)
    return x + lr * grad / scale


def initial_code(generator, seeds: Sequence[int], std: float = 1.0, clip: bool = True, start: torch.Tensor | None = None) -> torch.Tensor:
    """The start of a search in a generator's code space: ``generator.random_code(seeds, std)`` (one RNG
    per seed, so a start depends only on its seed) or a copy of ``start``, clipped to the code's bounds
    unless ``clip`` is False. DGN-AM, PPGN-h sampling and the gradient-free searches all start here."""
    code = generator.random_code(list(seeds), std) if start is None else start.detach().to(generator.lower).clone()
    return generator.clip(code) if clip else code
