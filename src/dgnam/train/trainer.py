"""Training a generator prior with the DeePSiM recipe (Dosovitskiy & Brox 2016), CPU-first.

G learns to invert an encoder layer: G(E(x)) ~ x, with
    L = w_pix * ||G(y) - x||^2 + w_feat * ||C(G(y)) - C(x)||^2 / var_data(C) + w_adv * L_adv(D(G(y), y))
        [+ w_spec * |log P_G(y)(f) - log P_x(f)|, the spectral term, off by default],
where C is a comparator net (an early block of the encoder) and D a discriminator that also sees the
code. The losses come in by stages (pixel first, then feature, then adversarial), because on a
small budget an early feature or adversarial term swamps the pixel term and G collapses to texture.

What makes it affordable on a CPU: the encoder codes of every training view are computed once and
cached (:mod:`dgnam.train.codes`; the encoder is fixed, and augmentation happens before encoding so cached codes stay valid);
comparator features are only computed up to the comparator layer (:func:`dgnam.core.hooks.forward_until`).

Multi-process: run under ``torchrun``; each process trains on its own slice of every batch with
``DistributedDataParallel`` (gloo on CPU, nccl on GPUs); rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import init_process_group
from ..generators.prior import PriorConfig, PriorGenerator, save_prior
from ..core.hooks import forward_until
from ..infra.hub import load_strict
from ..infra.messages import short
from .checkpoint import load_checkpoint, load_optimizer
from .codes import cached_codes, code_stats, frozen_features, make_views
from .files import check_fields, trim_log


@dataclass
class TrainConfig:
    """Training settings; saved as ``config.json`` beside every checkpoint."""

    prior: PriorConfig = field(default_factory=PriorConfig)
    comparator_layer: str = "_blocks.4"  # encoder block used as comparator C (16x16x40 at 128 px)
    steps: int = 3000  # optimizer steps
    batch_size: int = 32  # global batch (split over processes)
    lr: float = 2e-4  # Adam, as DeePSiM
    lr_final: float = 1.0  # lr at the last step as a fraction of lr (cosine decay; 1.0 = constant)
    grad_clip: float = 1.0  # max gradient norm of G and of D (0: off); guards against the blow-ups seen
    # at lr 6e-4 once the feature term came in (pixel MSE 0.04 -> 1690 within 20 steps)
    betas: tuple[float, float] = (0.5, 0.999)
    w_pix: float = 1.0  # pixel MSE weight
    w_feat: float = 0.05  # feature MSE weight (the MSE is divided by the comparator features' variance over the data)
    w_adv: float = 0.005  # adversarial weight (non-saturating GAN loss)
    w_spec: float = 0.0  # spectral weight (Durall et al., CVPR 2020): L1 between the log power spectra of G(y)
    # and x, averaged over log-spaced rings; against the blur the pixel MSE leaves (0: off, as DeePSiM)
    feat_start: float = 0.25  # fraction of steps with pixel loss only
    adv_start: float = 0.5  # fraction of steps before the adversarial term comes in
    disc: str = "global"  # "global": DeePSiM's D on the image at 64 px + the code; "patch": that one plus a
    # code-conditioned patch D on the full-resolution image (one logit per code cell), which sees fine detail
    ramp: float = 0.1  # fraction of steps over which each new term ramps up linearly
    views: int = 2  # encoded views per pool image: 1 = as is, 2 = plus its mirror image
    heldout_samples: int = 16  # held-out images shown in sample grids
    sample_every: int = 250  # steps between sample grids and held-out evaluations
    checkpoint_minutes: float = 1.0  # wall time between checkpoints
    export_every: int = 0  # also write OUT/priors/stepNNNNNN.safetensors every this many steps (0: never),
    # so that a checkpoint before a late training stage can be chosen by measuring DGN-AM through each
    init_from: str = ""  # a prior (registered name or .safetensors) whose weights start G (see warm_start):
    # a 128-px prior starts a 224-px one of the same code at its own quality instead of from noise
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def from_dict(cls, d: dict, where: str = "the training config") -> "TrainConfig":
        """The config in ``d`` (a ``config.json``, ``--config`` file or a checkpoint's ``config``), checked field by field.

        Raises:
            ValueError: one line naming ``where`` and the field (an unknown key lists the valid ones).
        """
        d = check_fields(cls, d, where)
        prior = check_fields(PriorConfig, d.get("prior", {}), f"{where}: prior")
        try:
            d["prior"] = PriorConfig(**prior)
        except (ValueError, ArithmeticError) as exc:  # the architecture's own checks (channels vs output size ...)
            raise ValueError(f"{where}: prior: {exc}") from None
        d["betas"] = tuple(d.get("betas", (0.5, 0.999)))
        return cls(**d)

    @classmethod
    def read(cls, path: str | Path, what: str = "--config") -> "TrainConfig":
        """The config in the JSON file ``path`` (:meth:`from_dict`); a broken file is one line naming it."""
        try:
            value = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{what} {short(path)} is not valid JSON ({short(exc, 100)}): fix the file") from None
        return cls.from_dict(value, where=f"{what} {short(path)}")


def cosine_decay(base: float, final: float, step: int, steps: int) -> float:
    """Learning rate at ``step``: cosine decay from ``base`` to ``base * final`` over ``steps``."""
    t = min(1.0, step / max(1, steps))
    return base * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t)))


def learning_rate(config: TrainConfig, step: int) -> float:
    """Cosine decay from ``lr`` to ``lr * lr_final`` over ``steps``."""
    return cosine_decay(config.lr, config.lr_final, step, config.steps)


def stage_weights(config: TrainConfig, step: int) -> tuple[float, float, float]:
    """(pixel, feature, adversarial) weights at ``step``: pixel always, the others ramp in by stages."""
    t = step / max(1, config.steps)

    def ramp(start: float) -> float:
        return float(np.clip((t - start) / max(config.ramp, 1e-9), 0.0, 1.0))

    return config.w_pix, config.w_feat * ramp(config.feat_start), config.w_adv * ramp(config.adv_start)


class Discriminator(nn.Module):
    """D(x, y): a small conv net on the image (at 64 px) joined with an embedding of the code, as DeePSiM."""

    def __init__(self, code_dim: int, width: int = 32):
        super().__init__()
        w = width
        self.image = nn.Sequential(
            nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2),  # 32
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),  # 16
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(0.2),  # 8
            nn.Conv2d(4 * w, 8 * w, 4, 2, 1), nn.LeakyReLU(0.2),  # 4
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
        )
        self.code = nn.Sequential(nn.Linear(code_dim, 8 * w), nn.LeakyReLU(0.2))
        self.head = nn.Sequential(nn.Linear(16 * w, 8 * w), nn.LeakyReLU(0.2), nn.Linear(8 * w, 1))

    def forward(self, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
        return self.head(torch.cat([self.image(x * 2 - 1), self.code(codes.flatten(1))], 1)).squeeze(1)


class PatchDiscriminator(nn.Module):
    """The global :class:`Discriminator` plus a patch discriminator at full resolution: strided
    convolutions down to the code's spatial grid, joined there with the code map, one logit per cell
    (receptive field ~46 px), so blur and texture are judged where they are. Spatial (C, H, W) codes only.

    ``forward`` returns ``(global logits (B,), patch logits (B, H*W))``; each part weighs the same in the loss.
    """

    def __init__(self, code_shape: tuple[int, ...], width: int = 32, patch_width: int = 16):
        super().__init__()
        if len(code_shape) != 3:
            raise ValueError(f"disc 'patch' needs a spatial code (C, H, W), not shape {tuple(code_shape)}: use disc 'global'")
        w, c = patch_width, code_shape[0]  # narrow: at full resolution it costs as much as G's last layers
        self.grid = tuple(code_shape[1:])
        self.globl = Discriminator(math.prod(code_shape), width)
        self.image = nn.Sequential(
            nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(0.2),
        )
        self.head = nn.Sequential(nn.Conv2d(4 * w + c, 4 * w, 1), nn.LeakyReLU(0.2), nn.Conv2d(4 * w, 1, 1))

    def forward(self, images: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.image(images * 2 - 1)
        if h.shape[-2:] != self.grid:
            h = F.adaptive_avg_pool2d(h, self.grid)
        code = torch.log1p(codes.clamp_min(0)) - torch.log1p((-codes).clamp_min(0))  # signed log: tames the code's scale
        return self.globl(images, codes), self.head(torch.cat([h, code], 1)).flatten(1)


def make_discriminator(config: "TrainConfig") -> nn.Module:
    """The discriminator that ``config.disc`` names, for ``config.prior``'s code."""
    shape = tuple(config.prior.code_shape)
    if config.disc == "global":
        return Discriminator(math.prod(shape))
    if config.disc == "patch":
        return PatchDiscriminator(shape)
    raise ValueError(f"disc must be 'global' or 'patch', not {config.disc!r}")


def gan_loss(logits: torch.Tensor | tuple[torch.Tensor, ...], real: bool) -> torch.Tensor:
    """Non-saturating GAN loss softplus(-/+ logits), averaged per part and then over the parts
    (a patch discriminator's many logits weigh as much as the global one)."""
    parts = logits if isinstance(logits, tuple) else (logits,)
    return sum(F.softplus(-p if real else p).mean() for p in parts) / len(parts)


def spectral_loss(fake: torch.Tensor, real: torch.Tensor, bins: int = 16, low: float = 0.02) -> torch.Tensor:
    """Spectral regularization after Durall, Keuper & Keuper (CVPR 2020): the mean absolute difference
    between the log10 power spectra of ``fake`` and ``real`` (greyscale, mean removed, Hann-windowed,
    as :func:`dgnam.eval.metrics.spectrum_slope` measures them), each averaged over ``bins`` rings evenly
    spaced in log frequency from ``low`` to 0.5 cycles per pixel. Pairs are compared image by image, so
    G(y) is asked for the power its own photo has at each scale, not for the pixels there."""
    luma = torch.tensor([0.299, 0.587, 0.114], device=fake.device).view(1, 3, 1, 1)
    h, w = fake.shape[-2:]
    window = torch.outer(torch.hann_window(h, periodic=False, device=fake.device), torch.hann_window(w, periodic=False, device=fake.device))
    freq = torch.hypot(*torch.meshgrid(torch.fft.fftfreq(h, device=fake.device), torch.fft.fftfreq(w, device=fake.device), indexing="ij"))
    edges = torch.logspace(math.log10(low), math.log10(0.5), bins + 1, device=fake.device)
    ring = torch.bucketize(freq, edges) - 1  # -1 and `bins`: outside the band
    keep = (ring >= 0) & (ring < bins)
    onehot = F.one_hot(ring[keep], bins).float()  # (pixels in band, bins)
    onehot = onehot / onehot.sum(0).clamp_min(1)

    def profile(x: torch.Tensor) -> torch.Tensor:
        g = (x * luma).sum(1)
        g = (g - g.mean((-2, -1), keepdim=True)) * window
        power = torch.fft.fft2(g).abs().pow(2)[:, keep]  # (N, pixels in band)
        return torch.log10(power @ onehot + 1e-10)

    with torch.no_grad():
        target = profile(real)
    return (profile(fake) - target).abs().mean()


def _halves(logits: torch.Tensor | tuple[torch.Tensor, ...]):
    if isinstance(logits, tuple):
        pairs = [p.chunk(2) for p in logits]
        return tuple(a for a, _ in pairs), tuple(b for _, b in pairs)
    return logits.chunk(2)


def warm_start(gen: PriorGenerator, source: nn.Module) -> dict[str, int]:
    """Start ``gen``'s weights from another generator's: every parameter with the same name and shape
    is copied; the source's last convolution goes to ``gen``'s last one (the RGB layer); any other 3x3
    convolution with as many inputs as outputs starts as the identity (zero bias). A prior whose
    output is ``gen``'s halved (128 -> 224 px has one more doubling, from 14x14 instead of a 16x16
    start map) then starts ``gen`` at a nearest-neighbour upscale of its own images. Code statistics
    (buffers) are left alone: the trainer sets them from the new data.

    Args:
        gen: the generator to initialize (changed in place).
        source: a trained generator (e.g. :func:`~dgnam.generators.prior.load_prior`).

    Returns:
        Counts of tensors ``copied``, convolutions set to the ``identity`` and left ``fresh``.

    Example:
        >>> warm_start(PriorGenerator(cfg224), load_prior("lite0_blocks7_conv_resize.safetensors"))  # doctest: +SKIP
        {'copied': 12, 'identity': 1, 'fresh': 0}
    """
    theirs = dict(source.named_parameters())
    counts = {"copied": 0, "identity": 0, "fresh": 0}
    convs = [m for m in gen.modules() if isinstance(m, nn.Conv2d)]
    src_convs = [m for m in source.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        done: set[int] = set()
        for name, param in gen.named_parameters():
            if name in theirs and theirs[name].shape == param.shape:
                param.copy_(theirs[name])
                done.add(id(param))
                counts["copied"] += 1
        last, src_last = convs[-1], src_convs[-1] if src_convs else None
        if src_last is not None and id(last.weight) not in done and src_last.weight.shape == last.weight.shape:
            last.weight.copy_(src_last.weight)
            last.bias.copy_(src_last.bias)
            done |= {id(last.weight), id(last.bias)}
            counts["copied"] += 2
        for conv in convs:
            if id(conv.weight) in done:
                continue
            if conv.in_channels == conv.out_channels and conv.kernel_size == (3, 3):
                nn.init.dirac_(conv.weight)
                nn.init.zeros_(conv.bias)
                counts["identity"] += 1
            else:
                counts["fresh"] += 1
    return counts


# ---------------------------------------------------------------- one DeePSiM step


def clip_gradients(model: nn.Module, max_norm: float) -> float:
    """Clip ``model``'s gradient norm to ``max_norm`` (0: no clipping); return the norm before clipping."""
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else float("inf")))


def deepsim_step(g_model: nn.Module, d_model: nn.Module, opt_g, opt_d, real: torch.Tensor, codes: torch.Tensor,
                 compare, feat_var: float, weights: tuple[float, float, float], grad_clip: float = 0.0,
                 w_spec: float = 0.0) -> dict[str, float]:
    """One update of the DeePSiM losses: a discriminator step on (real, G(y)) when the adversarial
    weight is on, then a generator step on pixel MSE + feature MSE in ``compare`` (divided by
    ``feat_var``) + the non-saturating adversarial loss (+ ``w_spec`` times :func:`spectral_loss`),
    each by its weight. Returns the losses."""
    w_pix, w_feat, w_adv = weights
    fake = g_model(codes)
    logs: dict[str, float] = {}
    if w_adv > 0:  # discriminator step: real (x, y) vs generated (G(y), y), one forward pass (DDP)
        d_real, d_fake = _halves(d_model(torch.cat([real, fake.detach()]), torch.cat([codes, codes])))
        loss_d = gan_loss(d_real, True) + gan_loss(d_fake, False)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        clip_gradients(d_model, grad_clip)
        opt_d.step()
        logs["loss_d"] = loss_d.item()
    pix = F.mse_loss(fake, real)
    loss = w_pix * pix
    logs["pix"] = pix.item()
    if w_feat > 0:
        with torch.no_grad():
            target = compare(real)
        feat = F.mse_loss(compare(fake), target) / feat_var
        loss = loss + w_feat * feat
        logs["feat"] = feat.item()
    if w_adv > 0:
        adv = gan_loss(d_model(fake, codes), True)
        loss = loss + w_adv * adv
        logs["adv"] = adv.item()
    if w_spec > 0:
        spec = spectral_loss(fake, real)
        loss = loss + w_spec * spec
        logs["spec"] = spec.item()
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    logs["grad_norm"] = clip_gradients(g_model, grad_clip)
    opt_g.step()
    logs["loss_g"] = loss.item()
    return logs


# ---------------------------------------------------------------- the training loop


class Trainer:
    """Holds models, optimizers and data; :meth:`train` runs until ``config.steps`` or Ctrl-C."""

    def __init__(self, config: TrainConfig, pool_dir: str | Path, out_dir: str | Path, progress: bool = True):
        from ..pool import load_any

        self.config, self.pool_dir, self.out = config, Path(pool_dir), Path(out_dir)
        self.progress = progress
        self.rank, self.world = init_process_group(config.device)
        self.device = torch.device(config.device if config.device != "cuda" else f"cuda:{self.rank % max(1, torch.cuda.device_count())}")
        images, card = load_any(self.pool_dir)
        if len(images) == 0 or (card.get("train_idx") is not None and len(card["train_idx"]) == 0):
            raise ValueError(f"the pool {self.pool_dir} has no training images: build one with `dgnam pool build` or `dgnam pool folder`")
        views = make_views(images, config.prior.output_size, config.views)
        # a pool folder keeps its codes for every later training; a user's image folder is left untouched
        cache = self.pool_dir / "cache" if (self.pool_dir / "images.npy").exists() else self.out / "cache"
        codes = cached_codes(cache, views, config, progress and self.rank == 0, self.device)
        if tuple(codes.shape[1:]) != config.prior.code_shape:  # the layer decides the code's shape
            config = replace(config, prior=replace(config.prior, code_shape=tuple(codes.shape[1:])))
            self.config = config
        v = config.views
        train_idx = np.asarray(card.get("train_idx", range(len(images))))
        held_idx = np.asarray(card.get("heldout_idx", []))
        self.train_rows = torch.from_numpy(np.concatenate([train_idx * v + k for k in range(v)])).long()
        self.held_rows = torch.from_numpy(held_idx * v).long()  # unmirrored held-out views
        stats = code_stats(codes[self.train_rows])  # on the CPU, in float64, before the data moves
        if self.device.type == "cuda":  # the whole data set fits a GPU (1.2 GB of 128 px views): no copies per step
            views, codes = views.to(self.device), codes.to(self.device)
            self.train_rows, self.held_rows = self.train_rows.to(self.device), self.held_rows.to(self.device)
        self.views, self.codes = views, codes
        with torch.random.fork_rng(devices=[]):  # seeded initialization without touching the caller's RNG
            torch.manual_seed(config.seed)
            self.gen = PriorGenerator(config.prior).to(self.device)
            self.disc = make_discriminator(config).to(self.device)
        if config.init_from:
            from ..generators import load_generator

            self.warm = warm_start(self.gen, load_generator(config.init_from))  # a name or a .safetensors path
        self.gen.set_code_stats(stats["mean"].to(self.device), stats["std"].to(self.device), stats["min"].to(self.device))
        self.comparator = frozen_features(config.prior.encoder, self.device)
        with torch.no_grad():  # fixed scale of the feature loss: the features' variance over data
            sample = self.views[self.train_rows[:: max(1, len(self.train_rows) // 256)][:256]].to(self.device).float() / 255.0
            self.feat_var = self.comparator_features(sample).var().clamp_min(1e-6).item()
        self.opt_g = torch.optim.Adam(self.gen.parameters(), lr=config.lr, betas=config.betas)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=config.lr, betas=config.betas)
        self.step = 0
        self.g_model, self.d_model = self.gen, self.disc
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_model, self.d_model = DDP(self.gen, device_ids=ids), DDP(self.disc, device_ids=ids)

    # ---- state
    def state(self) -> dict:
        return {
            "step": self.step,
            "gen": self.gen.state_dict(),
            "disc": self.disc.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "config": asdict(self.config),
        }

    def save_checkpoint(self) -> Path | None:
        if self.rank != 0:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / "checkpoint.pt.tmp"
        torch.save(self.state(), tmp)
        os.replace(tmp, self.out / "checkpoint.pt")
        return self.out / "checkpoint.pt"

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint: models, optimizers and step, each checked (one line naming the file and
        the field); rows of ``log.csv`` after the checkpoint's step (a run that died before its next
        checkpoint) are dropped, so the log holds each step once."""
        state = load_checkpoint(path, map_location=self.device)
        saved = TrainConfig.from_dict(state["config"], where=f"checkpoint {short(path)}: config")
        if saved.prior != self.config.prior:
            raise ValueError(f"checkpoint {path} has architecture {saved.prior}, not {self.config.prior}")
        load_strict(self.gen, state["gen"], what=f"checkpoint {short(path)}: gen")
        load_strict(self.disc, state["disc"], what=f"checkpoint {short(path)}: disc")
        load_optimizer(self.opt_g, state["opt_g"], f"checkpoint {short(path)}: opt_g")
        load_optimizer(self.opt_d, state["opt_d"], f"checkpoint {short(path)}: opt_d")
        self.step = state["step"]
        if self.rank == 0:
            trim_log(self.out / "log.csv", self.step)

    # ---- one step
    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's slice of the global batch: drawn from an RNG seeded by (seed, step), so every
        rank draws the same batch and a resumed run sees the batches an uninterrupted one would."""
        per_rank = self.config.batch_size // self.world
        rng = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.step)
        pick = torch.randint(len(self.train_rows), (self.config.batch_size,), generator=rng).to(self.train_rows.device)
        rows = self.train_rows[pick][self.rank * per_rank : (self.rank + 1) * per_rank]
        return self.views[rows].to(self.device).float() / 255.0, self.codes[rows].to(self.device)

    def comparator_features(self, images: torch.Tensor) -> torch.Tensor:
        net = self.comparator
        return forward_until(net.model, self.config.comparator_layer, (images - net.mean) / net.std)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        w_pix, w_feat, w_adv = stage_weights(self.config, self.step)
        lr = learning_rate(self.config, self.step)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        logs = deepsim_step(self.g_model, self.d_model, self.opt_g, self.opt_d, x, y, self.comparator_features,
                            self.feat_var, (w_pix, w_feat, w_adv), self.config.grad_clip, w_spec=self.config.w_spec)
        logs.update(w_pix=w_pix, w_feat=w_feat, w_adv=w_adv, lr=lr)
        return logs

    # ---- evaluation and samples
    @torch.no_grad()
    def heldout_metrics(self, max_images: int = 256) -> dict[str, float]:
        """Reconstruction quality on held-out pool images: PSNR, cos(E(G(E(x))), E(x)) and the median
        spectrum slope of G(E(x)) (photos: about -2.2 to -2.9 at 224 px; steeper is blurrier)."""
        from ..eval.metrics import spectrum_slope

        rows = self.held_rows[:max_images]
        if len(rows) == 0:
            return {}
        self.gen.eval()
        x = self.views[rows].float().to(self.device) / 255.0
        y = self.codes[rows].to(self.device)
        recon = torch.cat([self.gen(y[i : i + 64]) for i in range(0, len(y), 64)])
        mse = (recon - x).pow(2).flatten(1).mean(1)
        psnr = float((10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean())
        net = self.comparator
        y2 = torch.cat([forward_until(net.model, self.config.prior.layer, net.preprocess(recon[i : i + 64])) for i in range(0, len(recon), 64)])
        cos = float(F.cosine_similarity(y2.flatten(1), y.flatten(1)).mean())
        slope = float(np.nanmedian(spectrum_slope(recon.cpu())))
        self.gen.train()
        return {"heldout_psnr": psnr, "heldout_code_cos": cos, "heldout_slope": slope}

    @torch.no_grad()
    def save_samples(self) -> None:
        from ..infra.images import to_pil
        from ..io.write import save_png

        n = self.config.heldout_samples
        rows = self.held_rows[:: max(1, len(self.held_rows) // max(1, n))][:n]  # spread over the held-out originals
        if len(rows) == 0 or self.rank != 0:
            return
        self.gen.eval()
        x = self.views[rows].float().to(self.device) / 255.0
        recon = self.gen(self.codes[rows].to(self.device))
        self.gen.train()
        grid = torch.cat([torch.cat(list(x.cpu()), 2), torch.cat(list(recon.cpu()), 2)], 1)
        save_png(to_pil(grid), self.out / "samples" / f"step{self.step:06d}.png")  # atomically: a full disk leaves no half PNG

    # ---- loop
    def train(self, until: int | None = None) -> Path | None:
        """Train to ``config.steps``, or stop early at step ``until`` (the schedule still spans
        ``config.steps``, so a run stopped at ``until`` is reproducible exactly).

        Ctrl-C or SIGTERM stops after the current step and writes the checkpoint; ``self.interrupted``
        then names the signal (``"SIGINT"``/``"SIGTERM"``, else None): the caller must not take the
        generator for a finished one (``train-generator`` exits 130/143 and exports nothing)."""
        from tqdm.auto import tqdm

        cfg = self.config
        self.interrupted: str | None = None
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
        log_path = self.out / "log.csv"
        fields = ["step", "seconds", "pix", "feat", "adv", "spec", "loss_g", "loss_d", "w_pix", "w_feat", "w_adv", "lr", "grad_norm", "heldout_psnr", "heldout_code_cos", "heldout_slope"]
        new_log = not log_path.exists()
        if not new_log:  # a log begun by an older version keeps its own columns
            with open(log_path, newline="") as f:
                fields = next(csv.reader(f), None) or fields
        log_file = open(log_path, "a", newline="") if self.rank == 0 else None
        writer = csv.DictWriter(log_file, fieldnames=fields, extrasaction="ignore") if log_file else None
        if writer and new_log:
            writer.writeheader()
        stop = {"flag": False}
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
        last_ckpt, started = time.time(), time.time()
        self.gen.train()
        try:
            with tqdm(total=cfg.steps, initial=self.step, desc="train-generator", disable=not (self.progress and self.rank == 0)) as bar:
                while self.step < min(cfg.steps, until or cfg.steps) and not stop["flag"]:
                    x, y = self.batch()
                    logs = self.train_step(x, y)
                    self.step += 1
                    bar.update(1)
                    bar.set_postfix(pix=f"{logs['pix']:.4f}", feat=f"{logs.get('feat', 0):.3f}")
                    if self.step % cfg.sample_every == 0 or self.step == cfg.steps:
                        logs.update(self.heldout_metrics())
                        self.save_samples()
                    if writer:
                        writer.writerow({"step": self.step, "seconds": round(time.time() - started, 1), **logs})
                        log_file.flush()
                    if cfg.export_every and self.step % cfg.export_every == 0 and self.rank == 0:
                        self.export(self.out / "priors" / f"step{self.step:06d}.safetensors")
                    if time.time() - last_ckpt > 60 * cfg.checkpoint_minutes:
                        self.save_checkpoint()
                        last_ckpt = time.time()
        except KeyboardInterrupt:
            self.interrupted = "SIGINT"
        finally:
            signal.signal(signal.SIGTERM, previous)
            if stop["flag"] and self.interrupted is None and self.step < min(cfg.steps, until or cfg.steps):
                self.interrupted = "SIGTERM"  # (a SIGTERM after the last step stopped nothing)
            path = self.save_checkpoint()
            if log_file:
                log_file.close()
        return path

    def export(self, path: str | Path, card: dict | None = None) -> str:
        """Write the generator as safetensors with its config and training summary; return the sha256."""
        extra = {"training": {"steps": self.step, "pool": str(self.pool_dir), **(card or {})}}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return save_prior(self.gen, path, extra)


def load_trained(checkpoint: str | Path) -> PriorGenerator:
    """The generator of a training checkpoint (for evaluation or export)."""
    state = load_checkpoint(checkpoint)
    config = TrainConfig.from_dict(state["config"], where=f"checkpoint {short(checkpoint)}: config")
    gen = PriorGenerator(config.prior)
    load_strict(gen, state["gen"], what=f"checkpoint {short(checkpoint)}: gen")
    gen.update_bounds()
    return gen.eval()


__all__ = ["TrainConfig", "Trainer", "Discriminator", "PatchDiscriminator", "make_discriminator", "gan_loss", "warm_start", "stage_weights", "spectral_loss", "load_trained"]
