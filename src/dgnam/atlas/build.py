"""Building an atlas: plan the units, skip the finished ones, compute the rest in batches, write the site.

:func:`build_atlas` is the whole job (``dgnam atlas`` calls it). It is incremental and resumable:
each unit's results are written to its own folder as soon as its batch is done (:mod:`.store`), a
unit whose ``unit.json`` carries the current settings key is never computed again, the data's
activations are computed once per layer and cached, and Ctrl-C or SIGTERM stops after writing the
site from the units that finished. Under ``torchrun`` the missing units are split over the
processes in whole batches (:func:`dgnam.distributed.shard_jobs`); every process writes its own
units' folders (disjoint), and after a barrier rank 0 writes the pages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..nets import Target
from ..objectives import check_units, receptive_field_box
from ..units import Unit, UnitError, layer_kind, parse_units
from . import store
from .compute import AtlasConfig, Synthesized, crop, exemplar_indices, histogram, synthesize, to_tensor, unit_activations
from .site import write_site


# --------------------------------------------------------------------------------------------------
# What to build: units and data
# --------------------------------------------------------------------------------------------------


def split_unit_list(text: str) -> list[str]:
    """``"logits:0-7,_blocks.15:0-7"`` -> ``["logits:0-7", "_blocks.15:0-7"]``: a comma starts a new
    unit string only where a ``LAYER:`` follows (``logits:1,5,9`` stays one)."""
    parts, current = [], ""
    for piece in text.split(","):
        if current and ":" in piece:
            parts.append(current)
            current = piece
        else:
            current = f"{current},{piece}" if current else piece
    if current:
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def layer_shapes(target: Target, layers: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Output shape of each layer at the target's native size (unknown layers raise, naming the nearest)."""
    return check_units(target, [Unit(layer, 0) for layer in layers])


def channels(shape: Sequence[int]) -> int:
    """Units of a layer output of ``shape``."""
    return shape[2] if layer_kind(shape) == "tokens" else shape[1]


def plan_units(target: Target, layers: Sequence[str] = (), unit_texts: Sequence[str] = ()) -> tuple[list[str], dict, list[Unit]]:
    """The layers and units an atlas covers.

    Args:
        target: The net.
        layers: Layer names; empty: the layers of ``unit_texts``.
        unit_texts: Unit strings limiting the work (``logits:0-7``); empty: every unit of ``layers``.

    Returns:
        ``(layers, shapes, units)``.

    Raises:
        UnitError: an unknown layer or unit, or a unit outside ``layers``.
    """
    units = parse_units([t for text in unit_texts for t in split_unit_list(text)], target.categories) if unit_texts else []
    layers = list(dict.fromkeys(list(layers) or [u.layer for u in units]))
    if not layers:
        raise UnitError("give --layers (e.g. logits,_blocks.15) or --units (e.g. logits:0-7)")
    shapes = layer_shapes(target, layers)
    outside = sorted({u.layer for u in units} - set(layers))
    if outside:
        raise UnitError(f"--units names layer(s) {', '.join(outside)} that --layers does not list ({', '.join(layers)}): add them to --layers")
    if units:
        check_units(target, units)
        units = list(dict.fromkeys(units))
    else:
        units = [Unit(layer, i) for layer in layers for i in range(channels(shapes[layer]))]
    order = {layer: k for k, layer in enumerate(layers)}
    units.sort(key=lambda u: (order[u.layer], u.index, str(u.location)))
    return layers, shapes, units


def default_pool_dir() -> Path:
    """Where the atlas keeps the offline pool when no ``--data`` is given: ``$DGNAM_HOME/pool``."""
    from ..hub import dgnam_home

    return dgnam_home() / "pool"


@dataclass
class AtlasData:
    """The natural images of an atlas: an image folder, a pool folder or a packed pool (``.npz``).

    Loading is deferred (:meth:`load`): a re-run with nothing to compute never reads the images.
    """

    path: Path
    size: int = 224  # side of an image folder's images (pools keep their own size)
    _loaded: tuple | None = field(default=None, repr=False)

    def fingerprint(self) -> str:
        """Changes when the data changes: file names, sizes and times of a folder; a pool's card."""
        path = self.path
        h = hashlib.sha256(f"{self.size}".encode())
        if path.is_file():
            h.update(f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode())
        elif (path / "images.npy").is_file():
            h.update((path / "card.json").read_bytes() if (path / "card.json").is_file() else b"")
            h.update(str((path / "images.npy").stat().st_size).encode())
        elif path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_file() and not p.name.startswith("."):
                    st = p.stat()
                    h.update(f"{p.relative_to(path).as_posix()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        else:
            raise FileNotFoundError(f"--data {path}: no such folder or file (an image folder, a pool folder or a .npz pool)")
        return h.hexdigest()[:16]

    def load(self) -> tuple[np.ndarray, list[str]]:
        """``(images, names)``: (N, S, S, 3) uint8 (memory-mapped for a pool) and a name per image."""
        if self._loaded is None:
            from ..pool import load_any

            images, meta = load_any(self.path, size=self.size, mmap=True)
            if not len(images):
                raise ValueError(f"--data {self.path} holds no images")
            records = meta.get("records") or []
            names = [str(records[i].get("file") or i) if i < len(records) else str(i) for i in range(len(images))]
            self._loaded = (images, names)
        return self._loaded


def ensure_pool(path: Path | None = None, progress: bool = True) -> Path:
    """The offline pool at ``path`` (default :func:`default_pool_dir`), built on first use with
    ``dgnam pool build``'s defaults (Debian packages fetched with apt-get, scikit-image photos)."""
    path = Path(path) if path is not None else default_pool_dir()
    if not (path / "images.npy").is_file():
        from ..pool import build_pool

        print(f"dgnam atlas: no --data; building the offline pool in {path} (first use, once)", flush=True)
        build_pool(path, progress=progress)
    return path


# --------------------------------------------------------------------------------------------------
# Interrupts
# --------------------------------------------------------------------------------------------------


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM (a scheduler's time limit) raises KeyboardInterrupt, as Ctrl-C does;
    the previous handler is restored afterwards. A no-op outside the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------------


@dataclass
class AtlasMethod:
    """How images are synthesized: DGN-AM through ``generator`` (with ``config``), else the pixel
    method ``pixel``; ``pixel`` is also the baseline beside DGN-AM."""

    generator: object | None = None
    config: object | None = None  # DGNAMConfig with a generator
    pixel: object | None = None  # PixelConfig
    generator_name: str | None = None

    @property
    def name(self) -> str:
        if self.generator is not None:
            return f"DGN-AM ({self.generator_name})" if self.generator_name else "DGN-AM"
        return f"pixel: {self.pixel.method}"


@dataclass
class AtlasSummary:
    """What a build did."""

    index: Path | None  # the site's index page (None on ranks other than 0)
    units: int  # units the atlas covers (this build's request)
    computed: int  # units computed by this process now
    cached: int  # units found done
    interrupted: bool
    seconds: float
    activation_passes: int = 0  # layers whose data activations were computed now (not read from the cache)


def _settings(net_name: str, method: AtlasMethod, config: AtlasConfig, data: AtlasData, steps_override: dict) -> dict:
    """What decides a unit's results: its hash is the cache key."""
    asdict = lambda c: dataclasses.asdict(c) if c is not None else None  # noqa: E731
    return {
        "net": net_name, "method": method.name, "generator": method.generator_name,
        "dgn_am": asdict(method.config) if method.generator is not None else None, "pixel": asdict(method.pixel),
        "seeds": list(config.seeds), "k": config.k, "bins": config.bins, "pixel_baseline": config.pixel_baseline,
        "accentuate": config.accentuate, "batch_size": config.batch_size, "data": data.fingerprint(), **steps_override,
    }  # fmt: skip


def _with_steps(cfg, steps: int | None):
    return cfg if cfg is None or steps is None else dataclasses.replace(cfg, steps=steps)


def build_atlas(
    target: Target,
    net_name: str,
    site: str | Path,
    data: AtlasData,
    method: AtlasMethod,
    layers: Sequence[str] = (),
    units: Sequence[str] = (),
    config: AtlasConfig | None = None,
    command: Sequence[str] = (),
    progress: bool = True,
    world=None,
) -> AtlasSummary:
    """Build (or complete) the atlas of ``target`` in the folder ``site``.

    Args:
        target: The net (on its device).
        net_name: How the net was named (shown, and part of the cache key).
        site: The output folder; an existing atlas there is completed, not redone.
        data: The natural images for exemplars and histograms.
        method: The synthesis method (:class:`AtlasMethod`).
        layers: Layers to cover; empty: those of ``units``.
        units: Unit strings limiting the work; empty: every unit of ``layers``.
        config: What to compute per unit.
        command: The command line, recorded in ``atlas.json``.
        progress: Show progress bars.
        world: A :class:`dgnam.distributed.World` (torchrun); None: one process.

    Returns:
        An :class:`AtlasSummary`.

    Example:
        >>> build_atlas(net, "efficientnet_lite0", "site", AtlasData(Path("photos")), AtlasMethod(gen, dgnam_config(gen), PixelConfig("deepinversion")),
        ...             layers=["logits"], units=["logits:0-7"])
    """
    from ..distributed import World, barrier, shard_jobs

    started = time.time()
    config = config or AtlasConfig()
    world = world or World(device=next(target.buffers()).device)
    site = Path(site)
    if site.exists() and not site.is_dir():
        raise ValueError(f"--out {site} is a file: give a folder for the site")
    method = dataclasses.replace(method, config=_with_steps(method.config, config.steps), pixel=_with_steps(method.pixel, config.steps))
    layers, shapes, plan = plan_units(target, layers, units)
    settings = _settings(net_name, method, config, data, {})
    key = store.settings_key(settings)
    pending = [u for u in plan if store.read_unit_record(site, u, key) is None]
    if world.rank == 0:
        site.mkdir(parents=True, exist_ok=True)
    barrier(world)
    computed, passes, interrupted = 0, 0, False
    with sigterm_as_interrupt():
        try:
            if pending:
                images, names = data.load()
                acts, passes = _data_activations(target, site, data, pending, shapes, config, world, progress)
                mine = shard_jobs(pending, world.rank, world.size, config.units_per_batch)
                for _ in _compute(target, site, key, mine, acts, images, names, shapes, method, config, progress and world.rank == 0):
                    computed += 1  # counted as each unit is written, so an interrupt keeps the count
        except KeyboardInterrupt:
            interrupted = True
            print("\ndgnam atlas: interrupted; keeping the finished units", flush=True)
    barrier(world)
    index = None
    if world.rank == 0:
        index = _write_pages(site, settings, key, layers, shapes, plan, method, config, data, command)
    return AtlasSummary(index, len(plan), computed, len(plan) - len(pending), interrupted, round(time.time() - started, 2), passes)


def _data_activations(target, site, data, pending, shapes, config, world, progress) -> tuple[dict, int]:
    """Activations over the data of every channel of each (layer, location) that pending units use,
    from the cache or from one pass (rank 0 computes, the other ranks wait and read)."""
    from ..distributed import barrier

    images, _ = data.load()
    data_key = store.settings_key({"net": target.name, "data": data.fingerprint(), "n": len(images)})
    groups = list(dict.fromkeys((u.layer, u.location) for u in pending))
    acts, passes = {}, 0
    for layer, location in groups:
        path = store.activations_cache(site, f"{layer}@{location}", data_key)
        if world.rank == 0 and store.load_activations(path) is None:
            everyone = [Unit(layer, c, location) for c in range(channels(shapes[layer]))]
            store.save_activations(path, unit_activations(target, everyone, images, config.data_batch_size, progress))
            passes += 1
    barrier(world)
    for layer, location in groups:
        found = store.load_activations(store.activations_cache(site, f"{layer}@{location}", data_key))
        if found is None or len(found) != len(images):
            raise RuntimeError(f"the activation cache of {layer} was not written; delete {site / 'cache'} and run again")
        acts[(layer, location)] = found
    return acts, passes


def _compute(target, site, key, units, acts, images, names, shapes, method, config, progress) -> Iterator[Unit]:
    """Compute and write ``units`` in batches, yielding each unit once its ``unit.json`` is written."""
    from tqdm.auto import tqdm

    encoder = _encoder(target, method) if config.accentuate else None
    size = images.shape[1:3]
    with tqdm(total=len(units), desc="atlas units", unit="unit", disable=not progress) as bar:
        for start in range(0, len(units), config.units_per_batch):
            batch = units[start : start + config.units_per_batch]
            tick = time.perf_counter()
            columns = [acts[(u.layer, u.location)][:, u.index] for u in batch]
            picks = [exemplar_indices(col, config.k) for col in columns]
            seeds = list(config.seeds)
            facets = synthesize(target, [u for u in batch for _ in seeds], seeds * len(batch), method.generator,
                                method.config if method.generator is not None else method.pixel)
            pixel = None
            if config.pixel_baseline and method.generator is not None and method.pixel is not None:
                pixel = synthesize(target, batch, [seeds[0]] * len(batch), None, method.pixel)
            accent = None
            if config.accentuate and (encoder is not None or method.generator is None):
                photos = to_tensor(np.stack([np.asarray(images[top[0]]) for top, _ in picks])).to(next(target.buffers()).device)
                accent = _accentuate(target, batch, seeds[0], method, photos, encoder)
            seconds = (time.perf_counter() - tick) / len(batch)
            for i, unit in enumerate(batch):
                box = receptive_field_box(target, unit, tuple(size)) if layer_kind(shapes[unit.layer]) == "map" else None
                record = _unit_record(site, key, unit, target, columns[i], picks[i], images, names, box,
                                      facets[i * len(seeds) : (i + 1) * len(seeds)], pixel[i] if pixel else None,
                                      accent[i] if accent else None, method, config, seconds)
                store.write_unit(site, unit, record)
                bar.update(1)
                yield unit


def _encoder(target, method):
    """The prior's encoder for accentuation, or None when the prior names none (then no accentuation)."""
    if method.generator is None:
        return None
    from ..accentuate import prior_encoder

    try:
        return prior_encoder(method.generator, target, method.generator_name)
    except (ValueError, KeyError) as exc:
        print(f"dgnam atlas: no accentuation: {exc}", flush=True)
        return None


def _accentuate(target, batch, seed, method, photos, encoder) -> list[Synthesized]:
    from ..accentuate import accentuate

    cfg = method.config if method.generator is not None else method.pixel
    result = accentuate(target, batch, [seed] * len(batch), method.generator, cfg, photos, encoder=encoder, generator_name=method.generator_name)
    return [Synthesized(result.images[i], float(result.final[i]), seed) for i in range(len(batch))]


def _array(image: torch.Tensor) -> np.ndarray:
    return (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def _unit_record(site, key, unit, target, column, pick, images, names, box, facets, pixel, accent, method, config, seconds) -> dict:
    """Write a unit's images and return its record (the caller writes ``unit.json`` last)."""
    folder = store.unit_dir(site, unit)
    label = None
    if target.categories and len(target.categories) > unit.index and unit.layer in _output_layers(target):
        label = target.categories[unit.index].split(",")[0].strip()
    record = {"key": key, "unit": str(unit), "layer": unit.layer, "index": unit.index, "slug": store.unit_slug(unit),
              "location": list(unit.location) if isinstance(unit.location, tuple) else unit.location, "label": label,
              "receptive_field": list(box) if box else None, "seconds": round(seconds, 3)}  # fmt: skip
    record["facets"] = [{"seed": f.seed, "activation": f.activation, "file": store.save_image(folder, f"dgnam_s{f.seed}.png", _array(f.image))}
                        for f in facets]  # fmt: skip
    if pixel is not None:
        record["pixel"] = {"method": method.pixel.method, "seed": pixel.seed, "activation": pixel.activation,
                           "file": store.save_image(folder, "pixel.png", _array(pixel.image))}
    top, bottom = pick
    for name, indices in (("top", top), ("bottom", bottom)):
        record[name] = [{"index": i, "source": names[i], "activation": float(column[i]),
                         "file": store.save_image(folder, f"{name}_{k}.jpg", crop(np.asarray(images[i]), box))} for k, i in enumerate(indices)]
    if accent is not None:
        record["accent"] = {"source_index": top[0], "source": names[top[0]], "source_activation": float(column[top[0]]),
                            "source_file": store.save_image(folder, "accent_source.jpg", np.asarray(images[top[0]])),
                            "activation": accent.activation, "file": store.save_image(folder, "accent.png", _array(accent.image))}
    finite = column[np.isfinite(column)]
    counts, edges = histogram(column, config.bins)
    record["natural"] = {"images": int(len(column)), "max": float(finite.max()) if len(finite) else None,
                         "min": float(finite.min()) if len(finite) else None, "mean": float(finite.mean()) if len(finite) else None,
                         "histogram": {"counts": counts, "edges": edges}}  # fmt: skip
    return record


def _output_layers(target) -> set[str]:
    """Layers whose units are classes (named by ``target.categories``)."""
    from ..nets import get_net_spec, list_nets

    layers = {"output", "logits", "fc8"}
    if target.name in list_nets():
        layers.add(get_net_spec(target.name).output_layer)
    return layers


def _write_pages(site, settings, key, layers, shapes, plan, method, config, data, command) -> Path:
    """Write atlas.json and every page from the finished units of this key (earlier requests' too)."""
    records = [r for r in _all_records(site, key)]
    wanted = {str(u) for u in plan}
    info = []
    for layer in layers:
        total = channels(shapes[layer])
        info.append({"name": layer, "shape": list(shapes[layer][1:]), "units": total,
                     "done": sum(1 for r in records if r["layer"] == layer)})
    extra = {layer: None for layer in {r["layer"] for r in records} - set(layers)}
    info += [{"name": layer, "shape": [], "units": sum(1 for r in records if r["layer"] == layer),
              "done": sum(1 for r in records if r["layer"] == layer)} for layer in sorted(extra)]
    order = {l["name"]: k for k, l in enumerate(info)}
    records.sort(key=lambda r: (order.get(r["layer"], len(order)), r["index"], str(r.get("location"))))
    shown = {**settings, "key": key, "seeds": list(config.seeds), "steps": (method.config or method.pixel).steps,
             "pixel_method": method.pixel.method if method.pixel is not None else None, "data": str(data.path),
             "data_images": next((r["natural"]["images"] for r in records), None), "requested": sorted(wanted),
             "command": list(command), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    store.atomic_write_text(site / store.SETTINGS_FILE, json.dumps(shown, indent=1, default=str))
    return write_site(site, shown, info, records)


def _all_records(site: Path, key: str) -> list[dict]:
    """Every finished unit record of ``key`` under ``site/units`` (files checked)."""
    found = []
    for path in sorted((site / "units").glob(f"*/*/{store.UNIT_FILE}")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(record, dict) or record.get("key") != key:
            continue
        try:
            names = list(store.record_files(record))
            if not all((path.parent / store.safe_name(n)).is_file() for n in names):
                continue
            if path.parent.name != store.safe_name(f"{record['slug']}.png")[:-4] or path.parent.parent.name != store.layer_slug(record["layer"]):
                continue  # a record that does not belong to its folder
        except (ValueError, KeyError, TypeError):
            continue
        found.append(record)
    return found


__all__ = ["AtlasData", "AtlasMethod", "AtlasSummary", "build_atlas", "plan_units", "split_unit_list", "ensure_pool", "default_pool_dir",
           "sigterm_as_interrupt"]
