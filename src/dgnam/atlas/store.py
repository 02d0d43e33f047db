"""The atlas's cache on disk: one folder per unit (``unit.json`` + images), written when the unit is done.

Layout of a site folder::

    atlas.json                      settings of the last build and their key
    cache/                          the data's activations, one pass per layer (dgnam.eval.exemplars.layer_activations)
    units/<layer>/<NNNN>/unit.json  one unit's results (written last, atomically: its presence means done)
    units/<layer>/<NNNN>/*.png|jpg  its images

A unit counts as done when its ``unit.json`` exists and carries the current settings key, so
re-running adds only missing units, and a build stopped half-way keeps every finished unit.
Paths read back from JSON are checked to be plain file names inside the unit's folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from ..io.read import UNIT, RecordError, check_record, load_record  # every record read back is checked there
from ..infra.files import write_bytes_atomic, write_text_atomic
from ..io.write import save_png
from ..core.units import Unit

SETTINGS_FILE = "atlas.json"
UNIT_FILE = "unit.json"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}\.(png|jpg)$")


def settings_key(settings: dict) -> str:
    """A short hash of everything that determines a unit's results (same settings, same key)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def layer_slug(layer: str) -> str:
    """A file-name-safe layer name (``_blocks.15`` -> ``blocks-15``), unique per layer name."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", layer).strip("-") or "layer"
    return slug if slug == layer else f"{slug}-{hashlib.sha256(layer.encode()).hexdigest()[:6]}"


def unit_slug(unit: Unit) -> str:
    """``0007`` for a unit at its layer's default location, ``0007_mean`` / ``0007_at3-4`` otherwise."""
    return unit.slug.split("_", 1)[1] if "_" in unit.slug else f"{unit.index:04d}"


def unit_dir(site: Path, unit: Unit) -> Path:
    """Where ``unit``'s files live."""
    return Path(site) / "units" / layer_slug(unit.layer) / unit_slug(unit)


def safe_name(name) -> str:
    """``name`` if it is a plain image file name (no folder, no ``..``), else ValueError."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError(f"atlas: {name!r} is not a plain image file name of a unit folder; rebuild the unit (delete its folder)")
    return name


def save_image(folder: Path, name: str, image: np.ndarray, quality: int = 88) -> str:
    """Write an (H, W, 3) uint8 image as PNG or JPEG (by ``name``'s suffix), atomically (a full disk leaves
    no truncated image: :func:`~dgnam.infra.files.write_bytes_atomic`); return the name."""
    picture, path = Image.fromarray(np.ascontiguousarray(image)), folder / safe_name(name)
    if name.endswith(".jpg"):
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=quality)
        write_bytes_atomic(path, buffer.getvalue())
    else:
        save_png(picture, path)
    return name


def write_unit(site: Path, unit: Unit, record: dict) -> Path:
    """Write ``unit.json`` (after its images): from now on the unit is done."""
    path = unit_dir(site, unit) / UNIT_FILE
    write_text_atomic(path, json.dumps(record, indent=1))
    return path


def read_unit_record(site: Path, unit: Unit, key: str | None = None) -> dict | None:
    """The unit's record if it is done (with ``key``, when given), else None; file names are checked."""
    return load_unit_record(unit_dir(site, unit) / UNIT_FILE, key)


def load_unit_record(path: Path, key: str | None = None) -> dict | None:
    """The record in the ``unit.json`` at ``path`` if it is whole, of ``key`` (when given) and its images are
    there, else None: the unit is computed again. A damaged record (broken JSON, or a field that is not as
    :data:`dgnam.io.read.UNIT` says) is named, with the field, in a one-line warning."""
    if not Path(path).is_file():
        return None
    fix = "the atlas computes the unit again"
    try:
        record = load_record(path, UNIT_FILE, schema={}, fix=fix)
        if key is not None and record.get("key") != key:
            return None  # another build's unit: not shown, not read further
        check_record(record, path, UNIT, fix=fix)
        names = [safe_name(name) for name in record_files(record)]
    except ValueError as e:  # RecordError, or an image name that is not a plain name in the folder
        warnings.warn(str(e) if isinstance(e, RecordError) else f"{path}: {e}; {fix}", stacklevel=2)
        return None
    if not all((Path(path).parent / name).is_file() for name in names):
        return None  # an image went missing: compute the unit again
    return record


def record_files(record: dict) -> Iterable[str]:
    """Every image file name a unit record refers to."""
    for entry in record.get("facets") or []:
        yield entry["file"]
    for key in ("pixel", "accent"):
        entry = record.get(key)
        if entry:
            yield entry["file"]
            if entry.get("source_file"):
                yield entry["source_file"]
    for key in ("top", "bottom"):
        for entry in record.get(key) or []:
            yield entry["file"]


__all__ = ["SETTINGS_FILE", "UNIT_FILE", "settings_key", "layer_slug", "unit_slug", "unit_dir", "safe_name",
           "save_image", "write_unit", "read_unit_record", "load_unit_record", "record_files"]
