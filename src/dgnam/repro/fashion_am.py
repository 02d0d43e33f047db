"""The Fashion-MNIST reproduction's generator, its DGN-AM and pixel-baseline synthesis, and the judging."""


from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..eval.metrics import diversity, judge_pass
from ..eval.score import layer_features as net_layer_features
from ..eval.score import nearest_neighbors
from ..generators.prior import PriorConfig, PriorGenerator
from ..core.hooks import forward_until
from ..methods.base import AMResult
from ..methods.dgn_am import DGNAMConfig, dgn_am
from ..methods.pixel import PixelConfig, pixel_am
from ..nets import Target
from ..core.regularizers import has_batchnorm
from ..train.codes import code_stats
from ..train.trainer import Discriminator, cosine_decay, deepsim_step, stage_weights
from ..core.units import Unit
from .fashion_nets import Normalization, SIZE, accuracy, grey, layer_features


METHODS = ("dgn-am", "pixel", "yosinski", "fourier", "deepinversion")

# The pixel baselines' transform amounts are stated for 224 px images and scaled to these 32 px ones by the one
# size rule (dgnam.core.transforms.at_side: 16, 16 and 8 px -> 2, 2 and 1; yosinski's 4 px jitter -> 1). The blur
# is no transform amount: 1 px at 224 px, 0.5 px here. Everything else stays at its default.
PIXEL_AT_32: dict[str, dict] = {"pixel": {}, "yosinski": dict(blur_sigma=0.5), "fourier": {}, "deepinversion": {}}

# ==================================================================================================
# Generator
# ==================================================================================================


@dataclass
class GeneratorConfig:
    """The DeePSiM-style generator and its training; loss weights and stages follow
    :class:`dgnam.train.trainer.TrainConfig` (pixel loss first, then the feature loss, then the adversarial one)."""

    fc_width: int = 512  # hidden fully connected layer
    channels: tuple[int, ...] = (64, 64, 32, 16)  # 4x4 map, then 8, 16 and 32 px
    steps: int = 1000  # optimizer steps (1000 x 64 images: about one epoch of Fashion-MNIST)
    batch_size: int = 64
    lr: float = 5e-4  # Adam (DeePSiM: 2e-4 over far more steps), cosine decay to lr_final * lr
    lr_final: float = 0.05
    betas: tuple[float, float] = (0.5, 0.999)  # DeePSiM's
    w_pix: float = 1.0  # pixel MSE
    w_feat: float = 0.05  # comparator-feature MSE / the features' variance over the data
    w_adv: float = 0.005  # non-saturating GAN loss (0: no discriminator)
    feat_start: float = 0.25  # fraction of steps with the pixel loss only
    adv_start: float = 0.5  # fraction of steps before the adversarial term
    ramp: float = 0.1  # fraction of steps over which each term ramps in
    comparator_layer: str = "block2"  # the encoder's second conv block (8 x 8 x 32): DeePSiM's comparator
    disc_width: int = 8  # width of dgnam.train.trainer.Discriminator (its first conv layer)
    seed: int = 0

    def __post_init__(self):
        self.channels = tuple(self.channels)
        self.betas = tuple(self.betas)

    def prior_config(self, code_dim: int) -> PriorConfig:
        return PriorConfig(encoder="fashion_cnn", layer="code", code_shape=(code_dim,), output_size=SIZE, fc_width=self.fc_width, channels=self.channels)


def build_generator(config: GeneratorConfig, codes: torch.Tensor) -> PriorGenerator:
    """A fresh generator whose code statistics (and so its clipping bounds [0, mean + 3 std]) are those
    of ``codes`` (N, D), the encoder's codes of the training images."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        gen = PriorGenerator(config.prior_config(codes.shape[1]))
    stats = code_stats(codes)
    gen.set_code_stats(stats["mean"], stats["std"], stats["min"])
    return gen


def train_generator(
    encoder: nn.Module,
    x: torch.Tensor,
    codes: torch.Tensor,
    norm: Normalization,
    config: GeneratorConfig | None = None,
    progress: bool = False,
) -> tuple[PriorGenerator, dict]:
    """Train G to invert the encoder's ``code`` layer: G(E(x)) ~ x.

    Loss (DeePSiM): ``w_pix * MSE(G(y), x) + w_feat * MSE(C(G(y)), C(x)) / var(C) + w_adv * L_adv``,
    with C the encoder up to ``config.comparator_layer`` and a discriminator D(image, code)
    (:class:`dgnam.train.trainer.Discriminator`); the weights ramp in by stages (:func:`dgnam.train.trainer.stage_weights`).
    Targets are the grey images repeated on the three channels, so G learns grey images.

    Args:
        encoder: The trained :class:`FashionCNN` (left unchanged).
        x: float (N, 1, 32, 32) training images in [0, 1].
        codes: (N, D) the encoder's codes of ``x`` (:func:`layer_features` at ``"code"``).
        norm: The encoder's input normalization.
        config: Architecture, loss weights, stages and budget.
        progress: Show a tqdm bar.

    Returns:
        The generator (eval mode) and ``{"steps", "seconds", "final": {loss terms}}``.
    """
    config = config if config is not None else GeneratorConfig()  # a fresh default per call, never shared
    from tqdm.auto import tqdm

    gen = build_generator(config, codes).train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        disc = Discriminator(codes.shape[1], config.disc_width)
    encoder = encoder.eval()
    frozen = [p.requires_grad for p in encoder.parameters()]
    for p in encoder.parameters():
        p.requires_grad_(False)
    opt_g = torch.optim.Adam(gen.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=config.betas)

    def compare(images: torch.Tensor) -> torch.Tensor:
        return forward_until(encoder, config.comparator_layer, norm(images))

    with torch.no_grad():
        feat_var = float(compare(x[:512]).var().clamp_min(1e-8))
    rng = torch.Generator().manual_seed(config.seed)
    started, logs = time.time(), {}
    try:
        for step in tqdm(range(config.steps), desc="train generator", disable=not progress, leave=False):
            w_pix, w_feat, w_adv = stage_weights(config, step)  # same staging as dgnam.train (duck-typed config)
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] = cosine_decay(config.lr, config.lr_final, step, config.steps)
            rows = torch.randint(len(x), (config.batch_size,), generator=rng)
            real, y = x[rows].expand(-1, 3, -1, -1), codes[rows]
            logs = deepsim_step(gen, disc, opt_g, opt_d, real, y, compare, feat_var, (w_pix, w_feat, w_adv))
    finally:
        for p, flag in zip(encoder.parameters(), frozen):
            p.requires_grad_(flag)
    gen.eval()
    return gen, {"steps": config.steps, "seconds": round(time.time() - started, 2), "final": {k: round(v, 5) for k, v in logs.items()}}


@torch.no_grad()
def reconstruction_metrics(gen: PriorGenerator, encoder: nn.Module, x: torch.Tensor, y: torch.Tensor, codes: torch.Tensor, norm: Normalization) -> dict:
    """How well G inverts E on held-out images: PSNR of the grey reconstruction, cosine between
    E(G(E(x))) and E(x), and the encoder's accuracy on the reconstructions."""
    recon = grey(torch.cat([gen(codes[i : i + 500]) for i in range(0, len(codes), 500)]))
    mse = (recon - x).pow(2).flatten(1).mean(1)
    codes2 = layer_features(encoder, "code", recon, norm)
    return {
        "heldout_psnr": round(float((10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean()), 3),
        "heldout_code_cos": round(float(F.cosine_similarity(codes2, codes).mean()), 4),
        "heldout_recon_accuracy": round(accuracy(encoder, recon, y, norm), 4),
        "heldout_images": len(x),
    }


# ==================================================================================================
# Activation maximization
# ==================================================================================================


@dataclass
class AMConfig:
    """Which methods run, on which seeds; every method takes the same number of steps."""

    methods: tuple[str, ...] = METHODS  # "dgn-am" and any of dgnam.methods.pixel.METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 200  # the paper's; DGN-AM keeps its schedule (lr 8 -> ~0, decay 0.99, clipping)

    def __post_init__(self):
        self.methods, self.seeds = tuple(self.methods), tuple(int(s) for s in self.seeds)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}: choose from {', '.join(METHODS)}")
        if not self.seeds:
            raise ValueError("give at least one seed")


def synthesize(target: Target, generator: PriorGenerator | None, classes: Sequence[int], config: AMConfig, progress: bool = False) -> dict[str, tuple[AMResult, float]]:
    """Every method on every class and seed, one batch per method (class-major order).

    Args:
        target: The classifier as a :class:`~dgnam.nets.Target`; its ``logits`` layer is maximized.
        generator: The prior of DGN-AM (needed when ``"dgn-am"`` is among the methods).
        classes: Class indices.
        config: Methods, seeds and steps.
        progress: Show tqdm bars.

    Returns:
        ``method -> (AMResult, seconds)``; ``"deepinversion"`` is left out when the target has no
        BatchNorm (its prior has nothing to match).
    """
    units = [Unit("logits", int(c)) for c in classes for _ in config.seeds]
    seeds = [s for _ in classes for s in config.seeds]
    out: dict[str, tuple[AMResult, float]] = {}
    for method in config.methods:
        started = time.time()
        if method == "dgn-am":
            if generator is None:
                raise ValueError("dgn-am needs a generator")
            result = dgn_am(target, generator, units, seeds, DGNAMConfig(steps=config.steps), progress=progress)
        elif method == "deepinversion" and not has_batchnorm(target.model):
            continue
        else:
            pixel = PixelConfig(method=method, steps=config.steps, size=SIZE, **PIXEL_AT_32[method])
            result = pixel_am(target, units, seeds, pixel, progress=progress)
        out[method] = (result, round(time.time() - started, 2))
    return out


# ==================================================================================================
# Judging and the nearest-neighbour check
# ==================================================================================================


@dataclass
class Reference:
    """What real held-out images look like to the checks, for scale: their nearest training image's
    distance in pixel space (RMS, grey levels in [0, 1]) and in the encoder's code space."""

    pixel_rms: np.ndarray
    code: np.ndarray
    diversity: dict = field(default_factory=dict)  # class_diversity of the held-out images, per net and in pixels
    copy_percentile: float = 1.0  # a synthesized image closer (pixel RMS) to a training image than
    # this percentile of the held-out images' nearest distances counts as a near-copy

    @property
    def copy_threshold(self) -> float:
        return float(np.percentile(self.pixel_rms, self.copy_percentile))

    def summary(self) -> dict:
        q = lambda a: {f"p{p}": round(float(np.percentile(a, p)), 4) for p in (1, 5, 50)}  # noqa: E731
        return {"images": len(self.pixel_rms), "pixel_rms": q(self.pixel_rms), "code": q(self.code), "diversity": self.diversity, "copy_percentile": self.copy_percentile, "copy_threshold": round(self.copy_threshold, 4)}


def class_diversity(features: torch.Tensor, labels: Sequence[int], center: torch.Tensor) -> float:
    """:func:`dgnam.eval.metrics.diversity` of ``features`` grouped by label, after subtracting ``center``
    (the mean over real images): ReLU features all point into one orthant, and their raw cosines
    would read every pair as alike."""
    labels = [int(c) for c in labels]
    groups = {c: [i for i, lab in enumerate(labels) if lab == c] for c in dict.fromkeys(labels)}
    return round(diversity([features[g] - center for g in groups.values()]), 4)


def judge(
    images: torch.Tensor,
    labels: Sequence[int],
    nets: dict[str, Target],
    feature_layers: dict[str, str],
    centers: dict[str, torch.Tensor],
) -> dict:
    """Top-1 of each net, and the seeds' diversity in each net's penultimate features and in pixels.

    Args:
        images: (N, 3, 32, 32) in [0, 1].
        labels: (N,) the class each image was made for.
        nets: name -> net (the target and the judges).
        feature_layers: name -> penultimate layer of that net (for the diversity).
        centers: name (and ``"pixels"``) -> mean features (and mean grey image, flattened) of real
            images, subtracted before the cosines (:func:`class_diversity`).

    Returns:
        ``{"top1": {net: rate}, "pred": {net: list}, "diversity": {net|"pixels": value}}``.
    """
    labels = [int(c) for c in labels]
    out: dict = {"top1": {}, "pred": {}, "diversity": {}}
    for name, net in nets.items():
        ranks, preds, feats = judge_pass(net, images, labels, feature_layers.get(name), batch_size=256)  # one pass
        out["top1"][name] = round(float((ranks == 1).mean()), 4)
        out["pred"][name] = preds.tolist()
        if feats is not None:
            out["diversity"][name] = class_diversity(torch.from_numpy(feats), labels, centers[name])
    out["diversity"]["pixels"] = class_diversity(grey(images).flatten(1), labels, centers["pixels"])
    return out


@dataclass
class MethodCheck:
    """One method's checks: its ``results.json`` entry and each image's nearest training images
    (``(N, k)`` arrays, nearest first: pixel RMS distance and index, code distance and index)."""

    record: dict
    pixel_distance: np.ndarray
    pixel_index: np.ndarray
    code_distance: np.ndarray
    code_index: np.ndarray


class Checks:
    """What every method's images are checked against: the training images (pixels and the encoder's codes)
    their nearest neighbours are searched in, and what real held-out images score (:attr:`reference`).

    Args:
        nets: name -> net (the target and the judges); ``layers``: name -> its penultimate layer.
        classifier: The encoder (its ``code`` layer); ``norm`` its input normalization.
        x_train, train_labels, codes_train: The training images (N, 1, 32, 32), labels and codes.
        x_ref, y_ref, codes_ref: Held-out images, labels and codes, for scale.
        class_names: Names by label; ``neighbours``: training images reported per image;
            ``copy_percentile``: see :class:`Reference`.
    """

    def __init__(
        self, nets: dict[str, Target], layers: dict[str, str], classifier: nn.Module, norm: Normalization,
        x_train: torch.Tensor, train_labels: np.ndarray, codes_train: torch.Tensor,
        x_ref: torch.Tensor, y_ref: torch.Tensor, codes_ref: torch.Tensor,
        class_names: Sequence[str], neighbours: int = 3, copy_percentile: float = 1.0,
    ) -> None:  # fmt: skip
        self.nets, self.layers, self.classifier, self.norm = nets, layers, classifier, norm
        self.train_labels, self.codes_train, self.class_names, self.neighbours = train_labels, codes_train, class_names, neighbours
        self.train_pixels = x_train.flatten(1)
        self.scale = math.sqrt(self.train_pixels.shape[1])
        ref_pix = nearest_neighbors(x_ref.flatten(1), self.train_pixels, 1, "l2").distance[:, 0] / self.scale
        ref_code = nearest_neighbors(codes_ref, codes_train, 1, "l2").distance[:, 0]
        real = x_ref.expand(-1, 3, -1, -1)
        real_feats = {name: torch.from_numpy(net_layer_features(nets[name], layer, real, batch_size=500)) for name, layer in layers.items()}
        real_feats["pixels"] = x_ref.flatten(1)
        self.centers = {name: f.mean(0) for name, f in real_feats.items()}
        real_diversity = {name: class_diversity(f, y_ref.tolist(), self.centers[name]) for name, f in real_feats.items()}
        self.reference = Reference(ref_pix, ref_code, real_diversity, copy_percentile)

    def check(self, result: AMResult, seconds: float) -> MethodCheck:
        """Judge a method's images and find their nearest training images (in pixels and in codes)."""
        images, names, train_labels = result.images, self.class_names, self.train_labels
        verdict = judge(images, [u.index for u in result.units], self.nets, self.layers, self.centers)
        by_pixels = nearest_neighbors(grey(images).flatten(1), self.train_pixels, self.neighbours, "l2")
        pix_d, pix_i = by_pixels.distance / self.scale, by_pixels.index
        by_code = nearest_neighbors(layer_features(self.classifier, "code", images, self.norm), self.codes_train, self.neighbours, "l2")
        code_d, code_i = by_code.distance, by_code.index
        start, final = result.history[:, 0], result.final
        items = []
        for i, (unit, seed) in enumerate(zip(result.units, result.seeds)):
            items.append({
                "class": unit.index, "label": names[unit.index], "seed": seed,
                "logit_start": round(float(start[i]), 4), "logit_final": round(float(final[i]), 4), "logit_best": round(float(result.best[i]), 4),
                "pred": {name: int(p[i]) for name, p in verdict["pred"].items()},
                "nn_pixel": [{"index": int(j), "rms": round(float(d), 4), "label": int(train_labels[j])} for d, j in zip(pix_d[i], pix_i[i])],
                "nn_code": [{"index": int(j), "distance": round(float(d), 4), "label": int(train_labels[j])} for d, j in zip(code_d[i], code_i[i])],
                "near_copy": bool(pix_d[i, 0] < self.reference.copy_threshold),
            })  # fmt: skip
        record = {
            "seconds": seconds, "config": result.config,
            "judging": {"top1": verdict["top1"], "diversity": verdict["diversity"]},
            "logit_start_mean": round(float(start.mean()), 4), "logit_final_mean": round(float(final.mean()), 4),
            "raised_fraction": round(float((final > start).float().mean()), 4),
            "neighbours": {"pixel_rms_min": round(float(pix_d[:, 0].min()), 4), "pixel_rms_median": round(float(np.median(pix_d[:, 0])), 4),
                           "code_distance_median": round(float(np.median(code_d[:, 0])), 4), "near_copies": int(sum(item["near_copy"] for item in items)),
                           "same_class_as_pixel_nn": round(float(np.mean([it["nn_pixel"][0]["label"] == it["class"] for it in items])), 4)},
            "items": items,
        }  # fmt: skip
        return MethodCheck(record, pix_d, pix_i, code_d, code_i)
