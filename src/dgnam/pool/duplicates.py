"""Near-duplicate photographs across the pool's sources, found by a 64-bit DCT perceptual hash.

:func:`drop_near_duplicates` removes any photo original whose hash lies within a few bits of an earlier
original's (the same photograph shipped twice, resized or recompressed), across all sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from ..infra.images import to_rgb
from .sources import Source


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT32 = _dct_matrix(32)


def perceptual_hash(image: np.ndarray) -> int:
    """64-bit DCT perceptual hash (pHash): grey 32x32, 2-D DCT, the 8x8 lowest frequencies
    (DC left out of the median) thresholded at their median.

    Args:
        image: (H, W, 3) or (H, W) uint8.

    Returns:
        The hash as an int; near-identical pictures differ in few bits (:func:`hamming`).
    """
    grey = Image.fromarray(to_rgb(image)).convert("L").resize((32, 32), Image.Resampling.BILINEAR, reducing_gap=2.0)
    freq = _DCT32 @ np.asarray(grey, dtype=np.float64) @ _DCT32.T
    low = freq[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hamming(a: int, b: int) -> int:
    """Number of differing bits."""
    return (a ^ b).bit_count()


def near_duplicates(hashes: Sequence[int], max_bits: int = 6) -> list[int]:
    """Indices of the items whose hash is within ``max_bits`` of an earlier kept item's.

    Args:
        hashes: perceptual hashes, in priority order (earlier ones are kept).
        max_bits: largest Hamming distance counted as the same picture.

    Returns:
        Sorted indices to drop.
    """
    kept: list[int] = []
    dropped = []
    for i, h in enumerate(hashes):
        if any(hamming(h, hashes[j]) <= max_bits for j in kept):
            dropped.append(i)
        else:
            kept.append(i)
    return dropped


@dataclass
class DuplicateReport:
    """What :func:`drop_near_duplicates` removed: ``(source, file, kept source:file)`` triples."""

    removed: list[tuple[str, str, str]]


def drop_near_duplicates(sources: Sequence[Source], max_bits: int = 6) -> tuple[list[Source], DuplicateReport]:
    """Remove photo originals that repeat an earlier one (perceptual hash within ``max_bits``).

    Photo sources are compared across sources, in order; video and stamp sources pass unchanged.
    Every photo original is loaded once here.

    Args:
        sources: the pool's sources, in pool order (earlier wins).
        max_bits: see :func:`near_duplicates`.

    Returns:
        ``(sources without the repeats, report)``.
    """
    keys, hashes = [], []
    for s in sources:
        if s.kind == "photo":
            for o in s.originals:
                keys.append((s.name, o.file))
                hashes.append(perceptual_hash(np.asarray(o.load())))
    drop = set(near_duplicates(hashes, max_bits))
    removed = []
    for i in sorted(drop):
        twin = next(j for j in range(i) if j not in drop and hamming(hashes[i], hashes[j]) <= max_bits)
        removed.append((*keys[i], ":".join(keys[twin])))
    gone = {keys[i] for i in drop}
    out = [replace(s, originals=[o for o in s.originals if (s.name, o.file) not in gone]) if s.kind == "photo" else s for s in sources]
    return out, DuplicateReport(removed)


__all__ = ["DuplicateReport", "drop_near_duplicates", "hamming", "near_duplicates", "perceptual_hash"]
