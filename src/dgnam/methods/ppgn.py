"""Sampling many preferred inputs per unit: a PPGN-h-style Markov chain in a generator's code space.

Activation maximization (:mod:`dgnam.methods.dgn_am`) returns one optimum per seed. Plug & Play Generative
Networks (Nguyen, Clune, Bengio, Dosovitskiy & Yosinski, CVPR 2017) instead *sample* from
p(h | y) ∝ p(h) p(y | G(h)) with a Langevin-like chain in the code space h of a generator G::

    h_{t+1} = h_t + eps1 * (R(h_t) - h_t) + eps2 * d log p(y | G(h_t)) / dh + N(0, eps3^2)

- ``eps1 * (R(h) - h)`` is the prior term. PPGN-h learns R as a denoising autoencoder of h; here,
  without a trained DAE, R(h) = E(G(h)) is the round trip through the encoder E whose layer the
  generator inverts (the "joint" PPGN-h reconstruction). It pulls codes toward those that G and E
  agree on, i.e. towards codes of images the generator can actually make.
- ``eps2 * d log p(y|G(h))/dh`` is the condition term: the log-softmax of the chosen class for a
  class unit (a unit of the layer the target returns), otherwise the unit's activation.
- ``N(0, eps3^2)`` is the noise that makes it a sampler rather than an optimizer.

Codes are clipped to the generator's bounds after every step. For a
:class:`~dgnam.generators.prior.PriorGenerator` the chain runs in its whitened code
``z = (h - code_mean) / code_std`` (every unit at unit scale, as the paper's fc6 codes roughly
were): in h that multiplies the gradient term by ``code_std^2`` and the noise by ``code_std``, while
the ``eps1`` term is unchanged. Other generators use ``code_std = 1``, the formula above exactly.

Samples are the chain states at steps ``burn_in + every, burn_in + 2 * every, ... <= steps``.
Compute only; :class:`dgnam.io.write.SampleWriter` writes the files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..generators import Generator, code_center_scale
from ..core.hooks import OUTPUT, capture, forward_until
from ..nets import Target, frozen_eval
from ..core.objectives import check_units
from ..core.units import Unit, layer_kind, read_unit
from ..core.param import initial_code

#: Maps images (N, 3, H, W) in [0, 1] to codes (N, *code_shape): the E in R(h) = E(G(h)).
Encoder = Callable[[torch.Tensor], torch.Tensor]

# Offset between a chain's seed (its initial code, as in DGN-AM) and the seed of its noise stream.
_NOISE_STREAM = 7_919_000


@dataclass
class SampleConfig:
    """Settings of the chain. The PPGN paper's Joint PPGN-h used eps1 = 1e-5, eps2 = 1, eps3 = 1e-17
    for its fc6 codes and DAE; these defaults are for dgnam's priors, in whitened code units."""

    steps: int = 200  # chain length (updates); PPGN ran chains of a few hundred steps
    burn_in: int = 40  # steps before the first kept sample: the climb from the random start
    every: int = 10  # keep one state every `every` steps after burn-in (neighbouring states are nearly equal)
    eps1: float = 0.01  # weight of the prior term R(h) - h; 1e-5 .. 1e-1 (larger: stronger pull to E(G(h)),
    #   and, with a weak generator, less diversity); 0 turns it off and needs no encoder
    eps2: float = 1.0  # step along d log p(y|G(h))/dz, as in the paper (the gradient shrinks as p(y) -> 1)
    eps3: float = 0.05  # noise std per whitened code unit per step (with eps1 = 0.01 the stationary spread
    #   of the prior term alone is eps3 / sqrt(2 * eps1) ~ 0.35 code std)
    init_std: float = 1.0  # initial code as DGN-AM's: generator.random_code(seed, init_std)
    clip: bool = True  # clip codes to [generator.lower, generator.upper] after each step
    class_term: str = "auto"  # "auto" (log-softmax for units of the returned layer, else the activation),
    #   "log_softmax" or "activation"

    def __post_init__(self):
        if self.class_term not in ("auto", "log_softmax", "activation"):
            raise ValueError(f"class_term must be 'auto', 'log_softmax' or 'activation', got {self.class_term!r}")
        if self.every < 1 or self.burn_in < 0:
            raise ValueError("every must be at least 1 and burn_in at least 0")
        if self.steps < self.burn_in + self.every:
            raise ValueError(f"steps ({self.steps}) must be at least burn_in + every ({self.burn_in + self.every}) to keep any sample")
        if min(self.eps1, self.eps2, self.eps3) < 0:
            raise ValueError("eps1, eps2 and eps3 must be non-negative")

    @property
    def sample_steps(self) -> list[int]:
        """The steps whose states are kept."""
        return list(range(self.burn_in + self.every, self.steps + 1, self.every))

    @classmethod
    def for_samples(cls, samples: int, chains: int = 1, **changes) -> "SampleConfig":
        """A config whose ``chains`` chains keep at least ``samples`` states between them
        (``steps = burn_in + ceil(samples / chains) * every``); ``changes`` set other fields."""
        burn_in, every = changes.get("burn_in", cls.burn_in), changes.get("every", cls.every)
        per_chain = -(-samples // max(1, chains))
        return cls(**{**changes, "steps": burn_in + per_chain * every})


@dataclass
class SampleResult:
    """The samples of one batch of chains; chain ``c`` samples ``units[c]`` from seed ``seeds[c]``.

    Attributes:
        steps: The chain steps of the kept states, (S,) with S = len(config.sample_steps).
        images: (C, S, 3, H, W) in [0, 1].
        codes: (C, S, *code_shape).
        activations: (C, S) the unit's activation (the raw logit for a class unit).
        scores: (C, S) the chain's condition: log p(y | x) for class units, else the activation.
        trajectory: (C, steps + 1) the unit's activation at every step (0 = the start).
        score_trajectory: (C, steps + 1) the condition at every step.
        class_terms: per chain, ``"log_softmax"`` or ``"activation"``.
    """

    units: list[Unit]
    seeds: list[int]
    steps: list[int]
    images: torch.Tensor
    codes: torch.Tensor
    activations: torch.Tensor
    scores: torch.Tensor
    trajectory: torch.Tensor
    score_trajectory: torch.Tensor
    class_terms: list[str]
    method: str = "ppgn-h"
    config: dict = field(default_factory=dict)

    @property
    def probabilities(self) -> torch.Tensor:
        """(C, S) p(y | x) of the samples for class units, NaN for other units."""
        is_class = torch.tensor([t == "log_softmax" for t in self.class_terms]).unsqueeze(1)
        return torch.where(is_class, self.scores.exp(), torch.full_like(self.scores, float("nan")))


def layer_encoder(target: Target, layer: str) -> Encoder:
    """E(x) = the output of ``layer`` of ``target`` for images in [0, 1] (the target's preprocessing
    included, as :func:`dgnam.train.codes.encode_views` fed the encoder when the prior was trained)."""

    @torch.no_grad()
    def encode(images: torch.Tensor) -> torch.Tensor:
        x = target.preprocess(images)
        with frozen_eval(target.model):  # a user's model is left in the mode it was in
            return forward_until(target.model, layer, x).float()

    return encode


def load_encoder(name: str, layer: str | None = None, weights=None, device: torch.device | str = "cpu", download: bool = False) -> Encoder:
    """The encoder of a prior as an :data:`Encoder`: ``name`` is a registered net (or ``"net:layer"``).

    Example:
        >>> encode = load_encoder("efficientnet_lite0", "pool")
        >>> encode(torch.rand(2, 3, 128, 128)).shape
        torch.Size([2, 1280])
    """
    from ..nets import load_net

    if layer is None:
        if ":" not in name:
            raise ValueError(f"give the encoder layer: load_encoder({name!r}, layer=...) or 'net:layer'")
        name, layer = name.split(":", 1)
    net = load_net(name, weights=weights, download=download)
    return layer_encoder(net.fast([layer]).to(device), layer)


def encoder_for(generator: Generator, device: torch.device | str | None = None) -> Encoder:
    """The encoder a :class:`~dgnam.generators.prior.PriorGenerator` inverts (``config.encoder`` and
    ``config.layer``), loaded from the net registry."""
    config = getattr(generator, "config", None)
    if config is None or not hasattr(config, "encoder") or not hasattr(config, "layer"):
        raise ValueError(
            f"{type(generator).__name__} does not name its encoder: pass encoder= (a callable images -> codes, "
            "e.g. dgnam.methods.ppgn.load_encoder('caffenet:fc6')), or set eps1=0 to sample without the R(h) term"
        )
    device = device if device is not None else generator.lower.device
    return load_encoder(config.encoder, config.layer, device=device)


def _class_terms(target: Target, units: Sequence[Unit], class_term: str) -> list[str]:
    """Which units are classes: those of a 2-D layer that holds the class scores. For a registered
    net that is its ``NetSpec.output_layer`` (looked up by ``target.name``); otherwise a layer whose
    output equals what the target returns (same shape and values). ``output`` always is."""
    if class_term != "auto":
        return [class_term] * len(units)
    from ..nets import get_net_spec, list_nets

    layers = list(dict.fromkeys(u.layer for u in units))
    h, w = target.spec.size
    with torch.no_grad(), capture(target.model, layers) as acts:
        out = target(torch.zeros(1, 3, h, w, device=next(target.buffers()).device))
    acts = dict(acts)
    acts[OUTPUT] = out
    if target.name in list_nets():
        returned = {get_net_spec(target.name).output_layer, OUTPUT}
    else:
        returned = {layer for layer in layers if layer == OUTPUT or (acts[layer].shape == out.shape and torch.equal(acts[layer], out))}
    return ["log_softmax" if u.layer in returned and acts[u.layer].dim() == 2 else "activation" for u in units]


def _read(acts: dict, units: Sequence[Unit], terms: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(activation, score) per batch element, each element reading its own unit."""
    first = acts[units[0].layer]
    activation, score = first.new_zeros(len(units)), first.new_zeros(len(units))
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (u, t) in enumerate(zip(units, terms)):
        groups.setdefault((u.layer, t), []).append(i)
    for (layer, term), idx in groups.items():
        rows = torch.tensor(idx, device=first.device)
        a = acts[layer][rows]
        chosen = [units[i] for i in idx]
        raw = read_unit(a, chosen)
        activation = activation.index_put((rows,), raw)
        if term == "log_softmax":
            if layer_kind(a.shape) != "vector":
                raise ValueError(f"log_softmax needs a (N, classes) layer; {layer!r} has shape {tuple(a.shape)}")
            raw = read_unit(F.log_softmax(a, dim=1), chosen)
        score = score.index_put((rows,), raw)
    return activation, score


def sample(
    target: Target,
    generator: Generator,
    units: Sequence[Unit],
    seeds: Sequence[int],
    config: SampleConfig | None = None,
    encoder: Union[Encoder, str, None] = None,
    progress: bool = True,
) -> SampleResult:
    """Run one chain per (unit, seed) pair and keep its states every ``config.every`` steps after burn-in.

    Args:
        target: The net whose units condition the chain.
        generator: The image prior G (its code space is sampled).
        units: One unit per chain (repeat a unit to run several chains for it).
        seeds: One seed per chain: its initial code (as DGN-AM's) and its noise depend only on it.
        config: Step sizes, chain length, burn-in and thinning.
        encoder: E of R(h) = E(G(h)): a callable images -> codes, or the name of a layer of
            ``target`` itself (read in the same forward pass: cheaper when the prior inverts the
            target). None: the encoder a PriorGenerator names (:func:`encoder_for`); not needed
            when ``config.eps1 == 0``.
        progress: Show a tqdm bar.

    Returns:
        A :class:`SampleResult` with images, codes, activations and the activation trajectory.

    Example:
        >>> net, gen = load_net("efficientnet_lite0"), load_generator("mine.safetensors")
        >>> r = sample(net, gen, parse_unit("logits:945") * 4, seeds=[0, 1, 2, 3])
        >>> r.images.shape, r.probabilities.mean()
    """
    config = config if config is not None else SampleConfig()  # a fresh default per call, never shared
    if len(units) != len(seeds):
        raise ValueError(f"{len(units)} units but {len(seeds)} seeds: give one seed per chain")
    units, seeds = list(units), [int(s) for s in seeds]
    own_layer = encoder if isinstance(encoder, str) else None
    # one probe pass checks the units and the encoder layer (an unknown name fails here, with suggestions)
    check_units(target, units + ([Unit(own_layer, 0)] if config.eps1 > 0 and own_layer else []))
    terms = _class_terms(target, units, config.class_term)
    if config.eps1 > 0 and encoder is None:
        encoder = encoder_for(generator)
    read_layers = [u.layer for u in units] + ([own_layer] if own_layer else [])
    _, scale = code_center_scale(generator)  # whitened units: code_std where the prior has it, else 1
    noise_rngs = [torch.Generator().manual_seed(s + _NOISE_STREAM) for s in seeds]
    keep = set(config.sample_steps)

    code = initial_code(generator, seeds, config.init_std, config.clip)
    n = len(units)
    trajectory, score_trajectory = torch.zeros(n, config.steps + 1), torch.zeros(n, config.steps + 1)
    images_kept, codes_kept, acts_kept, scores_kept = [], [], [], []
    for step in tqdm(range(config.steps + 1), desc="ppgn-h", disable=not progress, leave=False):
        code = code.detach().requires_grad_(config.eps2 > 0)
        images, acts, activation, score = _forward(target, generator, code, read_layers, units, terms, grad=config.eps2 > 0)
        trajectory[:, step], score_trajectory[:, step] = activation.detach().cpu(), score.detach().cpu()
        _check_finite(trajectory[:, step], units, seeds, step)
        if step in keep:
            images_kept.append(images.detach().cpu())
            codes_kept.append(code.detach().cpu())
            acts_kept.append(activation.detach().cpu())
            scores_kept.append(score.detach().cpu())
        if step == config.steps:
            break
        recon = acts[own_layer] if own_layer else None
        code = _step(generator, code, images, score, recon, encoder, scale, noise_rngs, config)
    return SampleResult(
        units=units,
        seeds=seeds,
        steps=config.sample_steps,
        images=torch.stack(images_kept, 1),
        codes=torch.stack(codes_kept, 1),
        activations=torch.stack(acts_kept, 1),
        scores=torch.stack(scores_kept, 1),
        trajectory=trajectory,
        score_trajectory=score_trajectory,
        class_terms=terms,
        method="ppgn-h",
        config=asdict(config),
    )



def _forward(
    target: Target, generator: Generator, code: torch.Tensor, read_layers: list[str], units: Sequence[Unit], terms: Sequence[str], grad: bool,
) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor]:  # fmt: skip
    """G(h) and the target's pass over it: the images, the layers read, and each chain's activation and score."""
    with torch.set_grad_enabled(grad):
        images = generator(code)
        with capture(target.model, read_layers) as layer_acts:
            out = target(images)
        acts = dict(layer_acts)
        acts[OUTPUT] = out
        activation, score = _read(acts, units, terms)
    return images, acts, activation, score


def _check_finite(activation: torch.Tensor, units: Sequence[Unit], seeds: Sequence[int], step: int) -> None:
    """Stop a chain whose activation is NaN or infinite (NaN weights, or a step too large) instead of writing black images."""
    bad = (~torch.isfinite(activation)).nonzero().flatten()
    if len(bad):
        from .base import NonFiniteError

        i = int(bad[0])
        raise NonFiniteError(f"the activation of unit {units[i]} (seed {seeds[i]}) became {float(activation[i])} at step {step}: "
                             f"check the net's weights (NaN?) and input spec, or take smaller steps (--eps2, --eps3)")


def _step(
    generator: Generator, code: torch.Tensor, images: torch.Tensor, score: torch.Tensor, recon: torch.Tensor | None,
    encoder: Encoder | None, scale: torch.Tensor, noise_rngs: Sequence[torch.Generator], config: SampleConfig,
) -> torch.Tensor:  # fmt: skip
    """One update of the chains: ``h + eps1 (E(G(h)) - h) + eps2 s^2 d score / dh + eps3 s noise``, clipped when
    ``config.clip``. ``recon`` is E(G(h)) when the encoder is a layer of the target (read in its pass), else
    ``encoder`` computes it from ``images``; ``s`` is the code's ``scale``."""
    drift = torch.zeros_like(code)
    if config.eps2 > 0:
        (grad,) = torch.autograd.grad(score.sum(), code)
        drift = drift + config.eps2 * scale.pow(2) * grad
    with torch.no_grad():
        if config.eps1 > 0:
            recon = (recon if recon is not None else encoder(images.detach())).detach()
            if recon.numel() != code.numel():
                raise ValueError(
                    f"the encoder gives codes of shape {tuple(recon.shape[1:])}, the generator takes {generator.code_shape}: "
                    "pass the encoder (and layer) that the generator inverts, or eps1=0"
                )
            drift = drift + config.eps1 * (recon.reshape(code.shape).to(code.dtype) - code)
        if config.eps3 > 0:
            noise = torch.stack([torch.randn(generator.code_shape, generator=g) for g in noise_rngs]).to(generator.lower.device)
            drift = drift + config.eps3 * scale * noise
        code = code.detach() + drift
        if config.clip:
            code = generator.clip(code)
    return code


__all__ = ["SampleConfig", "SampleResult", "sample", "layer_encoder", "load_encoder", "encoder_for", "Encoder"]
