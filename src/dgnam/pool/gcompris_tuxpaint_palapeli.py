"""Photographs of three packages for the pool: GCompris' photo activities, Tux Paint's photo templates and
Palapeli's puzzle photos.

These grow the pool's distinct originals (issue 16). Each source keeps its licence, read from the
package's Debian copyright file. Drawings and renders are left out by a rule and a deny list:

- GCompris (``gcompris-qt-data``) packs each activity's files in a Qt resource file (``.rcc``),
  read here with :func:`read_rcc` (no Qt needed). The rule: only raster images (vector files are
  drawings by construction), fully opaque (alpha cut-outs are game sprites), short side at least
  :data:`dgnam.pool.sources.MIN_SHORT_SIDE`, and only from the activities whose pictures are photographs
  (:data:`GCOMPRIS_ACTIVITIES`, chosen by looking at every image). The deny list
  (:data:`GCOMPRIS_DENY`) removes the paintings and the one render inside those activities.
- Tux Paint (``tuxpaint-data``): the photographic templates and two photographic starter backgrounds.
- Palapeli (``palapeli-data``): the five photographs of its puzzle collection (its ``backgrounds``
  are wood textures, left out).

Near-duplicates across all sources are then removed by :func:`dgnam.pool.duplicates.drop_near_duplicates`.
"""

from __future__ import annotations

import fnmatch
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..infra.images import image_size, read_image
from .debian import DebPackage, parse_dep5
from .sources import MIN_SHORT_SIDE, Loader, Original, Source, _limited, is_usable_photo_file, package_source, read_opaque

GCOMPRIS_RCC_DIR = "usr/share/gcompris-qt/rcc"

#: GCompris activities whose raster pictures are photographs (every image looked at). Left out:
#: lang, imagename, babymatch and the like (drawings), paintings (paintings), babyshapes (alpha
#: cut-outs of one photo), leftright (hands over coloured stripes), louis-braille (portraits, scans
#: and drawings mixed), solar_system and gravity (planet renders), chronos (drawn stories).
GCOMPRIS_ACTIVITIES: tuple[str, ...] = (
    "categorization", "clickgame", "details", "erase", "explore_farm_animals", "explore_monuments",
    "explore_world_animals", "explore_world_music",
)  # fmt: skip

#: Paintings and renders inside the allowed activities (glob patterns on the resource path).
GCOMPRIS_DENY: tuple[str, ...] = (
    "*/details/*Gogh*", "*/details/*PortraitOfPereTanguy*", "*/details/*Eglise_dAuvers*",
    "*/categorization/*/alphabets/*", "*/categorization/*/numbers/*",  # photos of toy blocks with letters / digits
)  # fmt: skip

TUXPAINT_DATA_DIR = "usr/share/tuxpaint"
#: Tux Paint's photographic backgrounds: every template is a photo; of the starters, only these two.
TUXPAINT_PHOTO_GLOBS: tuple[str, ...] = (
    "templates/*.jpg", "starters/skyline-sf-dusk-back.jpeg", "starters/reef-back.png",
)  # fmt: skip

PALAPELI_COLLECTION_DIR = "usr/share/palapeli/collection"

RASTER_EXTENSIONS = (".webp", ".jpg", ".jpeg", ".png")


# ---------------------------------------------------------------------------------------------
# Qt resource files
# ---------------------------------------------------------------------------------------------


def read_rcc(data: bytes) -> dict[str, bytes]:
    """The files inside a compiled Qt resource file (``rcc`` binary format, versions 1-3).

    Args:
        data: the ``.rcc`` file's bytes.

    Returns:
        ``{"/path/inside/file.ext": bytes}``; zlib-compressed entries are decompressed.

    Raises:
        ValueError: not an rcc file, or an entry compressed with zstd (not used by GCompris).
    """
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource file (no 'qres' magic)")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    entry_size = 14 if version < 2 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", data[names + offset : names + offset + 2])
        start = names + offset + 6  # length (2), hash (4), then UTF-16 BE
        return data[start : start + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}
    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        base = tree + index * entry_size
        name_offset, flags = struct.unpack(">IH", data[base : base + 6])
        name = name_at(name_offset) if index else ""
        if flags & 2:  # directory: child count, first child index
            count, first = struct.unpack(">II", data[base + 6 : base + 14])
            stack += [(first + k, f"{prefix}{name}/") for k in range(count)]
            continue
        (offset,) = struct.unpack(">I", data[base + 10 : base + 14])
        (size,) = struct.unpack(">I", data[payload + offset : payload + offset + 4])
        blob = data[payload + offset + 4 : payload + offset + 4 + size]
        if flags & 4:
            raise ValueError(f"{prefix}{name}: zstd-compressed rcc entries are not supported")
        files[prefix + name] = zlib.decompress(blob[4:]) if flags & 1 else blob
    return files


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


def _gcompris_licence(path: str, stanzas: list[tuple[list[str], str]]) -> str:
    """Licence of a resource: the copyright file names the source files (``.jpg``/``.png``/
    ``.svg``) where the package ships ``.webp`` conversions, so each extension is tried."""
    rel = path.lstrip("/").removeprefix("gcompris/")
    stem = rel.rsplit(".", 1)[0]
    candidates = (rel, *(f"{stem}{ext}" for ext in (".jpg", ".png", ".svg", ".jpeg")))
    found = "see copyright"
    for patterns, licence in stanzas:  # the last matching stanza wins, as in licence_for
        if any(fnmatch.fnmatchcase(c, p) for c in candidates for p in patterns):
            found = licence
    return found


def gcompris_photos(files_by_activity: dict[str, dict[str, bytes]], min_short_side: int = MIN_SHORT_SIDE) -> list[tuple[str, bytes]]:
    """Apply the GCompris rule and deny list.

    Args:
        files_by_activity: ``{activity: read_rcc(...)}``.
        min_short_side: see :func:`is_usable_photo_file`.

    Returns:
        ``[(resource path, bytes)]`` of the photographs kept, sorted by path.
    """
    kept = []
    for activity in GCOMPRIS_ACTIVITIES:
        for path, blob in sorted(files_by_activity.get(activity, {}).items()):
            if not path.lower().endswith(RASTER_EXTENSIONS):
                continue
            if any(fnmatch.fnmatchcase(path, p) for p in GCOMPRIS_DENY):
                continue
            if is_usable_photo_file(blob, min_short_side):
                kept.append((path, blob))
    return kept


def gcompris_source(deb: DebPackage, limit: int | None = None) -> Source:
    """The photographs of GCompris' photo activities (see the module docstring for the rule).

    Args:
        deb: the unpacked ``gcompris-qt-data`` package.
        limit: use at most this many pictures.

    Returns:
        A ``photo`` source.
    """
    stanzas = parse_dep5(deb.copyright())
    folder = deb.root / GCOMPRIS_RCC_DIR
    files = {a: read_rcc((folder / f"{a}.rcc").read_bytes()) for a in GCOMPRIS_ACTIVITIES if (folder / f"{a}.rcc").exists()}
    originals = [
        Original(path.lstrip("/"), _gcompris_licence(path, stanzas), lambda b=blob: read_opaque(b))
        for path, blob in gcompris_photos(files)
    ]
    return Source("gcompris-qt-data", deb.name, deb.version, "photo",
                  "random multi-scale crops of the photographs of GCompris' photo activities",
                  _limited(originals, limit))  # fmt: skip


def _glob_files(base: Path, globs: Sequence[str]) -> Iterator[tuple[str, Loader]]:
    """The files under ``base`` that the globs match whose short side is at least :data:`MIN_SHORT_SIDE`, sorted."""
    for path in sorted({p for g in globs for p in base.glob(g) if p.is_file()}):
        if min(image_size(path)) >= MIN_SHORT_SIDE:
            yield path.relative_to(base).as_posix(), lambda p=path: read_image(p)


def tuxpaint_template_source(deb: DebPackage, limit: int | None = None) -> Source:
    """Tux Paint's photographic templates and starter backgrounds (:data:`TUXPAINT_PHOTO_GLOBS`).

    Args:
        deb: the unpacked ``tuxpaint-data`` package.
        limit: use at most this many pictures.

    Returns:
        A ``photo`` source.
    """
    return package_source(deb, "tuxpaint-data", "photo", "random multi-scale crops of the photographic templates",
                          _glob_files(deb.root / TUXPAINT_DATA_DIR, TUXPAINT_PHOTO_GLOBS), limit=limit)  # fmt: skip


def palapeli_source(deb: DebPackage, limit: int | None = None) -> Source:
    """The photographs of Palapeli's puzzle collection.

    Args:
        deb: the unpacked ``palapeli-data`` package.
        limit: use at most this many pictures.

    Returns:
        A ``photo`` source.
    """
    return package_source(deb, "palapeli-data", "photo", "random multi-scale crops of the puzzle photographs",
                          _glob_files(deb.root / PALAPELI_COLLECTION_DIR, ("*.jpg",)), limit=limit)  # fmt: skip


#: (package, source builder) of the extra photo sources, in pool order.
EXTRA_SOURCES: tuple[tuple[str, Callable[[DebPackage, int | None], Source]], ...] = (
    ("gcompris-qt-data", gcompris_source),
    ("tuxpaint-data", tuxpaint_template_source),
    ("palapeli-data", palapeli_source),
)


def extra_sources(fetch: Callable[[str, Path], DebPackage], cache_dir: Path, limit: int | None = None) -> list[Source]:
    """Fetch the extra packages and list their photo sources.

    Args:
        fetch: package fetcher (``pool.fetch_deb``; injectable for tests).
        cache_dir: where packages are downloaded and unpacked.
        limit: use at most this many originals per source.

    Returns:
        One source per package of :data:`EXTRA_SOURCES`.
    """
    return [build(fetch(package, cache_dir), limit) for package, build in EXTRA_SOURCES]


__all__ = ["read_rcc", "gcompris_photos", "gcompris_source", "tuxpaint_template_source", "palapeli_source", "extra_sources"]
