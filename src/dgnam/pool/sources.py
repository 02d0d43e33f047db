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
``tuxpaint-data``,            Palapeli's puzzle photos (:mod:`dgnam.pool.gcompris_tuxpaint_palapeli`: rule + deny list;
``palapeli-data``             near-duplicates across all sources removed by perceptual hash)
``scratch``, ``krank``,       the photo folders of 17 more packages (:data:`dgnam.pool.photo_folders.MORE_PHOTOS`:
``kalzium-data``, ...         allow-list globs + deny list + the same rule), Enlightenment's photographic
``enlightenment-data``        wallpapers (JPEGs inside its Edje files)
``qabcs-data``                Q ABCs' photographic cut-outs, composited like the Tux Paint stamps
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

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..infra.images import image_pixels, image_size, open_image, read_image, to_rgb
from .crops import stamp_statistics
from .debian import DebPackage, licence_for, parse_dep5

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


# ---------------------------------------------------------------------------------------------
# Reading images and videos (I/O)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Sources (I/O: each returns a Source whose originals load lazily)
# ---------------------------------------------------------------------------------------------


def _limited(items: Sequence, limit: int | None) -> list:
    return list(items if limit is None else items[:limit])


#: What reads an original's pixels (see :class:`Original`).
Loader = Callable[[], np.ndarray | list[np.ndarray]]


def package_source(deb: DebPackage, name: str, kind: str, usage: str, files: Iterable[tuple[str, Loader]],
                   licence_prefix: str = "", licence: str = "see copyright", limit: int | None = None) -> Source:  # fmt: skip
    """A source of a Debian package's files, each with the licence its copyright file states.

    Args:
        deb: the unpacked package.
        name, kind, usage: see :class:`Source`.
        files: ``(file, load)`` in order: the file's path inside the source and what reads its pixels
            (consumed after the copyright file is read).
        licence_prefix: what the copyright file's ``Files:`` patterns call the files' folder: the licence
            is that of ``licence_prefix + file``.
        licence: the licence of a file that no stanza matches.
        limit: use at most this many files.

    Returns:
        The source, named ``name``, with the package's name and version.
    """
    stanzas = parse_dep5(deb.copyright())
    originals = [Original(file, licence_for(licence_prefix + file, stanzas, licence), load) for file, load in files]
    return Source(name, deb.name, deb.version, kind, usage, _limited(originals, limit))


def opencv_photo_source(deb: DebPackage, limit: int | None = None) -> Source:
    """The allow-listed photos of opencv-doc.

    Args:
        deb: the unpacked ``opencv-doc`` package.
        limit: use at most this many files.

    Returns:
        A ``photo`` source.
    """
    data = deb.root / OPENCV_DATA_DIR
    files = ((name, lambda p=data / name: read_image(p)) for name in _limited(OPENCV_PHOTOS, limit) if (data / name).exists())
    return package_source(deb, "opencv-doc", "photo", "random multi-scale crops of hand-picked sample photos", files, "samples/data/")


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
    data = deb.root / OPENCV_DATA_DIR
    files = ((name, lambda p=data / name: decode(p, frames_per_video)) for name in _limited(OPENCV_VIDEOS, limit) if (data / name).exists())
    usage = f"one random crop from each of up to {frames_per_video} evenly spaced frames"
    return package_source(deb, "opencv-doc-video", "video", usage, files, "samples/data/")


def _pixel_count(path: Path) -> int:
    width, height = image_size(path)
    return width * height


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
    base = deb.root / spec.install_prefix
    return package_source(deb, spec.package, "photo", "random multi-scale crops of hand-picked photographic wallpapers",
                          _wallpaper_files(base, _limited(spec.files, limit)), f"{spec.source_prefix}/" if spec.source_prefix else "")  # fmt: skip


def _wallpaper_files(base: Path, entries: Sequence[str]) -> Iterator[tuple[str, Loader]]:
    """The image of each entry of a wallpaper list: the file, or a folder's largest image."""
    for entry in entries:
        path = base / entry
        if path.is_dir():
            path = largest_image(path / "contents" / "images") or largest_image(path)
        if path is not None and path.is_file():
            yield path.relative_to(base).as_posix(), lambda p=path: read_image(p)


def tuxpaint_stamp_source(deb: DebPackage, limit: int | None = None) -> Source:
    """The photographic stamps of tuxpaint-stamps-default (see :func:`is_photographic_stamp`).

    Every PNG is read once here to apply the rule; the kept ones are held in memory (small).

    Args:
        deb: the unpacked package.
        limit: use at most this many stamps.

    Returns:
        A ``stamp`` source.
    """
    usage = "photographic cut-outs alpha-composited at random scale/position/flip onto random crops of the photo sources"
    return package_source(deb, "tuxpaint-stamps-default", "stamp", usage, _tuxpaint_stamps(deb.root / TUXPAINT_STAMPS_DIR), "stamps/", limit=limit)


def _tuxpaint_stamps(base: Path) -> Iterator[tuple[str, Loader]]:
    """The photographic stamps under ``base``, read now (the rule needs their pixels) and held in memory."""
    for path in sorted(base.rglob("*.png")):
        rel = path.relative_to(base).as_posix()
        with open_image(path) as im:
            if im.mode != "RGBA":  # grey, grey+alpha and palette stamps are all clip-art
                continue
            rgba = image_pixels(im, str(path), keep_alpha=True)
        if is_photographic_stamp(rel, rgba):
            yield rel, lambda a=rgba: a


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


MIN_SHORT_SIDE = 160  # px; smaller pictures would be upsampled more than the crops allow (0.75 x 224 = 168)


def read_opaque(blob: bytes) -> np.ndarray:
    """(H, W, 3) uint8 pixels of an encoded picture with no transparent pixel (ValueError for one with some)."""
    rgba = read_image(blob, keep_alpha=True)
    if rgba[..., 3].min() < 255:
        raise ValueError("has transparent pixels")
    return to_rgb(rgba[..., :3])


def is_usable_photo_file(blob: bytes, min_short_side: int = MIN_SHORT_SIDE) -> bool:
    """The rule for a raster picture: decodable, fully opaque, short side >= ``min_short_side``.

    Args:
        blob: encoded image bytes.
        min_short_side: smallest short side in pixels.

    Returns:
        Whether the picture may be used (the activity allow-list and deny list decide the rest).
    """
    try:
        pixels = read_opaque(blob)
    except Exception:
        return False
    return min(pixels.shape[:2]) >= min_short_side


def _progress(items: Sequence, enabled: bool, desc: str) -> Iterable:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)


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
