"""What the atlas computes per unit: synthesized images, dataset exemplars, the activation histogram.

Compute only: every function takes tensors/arrays and returns them; :mod:`dgnam.atlas.store` writes
the results and :mod:`dgnam.atlas.site` turns them into pages.

- **Facets**: DGN-AM through the generator prior from several seeds (or, for a net without a prior,
  the pixel method from several seeds).
- **Pixel baseline**: the net's best pixel-space method (DeepInversion where the net has BatchNorm
  statistics, else Fourier), one seed.
- **Exemplars**: the natural images of the data that drive the unit most and least. The unit is read
  exactly as the optimization reads it (the centre of a map, unless the unit names another location),
  so "relative to the best natural image" compares the same number; hidden units are shown cropped to
  their receptive field.
- **Accentuation** (Hamblin, Fel, Saha, Konkle & Alvarez 2024, "Feature accentuation"): the same
  optimization started from the top exemplar instead of noise: from its code E(photo) for DGN-AM,
  from the photo itself for pixel methods. What the unit would change in a real image it likes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..nets import Target
from ..core.units import Unit


@dataclass
class AtlasConfig:
    """What is computed per unit. The defaults keep one unit near a minute on a laptop CPU for
    EfficientNet-Lite0 (three DGN-AM seeds, one pixel baseline, one accentuation, 200 steps each)."""

    seeds: tuple[int, ...] = (0, 1, 2)  # DGN-AM facets per unit: different seeds find different optima
    k: int = 9  # top and bottom dataset exemplars per unit (a 3x3 grid each)
    bins: int = 40  # bins of the activation histogram over the data
    pixel_baseline: bool = True  # also the best pixel-space method, one seed, beside DGN-AM
    accentuate: bool = True  # also the top exemplar accentuated (Hamblin et al. 2024)
    batch_size: int = 8  # images optimized together
    data_batch_size: int = 32  # images per forward pass of the activation pass over the data

    def __post_init__(self):
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds:
            raise ValueError("AtlasConfig.seeds needs at least one seed")
        if self.k < 1 or self.bins < 2 or self.batch_size < 1 or self.data_batch_size < 1:
            raise ValueError("AtlasConfig: k >= 1, bins >= 2, batch_size >= 1 and data_batch_size >= 1")

    @property
    def units_per_batch(self) -> int:
        """Units optimized together (all seeds of a unit share a batch)."""
        return max(1, self.batch_size // len(self.seeds))


@dataclass
class Synthesized:
    """One optimized image and the activation it reached (read without random transforms)."""

    image: torch.Tensor  # (3, H, W) in [0, 1]
    activation: float
    seed: int


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255.0  # a copy: pools are read-only memory maps


def histogram(acts: np.ndarray, bins: int) -> tuple[list[int], list[float]]:
    """Counts and bin edges of ``acts`` (finite values only)."""
    finite = acts[np.isfinite(acts)]
    if not len(finite):
        return [0] * bins, [0.0] * (bins + 1)
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1e-6
    counts, edges = np.histogram(finite, bins=bins, range=(lo, hi))
    return [int(c) for c in counts], [round(float(e), 6) for e in edges]


def synthesize(target: Target, units: Sequence[Unit], seeds: Sequence[int], generator=None, config=None,
               init_images: torch.Tensor | None = None, progress: bool = False) -> list[Synthesized]:
    """One optimized image per (unit, seed) pair, as one batch.

    Args:
        target: The net.
        units: One unit per image.
        seeds: One seed per image.
        generator: A generator prior (DGN-AM), or None for the pixel method of ``config``.
        config: :class:`~dgnam.methods.dgn_am.DGNAMConfig` or :class:`~dgnam.methods.pixel.PixelConfig`.
        init_images: (N, 3, H, W) photos to start from (feature accentuation): DGN-AM starts from
            their codes E(photo) under the prior's encoder, pixel methods from the photos themselves.
        progress: Show the optimization's progress bar.

    Returns:
        One :class:`Synthesized` per pair, in order.
    """
    from ..methods.accentuate import accentuate

    result = accentuate(target, list(units), list(seeds), generator, config, init_images, progress=progress)
    return [Synthesized(result.images[i], float(result.final[i]), int(s)) for i, s in enumerate(seeds)]


__all__ = ["AtlasConfig", "Synthesized", "histogram", "synthesize", "to_tensor"]
