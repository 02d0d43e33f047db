"""An offline pool of natural images for training the image-generator prior.

DGN-AM inverts classifier features with a DeePSiM-style generator, and that generator is only as
good a prior as the images it was trained on. Without ImageNet on the machine, :func:`build_pool`
gathers the photographs that ship inside Debian packages and scikit-image, turns each into many
random square crops (several scales, horizontal flips) and adds object-centric scenes made by
pasting photographic cut-outs onto photographic backgrounds:

============================  ==========================================================================
source                        what is used
============================  ==========================================================================
``opencv-doc``                the sample photos in ``examples/data`` (a hand-checked allow-list)
``opencv-doc-video``          frames of the two natural-scene videos (needs PyAV or OpenCV to decode)
``tuxpaint-stamps-default``   photographic stamps (PNG cut-outs with alpha), composited on photos
``mate-backgrounds``,         photographic wallpapers (hand-checked allow-lists; abstract art is left
``lomiri-wallpapers-*``,      out)
``plasma-workspace-wallpapers``
``scikit-image``              the natural photos among ``skimage.data`` (skipped if not installed)
``gcompris-qt-data``,         photographs of GCompris' photo activities, Tux Paint's photo templates,
``tuxpaint-data``,            Palapeli's puzzle photos (:mod:`dgnam.pool_extra`: rule + deny list;
``palapeli-data``             near-duplicates across all sources removed by perceptual hash)
============================  ==========================================================================

Debian packages are fetched with ``apt-get download`` and unpacked with ``dpkg -x`` into a cache;
nothing is installed on the system. The pool is written as ``images.npy`` (uint8, N x size x size x
3), ``sources.json`` (one record per image), ``card.json`` and ``POOL.md`` (the card: per source the
package, version, licence, counts and use, plus the train / held-out split). The split is drawn per
original file, so the crops of one photo, the frames of one video and the composites of one stamp
all fall on the same side; composites of held-out stamps only use held-out backgrounds.

Any image folder (ImageNet-style ``class/xxx.jpg`` or flat) gives the same array format through
:class:`ImageFolderPool` / :func:`load_image_folder`.

Decoding the videos needs an optional dependency: ``pip install av`` (PyAV, preferred) or
``pip install opencv-python-headless``. Without either, the video frames are skipped with a warning
and the card says so.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------------------------
# Curated contents. Every list below was chosen by looking at the images.
# ---------------------------------------------------------------------------------------------

OPENCV_DATA_DIR = "usr/share/doc/opencv-doc/examples/data"

#: Photographs in opencv-doc's examples/data. Left out: calibration boards (left01..14, right01..14,
#: chessboard), text (imageTextN/R, text_*, notes, sudoku), logos (opencv-logo*, LinuxLogo,
#: WindowsLogo), drawings and renders (HappyFish, ml, Blender_Suzanne*, starry_night painting),
#: synthetic shapes and masks (pic1..pic6, gradient, detect_blob, ellipses, digits, mask, templ,
#: tmpl, cards, aloeGT), degraded copies (licenseplate_motion, ela_modified, box: a crop of
#: box_in_scene), a light-box silhouette (pca_test1) and the second image of near-identical pairs
#: (aero3, aloeR, leuvenB, graf3, rubberwhale2, right, basketball2).
OPENCV_PHOTOS: tuple[str, ...] = (
    "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "blox.jpg",
    "board.jpg", "box_in_scene.png", "building.jpg", "butterfly.jpg", "chicky_512.png",
    "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "left.jpg", "leuvenA.jpg",
    "messi5.jpg", "orange.jpg", "rubberwhale1.png", "smarties.png",
    "squirrel_cls.jpg", "stuff.jpg",
)  # fmt: skip

#: Natural-scene videos of opencv-doc. Megamind.avi is CGI animation (and letterboxed) and
#: Megamind_bugy.avi a corrupted copy of it, so both are left out.
OPENCV_VIDEOS: tuple[str, ...] = ("tree.avi", "vtest.avi")


@dataclass(frozen=True)
class WallpaperSpec:
    """Which photographs of a wallpaper package to use.

    Attributes:
        package: Debian package name.
        install_prefix: folder (inside the unpacked package) that holds the wallpapers.
        source_prefix: what ``install_prefix`` is called in the Debian copyright file's
            ``Files:`` patterns, so that each file's licence can be looked up.
        files: allow-listed paths relative to ``install_prefix``; for KDE-style wallpaper
            folders (``Name/contents/images/WxH.jpg``) give the folder name and the largest
            image inside is used.
    """

    package: str
    install_prefix: str
    source_prefix: str
    files: tuple[str, ...]


WALLPAPERS: tuple[WallpaperSpec, ...] = (
    WallpaperSpec(
        "mate-backgrounds", "usr/share/backgrounds/mate", "",
        tuple(f"nature/{n}.jpg" for n in (
            "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird",
            "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")),
    ),  # the abstract/ and desktop/ folders are digital art
    WallpaperSpec(
        "lomiri-wallpapers-16.04", "usr/share/backgrounds", "16.04",
        tuple(f"{n}.jpg" for n in (
            "aitzgorri_by_Aitzol_Berasategi", "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly",
            "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
            "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
            "Picture_0B_by_freespace", "Picture_1A_by_freespace",
            "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi",
            "Wine_by_Jakkub_Mede")),
    ),  # left out: analogpattern (texture), umang (abstract)
    WallpaperSpec(
        "lomiri-wallpapers-20.04", "usr/share/backgrounds", "20.04",
        ("Kleiber_by_Lukas_Baubkus.jpg",),
    ),  # the other three are digital art
    WallpaperSpec(
        "plasma-workspace-wallpapers", "usr/share/wallpapers", "",
        ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
         "Grey", "Kite", "OneStandsOut", "Path", "summer_1am"),
    ),  # the other 19 are renders, low-poly art or illustrations
)  # fmt: skip

TUXPAINT_STAMPS_DIR = "usr/share/tuxpaint/stamps"
#: Clip-art that passes the colour-statistics rule of :func:`is_photographic_stamp`.
TUXPAINT_DENY: frozenset[str] = frozenset({
    "clothes/button.png", "seasonal/easter/bluebird.png", "seasonal/easter/bunny-egg.png",
    "seasonal/easter/bunny.png", "seasonal/easter/butterfly.png", "seasonal/easter/daffodil.png",
})  # fmt: skip

#: Natural photos among scikit-image's bundled samples, with the licence stated in each
#: function's docstring. Left out: moon, retina, immunohistochemistry, cell (scientific imaging),
#: page, text, horse, logo, colorwheel, clock (text, drawings, synthetic).
SKIMAGE_PHOTOS: dict[str, str] = {
    "astronaut": "public domain (NASA)",
    "chelsea": "CC0-1.0 (Stefan van der Walt)",
    "coffee": "CC0-1.0 (Rachel Michetti)",
    "rocket": "public domain (SpaceX)",
    "camera": "CC0-1.0 (Lav Varshney)",
    "coins": "public domain (Walters Art Museum)",
    "hubble_deep_field": "public domain (NASA)",
    "brick": "CC0-1.0 (CC0Textures)",
    "grass": "CC0-1.0 (CC0Textures)",
    "gravel": "CC0-1.0 (CC0Textures)",
    "stereo_motorcycle": "Middlebury stereo 2014 (free for research; left view used)",
}

DEFAULT_HELDOUT_FRACTION = 0.05
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)


# ---------------------------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------------------------


@dataclass
class Original:
    """One original file of a source (a photo, a video or a stamp), loaded lazily.

    Attributes:
        file: path of the file inside its source (the key of the train / held-out split).
        licence: licence of this file.
        load: returns the pixels: (H, W, 3) uint8 for photos, (H, W, 4) for stamps, a list of
            (H, W, 3) frames for videos.
    """

    file: str
    licence: str
    load: Callable[[], np.ndarray | list[np.ndarray]]


@dataclass
class Source:
    """A group of originals from one package, used one way.

    Attributes:
        name: name of the source in the card and in ``sources.json``.
        package: package that ships the files.
        version: version of that package.
        kind: ``"photo"`` (random crops), ``"video"`` (one crop per sampled frame) or
            ``"stamp"`` (composited onto photo backgrounds).
        usage: one sentence for the card.
        originals: the files used.
    """

    name: str
    package: str
    version: str
    kind: str
    usage: str
    originals: list[Original]


@dataclass
class SourceSummary:
    """One row of the pool card."""

    name: str
    package: str
    version: str
    licences: list[str]
    n_originals: int
    n_images: int
    usage: str
    originals: list[dict] = field(default_factory=list)


@dataclass
class PoolCard:
    """Description of a built pool, written as ``card.json`` and ``POOL.md``.

    Attributes:
        size: side of the square images.
        seed: seed the pool was built with.
        n_images: number of images.
        heldout_fraction: fraction of originals (per source) held out.
        build_seconds: wall-clock time of the build.
        sources: one summary per source.
        train_idx: indices (into ``images.npy``) of the training images.
        heldout_idx: indices of the held-out images.
        notes: anything skipped or worth knowing.
    """

    size: int
    seed: int
    n_images: int
    heldout_fraction: float
    build_seconds: float
    sources: list[SourceSummary]
    train_idx: list[int]
    heldout_idx: list[int]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Returns:
        The card as a JSON-serialisable dict.
        """
        return asdict(self)

    def to_markdown(self) -> str:
        """Returns:
        The card as Markdown (a table per source, then the split and notes).
        """
        lines = [
            "# Natural-image pool",
            "",
            f"{self.n_images} images, {self.size}x{self.size} RGB uint8 (`images.npy`), "
            f"seed {self.seed}, built in {self.build_seconds:.0f} s. "
            f"Train {len(self.train_idx)}, held out {len(self.heldout_idx)} "
            f"({self.heldout_fraction:.0%} of the originals of each source, split by original file).",
            "",
            "| source | package | version | licence | originals | images | use |",
            "| --- | --- | --- | --- | ---: | ---: | --- |",
        ]
        for s in self.sources:
            lines.append(
                f"| {s.name} | {s.package} | {s.version} | {', '.join(s.licences)} | "
                f"{s.n_originals} | {s.n_images} | {s.usage} |"
            )
        lines += ["", "## Originals", ""]
        for s in self.sources:
            held = [o["file"] for o in s.originals if o["heldout"]]
            lines.append(f"- **{s.name}** ({s.n_originals}): held out {held or 'none'}")
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


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


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Convert grey, grey+alpha, RGB or RGBA pixels to RGB uint8 (alpha is dropped).

    Args:
        image: (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4) array, uint8 or bool.

    Returns:
        (H, W, 3) uint8 array.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    channels = image.shape[-1]
    if channels in (1, 2):
        image = np.repeat(image[..., :1], 3, axis=-1)
    elif channels in (3, 4):
        image = image[..., :3]
    else:
        raise ValueError(f"unsupported shape {image.shape}")
    return np.ascontiguousarray(image)


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


def crop_resize(image: Image.Image, box: tuple[int, int, int], size: int) -> np.ndarray:
    """Cut a square out of a PIL image and resize it.

    Args:
        image: RGB PIL image.
        box: ``(top, left, side)`` as from :func:`sample_crop_box`.
        size: output side.

    Returns:
        (size, size, 3) uint8 array.
    """
    top, left, side = box
    region = (left, top, left + side, top + side)
    out = image.resize((size, size), Image.Resampling.BICUBIC, box=region, reducing_gap=3.0)
    return np.asarray(out, dtype=np.uint8)


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


def center_square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """The central square of an image, resized (the usual ImageNet evaluation view).

    Args:
        image: (H, W, C) uint8.
        size: output side.

    Returns:
        (size, size, 3) uint8.
    """
    h, w = image.shape[:2]
    side = min(h, w)
    box = ((h - side) // 2, (w - side) // 2, side)
    return crop_resize(Image.fromarray(to_rgb(image)), box, size)


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


def is_photographic_stamp(
    relpath: str,
    rgba: np.ndarray,
    min_opaque: int = 2000,
    max_flat: float = 0.30,
    deny: Iterable[str] = TUXPAINT_DENY,
) -> bool:
    """Decide whether a Tux Paint stamp is a photographic cut-out worth compositing.

    The rule (checked against contact sheets of all 796 stamps): not in a ``cartoon`` folder or
    under ``symbols/``, not a ``_mirror`` duplicate, not on the deny-list, at least
    ``min_opaque`` opaque pixels, more than 256 colours (palette images are clip-art) and at
    most ``max_flat`` flat neighbour pairs (see :func:`stamp_statistics`).

    Args:
        relpath: path under the stamps folder, e.g. ``animals/birds/lark.png``.
        rgba: (h, w, 4) uint8 pixels.
        min_opaque: smallest number of opaque pixels.
        max_flat: largest flat fraction.
        deny: paths rejected by name.

    Returns:
        True if the stamp should be used.
    """
    parts = relpath.split("/")
    if "cartoon" in parts or parts[0] == "symbols" or "_mirror" in parts[-1]:
        return False
    if relpath in set(deny):
        return False
    opaque, colours, flat = stamp_statistics(rgba)
    return opaque >= min_opaque and colours > 256 and flat <= max_flat


# ---------------------------------------------------------------------------------------------
# Train / held-out split
# ---------------------------------------------------------------------------------------------


def choose_heldout(files_by_source: dict[str, Sequence[str]], fraction: float, seed: int) -> set[str]:
    """Pick the held-out originals: in each source, the ``round(fraction * n)`` files with the
    smallest seeded hash (at least one file overall when there are two or more).

    Args:
        files_by_source: source name -> its original files.
        fraction: fraction to hold out per source.
        seed: seed of the hash, so different seeds give different splits.

    Returns:
        Set of ``"source:file"`` keys that are held out.
    """
    held: set[str] = set()
    all_keys = []
    for source, files in files_by_source.items():
        keys = sorted({f"{source}:{f}" for f in files}, key=lambda k: stable_hash(f"{seed}:{k}"))
        all_keys += keys
        held.update(keys[: int(math.floor(fraction * len(keys) + 0.5))])
    if not held and fraction > 0 and len(all_keys) >= 2:
        held.add(min(all_keys, key=lambda k: stable_hash(f"{seed}:{k}")))
    return held


def split_indices(records: Sequence[dict], heldout: set[str]) -> tuple[list[int], list[int]]:
    """Indices of training and held-out images.

    Args:
        records: one dict per image with ``source`` and ``file``.
        heldout: ``"source:file"`` keys that are held out.

    Returns:
        ``(train_idx, heldout_idx)``.
    """
    train, held = [], []
    for i, r in enumerate(records):
        (held if f"{r['source']}:{r['file']}" in heldout else train).append(i)
    return train, held


# ---------------------------------------------------------------------------------------------
# Licences (Debian machine-readable copyright files)
# ---------------------------------------------------------------------------------------------


def parse_dep5(text: str) -> list[tuple[list[str], str]]:
    """Read the ``Files:`` stanzas of a DEP-5 copyright file.

    Args:
        text: contents of ``/usr/share/doc/PKG/copyright``.

    Returns:
        ``[(patterns, licence), ...]`` in file order (the last matching stanza wins).
    """
    stanzas = []
    for para in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        current = None
        for line in para.split("\n"):
            if line[:1] in (" ", "\t") and current:
                fields[current] += "\n" + line.strip()
            elif ":" in line and not line.startswith("#"):
                current, _, value = line.partition(":")
                current = current.strip().lower()
                fields[current] = value.strip()
        if "files" in fields and "license" in fields:
            stanzas.append((fields["files"].split(), fields["license"].split("\n")[0].strip()))
    return stanzas


def licence_for(source_path: str, stanzas: list[tuple[list[str], str]], default: str) -> str:
    """The licence of one file of the upstream source tree.

    Args:
        source_path: path as the copyright file names it, e.g. ``16.04/life.jpg``.
        stanzas: from :func:`parse_dep5`.
        default: returned when no stanza matches.

    Returns:
        The licence short name, e.g. ``CC-BY-4.0``.
    """
    found = default
    for patterns, licence in stanzas:
        if any(fnmatch.fnmatchcase(source_path, p) for p in patterns):
            found = licence
    return found


# ---------------------------------------------------------------------------------------------
# Debian packages (I/O)
# ---------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Returns:
    ``$DGNAM_HOME/debs``, with ``DGNAM_HOME`` defaulting to ``~/.cache/dgnam``.
    """
    home = os.environ.get("DGNAM_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "dgnam")
    return Path(home) / "debs"


@dataclass
class DebPackage:
    """A Debian package unpacked (not installed) into the cache.

    Attributes:
        name: package name.
        version: package version.
        root: folder the package was unpacked into (holds ``usr/...``).
    """

    name: str
    version: str
    root: Path

    def copyright(self) -> str:
        """Returns:
        Text of the package's ``usr/share/doc/NAME/copyright`` ('' if missing).
        """
        path = self.root / "usr/share/doc" / self.name / "copyright"
        return path.read_text(errors="replace") if path.exists() else ""


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def fetch_deb(package: str, cache_dir: Path) -> DebPackage:
    """Download a package with ``apt-get download`` and unpack it with ``dpkg -x``.

    A package already unpacked in the cache is reused. ``apt-get update`` runs only if the
    first download fails.

    Args:
        package: Debian package name.
        cache_dir: folder holding one sub-folder per package.

    Returns:
        The unpacked package.

    Raises:
        RuntimeError: if the download or the unpacking fails.
    """
    pkg_dir = Path(cache_dir) / package
    root, marker = pkg_dir / "root", pkg_dir / "root" / ".dgnam-version"
    if marker.exists():
        return DebPackage(package, marker.read_text().strip(), root)
    pkg_dir.mkdir(parents=True, exist_ok=True)
    for old in pkg_dir.glob("*.deb"):
        old.unlink()
    result = _run(["apt-get", "download", package], cwd=pkg_dir)
    if result.returncode != 0:
        _run(["apt-get", "update"])
        result = _run(["apt-get", "download", package], cwd=pkg_dir)
    debs = sorted(pkg_dir.glob("*.deb"))
    if result.returncode != 0 or not debs:
        raise RuntimeError(f"apt-get download {package} failed: {result.stderr.strip()}")
    version = _run(["dpkg-deb", "-f", str(debs[0]), "Version"]).stdout.strip()
    if root.exists():
        shutil.rmtree(root)
    unpack = _run(["dpkg", "-x", str(debs[0]), str(root)])
    if unpack.returncode != 0:
        raise RuntimeError(f"dpkg -x {debs[0]} failed: {unpack.stderr.strip()}")
    marker.write_text(version + "\n")
    return DebPackage(package, version, root)


# ---------------------------------------------------------------------------------------------
# Reading images and videos (I/O)
# ---------------------------------------------------------------------------------------------


def read_image(path: str | Path, keep_alpha: bool = False) -> np.ndarray:
    """Read an image file as uint8 pixels.

    Args:
        path: image file.
        keep_alpha: return (H, W, 4) RGBA instead of (H, W, 3) RGB.

    Returns:
        The pixels.
    """
    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGBA" if keep_alpha else "RGB"), dtype=np.uint8)


def _frame_indices(total: int, n: int) -> list[int]:
    if total <= 0 or n <= 0:
        return []
    return sorted(set(np.linspace(0, total - 1, min(n, total)).round().astype(int).tolist()))


def _decode_with_av(path: Path, n: int) -> list[np.ndarray]:
    import av  # optional dependency

    with av.open(str(path)) as container:  # count by decoding: the header's count can be wrong
        total = sum(1 for _ in container.decode(video=0))
    wanted = set(_frame_indices(total, n))
    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def _decode_with_cv2(path: Path, n: int) -> list[np.ndarray]:
    import cv2  # optional dependency

    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    for i in _frame_indices(total, n):
        capture.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, bgr = capture.read()
        if ok:
            frames.append(np.ascontiguousarray(bgr[..., ::-1]))
    capture.release()
    return frames


def video_decoder() -> Callable[[Path, int], list[np.ndarray]] | None:
    """The first available video decoder: PyAV (``av``), then OpenCV (``cv2``).

    Returns:
        ``decode(path, n_frames) -> list of (H, W, 3) uint8 frames`` sampled evenly over the
        video, or None if neither package is installed.
    """
    for module, decode in (("av", _decode_with_av), ("cv2", _decode_with_cv2)):
        try:
            __import__(module)
        except ImportError:
            continue
        return decode
    return None


def is_informative_frame(frame: np.ndarray, min_std: float = 10.0) -> bool:
    """Reject blank frames (fades to black, title cards of one colour).

    Args:
        frame: (H, W, 3) uint8.
        min_std: smallest pixel standard deviation.

    Returns:
        True if the frame has content.
    """
    return float(frame.std()) >= min_std


# ---------------------------------------------------------------------------------------------
# Sources (I/O: each returns a Source whose originals load lazily)
# ---------------------------------------------------------------------------------------------


def _limited(items: Sequence, limit: int | None) -> list:
    return list(items if limit is None else items[:limit])


def opencv_photo_source(deb: DebPackage, limit: int | None = None) -> Source:
    """The allow-listed photos of opencv-doc.

    Args:
        deb: the unpacked ``opencv-doc`` package.
        limit: use at most this many files.

    Returns:
        A ``photo`` source.
    """
    stanzas = parse_dep5(deb.copyright())
    data = deb.root / OPENCV_DATA_DIR
    originals = [
        Original(
            name,
            licence_for(f"samples/data/{name}", stanzas, "see copyright"),
            lambda p=data / name: read_image(p),
        )
        for name in _limited(OPENCV_PHOTOS, limit)
        if (data / name).exists()
    ]
    return Source("opencv-doc", deb.name, deb.version, "photo",
                  "random multi-scale crops of hand-picked sample photos", originals)  # fmt: skip


def opencv_video_source(
    deb: DebPackage,
    frames_per_video: int,
    decode: Callable[[Path, int], list[np.ndarray]],
    limit: int | None = None,
) -> Source:
    """Frames of opencv-doc's natural-scene videos.

    Args:
        deb: the unpacked ``opencv-doc`` package.
        frames_per_video: frames sampled evenly over each video.
        decode: from :func:`video_decoder`.
        limit: use at most this many videos.

    Returns:
        A ``video`` source.
    """
    stanzas = parse_dep5(deb.copyright())
    data = deb.root / OPENCV_DATA_DIR
    originals = [
        Original(
            name,
            licence_for(f"samples/data/{name}", stanzas, "see copyright"),
            lambda p=data / name: decode(p, frames_per_video),
        )
        for name in _limited(OPENCV_VIDEOS, limit)
        if (data / name).exists()
    ]
    return Source("opencv-doc-video", deb.name, deb.version, "video",
                  f"one random crop from each of up to {frames_per_video} evenly spaced frames",
                  originals)  # fmt: skip


def _pixel_count(path: Path) -> int:
    with Image.open(path) as im:
        return im.width * im.height


def largest_image(folder: Path) -> Path | None:
    """The image with the most pixels in a folder (symbolic links are ignored: KDE wallpaper
    folders link their smaller sizes to the big file).

    Args:
        folder: searched recursively.

    Returns:
        Its path, or None if the folder holds no image.
    """
    images = [
        p for p in sorted(folder.rglob("*"))
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.is_symlink()
    ]  # fmt: skip
    return max(images, key=_pixel_count) if images else None


def wallpaper_source(deb: DebPackage, spec: WallpaperSpec, limit: int | None = None) -> Source:
    """The allow-listed photographs of a wallpaper package.

    Args:
        deb: the unpacked package.
        spec: what to use from it.
        limit: use at most this many files.

    Returns:
        A ``photo`` source.
    """
    stanzas = parse_dep5(deb.copyright())
    base = deb.root / spec.install_prefix
    originals = []
    for entry in _limited(spec.files, limit):
        path = base / entry
        if path.is_dir():
            path = largest_image(path / "contents" / "images") or largest_image(path)
        if path is None or not path.is_file():
            continue
        rel = path.relative_to(base).as_posix()
        source_path = f"{spec.source_prefix}/{rel}" if spec.source_prefix else rel
        licence = licence_for(source_path, stanzas, "see copyright")
        originals.append(Original(rel, licence, lambda p=path: read_image(p)))
    return Source(spec.package, deb.name, deb.version, "photo",
                  "random multi-scale crops of hand-picked photographic wallpapers", originals)  # fmt: skip


def tuxpaint_stamp_source(deb: DebPackage, limit: int | None = None) -> Source:
    """The photographic stamps of tuxpaint-stamps-default (see :func:`is_photographic_stamp`).

    Every PNG is read once here to apply the rule; the kept ones are held in memory (small).

    Args:
        deb: the unpacked package.
        limit: use at most this many stamps.

    Returns:
        A ``stamp`` source.
    """
    stanzas = parse_dep5(deb.copyright())
    base = deb.root / TUXPAINT_STAMPS_DIR
    originals = []
    for path in sorted(base.rglob("*.png")):
        rel = path.relative_to(base).as_posix()
        with Image.open(path) as im:
            if im.mode != "RGBA":  # grey, grey+alpha and palette stamps are all clip-art
                continue
            rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
        if is_photographic_stamp(rel, rgba):
            licence = licence_for(f"stamps/{rel}", stanzas, "see copyright")
            originals.append(Original(rel, licence, lambda a=rgba: a))
    return Source("tuxpaint-stamps-default", deb.name, deb.version, "stamp",
                  "photographic cut-outs alpha-composited at random scale/position/flip onto "
                  "random crops of the photo sources", _limited(originals, limit))  # fmt: skip


def skimage_source(limit: int | None = None) -> Source | None:
    """The natural photos bundled with scikit-image.

    Args:
        limit: use at most this many images.

    Returns:
        A ``photo`` source, or None if scikit-image is not installed.
    """
    try:
        import skimage
        import skimage.data
    except ImportError:
        return None

    def loader(name: str) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            pixels = getattr(skimage.data, name)()
            return to_rgb(pixels[0] if name == "stereo_motorcycle" else pixels)

        return load

    originals = [
        Original(name, licence, loader(name))
        for name, licence in _limited(list(SKIMAGE_PHOTOS.items()), limit)
        if hasattr(skimage.data, name)
    ]
    return Source("scikit-image", "scikit-image", skimage.__version__, "photo",
                  "random multi-scale crops of the natural sample photos", originals)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


def _progress(items: Sequence, enabled: bool, desc: str) -> Iterable:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)


def _rng(seed: int, *parts: str) -> np.random.Generator:
    return np.random.default_rng(stable_hash(":".join([str(seed), *parts])))


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
    from .pool_extra import extra_sources

    sources += extra_sources(fetch, cache_dir, per_source_limit)
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
        composites: number of stamp-on-photo composites.
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
    from .pool_extra import drop_near_duplicates

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
    for source in (s for s in sources if s.kind == "stamp"):
        _add_composites(acc, source, backgrounds, heldout, composites, size, seed, notes)

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
        rng = _rng(seed, "composites", str(is_held))
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


# ---------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------


def save_pool(out_dir: str | Path, images: np.ndarray, records: Sequence[dict], card: PoolCard) -> None:
    """Write a pool folder.

    Args:
        out_dir: folder (created).
        images: (N, S, S, 3) uint8.
        records: N dicts (``source``, ``file``, ...).
        card: its card.
    """
    if len(records) != len(images):
        raise ValueError(f"{len(images)} images but {len(records)} records")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
    (out / "sources.json").write_text(json.dumps(list(records)))
    (out / "card.json").write_text(json.dumps(card.to_dict(), indent=1))
    (out / "POOL.md").write_text(card.to_markdown())


def make_grid(images: np.ndarray, cols: int = 10, pad: int = 2) -> np.ndarray:
    """Tile images into one picture (for looking at a pool).

    Args:
        images: (N, S, S, 3) uint8.
        cols: images per row.
        pad: white pixels between images.

    Returns:
        (rows * (S + pad) + pad, cols * (S + pad) + pad, 3) uint8.
    """
    n, s = len(images), images.shape[1]
    rows = max(1, math.ceil(n / cols))
    grid = np.full((rows * (s + pad) + pad, cols * (s + pad) + pad, 3), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        y, x = pad + (i // cols) * (s + pad), pad + (i % cols) * (s + pad)
        grid[y : y + s, x : x + s] = image
    return grid


def load_pool(directory: str | Path, mmap: bool = False) -> tuple[np.ndarray, dict]:
    """Read a pool written by :func:`build_pool` (or :func:`save_pool`).

    Args:
        directory: the pool folder.
        mmap: memory-map ``images.npy`` instead of reading it.

    Returns:
        ``(images, meta)``: (N, S, S, 3) uint8, and the card as a dict with ``records`` (the
        contents of ``sources.json``) added; ``meta["train_idx"]`` and ``meta["heldout_idx"]``
        give the split.
    """
    directory = Path(directory)
    images = np.load(directory / "images.npy", mmap_mode="r" if mmap else None)
    meta = json.loads((directory / "card.json").read_text())
    meta["records"] = json.loads((directory / "sources.json").read_text())
    return images, meta


# ---------------------------------------------------------------------------------------------
# Any image folder
# ---------------------------------------------------------------------------------------------


class ImageFolderPool:
    """Images of a folder, ImageNet-style (``class/xxx.jpg``) or flat, as size x size RGB.

    Files are found recursively and sorted; an image's label is its first-level folder
    (``None`` for files directly in the root).

    Args:
        root: the folder.
        size: side of the square images.
        extensions: file suffixes counted as images (lower case, with dot).
        max_images: keep only the first this many files (None: all).
    """

    def __init__(
        self,
        root: str | Path,
        size: int = 160,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        max_images: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.size = size
        if not self.root.is_dir():
            raise FileNotFoundError(f"not a folder: {self.root}")
        exts = {e.lower() for e in extensions}
        files = sorted(
            p for p in self.root.rglob("*")
            if p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")
        )  # fmt: skip
        self.files: list[Path] = _limited(files, max_images)
        self.relpaths = [p.relative_to(self.root).as_posix() for p in self.files]
        self.labels: list[str | None] = [r.split("/")[0] if "/" in r else None for r in self.relpaths]
        self.classes: list[str] = sorted({lab for lab in self.labels if lab is not None})

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        """Args:
            index: image number.

        Returns:
            The central square of the image, (size, size, 3) uint8.
        """
        return center_square_resize(read_image(self.files[index]), self.size)

    def to_array(
        self,
        crops_per_image: int = 1,
        random: bool = False,
        seed: int = 0,
        progress: bool = False,
    ) -> tuple[np.ndarray, list[dict]]:
        """All images as one array.

        Args:
            crops_per_image: views per file.
            random: random multi-scale crops and flips (as in :func:`build_pool`) instead of
                the central square (which then repeats ``crops_per_image`` times).
            seed: seed of the random crops (per file, so order does not matter).
            progress: show a progress bar.

        Returns:
            ``(images, records)``: (N * crops_per_image, size, size, 3) uint8 and one record
            per image (``source`` = label or ``"folder"``, ``file`` = path under the root).
        """
        if not self.files:
            raise ValueError(f"no images in {self.root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}): give a folder of images")
        n = len(self.files) * crops_per_image
        images = np.empty((n, self.size, self.size, 3), dtype=np.uint8)
        records = []
        self.skipped: list[str] = []  # files that are not readable images (truncated, not an image): skipped, counted
        k = 0
        for i in _progress(range(len(self.files)), progress, "images"):
            rel, label = self.relpaths[i], self.labels[i]
            try:
                pixels = read_image(self.files[i])
            except (OSError, ValueError, Image.DecompressionBombError) as e:  # PIL: UnidentifiedImageError, truncated data
                self.skipped.append(rel)
                warnings.warn(f"skipping {self.files[i]}: not a readable image ({str(e)[:120]})", stacklevel=2)
                continue
            if random:
                crops = random_crops(pixels, crops_per_image, self.size, _rng(seed, rel))
            else:
                crops = np.repeat(center_square_resize(pixels, self.size)[None], crops_per_image, 0)
            images[k * crops_per_image : (k + 1) * crops_per_image] = crops
            k += 1
            records += [{"source": label or "folder", "file": rel, "label": label}] * crops_per_image
        if self.skipped:
            warnings.warn(f"skipped {len(self.skipped)} of {len(self.files)} file(s) in {self.root} that are not readable images", stacklevel=2)
        if k == 0:
            raise ValueError(f"none of the {len(self.files)} image file(s) in {self.root} could be read: give a folder of readable images")
        return images[: k * crops_per_image], [dict(r) for r in records]


def load_image_folder(
    path: str | Path,
    size: int = 160,
    crops_per_image: int = 1,
    random: bool = False,
    seed: int = 0,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    max_images: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, dict]:
    """Turn any image folder into the pool format, with the same kind of split.

    Args:
        path: folder, ImageNet-style (``class/xxx.jpg``) or flat.
        size: side of the square images.
        crops_per_image: views per file.
        random: random multi-scale crops instead of the central square.
        seed: seed of the crops and of the split.
        heldout_fraction: fraction of files held out (per class; all crops of a file stay on
            one side).
        max_images: read only the first this many files.
        progress: show a progress bar.

    Returns:
        ``(images, meta)`` like :func:`load_pool`: meta has ``records``, ``train_idx``,
        ``heldout_idx``, ``classes``, ``size``, ``seed``, ``n_images``.
    """
    folder = ImageFolderPool(path, size, max_images=max_images)
    images, records = folder.to_array(crops_per_image, random, seed, progress)
    by_source: dict[str, list[str]] = {}
    for r in records:
        by_source.setdefault(r["source"], []).append(r["file"])
    heldout = choose_heldout(by_source, heldout_fraction, seed)
    train_idx, heldout_idx = split_indices(records, heldout)
    for i in heldout_idx:
        records[i]["heldout"] = True
    for i in train_idx:
        records[i]["heldout"] = False
    meta = {
        "size": size, "seed": seed, "n_images": len(images), "heldout_fraction": heldout_fraction,
        "classes": folder.classes, "train_idx": train_idx, "heldout_idx": heldout_idx,
        "records": records, "root": str(folder.root), "skipped": folder.skipped,
    }  # fmt: skip
    return images, meta


def load_any(path: str | Path, size: int = 160, mmap: bool = False) -> tuple[np.ndarray, dict]:
    """A pool folder (with ``images.npy``) as is, a packed pool (:func:`pack_pool`, ``.npz``), or
    any image folder turned into the same format.

    Args:
        mmap: Memory-map a pool's ``images.npy`` instead of reading it (image folders and packed
            pools are decoded).

    Returns:
        ``(images, meta)`` as :func:`load_pool` gives them, with ``train_idx``/``heldout_idx``.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".npz":
        return load_packed(path)
    if (path / "images.npy").exists():
        return load_pool(path, mmap=mmap)
    return load_image_folder(path, size=size)


def heldout_sample(path: str | Path, n: int | None = None, seed: int = 0, size: int = 160) -> tuple[np.ndarray, dict]:
    """Natural reference images: a pool's held-out split (a generator prior may have been trained on
    the rest; the whole pool when it has fewer than 2 held-out images), or every image of a folder.

    Args:
        path: a pool folder, a packed pool (``.npz``) or any image folder.
        n: draw this many without replacement (a fixed draw for a given ``seed``, in index order);
            None: all of them.
        seed: seed of the draw.
        size: side of the images read from an image folder.

    Returns:
        ``(images, info)``: (n, S, S, 3) uint8, and ``{"path", "split", "available", "images"}``.
    """
    path = Path(path)
    if path.suffix == ".npz" or (path / "images.npy").exists():
        images, meta = load_any(path, mmap=True)
        held = sorted(meta.get("heldout_idx") or [])
        split = "heldout" if len(held) >= 2 else "all"
        candidates = np.asarray(held) if split == "heldout" else np.arange(len(images))
    else:
        images, _ = load_image_folder(path, size=size)
        split, candidates = "all (image folder)", np.arange(len(images))
    if n is not None and n < len(candidates):
        candidates = np.sort(np.random.default_rng(seed).choice(candidates, size=n, replace=False))
    chosen = np.asarray(images[candidates])
    info = {"path": str(path), "split": split, "available": len(images) if split != "heldout" else len(held), "images": len(chosen)}
    return chosen, info


# ---------------------------------------------------------------------------------------------
# A packed pool: the whole pool as one small file (for a machine that takes 64 MiB of data)
# ---------------------------------------------------------------------------------------------

PACK_QUALITIES = (95, 90, 85, 80, 75, 70, 65, 60, 55, 50, 40, 30)  # tried best first


def _encode(image: np.ndarray, fmt: str, quality: int) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def pack_format() -> str:
    """WEBP where Pillow has it (about 35 % smaller than JPEG at equal quality on the pool), else JPEG."""
    from PIL import features

    return "WEBP" if features.check("webp") else "JPEG"


def pack_images(images: np.ndarray, max_bytes: int, fmt: str | None = None, sample: int = 400, seed: int = 0, progress: bool = False) -> tuple[list[bytes], int, str]:
    """Encode ``images`` (N, S, S, 3) uint8 at the best quality of :data:`PACK_QUALITIES` whose
    total fits ``max_bytes``; return (encoded images, quality, format).

    The quality is chosen on a random sample (its size projected to all images), then checked on
    the whole encoding, stepping down while it does not fit.

    Raises:
        ValueError: not even the lowest quality fits.
    """
    fmt = fmt or pack_format()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=min(sample, len(images)), replace=False)
    qualities = list(PACK_QUALITIES)
    while qualities:
        projected = sum(len(_encode(np.asarray(images[i]), fmt, qualities[0])) for i in pick) * len(images) / len(pick)
        if projected <= 0.97 * max_bytes:
            break
        qualities.pop(0)
    for quality in qualities:
        encoded = [_encode(np.asarray(im), fmt, quality) for im in _progress(images, progress, f"packing ({fmt} q{quality})")]
        if sum(map(len, encoded)) <= max_bytes:
            return encoded, quality, fmt
    raise ValueError(f"{len(images)} images do not fit {max_bytes / 2**20:.1f} MiB even at {fmt} quality {PACK_QUALITIES[-1]}: "
                     "pack at a smaller size or allow more")


def pack_pool(source: str | Path, out: str | Path, size: int = 128, max_mib: float = 40.0, progress: bool = True) -> dict:
    """Write a pool (or any image folder) as one ``.npz`` of compressed images of ``size`` px that
    fits ``max_mib``, with its card and train / held-out split; :func:`load_any` reads it back.

    Made for the GPU machine, which takes at most 64 MiB of data beside the code: the 23.6k-image
    offline pool at 128 px is 1.1 GB raw and about 41 MiB as WebP at quality 60.

    Args:
        source: A pool folder or an image folder (:func:`load_any`).
        out: The ``.npz`` file to write.
        size: Side of the stored images (the training resolution: the trainer resizes to it anyway).
        max_mib: Size budget of the encoded images.

    Returns:
        The card stored in the file: ``format``, ``quality``, ``bytes``, ``size`` and the source's card.

    Example:
        >>> pack_pool("/work/pool", "pool128.npz", size=128, max_mib=40)  # then: train-generator --pool pool128.npz
    """
    out = Path(out)
    if out.suffix != ".npz":
        raise ValueError(f"a packed pool is an .npz file, not {out.name}")
    images, meta = load_any(source, size=size, mmap=True)
    resized = np.stack([np.asarray(Image.fromarray(np.asarray(im)).resize((size, size), Image.BICUBIC)) if im.shape[0] != size else np.asarray(im)
                        for im in _progress(images, progress, "resizing")]) if len(images) else np.zeros((0, size, size, 3), np.uint8)
    encoded, quality, fmt = pack_images(resized, int(max_mib * 2**20), progress=progress)
    card = {k: v for k, v in meta.items() if k != "records"}
    card.update(size=size, n_images=len(encoded), packed={"format": fmt, "quality": quality, "bytes": sum(map(len, encoded)), "from": str(source)})
    offsets = np.cumsum([0] + [len(b) for b in encoded]).astype(np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, data=np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets=offsets,
             card=np.frombuffer(json.dumps(card).encode(), dtype=np.uint8))
    return card


def load_packed(path: str | Path, progress: bool = False) -> tuple[np.ndarray, dict]:
    """Decode a pool written by :func:`pack_pool`: ``(images (N, S, S, 3) uint8, card)``."""
    import io

    with np.load(path, allow_pickle=False) as f:
        if not {"data", "offsets", "card"} <= set(f.files):
            raise ValueError(f"{path} is not a packed pool (it lacks data/offsets/card)")
        data, offsets, card = f["data"], f["offsets"], json.loads(f["card"].tobytes().decode())
    size = int(card["size"])
    images = np.empty((len(offsets) - 1, size, size, 3), dtype=np.uint8)
    for i in _progress(range(len(images)), progress, "decoding"):
        images[i] = np.asarray(Image.open(io.BytesIO(data[offsets[i] : offsets[i + 1]].tobytes())).convert("RGB"))
    card["records"] = []
    return images, card


def save_folder_pool(out_dir: str | Path, images: np.ndarray, meta: dict) -> dict:
    """Write what :func:`load_image_folder` returned as a pool folder that :func:`load_pool` reads."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
    records = meta.get("records", [])
    (out / "sources.json").write_text(json.dumps(records))
    card = {k: v for k, v in meta.items() if k != "records"}
    (out / "card.json").write_text(json.dumps(card))
    return card
