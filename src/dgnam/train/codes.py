"""The encoder's codes of a prior's training views: the views, their codes, the code cache and the codes' statistics.

The encoder is fixed and augmentation happens before encoding, so the codes of every training view are
computed once (:func:`encode_views`) and cached on disk (:func:`cached_codes`), keyed by the views' content.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..core.hooks import forward_until
from ..infra.hub import WeightsError, read_torch_file
from ..nets import load_net

if TYPE_CHECKING:
    from .trainer import TrainConfig


def make_views(images: np.ndarray, size: int, views: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) pool -> uint8 (N * views, 3, size, size): resized, and mirrored when views == 2."""
    out = []
    for start in range(0, len(images), 512):
        x = torch.from_numpy(images[start : start + 512]).permute(0, 3, 1, 2).float()
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = x.round().clamp(0, 255).to(torch.uint8)
        out.append(torch.stack([x, x.flip(-1)], 1) if views == 2 else x[:, None])
    return torch.cat(out).flatten(0, 1)


def frozen_features(encoder: str, device: torch.device | str = "cpu"):
    """The encoder as a :class:`~dgnam.nets.Target` for feature extraction only: BatchNorm folded
    where the architecture offers it (``model.fused()``) and channels-last memory, about 2x faster
    on CPU; block outputs keep their values."""
    net = load_net(encoder)
    if hasattr(net.model, "fused"):
        net.model = net.model.fused()
    net.model.to(memory_format=torch.channels_last)
    return net.to(device)


@torch.no_grad()
def encode_views(views: torch.Tensor, encoder: str, layer: str, batch_size: int = 64, progress: bool = True,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Codes E_layer(x) of uint8 views, fed to the encoder as the loop feeds generator images
    (computed on ``device``, returned on the CPU)."""
    from tqdm.auto import tqdm

    net = frozen_features(encoder, device)
    codes = []
    for start in tqdm(range(0, len(views), batch_size), desc="encoding", disable=not progress):
        x = net.preprocess(views[start : start + batch_size].to(device).float() / 255.0)
        codes.append(forward_until(net.model, layer, x.contiguous(memory_format=torch.channels_last)).float().cpu())
    return torch.cat(codes)


def views_digest(views: torch.Tensor) -> str:
    """sha256 of uint8 views (their shape and bytes): the code cache's key (about 1 s per GB)."""
    h = hashlib.sha256(str(tuple(views.shape)).encode())
    h.update(memoryview(views.contiguous().numpy()).cast("B"))
    return h.hexdigest()


def cached_codes(cache_dir: Path, views: torch.Tensor, config: TrainConfig, progress: bool = True,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Encoder codes of the views, computed once per (views' content, encoder, layer, size, views) and cached.

    The cache file records the sha256 of the views it encodes (:func:`views_digest`): a pool rebuilt
    with other images, even as many, is encoded again; so is a cache that cannot be read. The file is
    written atomically (a temporary file, then a rename).
    """
    p = config.prior
    path = cache_dir / f"codes_{p.encoder}_{p.layer}_{p.output_size}px_{config.views}v.pt"
    digest = views_digest(views)
    if path.is_file():
        try:
            saved = read_torch_file(path, "code cache", "")
        except (WeightsError, OSError):  # a damaged or foreign file where dgnam keeps its cache: encoded again below
            saved = None
        codes = saved.get("codes") if isinstance(saved, dict) and saved.get("views_sha256") == digest else None
        if isinstance(codes, torch.Tensor) and len(codes) == len(views):
            return codes
    codes = encode_views(views, p.encoder, p.layer, batch_size=256 if torch.device(device).type == "cuda" else 64, progress=progress, device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({"codes": codes, "views_sha256": digest}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return codes


def code_stats(codes: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-unit statistics of codes (N, *code_shape): mean, std, min, max, 1/50/99th percentiles."""
    flat = codes.flatten(1).double()
    q = torch.quantile(flat[: min(len(flat), 20000)], torch.tensor([0.01, 0.5, 0.99], dtype=torch.float64), dim=0)
    shape = codes.shape[1:]
    stats = {"mean": flat.mean(0), "std": flat.std(0), "min": flat.min(0).values, "max": flat.max(0).values, "p01": q[0], "p50": q[1], "p99": q[2]}
    return {k: v.float().view(shape) for k, v in stats.items()}


__all__ = ["cached_codes", "code_stats", "encode_views", "frozen_features", "make_views", "views_digest"]
