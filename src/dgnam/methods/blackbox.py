"""Gradient-free search in a generator's code space: CMA-ES and a genetic algorithm (XDream).

DGN-AM needs the gradient of the unit. A recorded neuron, a non-differentiable model or a remote
service gives only a score per image; for those, the code is searched by evolution instead, as in
Ponce et al. 2019 (XDream: a genetic algorithm, a generator and a monkey's neurons) and Xiao &
Kreiman 2020 (CMA-ES beat the genetic algorithm on AlexNet units). Only scores are used, never a
gradient, so any callable works:

    score(images) -> scores      images: (N, 3, H, W) in [0, 1], on the CPU; scores: (N,) (tensor, array or list)

Each unit x seed is one independent search; all searches of a batch advance in lockstep so that a
net scores their populations in one forward pass. The budget is a number of image evaluations per
unit and seed (``evals``), the currency of neuron experiments; DGN-AM spends one per step (one
forward and one backward pass). Both methods return the :class:`~dgnam.methods.base.AMResult` of the
gradient path, so :class:`~dgnam.io.write.RunWriter` writes the same PNGs and results.json.

Example (a tiny generator and a black box that scores redness; runs in seconds)::

    import torch, dgnam
    from torch import nn

    class TinyGenerator(dgnam.Generator):  # 8-d code -> 32x32 image
        def __init__(self):
            super().__init__((8,), (32, 32))
            self.fc = nn.Linear(8, 3 * 32 * 32)

        def decode(self, code):
            return torch.sigmoid(self.fc(code)).view(-1, 3, 32, 32)

    gen = TinyGenerator().eval().set_bounds(0.0, 2.0)

    def redness(images):  # only scores are used: no gradient is ever taken
        return (images[:, 0] - images[:, 1:].mean(1)).mean((1, 2))

    r = dgnam.cmaes_am(redness, gen, seeds=[0, 1], config=dgnam.CMAESConfig(evals=300))
    g = dgnam.ga_am(redness, gen, seeds=[0, 1], config=dgnam.GAConfig(evals=400))
    r.best, r.history[:, 0]  # best score found, far above the first generation's best
    r.best_images            # the reddest images; dgnam.io.write.RunWriter writes them as for DGN-AM

With a net, units are scored without gradients: ``dgnam.ga_am(net, gen, units, seeds)``.

Code scale: searches move each code unit in steps proportional to its natural scale, the
generator's ``code_std`` where it has one (:class:`~dgnam.generators.prior.PriorGenerator`), else 1
(codes drawn from N(0, 1), as DeePSiM's fc6). Codes always stay inside ``[generator.lower, upper]``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from ..generators import Generator, code_center_scale
from ..nets import Target
from ..core.objectives import check_units, run_objective, units_objective
from ..core.units import Unit
from ..core.param import initial_code
from .base import AMResult, BestTracker

Scorer = Callable[[torch.Tensor], torch.Tensor]
"""A black-box unit: images (N, 3, H, W) in [0, 1] -> scores (N,), higher is better."""

Scoring = Union[Target, Scorer, Sequence[Scorer]]


FULL_COVARIANCE_MAX_DIM = 4096  # code units up to which CMA-ES keeps a full covariance by default


@dataclass
class CMAESConfig:
    """CMA-ES (Hansen's ``cma`` package, a core dependency) in code space."""

    evals: int = 1000  # image evaluations per unit and seed: generations * popsize + 1 (the final mean)
    popsize: int | None = None  # candidates per generation; None: cma's default 4 + 3 ln(dim) (25 for 1280-d)
    sigma0: float = 0.5  # initial step size in units of the code scale (code_std, else 1)
    init_std: float = 1.0  # the search starts at generator.random_code(seed, init_std), DGN-AM's start
    diagonal: bool | None = None  # separable CMA-ES (diagonal covariance): O(dim) per sample instead of
    #   O(dim^2); full covariance is Xiao & Kreiman's setting and fine up to a few thousand code units.
    #   None: separable above FULL_COVARIANCE_MAX_DIM units (a 320x7x7 code's full covariance is 2 GB)
    max_batch: int = 256  # images per call of the generator and the scorer (memory)

    def separable(self, dim: int) -> bool:
        """Whether a search of ``dim`` code units uses the diagonal covariance."""
        return dim > FULL_COVARIANCE_MAX_DIM if self.diagonal is None else self.diagonal

    def __post_init__(self):
        if self.evals < 3:
            raise ValueError("evals must be at least 3 (one generation of 2 and the final mean)")
        if self.popsize is not None and self.popsize < 2:
            raise ValueError("popsize must be at least 2")
        if self.sigma0 <= 0 or self.max_batch < 1:
            raise ValueError("sigma0 must be positive and max_batch at least 1")


@dataclass
class GAConfig:
    """A genetic algorithm in the style of XDream (Ponce et al. 2019; Xiao & Kreiman 2020)."""

    evals: int = 1000  # image evaluations per unit and seed (the first generation included)
    population: int = 40  # codes per generation (Ponce et al. showed 40 images per generation)
    elite: int = 4  # best codes copied unchanged into the next generation (elitism)
    parents: float = 0.5  # fraction of the ranked population that may parent children (truncation)
    selectivity: float = 2.0  # parent drawn with probability ~ exp(selectivity * z), z the standardized score
    heritability: float = 0.5  # uniform crossover: a gene comes from the first parent with this probability
    mutation_rate: float = 0.25  # probability that a child's gene is mutated
    mutation_scale: float = 0.5  # std of the Gaussian mutation, in units of the code scale
    init_std: float = 1.0  # first generation: code centre + init_std * scale * N(0, 1), clipped
    rescore_elite: bool = True  # score the elite again each generation (a recorded neuron is noisy);
    #   False reuses their scores and spends the evaluations on children (deterministic scorers)
    max_batch: int = 256  # images per call of the generator and the scorer (memory)

    def __post_init__(self):
        if self.population < 2 or not 0 <= self.elite < self.population:
            raise ValueError("population must be at least 2 and elite in [0, population)")
        if self.evals < self.population:
            raise ValueError(f"evals ({self.evals}) must cover one generation of population {self.population}")
        if not 0 < self.parents <= 1 or not 0 <= self.heritability <= 1 or not 0 <= self.mutation_rate <= 1:
            raise ValueError("parents must be in (0, 1], heritability and mutation_rate in [0, 1]")
        if self.mutation_scale < 0 or self.selectivity < 0 or self.max_batch < 1:
            raise ValueError("mutation_scale and selectivity must be >= 0 and max_batch >= 1")

    def generations(self) -> int:
        """Generations that fit the budget (the first scores the whole population)."""
        per = self.population if self.rescore_elite else self.population - self.elite
        return 1 + (self.evals - self.population) // max(per, 1)


def require_cma():
    try:
        with warnings.catch_warnings():  # cma warns at import when matplotlib is missing (plots only)
            warnings.simplefilter("ignore")
            import cma
    except ImportError as exc:
        raise ImportError('CMA-ES needs the cma package (a dgnam dependency): pip install cma') from exc
    return cma


def _as_scores(out, n: int, what: str) -> torch.Tensor:
    """A scorer's output as a float (n,) CPU tensor, or a clear error."""
    try:
        scores = out.detach() if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} returned {type(out).__name__}; it must return one number per image (a tensor, array or list)") from exc
    if tuple(scores.shape) != (n,):
        raise ValueError(f"{what} returned shape {tuple(scores.shape)} for {n} images; it must return one score per image, shape ({n},)")
    return _check_finite(scores.float().cpu(), what)


def _check_finite(scores: torch.Tensor, what: str, fix: str = "return finite scores (e.g. torch.nan_to_num)") -> torch.Tensor:
    """``scores`` unchanged, or a clear error when some are NaN or inf (they would break the ranking)."""
    if not torch.isfinite(scores).all():
        raise ValueError(f"{what} returned NaN or inf for some images; {fix}")
    return scores


def _codes_from_numpy(x, generator: Generator) -> torch.Tensor:
    """Candidate codes from a NumPy search as a float tensor (N, *code_shape) on the generator's device,
    clipped to its bounds (which live there: a CPU code against CUDA bounds would fail)."""
    code = torch.as_tensor(np.asarray(x), dtype=torch.float32, device=generator.lower.device)
    return generator.clip(code.view(-1, *generator.code_shape))


class _Evaluator:
    """Decodes codes (N, P, *code_shape) and scores image p of search n; counts evaluations."""

    def __init__(self, scoring: Scoring, generator: Generator, units: list[Unit], max_batch: int):
        self.generator, self.units, self.max_batch = generator, units, max_batch
        n = len(units)
        if isinstance(scoring, Target):
            self.target, self.scorers = scoring, None
        elif callable(scoring):
            self.target, self.scorers = None, [scoring] * n
        else:
            self.target, self.scorers = None, list(scoring)
            if len(self.scorers) != n or not all(callable(s) for s in self.scorers):
                raise ValueError(f"give one callable scorer, or one per unit x seed ({n}); got {len(self.scorers)} items")
        self.evals = 0

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            device = self.generator.lower.device
            return torch.cat([self.generator(c.to(device)).cpu() for c in codes.split(self.max_batch)])

    def __call__(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (N, P) and images (N, P, 3, H, W) of ``codes`` (N, P, *code_shape)."""
        n, p = codes.shape[:2]
        images = self.decode(codes.flatten(0, 1))
        if self.target is not None:
            owner = [self.units[k // p] for k in range(n * p)]
            device = self.target.mean.device
            parts = []
            with torch.no_grad():
                for start in range(0, n * p, self.max_batch):
                    chunk = images[start : start + self.max_batch].to(device)
                    objective = units_objective(owner[start : start + len(chunk)])
                    parts.append(run_objective(self.target, chunk, objective).float().cpu())
            scores = torch.cat(parts).view(n, p)
            fix = "check the net's weights and the generator's images (a net that overflows in float16?)"
            _check_finite(scores, f"target net {self.target.name!r}", fix)
        else:
            rows = []
            for j, scorer in enumerate(self.scorers):
                mine = images[j * p : (j + 1) * p]
                with torch.no_grad():
                    got = [_as_scores(scorer(c), len(c), f"scorer {j} ({getattr(scorer, '__name__', type(scorer).__name__)})") for c in mine.split(self.max_batch)]
                rows.append(torch.cat(got))
            scores = torch.stack(rows)
        self.evals += p
        return scores, images.view(n, p, *images.shape[1:])


def _track_best(tracker: BestTracker, step: int, scores: torch.Tensor, images: torch.Tensor) -> None:
    """Record each search's best candidate of its population (scores (N, P), images (N, P, ...))."""
    top, arg = scores.max(dim=1)
    tracker.update(step, top, images[torch.arange(len(scores)), arg])


def _prepare(scoring, generator, units, seeds, max_batch) -> tuple[_Evaluator, list[Unit]]:
    seeds = list(seeds)
    if not seeds:
        raise ValueError("give at least one seed")
    if isinstance(scoring, Target):
        if units is None or len(units) != len(seeds):
            raise ValueError("with a target net, give one unit per seed (units=[...], as for dgn_am)")
        check_units(scoring, units)
    elif units is None:  # labels for the files: blackbox:J, J the scorer
        units = [Unit("blackbox", 0)] * len(seeds) if callable(scoring) else [Unit("blackbox", j) for j in range(len(seeds))]
    elif len(units) != len(seeds):
        raise ValueError(f"{len(units)} unit labels but {len(seeds)} seeds: give one per seed")
    return _Evaluator(scoring, generator, list(units), max_batch), list(units)


def _result(method, units, seeds, best: BestTracker, codes, images, final, config: dict) -> AMResult:
    return AMResult(
        units=units, seeds=list(seeds), images=images, best_images=best.best_images, history=best.history, final=final,
        best=best.best, best_step=best.best_step, codes=codes, method=method, config=config,
    )


def cmaes_am(
    scoring: Scoring,
    generator: Generator,
    units: Sequence[Unit] | None = None,
    seeds: Sequence[int] = (0,),
    config: CMAESConfig | None = None,
    progress: bool = True,
) -> AMResult:
    """Maximize black-box scores by CMA-ES over the generator's code (one search per unit x seed).

    Each search starts at DGN-AM's initial code for its seed and samples ``popsize`` codes per
    generation from its own NumPy generator (seeded by the seed; NumPy's global RNG is not used),
    with per-unit step sizes ``sigma0 * scale`` and cma's bound transformation keeping every code in
    ``[generator.lower, generator.upper]``.

    Args:
        scoring: A :class:`~dgnam.nets.Target` (then ``units`` say what to maximize; scored without
            gradients), a callable ``images (N, 3, H, W) in [0, 1] -> (N,) scores``, or one callable
            per unit x seed.
        generator: The image prior; searched in its code space.
        units: With a target: one unit per seed. With callables: labels for files (default ``blackbox:J``).
        seeds: One search per seed.
        config: Budget and CMA-ES settings.
        progress: Show a tqdm bar over generations.

    Returns:
        An :class:`~dgnam.methods.base.AMResult`: ``images``/``final``/``codes`` are those of the final
        distribution mean, ``best_images``/``best`` the best sample seen, ``history`` (N, generations)
        the best score of each generation, ``best_step`` a generation (``generations`` = the mean).

    Example:
        >>> def redness(images):  # any black box: here the mean of red minus the other channels
        ...     return (images[:, 0] - images[:, 1:].mean(1)).mean((1, 2))
        >>> r = cmaes_am(redness, gen, seeds=[0, 1], config=CMAESConfig(evals=300))
        >>> r.best, r.history[:, 0]  # far above the first generation's best
    """
    config = config if config is not None else CMAESConfig()  # a fresh default per call, never shared
    cma = require_cma()
    evaluate, units = _prepare(scoring, generator, units, seeds, config.max_batch)
    dim = math.prod(generator.code_shape)
    _, scale = code_center_scale(generator)
    lower = generator.lower.flatten().double().cpu().numpy()
    upper = generator.upper.flatten().double().cpu().numpy()
    bounded = bool(np.isfinite(lower).any() or np.isfinite(upper).any())
    starts = initial_code(generator, seeds, config.init_std).flatten(1).double().cpu().numpy()
    searches = []
    for seed, x0 in zip(seeds, starts):
        rng = np.random.default_rng(int(seed))
        options = {
            "randn": lambda *size, rng=rng: rng.standard_normal(size),  # own RNG: no global state
            "seed": float("nan"), "CMA_stds": scale.flatten().double().cpu().numpy(),
            "bounds": [lower, upper] if bounded else [None, None], "CMA_diagonal": config.separable(dim),
            "verbose": -9, "verb_disp": 0, "verb_log": 0,  # silent, and no output files
        }
        if config.popsize is not None:
            options["popsize"] = config.popsize
        searches.append(cma.CMAEvolutionStrategy(x0, config.sigma0, options))
    popsize = searches[0].popsize
    generations = (config.evals - 1) // popsize
    if generations < 1:
        raise ValueError(f"evals ({config.evals}) must be at least popsize + 1 = {popsize + 1}")
    best = BestTracker(len(units), generations, units)
    to_codes = lambda x: _codes_from_numpy(x, generator).cpu()  # noqa: E731  (clipped on the generator's device)
    for g in tqdm(range(generations), desc="cma-es", disable=not progress, leave=False):
        asked = [es.ask() for es in searches]
        codes = torch.stack([to_codes(x) for x in asked])
        scores, images = evaluate(codes)
        _track_best(best, g, scores, images)
        for es, x, s in zip(searches, asked, scores):
            es.tell(x, (-s.double()).tolist())  # cma minimizes
    codes = torch.stack([to_codes(es.result.xfavorite)[0] for es in searches])  # the mean, inside the bounds
    final, images = evaluate(codes.unsqueeze(1))
    _track_best(best, generations, final, images)
    record = {**asdict(config), "popsize": popsize, "generations": generations, "evals_used": evaluate.evals, "dim": dim}
    return _result("cmaes", units, seeds, best, codes, images[:, 0], final[:, 0], record)


def _breed(codes: torch.Tensor, scores: torch.Tensor, n: int, config: GAConfig, rng: torch.Generator, scale: torch.Tensor) -> torch.Tensor:
    """``n`` children of one population (P, D): parents by score, uniform crossover, Gaussian mutation."""
    order = torch.argsort(scores, descending=True, stable=True)
    pool = order[: max(2, round(config.parents * len(scores)))]
    s = scores[pool].double()
    z = (s - s.mean()) / s.std().clamp_min(1e-12) if len(s) > 1 else torch.zeros_like(s)
    weights = torch.softmax(config.selectivity * z, 0)
    first = pool[torch.multinomial(weights, n, replacement=True, generator=rng)]
    second = pool[torch.multinomial(weights, n, replacement=True, generator=rng)]
    inherit = torch.rand(n, codes.shape[1], generator=rng) < config.heritability
    child = torch.where(inherit, codes[first], codes[second])
    mutate = torch.rand(n, codes.shape[1], generator=rng) < config.mutation_rate
    noise = torch.randn(n, codes.shape[1], generator=rng) * config.mutation_scale * scale
    return child + mutate * noise


def ga_am(
    scoring: Scoring,
    generator: Generator,
    units: Sequence[Unit] | None = None,
    seeds: Sequence[int] = (0,),
    config: GAConfig | None = None,
    progress: bool = True,
) -> AMResult:
    """Maximize black-box scores with an XDream-style genetic algorithm over the generator's code.

    Per generation: the ``elite`` best codes survive unchanged; the rest are children of two parents
    drawn from the best ``parents`` fraction with probability ~ exp(selectivity * z-score), mixed
    by uniform crossover and mutated (each gene with probability ``mutation_rate``, by
    N(0, (mutation_scale * scale)^2)), then clipped to the generator's bounds. All randomness of a
    search comes from a ``torch.Generator`` seeded by its seed.

    Args:
        scoring: A :class:`~dgnam.nets.Target` with ``units``, a callable
            ``images (N, 3, H, W) in [0, 1] -> (N,) scores``, or one callable per unit x seed.
        generator: The image prior; searched in its code space.
        units: With a target: one unit per seed. With callables: labels for files (default ``blackbox:J``).
        seeds: One search per seed.
        config: Budget and GA settings.
        progress: Show a tqdm bar over generations.

    Returns:
        An :class:`~dgnam.methods.base.AMResult`: ``images``/``final``/``codes`` are the best of the last
        generation, ``best_images``/``best`` the best seen, ``history`` (N, generations) the best
        score of each generation.

    Example:
        >>> import numpy as np
        >>> def redness(images):  # a non-differentiable black box (NumPy)
        ...     x = images.numpy()
        ...     return (x[:, 0] - x[:, 1:].mean(1)).mean((1, 2))
        >>> r = ga_am(redness, gen, seeds=[0], config=GAConfig(evals=400))
        >>> r.best_images[0]  # the reddest image found
    """
    config = config if config is not None else GAConfig()  # a fresh default per call, never shared
    evaluate, units = _prepare(scoring, generator, units, seeds, config.max_batch)
    shape, p, elite = generator.code_shape, config.population, config.elite
    center, scale = code_center_scale(generator)
    center, scale = center.flatten().cpu(), scale.flatten().cpu()
    clip = lambda c: generator.clip(c.view(-1, *shape).to(generator.lower.device)).cpu().flatten(1)  # noqa: E731
    rngs = [torch.Generator().manual_seed(int(s)) for s in seeds]
    population = torch.stack([clip(center + config.init_std * scale * torch.randn(p, center.numel(), generator=r)) for r in rngs])
    generations = config.generations()
    best = BestTracker(len(units), generations, units)
    scores, images = evaluate(population.view(len(units), p, *shape))
    for g in tqdm(range(generations), desc="ga", disable=not progress, leave=False):
        _track_best(best, g, scores, images)
        if g == generations - 1:
            break
        keep = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :elite]
        rows = torch.arange(len(units)).unsqueeze(1)
        children = torch.stack([clip(_breed(population[j], scores[j], p - elite, config, rngs[j], scale)) for j in range(len(units))])
        population = torch.cat([population[rows, keep], children], dim=1)
        if config.rescore_elite:
            scores, images = evaluate(population.view(len(units), p, *shape))
        else:
            new_scores, new_images = evaluate(children.view(len(units), p - elite, *shape))
            scores = torch.cat([scores[rows, keep], new_scores], dim=1)
            images = torch.cat([images[rows, keep], new_images], dim=1)
    last = scores.argmax(dim=1)
    rows = torch.arange(len(units))
    codes = population.view(len(units), p, *shape)[rows, last]
    record = {**asdict(config), "generations": generations, "evals_used": evaluate.evals, "dim": center.numel()}
    return _result("ga", units, seeds, best, codes, images[rows, last], scores[rows, last], record)


def blackbox_am(
    scoring: Scoring,
    generator: Generator,
    units: Sequence[Unit] | None = None,
    seeds: Sequence[int] = (0,),
    config: CMAESConfig | GAConfig | None = None,
    progress: bool = True,
) -> AMResult:
    """Dispatch on the config: :func:`cmaes_am` for :class:`CMAESConfig` (the default), :func:`ga_am` for :class:`GAConfig`."""
    if config is None or isinstance(config, CMAESConfig):
        return cmaes_am(scoring, generator, units, seeds, config, progress)
    if isinstance(config, GAConfig):
        return ga_am(scoring, generator, units, seeds, config, progress)
    raise TypeError(f"config must be a CMAESConfig or a GAConfig, got {type(config).__name__}")


__all__ = ["Scorer", "CMAESConfig", "require_cma", "GAConfig", "cmaes_am", "ga_am", "blackbox_am", "code_center_scale"]
