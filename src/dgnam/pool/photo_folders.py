"""Photo folders of seventeen Debian packages for the pool (:data:`MORE_PHOTOS`), Enlightenment's wallpapers
and Q ABCs' photographic cut-outs as stamps (issue 16).

Each package ships its photographs in one folder, mixed with drawings, icons or edited copies, so a
:class:`PhotoFolderSpec` names the folder, the files to use (glob patterns, chosen by looking at
every image of the package) and a deny list (the drawings, paintings and murals the patterns would
otherwise take). Every kept file must also pass the rule of :func:`dgnam.pool.sources.is_usable_photo_file`
(decodable, fully opaque, short side at least 160 px). The licence of each file is read from the
package's Debian copyright file (``licence_prefix`` maps the installed folder to the upstream path the
copyright file names); where that file is not machine-readable the spec's ``licence`` says what it states.

Near-duplicates across all sources are then removed by :func:`dgnam.pool.duplicates.drop_near_duplicates`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..infra.images import open_image, read_image
from .debian import DebPackage
from .sources import Loader, Source, is_photographic_stamp, is_usable_photo_file, package_source


@dataclass(frozen=True)
class PhotoFolderSpec:
    """The photographs of one package's folder.

    Attributes:
        package: Debian package name.
        folder: folder inside the unpacked package.
        globs: files to use, relative to ``folder`` (glob patterns; ``*`` does not cross ``/``).
        deny: files the globs match that are not photographs (glob patterns).
        licence_prefix: what ``folder`` is called in the copyright file's ``Files:`` patterns.
        licence: used when no ``Files:`` stanza matches (the copyright file's own words, shortened).
        usage: one sentence for the pool card.
    """

    package: str
    folder: str
    globs: tuple[str, ...]
    deny: tuple[str, ...] = ()
    licence_prefix: str = ""
    licence: str = "see copyright"
    usage: str = "random multi-scale crops of the package's photographs"


#: The photo folders, in pool order (an earlier source wins a near-duplicate). Looked at and left out
#: inside these packages: Scratch's GIF/PNG backgrounds and its costumes (drawings); Kalzium's element
#: icons; the EFL test images' polaroid frames, logos and the black ``space.png``; LXQt's origami,
#: triangle, wave and Plasma renders; Tux Typing's astronomical backgrounds (galaxies, nebula, Saturn),
#: maps and the photo with a flag pasted on (wolof); labelme's visualisations, its drawn shapes and all
#: but the first of five consecutive video frames; jQuery Slides' ``slide.jpg`` (a copy of ``slide-1``);
#: the smaller sizes of Backstretch's two samples; the imaging library's filtered outputs (``out_*``);
#: the JPEG XL test data's other codings of the same photographs, colour charts and 64-px raw crops.
MORE_PHOTOS: tuple[PhotoFolderSpec, ...] = (
    PhotoFolderSpec(
        "scratch", "usr/share/scratch/Media/Backgrounds", ("*/*.jpg",),
        deny=("Indoors/party-room.jpg", "Indoors/room1.jpg", "Indoors/room2.jpg", "Indoors/room3.jpg",
              "Indoors/spotlight-stage.jpg", "Nature/woods-and-bench.jpg", "Nature/moon.jpg",
              "Outdoors/brick-wall1.jpg", "Outdoors/graffiti.jpg", "Outdoors/berkeley-mural.jpg",
              "Outdoors/mural-faro.jpg", "Outdoors/school2.jpg"),  # drawings, murals, the lunar surface
        licence_prefix="Media/Backgrounds/",
        usage="random multi-scale crops of Scratch's photographic stage backgrounds",
    ),
    PhotoFolderSpec(
        "krank", "usr/share/games/krank/levels/unera-backgrounds", ("*.jpg",),
        licence="public-domain (images by Slava Anishenko)",
        usage="random multi-scale crops of the underwater level backgrounds",
    ),
    PhotoFolderSpec(
        "kalzium-data", "usr/share/kalzium/data/toolpics", ("*.jpg",), licence_prefix="data/toolpics/",
        usage="random multi-scale crops of the photographs of laboratory tools",
    ),
    PhotoFolderSpec(
        "libelementary-data", "usr/share/elementary/images",
        ("insanely_huge_test_image.jpg", "mystrale.jpg", "mystrale_2.jpg", "panel_01.jpg", "plant_01.jpg",
         "rock_0[12].jpg", "sky_0[1-4].jpg", "twofish.jpg", "wood_01.jpg", "static_webp_image.webp"),
        licence_prefix="data/elementary/images/",
        usage="random multi-scale crops of the EFL widget test photographs",
    ),
    PhotoFolderSpec(
        "gnome-control-center-data", "usr/share/pixmaps/faces", ("*.jpg",),
        usage="random multi-scale crops of the photographic user pictures",
    ),
    PhotoFolderSpec(
        "lxqt-themes", "usr/share/lxqt/wallpapers",
        ("Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png", "beam.png",
         "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg", "this-is-not-windows.jpg"),
        licence_prefix="wallpapers/",
        usage="random multi-scale crops of the photographic wallpapers",
    ),
    PhotoFolderSpec(
        "tuxtype-data", "usr/share/tuxtype",
        ("images/hidden.jpg", "images/kcas*.jpg", "themes/*/images/photo.png"),
        deny=("themes/wolof/*",),
        licence="GPL / public-domain (NOAA and US FWS photographs)",
        usage="random multi-scale crops of the photographs behind the typing games",
    ),
    PhotoFolderSpec(
        "gramps", "usr/share/doc/gramps/example/gramps", ("*.jpg", "*.png"),
        usage="random multi-scale crops of the example family tree's portrait photographs",
    ),
    PhotoFolderSpec(
        "libjs-jquery-slides", "usr/share/doc/libjs-jquery-slides/examples",
        ("Linking/img/slide-*.jpg", "Product/img/1144953-*-2x.jpg"),
        usage="random multi-scale crops of the slideshow examples' photographs",
    ),
    PhotoFolderSpec(
        "libjs-jquery-backstretch", "usr/share/doc/libjs-jquery-backstretch/examples",
        ("coffee.jpg", "dome.jpg", "pot-holder.jpg", "sample1_1920.jpg", "sample2_1920.jpg"),
        licence_prefix="examples/",
        usage="random multi-scale crops of the background examples' photographs",
    ),
    PhotoFolderSpec(
        "labelme-examples", "usr/share/doc/labelme-examples/examples",
        ("bbox_detection/data_annotated/2011_*.jpg", "classification/data_annotated/000[12].jpg",
         "tutorial/apc2016_obj3.jpg", "video_annotation/data_annotated/00000100.jpg"),
        licence_prefix="examples/",
        usage="random multi-scale crops of the annotation examples' photographs",
    ),
    PhotoFolderSpec(
        "golang-github-disintegration-imaging-dev", "usr/share/gocode/src/github.com/disintegration/imaging/testdata",
        ("branches.jpg", "flowers.png"), licence_prefix="testdata/",
        usage="random multi-scale crops of the image library's two test photographs",
    ),
    PhotoFolderSpec(
        "forensics-samples-files", "usr/share/forensics-samples/original-files", ("pic[12]/IMG*",),
        licence_prefix="original-files/",
        usage="random multi-scale crops of the phone photographs among the forensics samples",
    ),
    PhotoFolderSpec(
        "scribus-template", "usr/share/scribus/templates",
        ("br2/nature.jpg", "br2/sunset.jpg", "menu1/teriyaki.png", "menu2/pizza.jpg", "nl1-bw/kites-bw.png",
         "scribus_project_pl/craigbradney.jpg"),
        licence="GPL (see copyright)",
        usage="random multi-scale crops of the document templates' photographs",
    ),
    PhotoFolderSpec(
        "pangzero", "usr/share/perl5/auto/share/dist/Games-PangZero", ("l2.jpg", "l4.jpg", "l6.jpg"),
        usage="random multi-scale crops of the three photographic level backgrounds (the others are renders)",
    ),
    PhotoFolderSpec(
        "gambas3-examples", "usr/share/doc/gambas3-examples/examples/Drawing",
        ("Fractal/rose.jpg", "Painting/clovis.jpg", "Painting/image.jpg"), licence_prefix="app/examples/Drawing/",
        usage="random multi-scale crops of the drawing examples' three photographs",
    ),
    PhotoFolderSpec(
        "libjxl-testdata", "usr/share/libjxl-testdata",
        ("external/wesaturate/500px/*_srgb8.png", "jxl/flower/flower.png", "jxl/hdr_room.png"),
        usage="random multi-scale crops of the codec's five test photographs (the sRGB 8-bit copies)",
    ),
)  # fmt: skip

ENLIGHTENMENT_BACKGROUNDS_DIR = "usr/share/enlightenment/data/backgrounds"
#: Enlightenment's photographic wallpapers (Edje files). Left out: Dunes, Flat-Fan, Flat-Stone-Pattern and
#: the Squiggles (drawings) and Paper-Flower (a drawing on black).
ENLIGHTENMENT_PHOTOS: tuple[str, ...] = (
    "Bamboo", "Foggy-Trees", "God-Rays", "Green-Maple", "Lichen-Branches", "Mountain", "Peaks", "Red-Maple",
    "Sea-of-Lanterns", "Snow-Trees", "Spruce-Needles", "Sunset-Clouds", "Sunset-Hills", "White-Flower",
    "Yellow-Flower",
)  # fmt: skip


def largest_embedded_jpeg(data: bytes) -> np.ndarray:
    """The largest JPEG image stored inside a container file (an Edje ``.edj`` holds its wallpaper
    as lossy JPEG entries, at several sizes, without compression around them).

    Args:
        data: the container's bytes.

    Returns:
        (H, W, 3) uint8 pixels of the JPEG with the most pixels.

    Raises:
        ValueError: no decodable JPEG inside.
    """
    best: tuple[int, int] | None = None  # (pixels, offset)
    start = data.find(b"\xff\xd8\xff")
    while start >= 0:
        try:
            with open_image(data[start:]) as im:
                if im.format == "JPEG" and (best is None or im.width * im.height > best[0]):
                    best = (im.width * im.height, start)
        except Exception:
            pass
        start = data.find(b"\xff\xd8\xff", start + 3)
    if best is None:
        raise ValueError("no JPEG image inside")
    return read_image(data[best[1] :], name="the embedded JPEG")


def enlightenment_source(deb: DebPackage, limit: int | None = None) -> Source:
    """Enlightenment's photographic wallpapers (:data:`ENLIGHTENMENT_PHOTOS`), read from the Edje files.

    Args:
        deb: the unpacked ``enlightenment-data`` package.
        limit: use at most this many wallpapers.

    Returns:
        A ``photo`` source.
    """
    base = deb.root / ENLIGHTENMENT_BACKGROUNDS_DIR
    files = ((f"{name}.edj", lambda p=base / f"{name}.edj": largest_embedded_jpeg(p.read_bytes()))
             for name in ENLIGHTENMENT_PHOTOS if (base / f"{name}.edj").exists())  # fmt: skip
    return package_source(deb, "enlightenment-data", "photo", "random multi-scale crops of the photographic wallpapers", files,
                          "data/backgrounds/", limit=limit)  # fmt: skip


QABCS_PICS_DIR = "usr/share/qabcs/abcs/all/pics"
#: Q ABCs pictures that pass the stamp rule but are drawings, renders or CGI figures.
QABCS_DENY: frozenset[str] = frozenset({
    "food/durian.png", "food/saffron_milk_cap.png", "food/yupka.png", "instrument/sound.png",
    "toys/clown.png", "toys/emelya.png", "toys/firebird.png", "toys/little_monkey.png", "toys/rubber_ball.png",
    "toys/shield.png", "toys/x-men.png", "toys/yaga.png", "toys/yeti.png",
})  # fmt: skip
#: Q ABCs photographs the stamp rule rejects (palette-quantized or with large dark flat parts).
QABCS_ALLOW: frozenset[str] = frozenset({
    "animals/duck.png", "animals/goose.png", "food/casserole.png", "food/garlic.png", "food/kidney_beans.png",
    "food/lavash.png", "food/otak-otak.png", "food/sherry.png", "food/stewed_duck.png", "food/udon.png",
    "instrument/aeoline.png", "instrument/bagpipes.png", "instrument/bass_drum.png", "instrument/clarinet.png",
    "instrument/cuica.png", "instrument/flute.png", "instrument/hang.png", "instrument/harmonica.png",
    "instrument/oboe.png", "instrument/pishik.png", "instrument/rozhok.png", "misc/camera_lens.png",
    "misc/quarter.png", "misc/watch.png", "toys/kinder_surprise_egg.png",
})  # fmt: skip


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    """Glob match where ``*`` and ``?`` stay inside one path component."""
    parts = rel.split("/")
    return any(
        len(p.split("/")) == len(parts) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, p.split("/")))
        for p in patterns
    )


def read_upright(path: Path) -> np.ndarray:
    """Read a photo as (H, W, 3) uint8, turned as its EXIF orientation says (phone photos are stored
    sideways or upside down with an orientation tag)."""
    return read_image(path, upright=True)


def folder_photos(root: Path, spec: PhotoFolderSpec) -> list[str]:
    """Apply a spec's globs, deny list and the photo rule to an unpacked package.

    Args:
        root: the unpacked package (holds ``usr/...``).
        spec: which files to take.

    Returns:
        Paths relative to ``spec.folder`` of the files kept, sorted.
    """
    base = root / spec.folder
    if not base.is_dir():
        return []
    kept = []
    for path in sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(base).as_posix()
        if _matches(rel, spec.globs) and not _matches(rel, spec.deny) and is_usable_photo_file(path.read_bytes()):
            kept.append(rel)
    return kept


def folder_source(deb: DebPackage, spec: PhotoFolderSpec, limit: int | None = None) -> Source:
    """The photographs of one package folder.

    Args:
        deb: the unpacked package named by ``spec.package``.
        spec: which files to take.
        limit: use at most this many pictures.

    Returns:
        A ``photo`` source named after the package.
    """
    base = deb.root / spec.folder
    files = ((rel, lambda p=base / rel: read_upright(p)) for rel in folder_photos(deb.root, spec))
    return package_source(deb, spec.package, "photo", spec.usage, files, spec.licence_prefix, spec.licence, limit)


def qabcs_stamp_source(deb: DebPackage, limit: int | None = None) -> Source:
    """The photographic cut-outs of Q ABCs (``qabcs-data``), used as stamps.

    The pictures of its alphabet books are PNG cut-outs (alpha) of photographs mixed with drawings;
    kept are those with transparent pixels that pass :func:`dgnam.pool.sources.is_photographic_stamp`
    with :data:`QABCS_DENY`, plus the photographs of :data:`QABCS_ALLOW` that the colour rule rejects
    (both lists from contact sheets of all 328).

    Args:
        deb: the unpacked ``qabcs-data`` package.
        limit: use at most this many stamps.

    Returns:
        A ``stamp`` source.
    """
    return package_source(deb, "qabcs-data", "stamp", "photographic cut-outs alpha-composited like the Tux Paint stamps",
                          _qabcs_stamps(deb.root / QABCS_PICS_DIR), "abcs/all/pics/", limit=limit)  # fmt: skip


def _qabcs_stamps(base: Path) -> Iterator[tuple[str, Loader]]:
    """The photographic cut-outs under ``base``, read now (the rule needs their pixels) and held in memory."""
    for path in sorted(base.rglob("*.png")) if base.is_dir() else []:
        rel = path.relative_to(base).as_posix()
        rgba = read_image(path, keep_alpha=True)
        if rgba[..., 3].min() < 255 and (rel in QABCS_ALLOW or is_photographic_stamp(rel, rgba, deny=QABCS_DENY)):
            yield rel, lambda a=rgba: a


def more_sources(fetch: Callable[[str, Path], DebPackage], cache_dir: Path, limit: int | None = None,
                 specs: tuple[PhotoFolderSpec, ...] = MORE_PHOTOS) -> list[Source]:  # fmt: skip
    """Fetch the packages of :data:`MORE_PHOTOS`, ``enlightenment-data`` and ``qabcs-data`` and list
    their sources.

    Args:
        fetch: package fetcher (``pool.fetch_deb``; injectable for tests).
        cache_dir: where packages are downloaded and unpacked.
        limit: use at most this many originals per source.
        specs: the folders to read.

    Returns:
        One photo source per spec, in order, Enlightenment's wallpapers, then the Q ABCs stamp source.
    """
    sources = [folder_source(fetch(spec.package, cache_dir), spec, limit) for spec in specs]
    sources.append(enlightenment_source(fetch("enlightenment-data", cache_dir), limit))
    return sources + [qabcs_stamp_source(fetch("qabcs-data", cache_dir), limit)]


__all__ = ["PhotoFolderSpec", "MORE_PHOTOS", "ENLIGHTENMENT_PHOTOS", "QABCS_ALLOW", "QABCS_DENY", "largest_embedded_jpeg", "enlightenment_source", "read_upright", "folder_photos", "folder_source", "qabcs_stamp_source", "more_sources"]
