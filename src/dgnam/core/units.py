"""Units: which neuron to maximize, written the same way in the CLI and the API.

Syntax: ``LAYER:UNIT[@LOCATION]``

- ``LAYER`` is a module name of the target (``dgnam layers NET`` lists them) or ``output``.
- ``UNIT`` is a channel index, a range ``0-9`` (inclusive), a comma list ``1,5,9`` or, for a layer
  with category names (class logits), a class name: ``logits:"bell pepper"``, ``logits:espresso``.
- ``LOCATION`` applies to layers with spatial or token axes:
  ``center`` (default for (N, C, H, W) maps: the paper's choice), ``mean`` (spatial or token mean),
  ``Y,X`` (a map position), ``cls`` (token 0, the default for (N, T, C) token sequences) or ``T``
  (a token index).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

import torch

from ..infra.messages import nearest_names, short

Location = Union[None, str, int, tuple[int, int]]

#: The most units one unit string may stand for: ranges are counted before they are expanded
#: (``logits:0-99999999`` would otherwise build 100 million units before any layer size is known).
MAX_UNITS = 100_000


@dataclass(frozen=True)
class Unit:
    """One neuron: a layer, a channel index and where to read it."""

    layer: str
    index: int
    location: Location = None  # None: the layer kind's default (centre for maps, cls for tokens)

    def __str__(self) -> str:
        loc = ""
        if isinstance(self.location, tuple):
            loc = f"@{self.location[0]},{self.location[1]}"
        elif self.location is not None:
            loc = f"@{self.location}"
        return f"{self.layer}:{self.index}{loc}"

    @property
    def slug(self) -> str:
        """A file-name-safe label, e.g. ``logits_0945``."""
        loc = ""
        if isinstance(self.location, tuple):
            loc = f"_at{self.location[0]}-{self.location[1]}"
        elif self.location is not None:
            loc = f"_{self.location}"
        layer = re.sub(r"[^A-Za-z0-9]+", "-", self.layer).strip("-")
        return f"{layer}_{self.index:04d}{loc}"


class UnitError(ValueError):
    """A unit string or unit that does not fit the target; the message says what would be valid."""


def _parse_location(text: str) -> Location:
    text = text.strip().lower()
    if text in ("center", "centre", "mean", "cls"):
        return "center" if text == "centre" else text
    if re.fullmatch(r"\d+", text):
        return int(text)
    m = re.fullmatch(r"(\d+)\s*,\s*(\d+)", text)
    if m:
        return (int(m.group(1)), int(m.group(2)))
    raise UnitError(f"unknown location {short(repr(text))}: use center, mean, cls, a token index T or a position Y,X")


def _short(name: str) -> str:
    return short(repr(name))


def _class_index(name: str, categories: Sequence[str] | None, layer: str) -> list[int]:
    if not categories:
        raise UnitError(f"{_short(name)} is not a unit index, and layer {_short(layer)} has no category names; use an integer")
    wanted = name.strip().lower()
    hits = [i for i, desc in enumerate(categories) if wanted in (s.strip().lower() for s in desc.split(","))]
    if len(hits) == 1:
        return hits
    if len(hits) > 1:
        options = "; ".join(f"{i} ({categories[i]})" for i in hits)
        raise UnitError(f"class name {name!r} is ambiguous: {options}. Use the index")
    synonyms = sorted({s.strip() for desc in categories for s in desc.split(",")})
    close = difflib.get_close_matches(name.strip()[:200], synonyms, n=5, cutoff=0.6)
    hint = f" Close names: {', '.join(close)}." if close else ""
    raise UnitError(f"unknown class name {_short(name)} of layer {_short(layer)}.{hint}")


def parse_unit(text: str, categories: Sequence[str] | None = None, layers: Sequence[str] | None = None) -> list[Unit]:
    """Parse one unit string, which may stand for several units (a range or list).

    Args:
        text: e.g. ``"logits:945"``, ``'logits:"bell pepper"'``, ``"_blocks.15:37@mean"``,
            ``"logits:0-9"``, ``"_blocks.6:3@2,5"``.
        categories: Names of the output layer's units, for class-name lookup.
        layers: The target's addressable layer names, if known: an unknown layer is then reported
            (with the nearest names) before anything else about the unit.

    Returns:
        The units, in order.

    Raises:
        UnitError: the text does not parse, the layer is unknown, a class name is unknown or ambiguous, or
            it stands for more than :data:`MAX_UNITS` units (counted before a range is expanded).

    Example:
        >>> parse_unit("logits:0-2")
        [Unit(layer='logits', index=0, location=None), Unit(layer='logits', index=1, location=None), Unit(layer='logits', index=2, location=None)]
    """
    text = text.strip()
    if ":" not in text:
        raise UnitError(f"unit {short(repr(text))} has no ':'; write LAYER:UNIT[@LOCATION], e.g. logits:945 or _blocks.15:37@mean")
    layer, rest = text.split(":", 1)
    layer = layer.strip()
    if not layer:
        raise UnitError(f"unit {short(repr(text))} has an empty layer name")
    if layers is not None and layer not in layers:
        close = nearest_names(layer, layers)
        hint = f" Nearest names: {', '.join(close)}." if close else ""
        raise UnitError(f"unknown layer {short(repr(layer))}.{hint} `dgnam layers NET` lists all layers.")
    location: Location = None
    quoted = re.fullmatch(r"\s*([\"'])(.+)\1\s*(?:@(.*))?", rest)
    if quoted:
        spec, loc_text = quoted.group(2), quoted.group(3)
        is_name = True
    else:
        spec, at, loc_text = rest.partition("@")
        spec = spec.strip()
        loc_text = loc_text if at else None
        is_name = not re.fullmatch(r"[\d,\-\s]+", spec)
    if loc_text is not None:
        if not loc_text.strip():
            raise UnitError(f"unit {short(repr(text))} has nothing after '@': give a location (center, mean, cls, T or Y,X) or drop the '@'")
        location = _parse_location(loc_text)
    if not spec:
        raise UnitError(f"unit {short(repr(text))} has no unit index")
    if is_name:
        indices = _class_index(spec, categories, layer)
    else:
        indices = []
        for part in spec.split(","):
            part = part.strip()
            m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if hi < lo:
                    raise UnitError(f"range {short(repr(part))} is empty (end before start)")
                if len(indices) + hi - lo + 1 > MAX_UNITS:
                    raise UnitError(f"unit {short(repr(text))} stands for {len(indices) + hi - lo + 1:,} units, more than the limit of {MAX_UNITS:,} "
                                    "per unit string (a layer's units are 0 to its size - 1, `dgnam layers NET` shows them): give a smaller range")
                indices.extend(range(lo, hi + 1))
            elif re.fullmatch(r"\d+", part):
                if len(indices) >= MAX_UNITS:
                    raise UnitError(f"unit {short(repr(text))} lists more than the limit of {MAX_UNITS:,} units per unit string: give fewer")
                indices.append(int(part))
            else:
                raise UnitError(f"cannot read unit index {short(repr(part))} in {short(repr(text))}")
    return [Unit(layer, i, location) for i in indices]


def parse_units(texts: Iterable[str], categories: Sequence[str] | None = None, layers: Sequence[str] | None = None,
                _reading: tuple[Path, ...] = ()) -> list[Unit]:
    """Parse many unit strings; an entry ``@FILE`` reads one unit string per line (``#`` comments).

    A units file must exist and hold at least one unit; an error in it names the file and line; a
    file that includes itself (``@FILE`` lines, directly or through others) is refused.
    """
    units: list[Unit] = []
    for text in texts:
        if not text.startswith("@"):
            units.extend(parse_unit(text, categories, layers))
            _check_total(len(units))
            continue
        path = Path(text[1:])
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise UnitError(f"units file {short(repr(str(path)))} {what}: give a text file with one LAYER:UNIT per line")
        if path.resolve() in _reading:
            raise UnitError(f"units file {short(str(path))} includes itself (through {' -> '.join(short(p.name, 40) for p in _reading)}): remove the loop")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise UnitError(f"units file {short(str(path))} is not UTF-8 text: give a text file with one LAYER:UNIT per line") from e
        found: list[Unit] = []
        for number, line in enumerate(lines, 1):
            entry = line.split("#")[0].strip()
            if not entry:
                continue
            try:
                found.extend(parse_units([entry], categories, layers, (*_reading, path.resolve())))
                _check_total(len(found))
            except UnitError as e:
                if str(e).startswith(f"{path}:"):
                    raise
                raise UnitError(f"{path}:{number}: {e}") from None
        if not found:
            raise UnitError(f"units file {short(str(path))} has no units (only blank lines or # comments): write one LAYER:UNIT per line")
        units.extend(found)
        _check_total(len(units))
    return units


def _check_total(count: int) -> None:
    if count > MAX_UNITS:
        raise UnitError(f"the units given stand for more than the limit of {MAX_UNITS:,} units in all: give fewer (or run them in parts)")


def layer_kind(shape: Sequence[int]) -> str:
    """``"vector"`` for (N, C), ``"map"`` for (N, C, H, W), ``"tokens"`` for (N, T, C)."""
    kinds = {2: "vector", 3: "tokens", 4: "map"}
    if len(shape) not in kinds:
        raise UnitError(f"cannot address units in an output of shape {tuple(shape)}")
    return kinds[len(shape)]


def check_unit(unit: Unit, shape: Sequence[int]) -> None:
    """Raise :class:`UnitError` unless ``unit`` addresses an element of a layer output of ``shape``."""
    kind = layer_kind(shape)
    channels = shape[1] if kind in ("vector", "map") else shape[2]
    if not 0 <= unit.index < channels:
        raise UnitError(f"unit {unit.index} is out of range for layer {unit.layer!r}, which has {channels} units (0-{channels - 1})")
    loc = unit.location
    if kind == "vector" and loc is not None:
        raise UnitError(f"layer {unit.layer!r} is a vector (N, {channels}); it takes no @location")
    if kind == "map":
        h, w = shape[2], shape[3]
        if isinstance(loc, tuple) and not (0 <= loc[0] < h and 0 <= loc[1] < w):
            raise UnitError(f"position {loc} is outside layer {unit.layer!r}'s {h}x{w} map")
        if loc == "cls" or isinstance(loc, int):
            raise UnitError(f"layer {unit.layer!r} is a (C, H, W) map: use @center, @mean or @Y,X")
    if kind == "tokens":
        t = shape[1]
        if isinstance(loc, int) and not 0 <= loc < t:
            raise UnitError(f"token {loc} is out of range for layer {unit.layer!r}, which has {t} tokens")
        if isinstance(loc, tuple) or loc == "center":
            raise UnitError(f"layer {unit.layer!r} is a token sequence (T, C): use @cls, @mean or @T")


def read_unit(activation: torch.Tensor, units: Sequence[Unit]) -> torch.Tensor:
    """Read ``units[i]`` from batch element ``i`` of one layer's ``activation``; returns shape (N,).

    Maps default to the centre position (``H // 2, W // 2``), token sequences to token 0.
    """
    n = activation.shape[0]
    if len(units) != n:
        raise ValueError(f"{len(units)} units for a batch of {n}")
    kind = layer_kind(activation.shape)
    values = []
    for i, unit in enumerate(units):
        a = activation[i]
        if kind == "vector":
            values.append(a[unit.index])
        elif kind == "map":
            c = a[unit.index]
            loc = unit.location or "center"
            if loc == "mean":
                values.append(c.mean())
            elif loc == "center":
                values.append(c[c.shape[0] // 2, c.shape[1] // 2])
            else:
                values.append(c[loc[0], loc[1]])
        else:
            c = a[:, unit.index]
            loc = unit.location if unit.location is not None else "cls"
            values.append(c.mean() if loc == "mean" else c[0 if loc == "cls" else loc])
    return torch.stack(values)


