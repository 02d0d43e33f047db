"""Dataset exemplars: the natural images that drive a unit most and least.

One forward pass over a data folder records a whole layer (every channel, read the ways a unit can
be read: the map's centre and its mean, a token sequence's first token and its mean, a vector's
value), so any number of units of that layer costs one pass. The pass is cached on disk
(safetensors + a JSON card, never pickle) under a key made of the net's weights and input spec,
the layer, the data folder's file list with sizes and modification times, and the image size, so a
second call with the same (net, layer, data) reads the file instead.

Public API (what ``dgnam exemplars`` and the atlas call)::

    data = open_images("photos/")                      # lists the files, decodes lazily
    acts = layer_activations(net, "_blocks.7", data)   # one cached pass: (N, C) per reading
    ex = exemplars(acts, unit, k=9)                    # top-k and bottom-k of one unit
    box = receptive_field_box(net, unit, (data.size, data.size))
    crops = exemplar_crops(data, ex.top, box)          # what the unit sees of each image

:func:`save_exemplars` writes a run folder (crops, sheets and ``results.json``) that
``dgnam report`` shows.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.hooks import layer_output
from ..nets import Target
from ..core.units import Unit, UnitError, check_unit, layer_kind

#: Bump when the stored readings change meaning: older cache files are then not reused.
CACHE_VERSION = 1

#: The readings recorded per layer kind (what ``Unit.location`` may ask for without a position).
DEFAULT_READINGS = {"map": ("center", "mean"), "tokens": ("cls", "mean"), "vector": ("value",)}


# --------------------------------------------------------------------------------------------------
# Natural images of a data folder
# --------------------------------------------------------------------------------------------------


@dataclass
class NaturalImages:
    """The images of a data folder or pool, decoded on demand, with a fingerprint of their files.

    Attributes:
        path: The folder (or ``.npz`` packed pool) as given.
        source: Indexable images: a pool's memory-mapped ``images.npy`` or an
            :class:`~dgnam.pool.ImageFolderPool`; ``source[j]`` is (S, S, 3) uint8.
        indices: Which of ``source``'s images are used (all, or a fixed random subset).
        names: A name per used image (its file under the folder, or ``pool#j``).
        size: Side of the (square) images, px.
        fingerprint: What the cache key holds of the data: kind, file list with sizes and
            modification times (or the pool file's), size and subset.
        groups: Per used image, the original it was cut from (a pool holds many crops of one
            photo; a folder's files are their own originals): splits that must not share a photo
            (references and queries) split by group.
    """

    path: str
    source: object
    indices: np.ndarray
    names: list[str]
    size: int
    fingerprint: dict = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` (0 <= i < len(self)) as (S, S, 3) uint8."""
        return np.asarray(self.source[int(self.indices[i])], dtype=np.uint8)

    def batch(self, idx: Sequence[int]) -> np.ndarray:
        """Images ``idx`` as (n, S, S, 3) uint8."""
        return np.stack([self.image(i) for i in idx]) if len(idx) else np.zeros((0, self.size, self.size, 3), np.uint8)


def _stat(path: Path) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def open_images(path: str | Path, size: int = 160, max_images: int | None = None, seed: int = 0) -> NaturalImages:
    """List the images of a data folder (any image folder, a pool folder or a packed ``.npz`` pool).

    Only the file list is read here (and a pool's ``images.npy`` is memory-mapped); image folders
    are decoded image by image when used, so checking ``k`` against the number of images is cheap.

    Args:
        path: A folder of images (searched recursively: ``class/xxx.jpg`` or flat), a pool folder
            (``dgnam pool build``) or a packed pool.
        size: Side of the square images read from an image folder (their central square, resized);
            a pool keeps its own size.
        max_images: Use a fixed random subset of this many images (None: all).
        seed: Seed of that subset.

    Returns:
        :class:`NaturalImages`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: it holds no images.

    Example:
        >>> data = open_images("photos/", max_images=2000)
        >>> len(data), data.image(0).shape
    """
    from ..pool import ImageFolderPool, load_any

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data folder {path} does not exist")
    if (p.is_file() and p.suffix == ".npz") or (p / "images.npy").is_file():
        source, meta = load_any(p, mmap=True)
        records = meta.get("records") or []
        files = p if p.is_file() else p / "images.npy"
        fingerprint = {"kind": "pool", "file": _stat(files)}
        if p.is_dir() and (p / "card.json").is_file():
            fingerprint["card_sha256"] = hashlib.sha256((p / "card.json").read_bytes()).hexdigest()
        names_all = [str(records[j].get("file") or f"pool#{j}") if j < len(records) else f"pool#{j}" for j in range(len(source))]
        groups_all = [f"{records[j].get('source', '')}:{names_all[j]}" if j < len(records) else names_all[j] for j in range(len(source))]
        size = int(source.shape[1]) if len(source) else size
    else:
        if size < 16:
            raise ValueError(f"size must be at least 16 px, got {size}")
        source = ImageFolderPool(p, size)
        names_all = list(source.relpaths)
        groups_all = names_all
        listing = hashlib.sha256(json.dumps([[r, *_stat(f)] for r, f in zip(source.relpaths, source.files)]).encode()).hexdigest()
        fingerprint = {"kind": "folder", "files": len(names_all), "listing_sha256": listing}
    n = len(names_all)
    if n == 0:
        raise ValueError(f"no images in {path}: give a folder of .jpg/.png images (searched recursively) or a pool (`dgnam pool build DIR`)")
    indices = np.arange(n)
    if max_images is not None:
        if max_images < 1:
            raise ValueError(f"max_images must be at least 1, got {max_images}")
        if max_images < n:
            indices = np.sort(np.random.default_rng(seed).choice(n, size=max_images, replace=False))
    fingerprint.update({"size": size, "images": len(indices), "subset": None if len(indices) == n else {"seed": seed, "n": len(indices)}})
    return NaturalImages(str(path), source, indices, [names_all[j] for j in indices], size, fingerprint, [groups_all[j] for j in indices])


# --------------------------------------------------------------------------------------------------
# One pass per (net, layer, data): cached layer activations
# --------------------------------------------------------------------------------------------------


@dataclass
class LayerActivations:
    """Every channel of one layer over a data set, read the ways units are read.

    Attributes:
        net: The net's name.
        layer: The layer.
        shape: The layer's output shape per image at the net's native size, e.g. (C, H, W).
        readings: ``reading -> (N, C) float32``; readings are ``"center"``/``"mean"`` (maps),
            ``"cls"``/``"mean"`` (tokens), ``"value"`` (vectors) and ``"Y,X"`` / ``"T"`` positions.
        names: The images' names (as :attr:`NaturalImages.names`).
        key: The cache key (sha256 hex) of this pass.
        cached: Whether the values were read from the cache rather than computed.
    """

    net: str
    layer: str
    shape: tuple[int, ...]
    readings: dict[str, np.ndarray]
    names: list[str]
    key: str = ""
    cached: bool = False

    def __len__(self) -> int:
        return len(self.names)

    @property
    def channels(self) -> int:
        return int(next(iter(self.readings.values())).shape[1])

    def values(self, unit: Unit) -> np.ndarray:
        """The (N,) activations of ``unit`` over the data, read as the optimization reads it.

        Raises:
            UnitError: the unit is of another layer, out of range, or read at a location this
                pass did not record (pass it to :func:`layer_activations`' ``units``).
        """
        if unit.layer != self.layer:
            raise UnitError(f"unit {unit} is not in layer {self.layer!r} of these activations")
        check_unit(unit, (1, *self.shape))
        reading = reading_of(unit, len(self.shape) + 1)
        if reading not in self.readings:
            raise UnitError(f"location {reading!r} of {unit} was not recorded: pass the unit to layer_activations(..., units=[...])")
        return self.readings[reading][:, unit.index]


def reading_of(unit: Unit, ndim: int) -> str:
    """The reading that holds ``unit``'s value in a layer output with ``ndim`` axes (batch included)."""
    kind = {2: "vector", 3: "tokens", 4: "map"}.get(ndim)
    if kind is None:
        raise UnitError(f"cannot address units in an output with {ndim} axes")
    loc = unit.location
    if kind == "vector":
        return "value"
    if loc is None:
        return "center" if kind == "map" else "cls"
    if isinstance(loc, tuple):
        return f"{loc[0]},{loc[1]}"
    return str(loc)


def _read_all(output: torch.Tensor, reading: str) -> torch.Tensor:
    """(N, C) values of every channel of ``output`` at ``reading`` (as :func:`~dgnam.core.units.read_unit`)."""
    kind = layer_kind(output.shape)
    if kind == "vector":
        return output
    if kind == "map":
        if reading == "mean":
            return output.mean(dim=(2, 3))
        if reading == "center":
            return output[:, :, output.shape[2] // 2, output.shape[3] // 2]
        y, x = (int(v) for v in reading.split(","))
        return output[:, :, y, x]
    if reading == "mean":
        return output.mean(dim=1)
    return output[:, 0 if reading == "cls" else int(reading), :]


def net_fingerprint(net: Target) -> str:
    """sha256 of a net's name, class, input spec and every parameter and buffer (its exact weights)."""
    h = hashlib.sha256(json.dumps([net.name, type(net.model).__name__, asdict(net.spec)], default=str).encode())
    for name, tensor in sorted(net.model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """Where layer activations are cached: ``$DGNAM_HOME/activations``."""
    from ..infra.hub import dgnam_home

    return dgnam_home() / "activations"


def _cache_paths(cache_dir: Path, net_name: str, layer: str, key: str) -> tuple[Path, Path]:
    safe = lambda s: "".join(c if c.isalnum() or c in "-_." else "-" for c in s)  # noqa: E731
    folder, stem = cache_dir / safe(net_name), f"{safe(layer)}-{key[:20]}"  # not with_suffix: layer names hold dots
    return folder / f"{stem}.safetensors", folder / f"{stem}.json"


def _load_cached(path: Path, card_path: Path, key: str, wanted: Sequence[str]) -> dict[str, np.ndarray] | None:
    from safetensors.numpy import load_file

    if not (path.is_file() and card_path.is_file()):
        return None
    try:
        card = json.loads(card_path.read_text())
        if card.get("key") != key:
            return None
        arrays = load_file(str(path))
    except (OSError, ValueError, json.JSONDecodeError):
        return None  # a damaged file is recomputed, not trusted
    if not all(r in arrays for r in wanted):
        return None
    return arrays


def _save_cached(path: Path, card_path: Path, arrays: dict[str, np.ndarray], card: dict) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{path.name}.tmp{os.getpid()}"
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp), metadata={"key": card["key"]})
    os.replace(tmp, path)  # readers never see half a file
    card_path.write_text(json.dumps(card, indent=1))


@torch.no_grad()
def layer_activations(
    net: Target,
    layer: str,
    data: NaturalImages,
    units: Sequence[Unit] = (),
    cache_dir: str | Path | None | bool = None,
    batch_size: int = 32,
    progress: bool = False,
) -> LayerActivations:
    """Every channel of ``layer`` over the images of ``data``, from one (cached) forward pass.

    The images are fed at their own size; the net brings them to its native size as it does for
    synthesized images. The pass stops at ``layer``. Maps record each channel at the centre and its
    spatial mean (token sequences: first token and mean; vectors: the value), plus any position the
    ``units`` ask for (``@Y,X``, ``@T``).

    Args:
        net: The target (:func:`dgnam.load_net`); its weights are part of the cache key.
        layer: A module name of ``net.model`` or ``"output"``.
        data: The images (:func:`open_images`).
        units: Units whose locations must be recorded too (their layer must be ``layer``).
        cache_dir: Cache folder; None: :func:`default_cache_dir`; False: no cache.
        batch_size: Images per forward pass.
        progress: Show a progress bar.

    Returns:
        :class:`LayerActivations` (``cached`` says whether the pass was read from disk).

    Example:
        >>> acts = layer_activations(load_net("efficientnet_lite0"), "_blocks.7", open_images("photos/"))
        >>> acts.readings["center"].shape  # (images, 80)
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    other = [str(u) for u in units if u.layer != layer]
    if other:
        raise UnitError(f"units {', '.join(other)} are not in layer {layer!r}")
    device = next(net.buffers()).device
    fast = net.fast([layer])
    h, w = net.spec.size
    probe = layer_output(fast, layer, torch.zeros(1, 3, h, w, device=device))
    shape = tuple(int(s) for s in probe.shape[1:])
    kind = layer_kind(probe.shape)
    for u in units:
        check_unit(u, probe.shape)
    wanted = list(dict.fromkeys(list(DEFAULT_READINGS[kind]) + [reading_of(u, probe.dim()) for u in units]))
    key_record = {"version": CACHE_VERSION, "net": net.name, "weights": net_fingerprint(net), "layer": layer, "data": data.fingerprint,
                  "readings": sorted(wanted)}  # fmt: skip
    key = hashlib.sha256(json.dumps(key_record, sort_keys=True).encode()).hexdigest()
    paths = None
    if cache_dir is not False:
        paths = _cache_paths(Path(cache_dir) if cache_dir else default_cache_dir(), net.name, layer, key)
        arrays = _load_cached(*paths, key, wanted)
        if arrays is not None and all(len(arrays[r]) == len(data) for r in wanted):
            return LayerActivations(net.name, layer, shape, {r: arrays[r] for r in wanted}, list(data.names), key, cached=True)
    out = {r: np.empty((len(data), shape[-1] if kind == "tokens" else shape[0]), dtype=np.float32) for r in wanted}
    started = time.perf_counter()
    for start in tqdm(range(0, len(data), batch_size), desc=f"{layer} activations", unit="batch", disable=not progress):
        idx = range(start, min(start + batch_size, len(data)))
        batch = torch.from_numpy(data.batch(idx)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
        output = layer_output(fast, layer, batch)
        for r in wanted:
            out[r][start : start + len(idx)] = _read_all(output.float(), r).cpu().numpy()
    if paths is not None:
        card = {"key": key, **key_record, "data_path": str(data.path), "shape": list(shape), "seconds": round(time.perf_counter() - started, 3),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
        _save_cached(*paths, out, card)
    return LayerActivations(net.name, layer, shape, out, list(data.names), key, cached=False)


# --------------------------------------------------------------------------------------------------
# Top and bottom images of a unit
# --------------------------------------------------------------------------------------------------


@dataclass
class UnitExemplars:
    """A unit's most and least activating images of a data set.

    Attributes:
        unit: The unit.
        top: Indices into the data of the ``k`` highest activations, highest first.
        bottom: Indices of the ``k`` lowest, lowest first.
        top_values: Their activations.
        bottom_values: Their activations.
        stats: Over all images: ``min``, ``max``, ``mean``, ``median`` and ``std`` of the unit.
    """

    unit: Unit
    top: np.ndarray
    bottom: np.ndarray
    top_values: np.ndarray
    bottom_values: np.ndarray
    stats: dict


def check_k(k: int, n_images: int) -> None:
    """Raise ValueError unless 0 < k <= n_images (one clear line)."""
    if k < 1:
        raise ValueError(f"-k must be at least 1, got {k}")
    if k > n_images:
        raise ValueError(f"-k {k} is more than the {n_images} images of the data: give -k {n_images} or fewer, or more images")


def exemplars(acts: LayerActivations, unit: Unit, k: int = 9) -> UnitExemplars:
    """The ``k`` most and ``k`` least activating images of ``unit``.

    Ties are broken by image order (a stable sort), so the result is deterministic.

    Args:
        acts: The unit's layer over the data (:func:`layer_activations`).
        unit: The unit (its location as recorded there).
        k: Images per end, 1 <= k <= number of images.

    Returns:
        :class:`UnitExemplars`.

    Example:
        >>> ex = exemplars(acts, Unit("_blocks.7", 12), k=9)
        >>> [acts.names[i] for i in ex.top]
    """
    check_k(k, len(acts))
    values = acts.values(unit)
    order = np.argsort(-values, kind="stable")
    low = np.argsort(values, kind="stable")
    stats = {name: round(float(fn(values)), 6) for name, fn in (("min", np.min), ("max", np.max), ("mean", np.mean), ("median", np.median), ("std", np.std))}
    return UnitExemplars(unit, order[:k], low[:k], values[order[:k]], values[low[:k]], stats)


def crop_box(image: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """``image`` (H, W, 3) cut to ``box`` = (top, left, bottom, right), end exclusive; None: the whole image."""
    if box is None:
        return image
    top, left, bottom, right = box
    return image[top:bottom, left:right]


def exemplar_crops(data: NaturalImages, indices: Sequence[int], box: tuple[int, int, int, int] | None) -> list[np.ndarray]:
    """The images ``indices`` of ``data``, each cut to the unit's receptive field ``box``.

    ``box`` comes from :func:`dgnam.core.objectives.receptive_field_box` at the data's image size
    (``(data.size, data.size)``): the pixels the unit depends on, so a hidden unit's exemplars show
    what it sees. None keeps whole images (class units, mean-read units).
    """
    return [crop_box(data.image(i), box) for i in indices]


def unit_receptive_field(net: Target, unit: Unit, size: int) -> tuple[int, int, int, int] | None:
    """The receptive-field box of ``unit`` in images of ``size`` px (:func:`~dgnam.core.objectives.receptive_field_box`);
    None where the unit sees the whole image (class units, mean-read units, deep layers)."""
    from ..core.objectives import receptive_field_box

    return receptive_field_box(net, unit, (size, size))


# --------------------------------------------------------------------------------------------------
# A run folder of exemplars (what `dgnam exemplars` writes and `dgnam report` shows)
# --------------------------------------------------------------------------------------------------

EXEMPLARS_KIND = "exemplars"


def exemplar_sheet(top: Sequence[np.ndarray], bottom: Sequence[np.ndarray], top_values: Sequence[float], bottom_values: Sequence[float], title: str = "", tile: int = 96):
    """Two labelled rows: the top-k crops above the bottom-k crops (a PIL image)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    k = max(len(top), len(bottom), 1)
    label_w, cap_h, title_h = 52, 14, 16
    sheet = Image.new("RGB", (label_w + k * tile, title_h + 2 * (tile + cap_h)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((2, 2), title, fill="black", font=font)
    for row, (name, crops, values) in enumerate((("top", top, top_values), ("bottom", bottom, bottom_values))):
        y = title_h + row * (tile + cap_h)
        draw.text((2, y + tile // 2), name, fill="black", font=font)
        for i, (crop, v) in enumerate(zip(crops, values)):
            x = label_w + i * tile
            sheet.paste(Image.fromarray(np.asarray(crop, dtype=np.uint8)).resize((tile, tile), Image.BILINEAR), (x, y))
            draw.text((x + 2, y + tile + 1), f"{v:.3g}", fill="black", font=font)
    return sheet


def save_exemplars(out_dir: str | Path, data: NaturalImages, results: Sequence[tuple[UnitExemplars, tuple | None, str]], settings: dict) -> Path:
    """Write a run folder: per unit its top/bottom crops and a sheet, and ``results.json``.

    Args:
        out_dir: The folder (created). ``RUN/exemplars`` keeps them with a ``dgnam visualize`` run,
            whose report then shows them.
        data: The images the exemplars index.
        results: Per unit ``(exemplars, receptive-field box or None, label)``.
        settings: Resolved settings recorded in results.json (net, data, k, command ...).

    Returns:
        The path of results.json.
    """
    from PIL import Image

    from ..infra.files import write_json_atomic
    from ..io.write import json_safe, run_header, save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = []
    started = time.time()
    for ex, box, label in results:
        slug = ex.unit.slug
        (out / slug).mkdir(exist_ok=True)
        entry: dict = {"unit": str(ex.unit), "layer": ex.unit.layer, "index": ex.unit.index,
                       "location": list(ex.unit.location) if isinstance(ex.unit.location, tuple) else ex.unit.location,
                       "label": label, "receptive_field": list(box) if box is not None else None, "stats": ex.stats,
                       "sheet": f"{slug}.png"}  # fmt: skip
        crops_by_end = {}
        for end, indices, values in (("top", ex.top, ex.top_values), ("bottom", ex.bottom, ex.bottom_values)):
            crops = exemplar_crops(data, indices, box)
            crops_by_end[end] = crops
            entry[end] = []
            for rank, (i, v, crop) in enumerate(zip(indices, values, crops), start=1):
                rel = f"{slug}/{end}_{rank:02d}.png"
                save_png(Image.fromarray(crop), out / rel)  # atomically: a full disk leaves no truncated crop
                entry[end].append({"rank": rank, "image": int(data.indices[i]), "name": data.names[i], "activation": round(float(v), 6), "file": rel})
        save_png(exemplar_sheet(crops_by_end["top"], crops_by_end["bottom"], ex.top_values, ex.bottom_values, title=label), out / entry["sheet"])
        items.append(entry)
    record = {**run_header({"kind": EXEMPLARS_KIND, **settings}, started, len(items), False, len(items)), "items": items}
    return write_json_atomic(out / "results.json", json_safe(record))  # strict JSON, never half a file


__all__ = [
    "DEFAULT_READINGS", "LayerActivations", "NaturalImages", "UnitExemplars", "check_k", "crop_box", "default_cache_dir",
    "exemplar_crops", "exemplar_sheet", "exemplars", "layer_activations", "net_fingerprint", "open_images", "reading_of",
    "save_exemplars", "unit_receptive_field",
]  # fmt: skip
