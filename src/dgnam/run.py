"""Running many units x seeds in batches, with any method (generator prior or pixel baseline).

Compute only: :func:`iter_visualize` yields one :class:`~dgnam.methods.base.AMResult` per batch and
:func:`visualize` merges them. Writing files is :mod:`dgnam.io.write`' job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from .generators import Generator
from .nets import Target
from .core.objectives import check_units
from .methods.base import AMResult
from .methods.dgn_am import DGNAMConfig, dgn_am
from .core.units import Unit


@dataclass(frozen=True)
class Job:
    """One image to synthesize: a unit from a seed."""

    unit: Unit
    seed: int


#: The most images one run may ask for (units x seeds), checked before the jobs are listed.
MAX_JOBS = 1_000_000


def make_jobs(units: Sequence[Unit], seeds: Sequence[int]) -> list[Job]:
    """Every unit from every seed, unit-major (all seeds of a unit are neighbours).

    Raises:
        ValueError: more than :data:`MAX_JOBS` images.
    """
    if len(units) * len(seeds) > MAX_JOBS:
        raise ValueError(f"{len(units):,} unit(s) x {len(seeds):,} seed(s) ask for {len(units) * len(seeds):,} images, more than the limit of "
                         f"{MAX_JOBS:,} per run: give fewer units or seeds (or run them in parts)")
    return [Job(u, int(s)) for u in units for s in seeds]


def iter_visualize(
    target: Target,
    jobs: Sequence[Job],
    generator: Generator | None = None,
    config=None,
    batch_size: int = 8,
    progress: bool = True,
    init: torch.Tensor | None = None,
    check: bool = True,
) -> Iterator[AMResult]:
    """Optimize ``jobs`` in batches of ``batch_size``; yield each batch's result as it finishes.

    Args:
        target: The net whose units are maximized.
        jobs: Units and seeds (:func:`make_jobs`).
        generator: A generator prior (DGN-AM). None: the pixel-space method of a ``PixelConfig``,
            else what ``dgnam visualize`` runs (:func:`dgnam.methods.choose.resolve`): the net's
            registered default prior, loaded here, or the pixel default (DeepInversion for nets with
            BatchNorm, else Fourier).
        config: :class:`~dgnam.methods.dgn_am.DGNAMConfig` with a generator (or a gradient-free
            :class:`~dgnam.methods.blackbox.CMAESConfig` / :class:`~dgnam.methods.blackbox.GAConfig`), else
            :class:`~dgnam.methods.pixel.PixelConfig`; None: the resolved defaults (the generator's
            measured DGN-AM settings, or the pixel method's own).
        batch_size: Images optimized together (memory grows with it; throughput too, up to a point).
        progress: Show progress bars.
        init: One start shared by every job instead of the seed's random one (feature accentuation,
            :mod:`dgnam.methods.accentuate`): a code of the generator's ``code_shape``, or a (3, H, W) image for a
            pixel method. The seeds still seed the random transforms.
        check: Check the units against the target first (one test forward pass); False when the caller has.

    Returns:
        An iterator of one :class:`AMResult` per batch, in job order (work happens as it is consumed).

    Raises:
        UnitError: a unit does not fit the target (checked before any work).
        ValueError: a gradient-free config (CMA-ES, GA) without a generator, or ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if check:  # fail before any work, not at the first batch (a test forward pass; the CLI has checked already)
        check_units(target, [j.unit for j in jobs])
    from .methods.pixel import PixelConfig

    if generator is None and not isinstance(config, PixelConfig):
        from .methods.choose import resolve

        choice = resolve(target)  # what `dgnam visualize --net NAME` would run
        if choice.uses_generator:
            from .generators import load_generator

            generator = load_generator(choice.generator).to(target.mean.device)
        elif config is not None:
            raise ValueError(f"{type(config).__name__} needs a generator: pass generator= "
                             "(e.g. dgnam.load_generator(NAME or FILE.safetensors)), or a PixelConfig for a pixel-space method")
        else:
            config = choice.config
    if generator is not None:
        if config is None:
            from .methods.choose import resolve

            config = resolve(target, generator).config
        if getattr(config, "bn_weight", 0) == 0:  # same activations, computed faster where possible (BatchNorm folded)
            target = target.fast([j.unit.layer for j in jobs])
        return _batches(target, jobs, generator, config, batch_size, progress, init)
    if not isinstance(config, PixelConfig):
        raise ValueError(f"{type(config).__name__} searches a generator's code space: pass generator= "
                         "(e.g. dgnam.load_generator(NAME or FILE.safetensors)), or a PixelConfig for a pixel-space method")
    return _batches(target, jobs, None, config.resolved(), batch_size, progress, init)


def _batches(target, jobs, generator, config, batch_size, progress, init=None) -> Iterator[AMResult]:
    from tqdm.auto import tqdm

    with tqdm(total=len(jobs), desc="units", unit="img", disable=not progress, leave=None) as bar:  # None: left only if outermost
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            units, seeds = [j.unit for j in chunk], [j.seed for j in chunk]
            if generator is not None and not isinstance(config, DGNAMConfig):  # CMAESConfig, GAConfig
                from .methods.blackbox import blackbox_am

                result = blackbox_am(target, generator, units, seeds, config, progress=progress)
            elif generator is not None:
                start = None if init is None else init.expand(len(chunk), *init.shape)
                result = dgn_am(target, generator, units, seeds, config, progress=progress, init_code=start)
            else:
                from .methods.pixel import pixel_am

                start = None if init is None else init.expand(len(chunk), *init.shape)
                result = pixel_am(target, units, seeds, config, progress=progress, init_images=start)
            bar.update(len(chunk))
            result.categories = target.categories  # labels for dgnam.show and dgnam.save_result
            yield result


def merge_results(results: Sequence[AMResult]) -> AMResult:
    """Concatenate batch results (same method and config) into one."""
    if not results:
        raise ValueError("no results to merge")
    first = results[0]

    def cat(name):
        parts = [getattr(r, name) for r in results]
        return None if any(p is None for p in parts) else torch.cat(parts)

    return AMResult(
        units=[u for r in results for u in r.units],
        seeds=[s for r in results for s in r.seeds],
        images=cat("images"),
        best_images=cat("best_images"),
        history=cat("history"),
        final=cat("final"),
        best=cat("best"),
        best_step=cat("best_step"),
        codes=cat("codes"),
        method=first.method,
        config=first.config,
        maps={k: torch.cat([r.maps[k] for r in results]) for k in first.maps if all(k in r.maps for r in results)},
        categories=first.categories,
    )


def visualize(
    target: Target,
    units: Sequence[Unit],
    seeds: Sequence[int] = (0,),
    generator: Generator | None = None,
    config=None,
    batch_size: int = 8,
    progress: bool = True,
) -> AMResult:
    """Synthesize preferred inputs of ``units`` from each of ``seeds``; see :func:`iter_visualize`.

    Without ``generator`` and ``config`` it runs what ``dgnam visualize`` runs for the net (its default
    prior, else its pixel default); ``config=PixelConfig(method=...)`` picks a pixel-space method.

    Example:
        >>> net = load_net("efficientnet_lite0")
        >>> r = visualize(net, parse_units(["logits:espresso"], net.categories), seeds=[0, 1])  # DGN-AM, the shipped prior
        >>> r.images.shape, r.final
    """
    return merge_results(list(iter_visualize(target, make_jobs(units, seeds), generator, config, batch_size, progress)))
