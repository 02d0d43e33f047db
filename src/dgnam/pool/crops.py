"""Pixel operations of the image pool (pure: arrays in, arrays out): crops, stamps and composites."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..infra.images import crop_resize, to_rgb


# ---------------------------------------------------------------------------------------------
# Pixel operations (pure: arrays in, arrays out)
# ---------------------------------------------------------------------------------------------


def stable_hash(text: str) -> int:
    """Hash a string to a 64-bit int that does not change between runs or machines.

    Args:
        text: any string.

    Returns:
        A non-negative int below 2**64.
    """
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def trim_dark_borders(image: np.ndarray, threshold: int = 12) -> np.ndarray:
    """Remove black bars (letterbox, pillarbox, frames) around an image.

    Args:
        image: (H, W, 3) uint8.
        threshold: a border row or column is removed while all its values are below this.

    Returns:
        A view of ``image`` without its dark border rows and columns (the whole image if it is
        dark everywhere).
    """
    bright = image.max(axis=-1) >= threshold
    rows = np.flatnonzero(bright.any(axis=1))
    cols = np.flatnonzero(bright.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return image
    return image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def sample_crop_box(
    height: int, width: int, rng: np.random.Generator, min_side: float, min_scale: float = 0.2
) -> tuple[int, int, int]:
    """Draw a random square crop, its side log-uniform between a floor and the short side.

    Args:
        height: image height.
        width: image width.
        rng: random generator.
        min_side: smallest side in pixels (limits upsampling; e.g. 0.75 * output size).
        min_scale: smallest side as a fraction of the short side.

    Returns:
        ``(top, left, side)`` of a square inside the image.
    """
    short = min(height, width)
    low = min(float(short), max(min_side, min_scale * short))
    side = int(round(math.exp(rng.uniform(math.log(low), math.log(short)))))
    side = max(1, min(side, short))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    return top, left, side


def image_detail(image: np.ndarray) -> float:
    """How much is going on in an image: the mean absolute difference between neighbouring
    grey values (0 for a plain colour or a smooth gradient; about 5 for a typical photo crop).

    Args:
        image: (H, W, 3) uint8.

    Returns:
        The mean over horizontal and vertical neighbour pairs, in 0..255 grey levels.
    """
    grey = image.astype(np.float32).mean(axis=-1)
    return float((np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()) / 2)


def random_crops(
    image: np.ndarray,
    n: int,
    size: int,
    rng: np.random.Generator,
    min_scale: float = 0.2,
    flip: bool = True,
    min_detail: float = 0.7,
    tries: int = 6,
) -> np.ndarray:
    """Random square crops at several scales, resized to ``size``, some mirrored.

    Args:
        image: (H, W, 3) uint8.
        n: number of crops.
        size: output side.
        rng: random generator.
        min_scale: smallest crop side as a fraction of the short side (the side is also never
            below 0.75 * size, so small images are not upsampled much).
        flip: mirror each crop left-right with probability 1/2.
        min_detail: a crop whose :func:`image_detail` is below this (plain sky, a blurred
            petal, a wall) is redrawn, up to ``tries`` draws; then the most detailed draw is kept.
        tries: most draws per crop.

    Returns:
        (n, size, size, 3) uint8.
    """
    pil = Image.fromarray(to_rgb(image))
    h, w = image.shape[:2]
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        best, best_detail = None, -1.0
        for _ in range(max(1, tries)):
            crop = crop_resize(pil, sample_crop_box(h, w, rng, 0.75 * size, min_scale), size)
            detail = image_detail(crop)
            if detail > best_detail:
                best, best_detail = crop, detail
            if detail >= min_detail:
                break
        out[i] = best[:, ::-1] if flip and rng.random() < 0.5 else best
    return out


def crops_per_original(height: int, width: int, size: int, density: float, cap: int) -> int:
    """How many crops an original of this size gets: proportional to its short side.

    A photo whose short side is k output-sizes long has room for about k^2 disjoint crops at
    the smallest scale; linear growth in k keeps big wallpapers from swamping the pool.

    Args:
        height: image height.
        width: image width.
        size: output side.
        density: crops per output-size of short side.
        cap: most crops for one original.

    Returns:
        Number of crops, at least 1.
    """
    return int(max(1, min(cap, round(density * min(height, width) / size))))


def alpha_composite(background: np.ndarray, stamp: np.ndarray, top: int, left: int) -> np.ndarray:
    """Paste an RGBA stamp onto an RGB background with alpha blending.

    The stamp may hang over the edges; only the overlapping part is drawn.

    Args:
        background: (H, W, 3) uint8.
        stamp: (h, w, 4) uint8, straight (not premultiplied) alpha.
        top: row of the stamp's top-left corner in the background (may be negative).
        left: column of the stamp's top-left corner (may be negative).

    Returns:
        New (H, W, 3) uint8 array: ``round(bg * (1 - a) + fg * a)`` under the stamp.
    """
    out = background.copy()
    H, W = background.shape[:2]
    h, w = stamp.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, H), min(left + w, W)
    if y0 >= y1 or x0 >= x1:
        return out
    patch = stamp[y0 - top : y1 - top, x0 - left : x1 - left].astype(np.float32)
    alpha = patch[..., 3:4] / 255.0
    under = out[y0:y1, x0:x1].astype(np.float32)
    blended = under * (1.0 - alpha) + patch[..., :3] * alpha
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def resize_rgba(stamp: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an RGBA image with premultiplied alpha (no dark fringes at the edges).

    Args:
        stamp: (h, w, 4) uint8.
        height: new height.
        width: new width.

    Returns:
        (height, width, 4) uint8.
    """
    pil = Image.fromarray(stamp, "RGBA").convert("RGBa")
    pil = pil.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(pil.convert("RGBA"), dtype=np.uint8)


def tight_alpha_box(stamp: np.ndarray, threshold: int = 8) -> np.ndarray:
    """Crop an RGBA stamp to the bounding box of its visible pixels.

    Args:
        stamp: (h, w, 4) uint8.
        threshold: alpha at or below this counts as transparent.

    Returns:
        The cropped stamp (the input if nothing is visible).
    """
    visible = stamp[..., 3] > threshold
    rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
    if rows.size == 0:
        return stamp
    return stamp[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def place_stamp(
    background: np.ndarray,
    stamp: np.ndarray,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = (0.45, 0.95),
    max_overhang: float = 0.15,
) -> np.ndarray:
    """Paste a stamp at a random scale, position and orientation onto a square background.

    Args:
        background: (S, S, 3) uint8.
        stamp: (h, w, 4) uint8 cut-out.
        rng: random generator.
        scale_range: the stamp's longer side, as a fraction of S, is drawn uniformly from this.
        max_overhang: at most this fraction of the stamp's height / width may fall outside.

    Returns:
        (S, S, 3) uint8 composite.
    """
    stamp = tight_alpha_box(stamp)
    side = background.shape[0]
    longest = rng.uniform(*scale_range) * side
    factor = longest / max(stamp.shape[:2])
    h = max(1, int(round(stamp.shape[0] * factor)))
    w = max(1, int(round(stamp.shape[1] * factor)))
    resized = resize_rgba(stamp, h, w)
    if rng.random() < 0.5:
        resized = resized[:, ::-1]
    top = int(rng.integers(-int(max_overhang * h), side - h + int(max_overhang * h) + 1))
    left = int(rng.integers(-int(max_overhang * w), side - w + int(max_overhang * w) + 1))
    return alpha_composite(background, resized, top, left)


def stamp_statistics(rgba: np.ndarray) -> tuple[int, int, float]:
    """Colour statistics that tell photographic cut-outs from clip-art.

    Args:
        rgba: (h, w, 4) uint8.

    Returns:
        ``(opaque_pixels, unique_colours, flat_fraction)``: the number of pixels with alpha >
        200, the number of distinct RGB values among them, and the fraction of horizontally
        adjacent opaque pixel pairs whose colours differ by at most 3 (summed over channels).
        Clip-art is flat (large areas of one colour); photos are not.
    """
    opaque = rgba[..., 3] > 200
    n = int(opaque.sum())
    if n == 0:
        return 0, 0, 1.0
    rgb = rgba[..., :3].astype(np.int32)
    packed = rgb[opaque] @ np.array([65536, 256, 1], dtype=np.int32)
    pairs = opaque[:, 1:] & opaque[:, :-1]
    same = (np.abs(rgb[:, 1:] - rgb[:, :-1]).sum(axis=-1) <= 3) & pairs
    flat = float(same.sum()) / max(1, int(pairs.sum()))
    return n, int(np.unique(packed).size), flat


def video_crops(frames: Sequence[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """One random crop (at least half the short side) of each non-blank frame.

    Args:
        frames: (H, W, 3) uint8 frames.
        size: output side.
        rng: random generator.

    Returns:
        (n_kept_frames, size, size, 3) uint8.
    """
    kept = [trim_dark_borders(f) for f in frames if is_informative_frame(f)]
    crops = [random_crops(f, 1, size, rng, min_scale=0.5) for f in kept]
    return np.concatenate(crops) if crops else np.zeros((0, size, size, 3), np.uint8)


def composite_batch(
    stamps: Sequence[tuple[str, np.ndarray]],
    backgrounds: Sequence[tuple[str, np.ndarray]],
    n: int,
    size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Make ``n`` composites: stamps in a shuffled round-robin (even use), each on a random
    crop of a random background.

    Args:
        stamps: ``(key, (h, w, 4) uint8)`` cut-outs.
        backgrounds: ``(key, (H, W, 3) uint8)`` photos.
        n: number of composites.
        size: output side.
        rng: random generator.

    Returns:
        ``(images, pairs)``: (n, size, size, 3) uint8 and the ``(stamp_key, background_key)``
        of each.
    """
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    pairs = []
    order = rng.permutation(len(stamps))
    for i in range(n):
        stamp_key, stamp = stamps[order[i % len(stamps)]]
        bg_key, bg = backgrounds[int(rng.integers(len(backgrounds)))]
        crop = random_crops(bg, 1, size, rng, min_scale=0.3)[0]
        out[i] = place_stamp(crop, stamp, rng)
        pairs.append((stamp_key, bg_key))
    return out, pairs


def _rng(seed: int, *parts: str) -> np.random.Generator:
    return np.random.default_rng(stable_hash(":".join([str(seed), *parts])))


def is_informative_frame(frame: np.ndarray, min_std: float = 10.0) -> bool:
    """Reject blank frames (fades to black, title cards of one colour).

    Args:
        frame: (H, W, 3) uint8.
        min_std: smallest pixel standard deviation.

    Returns:
        True if the frame has content.
    """
    return float(frame.std()) >= min_std
