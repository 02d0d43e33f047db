"""What every activation-maximization method shares: its result, the best-image tracker, one step's tracked forward
pass, the step rules. The result is a plain data object: :func:`dgnam.io.write.save_result` saves it and
:func:`dgnam.io.display.show` displays it."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..core.objectives import Objective, run_objective
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


class NonFiniteError(ValueError):
    """An activation or code became NaN or infinite during a run (it would give black images and NaN records)."""


class BestTracker:
    """Records the activation at every step and keeps, per batch element, the best image seen.

    Shared by every optimization loop (DGN-AM and the pixel-space baselines); history and images
    live on the CPU.
    """

    def __init__(self, n: int, steps: int, units: Sequence[Unit] | None = None):
        self.history = torch.full((n, steps), float("nan"))  # NaN: a step not scored (track_every, early stop)
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
        images = images.detach().float().cpu()  # a bf16 loop's images are kept as fp32, like the others
        if self.best_images is None:
            self.best_images = images.clone()
        self.best_images[better] = images[better]
        self.best[better] = acts[better]
        self.best_step[better] = step


    def plateaued(self, step: int, window: int, rise: float = 0.01) -> bool:
        """True when no element's best activation by ``step`` exceeds its best by ``step - window`` by more than
        ``rise`` of the latter's magnitude (the early stop; False before ``window`` steps)."""
        if step < window:
            return False
        seen = self.history[:, : step + 1]
        before = seen[:, : step + 1 - window].nan_to_num(float("-inf")).amax(1)
        now = seen.nan_to_num(float("-inf")).amax(1)
        return bool((now - before <= rise * before.abs()).all())


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


def check_batch(units: Sequence[Unit], seeds: Sequence[int]) -> None:
    """Raise ValueError unless there is one seed per unit (every loop's first check)."""
    if len(units) != len(seeds):
        raise ValueError(f"{len(units)} units but {len(seeds)} seeds: give one seed per unit")


def quiet_objective(net, images: torch.Tensor, objective: Objective, bn=None) -> torch.Tensor:
    """The objective of ``images`` without gradients, in a pass that a BatchNorm-statistics loss ``bn`` does not record."""
    with torch.no_grad(), bn.paused() if bn is not None else nullcontext():
        return run_objective(net, images, objective)


def track_step(step: int, images: torch.Tensor, tracker: BestTracker, objective: Objective, ascend, watch, transform=None, gens=None,
               bn=None, track: bool = True) -> torch.Tensor:  # fmt: skip
    """One step's forward pass(es), shared by the gradient loops: the activation to ascend (through ``ascend``), with
    ``tracker`` updated. Without ``transform`` that one pass is recorded; with it the history and the best image
    follow the activation of the untransformed images through ``watch`` (:func:`quiet_objective`), and the ascent
    runs on ``transform(images, gens)``; ``track=False`` skips that extra pass (the step is not recorded)."""
    if transform is None:
        acts = run_objective(ascend, images, objective)
        tracker.update(step, acts, images)
    else:
        if track:
            tracker.update(step, quiet_objective(watch, images, objective, bn), images)
        acts = run_objective(ascend, transform(images, gens), objective)
    return acts


def tracked_result(tracker: BestTracker, units: Sequence[Unit], seeds: Sequence[int], images: torch.Tensor, final: torch.Tensor, method: str,
                   config: dict, codes: torch.Tensor | None = None) -> AMResult:  # fmt: skip
    """The :class:`AMResult` of a finished loop: ``final`` (the activation of the last ``images``) recorded by
    ``tracker`` as the step after the last, then the last and best images, history and ``codes`` on the CPU."""
    steps = tracker.history.shape[1]
    tracker.update(steps, final, images)
    return AMResult(
        units=list(units),
        seeds=list(seeds),
        images=images.detach().cpu(),
        best_images=tracker.best_images,
        history=tracker.history,
        final=final.detach().cpu(),
        best=tracker.best,
        best_step=tracker.best_step,
        codes=None if codes is None else codes.cpu(),
        method=method,
        config=config,
    )
