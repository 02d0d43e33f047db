"""Building a pool: collect the sources, crop and composite them, split train / held-out, write the card."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..infra.images import to_rgb
from .crops import _rng, composite_batch, crops_per_original, random_crops, trim_dark_borders, video_crops
from .debian import DebPackage, default_cache_dir, fetch_deb
from .sources import DEFAULT_HELDOUT_FRACTION, Source, SourceSummary, WALLPAPERS, _progress, opencv_photo_source, opencv_video_source, skimage_source, tuxpaint_stamp_source, video_decoder, wallpaper_source
from .store import PoolCard, choose_heldout, save_pool


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


def _small_copy(image: np.ndarray, short_side: int) -> np.ndarray:
    """A downscaled copy kept as a composite background."""
    h, w = image.shape[:2]
    factor = short_side / min(h, w)
    if factor >= 1:
        return image.copy()
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0))


@dataclass
class _Accumulator:
    images: list[np.ndarray] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)

    def add(self, crops: np.ndarray, record: dict) -> None:
        self.images.append(crops)
        self.records += [dict(record) for _ in range(len(crops))]


def collect_sources(
    cache_dir: Path,
    per_source_limit: int | None,
    video_frames_per_video: int,
    notes: list[str],
    fetch: Callable[[str, Path], DebPackage] = fetch_deb,
) -> list[Source]:
    """Fetch the packages and list the originals of every source.

    Args:
        cache_dir: where packages are downloaded and unpacked.
        per_source_limit: use at most this many originals per source (None: all).
        video_frames_per_video: frames sampled from each video.
        notes: skipped sources are described here.
        fetch: package fetcher (injectable for tests).

    Returns:
        The sources, in pool order.
    """
    opencv = fetch("opencv-doc", cache_dir)
    sources = [opencv_photo_source(opencv, per_source_limit)]
    decode = video_decoder()
    if decode is None:
        notes.append("video frames skipped: no decoder (pip install av, or opencv-python-headless)")
        warnings.warn(notes[-1], stacklevel=2)
    elif video_frames_per_video > 0:
        sources.append(opencv_video_source(opencv, video_frames_per_video, decode, per_source_limit))
    for spec in WALLPAPERS:
        sources.append(wallpaper_source(fetch(spec.package, cache_dir), spec, per_source_limit))
    skim = skimage_source(per_source_limit)
    if skim is None:
        notes.append("scikit-image photos skipped: scikit-image is not installed")
        warnings.warn(notes[-1], stacklevel=2)
    else:
        sources.append(skim)
    from .gcompris_tuxpaint_palapeli import extra_sources

    sources += extra_sources(fetch, cache_dir, per_source_limit)
    from .photo_folders import more_sources

    sources += more_sources(fetch, cache_dir, per_source_limit)
    sources.append(tuxpaint_stamp_source(fetch("tuxpaint-stamps-default", cache_dir), per_source_limit))
    return sources


def build_pool(
    out_dir: str | Path,
    cache_dir: str | Path | None = None,
    size: int = 160,
    per_source_limit: int | None = None,
    composites: int = 3000,
    video_frames_per_video: int = 150,
    seed: int = 0,
    progress: bool = True,
    crop_density: float = 40.0,
    max_crops_per_original: int = 600,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
) -> PoolCard:
    """Build the natural-image pool and write it to ``out_dir``.

    Writes ``images.npy`` (uint8, N x size x size x 3), ``sources.json`` (per image: source,
    file, held-out flag and, for composites, the background), ``card.json`` and ``POOL.md``.
    The same arguments give the same pool.

    Args:
        out_dir: output folder (created).
        cache_dir: where Debian packages are downloaded and unpacked; default
            ``$DGNAM_HOME/debs`` (``DGNAM_HOME`` defaults to ``~/.cache/dgnam``).
        size: side of the square images.
        per_source_limit: use at most this many originals per source (None: all); for quick
            builds.
        composites: number of stamp-on-photo composites, shared among the stamp sources in
            proportion to their stamps.
        video_frames_per_video: frames sampled evenly from each video (one crop each).
        seed: seed of every random choice (crops, composites, split).
        progress: show progress bars.
        crop_density: crops per output-size of an original's short side
            (see :func:`crops_per_original`).
        max_crops_per_original: most crops from one photo.
        heldout_fraction: fraction of each source's originals held out.

    Returns:
        The pool card (also written to ``card.json`` and ``POOL.md``).
    """
    start = time.time()
    out_dir = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    notes: list[str] = []
    sources = collect_sources(cache, per_source_limit, video_frames_per_video, notes)
    from .duplicates import drop_near_duplicates

    sources, dups = drop_near_duplicates(sources)
    notes += [f"near-duplicate removed: {s}:{f} (repeats {twin})" for s, f, twin in dups.removed]
    heldout = choose_heldout({s.name: [o.file for o in s.originals] for s in sources}, heldout_fraction, seed)
    acc = _Accumulator()
    backgrounds: dict[bool, list[tuple[str, np.ndarray]]] = {False: [], True: []}
    for source in (s for s in sources if s.kind != "stamp"):
        for orig in _progress(source.originals, progress, source.name):
            key = f"{source.name}:{orig.file}"
            rng = _rng(seed, key)
            if source.kind == "video":
                crops = video_crops(orig.load(), size, rng)
            else:
                image = trim_dark_borders(to_rgb(orig.load()))
                n = crops_per_original(*image.shape[:2], size, crop_density, max_crops_per_original)
                crops = random_crops(image, n, size, rng)
                backgrounds[key in heldout].append((key, _small_copy(image, 3 * size)))
            acc.add(crops, {"source": source.name, "file": orig.file, "heldout": key in heldout})
    stamp_sources = [s for s in sources if s.kind == "stamp"]
    for source, total in zip(stamp_sources, proportional_shares(composites, [len(s.originals) for s in stamp_sources])):
        _add_composites(acc, source, backgrounds, heldout, total, size, seed, notes)

    images = np.concatenate(acc.images) if acc.images else np.zeros((0, size, size, 3), np.uint8)
    train_idx = [i for i, r in enumerate(acc.records) if not r["heldout"]]
    heldout_idx = [i for i, r in enumerate(acc.records) if r["heldout"]]
    card = PoolCard(
        size=size, seed=seed, n_images=len(images), heldout_fraction=heldout_fraction,
        build_seconds=round(time.time() - start, 1), sources=summarize(sources, acc.records),
        train_idx=train_idx, heldout_idx=heldout_idx, notes=notes,
    )  # fmt: skip
    save_pool(out_dir, images, acc.records, card)
    return card


def proportional_shares(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainders get the leftovers).

    Args:
        total: what to share.
        weights: one non-negative weight per share.

    Returns:
        Integer shares summing to ``total`` (all 0 when every weight is 0).

    Example:
        >>> proportional_shares(10, [2, 1, 0])
        [7, 3, 0]
    """
    weight = sum(weights)
    if weight == 0:
        return [0] * len(weights)
    raw = [total * w / weight for w in weights]
    shares = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: shares[i] - raw[i])[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _add_composites(
    acc: _Accumulator,
    source: Source,
    backgrounds: dict[bool, list[tuple[str, np.ndarray]]],
    heldout: set[str],
    total: int,
    size: int,
    seed: int,
    notes: list[str],
) -> None:
    """Composite held-out stamps on held-out backgrounds and training stamps on training ones,
    ``total`` in all, shared in proportion to the number of stamps on each side."""
    split_stamps = {False: [], True: []}
    for orig in source.originals:
        key = f"{source.name}:{orig.file}"
        split_stamps[key in heldout].append((orig.file, orig.load()))
    n_stamps = len(source.originals)
    if not backgrounds[True] and split_stamps[True]:
        notes.append("held-out stamps unused: no held-out background photo")
        n_stamps -= len(split_stamps[True])
        split_stamps[True] = []
    n_held = round(total * len(split_stamps[True]) / n_stamps) if n_stamps else 0
    for is_held, count in ((False, total - n_held), (True, n_held)):
        stamps, bgs = split_stamps[is_held], backgrounds[is_held]
        if count <= 0 or not stamps or not bgs:
            continue
        rng = _rng(seed, "composites", source.name, str(is_held))
        images, pairs = composite_batch(stamps, bgs, count, size, rng)
        acc.images.append(images)
        acc.records += [
            {"source": source.name, "file": s, "heldout": is_held, "background": b} for s, b in pairs
        ]


def summarize(sources: Sequence[Source], records: Sequence[dict]) -> list[SourceSummary]:
    """Per-source rows of the card.

    Args:
        sources: the sources used.
        records: one record per pool image.

    Returns:
        One summary per source.
    """
    counts: dict[str, int] = {}
    per_file: dict[str, int] = {}
    for r in records:
        counts[r["source"]] = counts.get(r["source"], 0) + 1
        key = f"{r['source']}:{r['file']}"
        per_file[key] = per_file.get(key, 0) + 1
    held = {f"{r['source']}:{r['file']}" for r in records if r["heldout"]}
    rows = []
    for s in sources:
        originals = [
            {
                "file": o.file,
                "licence": o.licence,
                "n_images": per_file.get(f"{s.name}:{o.file}", 0),
                "heldout": f"{s.name}:{o.file}" in held,
            }
            for o in s.originals
        ]
        licences = sorted({o.licence for o in s.originals})
        rows.append(SourceSummary(s.name, s.package, s.version, licences, len(s.originals),
                                  counts.get(s.name, 0), s.usage, originals))  # fmt: skip
    return rows
