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
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..nets import Target
from ..eval.exemplars import exemplar_crops, exemplars, layer_activations, unit_receptive_field
from ..infra.interrupts import stop_on_signals
from ..infra.files import write_text_atomic
from ..core.objectives import check_units
from ..core.units import Unit, UnitError, layer_kind, parse_units
from . import store
from .compute import AtlasConfig, Synthesized, histogram, synthesize, to_tensor
from .site import claim_files, page_files, write_site


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
    from ..infra.hub import dgnam_home

    return dgnam_home() / "pool"


def open_data(path: str | Path, size: int = 224, max_images: int | None = None):
    """The natural images of an atlas (:func:`dgnam.eval.exemplars.open_images`: an image folder, a pool
    folder or a packed pool; only the file list is read now, images are decoded when used)."""
    from ..eval.exemplars import open_images

    return open_images(path, size=size, max_images=max_images)


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
# The build
# --------------------------------------------------------------------------------------------------


@dataclass
class AtlasMethod:
    """How images are synthesized: DGN-AM through ``generator`` (with ``config``), else the pixel
    method ``pixel``; ``pixel`` is also the baseline beside DGN-AM. The configs run as given: resolve them
    with their settings (``resolve(net, gen, overrides={"steps": 50}).config``, as ``dgnam atlas`` does)."""

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
    exit_code: int = 0  # 0, or 130 (SIGINT) / 143 (SIGTERM) when a signal stopped the build


def _settings(net_name: str, method: AtlasMethod, config: AtlasConfig, data) -> dict:
    """What decides a unit's results: its hash is the cache key."""
    # None-valued fields are left out: a field a later dgnam adds (None for the methods that do not use it)
    # must not invalidate the units already computed
    asdict = lambda c: {k: v for k, v in dataclasses.asdict(c).items() if v is not None} if c is not None else None  # noqa: E731
    return {
        "net": net_name, "method": method.name, "generator": method.generator_name,
        "dgn_am": asdict(method.config) if method.generator is not None else None, "pixel": asdict(method.pixel),
        "seeds": list(config.seeds), "k": config.k, "bins": config.bins, "pixel_baseline": config.pixel_baseline,
        "accentuate": config.accentuate, "batch_size": config.batch_size, "data": data.fingerprint,
    }  # fmt: skip


def build_atlas(
    target: Target,
    net_name: str,
    site: str | Path,
    data,
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
        data: The natural images for exemplars and histograms (:func:`open_data`).
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
        >>> build_atlas(net, "efficientnet_lite0", "site", open_data("photos"), AtlasMethod(gen, dgnam_config(gen), PixelConfig("deepinversion")),
        ...             layers=["logits"], units=["logits:0-7"])
    """
    from ..distributed import World, barrier, shard_jobs

    started = time.time()
    config = config or AtlasConfig()
    world = world or World(device=next(target.buffers()).device)
    site = Path(site)
    layers, shapes, plan = plan_units(target, layers, units)
    settings = _settings(net_name, method, config, data)
    key = store.settings_key(settings)
    # a new or empty folder, or an atlas dgnam made, and no page over a file dgnam did not write: checked by every
    # rank before any work, then rank 0 creates the folder and lists the pages in its manifest
    pages = [store.SETTINGS_FILE, *page_files(layers, [{"layer": u.layer, "slug": store.unit_slug(u)} for u in plan])]
    claim_files(site, pages, write=False)
    pending = [u for u in plan if store.read_unit_record(site, u, key) is None]
    k = exemplar_count(config.k, len(data))
    if k < config.k and pending and world.rank == 0:
        print(f"dgnam atlas: note: -k {config.k} capped to {k}, half the {len(data)} images of the data, so the top and bottom "
              "natural images never share an image", flush=True)  # fmt: skip
    barrier(world)
    if world.rank == 0:
        claim_files(site, pages)
    barrier(world)
    computed, passes = 0, 0
    index = None
    with stop_on_signals() as stop:
        with stop.interruptible():  # a signal stops the units; after them a second SIGTERM cannot cut the pages short
            if pending:
                acts, passes = _data_activations(target, site, data, pending, config, world, progress)
                mine = shard_jobs(pending, world.rank, world.size, config.units_per_batch)
                for _ in _compute(target, site, key, mine, acts, data, shapes, method, config, progress and world.rank == 0, world.rank):
                    computed += 1  # counted as each unit is written, so an interrupt keeps the count
        interrupted = stop.interrupted
        if interrupted:
            print(f"\ndgnam atlas: interrupted ({stop.signal}); keeping the finished units", flush=True)
        barrier(world)
        if world.rank == 0:
            index = _write_pages(site, settings, key, layers, shapes, plan, method, config, data, command)
    return AtlasSummary(index, len(plan), computed, len(plan) - len(pending), interrupted, round(time.time() - started, 2), passes, stop.exit_code)


def _data_activations(target, site, data, pending, config, world, progress) -> tuple[dict, int]:
    """The data's activations of each layer that pending units use: one cached pass per layer
    (:func:`dgnam.eval.exemplars.layer_activations`, cached in ``site/cache``); rank 0 computes, the other
    ranks wait and read the cache."""
    from ..distributed import barrier

    cache = site / "cache"
    by_layer: dict[str, list[Unit]] = {}
    for u in pending:
        by_layer.setdefault(u.layer, []).append(u)
    passes = 0
    if world.rank == 0:
        for layer, units in by_layer.items():
            acts = layer_activations(target, layer, data, units, cache_dir=cache, batch_size=config.data_batch_size, progress=progress)
            passes += not acts.cached
    barrier(world)
    return {layer: layer_activations(target, layer, data, units, cache_dir=cache, batch_size=config.data_batch_size)
            for layer, units in by_layer.items()}, passes


def _compute(target, site, key, units, acts, data, shapes, method, config, progress, rank=0) -> Iterator[Unit]:
    """Compute and write ``units`` in batches, yielding each unit once its ``unit.json`` is written."""
    from tqdm.auto import tqdm

    encoder = _encoder(target, method) if config.accentuate else None
    device = next(target.buffers()).device
    k = exemplar_count(config.k, len(data))
    with tqdm(total=len(units), desc="atlas units", unit="unit", disable=not progress) as bar:
        for start in range(0, len(units), config.units_per_batch):
            batch = units[start : start + config.units_per_batch]
            tick, cpu = time.perf_counter(), time.process_time()
            found = [exemplars(acts[u.layer], u, k) for u in batch]
            seeds = list(config.seeds)
            facets = synthesize(target, [u for u in batch for _ in seeds], seeds * len(batch), method.generator,
                                method.config if method.generator is not None else method.pixel, progress=progress)  # the step bar
            pixel = None
            if config.pixel_baseline and method.generator is not None and method.pixel is not None:
                pixel = synthesize(target, batch, [seeds[0]] * len(batch), None, method.pixel, progress=progress)
            accent = None
            if config.accentuate and (encoder is not None or method.generator is None):
                photos = to_tensor(np.stack([data.image(int(ex.top[0])) for ex in found])).to(device)
                accent = _accentuate(target, batch, seeds[0], method, photos, encoder, progress)
            seconds = ((time.perf_counter() - tick) / len(batch), (time.process_time() - cpu) / len(batch))
            for i, unit in enumerate(batch):
                box = unit_receptive_field(target, unit, data.size) if layer_kind((1, *acts[unit.layer].shape)) == "map" else None
                record = _unit_record(site, key, unit, target, acts[unit.layer].values(unit), found[i], data, box,
                                      facets[i * len(seeds) : (i + 1) * len(seeds)], pixel[i] if pixel else None,
                                      accent[i] if accent else None, method, config, seconds)
                record["rank"] = rank  # the process that computed it (torchrun)
                store.write_unit(site, unit, record)
                bar.update(1)
                yield unit


def exemplar_count(k: int, images: int) -> int:
    """Top and bottom natural images per unit: ``k``, at most half the ``images`` (at least 1), so the top and the
    bottom never share an image."""
    return max(1, min(k, images // 2))


def _encoder(target, method):
    """The prior's encoder for accentuation, or None when the prior names none (then no accentuation)."""
    if method.generator is None:
        return None
    from ..methods.accentuate import prior_encoder

    try:
        return prior_encoder(method.generator, target, method.generator_name)
    except (ValueError, KeyError) as exc:
        print(f"dgnam atlas: no accentuation: {exc}", flush=True)
        return None


def _accentuate(target, batch, seed, method, photos, encoder, progress=False) -> list[Synthesized]:
    from ..methods.accentuate import accentuate

    cfg = method.config if method.generator is not None else method.pixel
    result = accentuate(target, batch, [seed] * len(batch), method.generator, cfg, photos, encoder=encoder, generator_name=method.generator_name,
                        progress=progress)  # fmt: skip
    return [Synthesized(result.images[i], float(result.final[i]), seed) for i in range(len(batch))]


def _array(image: torch.Tensor) -> np.ndarray:
    return (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def _unit_record(site, key, unit, target, column, found, data, box, facets, pixel, accent, method, config, seconds) -> dict:
    """Write a unit's images and return its record (the caller writes ``unit.json`` last)."""
    folder = store.unit_dir(site, unit)
    label = None
    if target.categories and len(target.categories) > unit.index and unit.layer in _output_layers(target):
        label = target.categories[unit.index].split(",")[0].strip()
    record = {"key": key, "unit": str(unit), "layer": unit.layer, "index": unit.index, "slug": store.unit_slug(unit),
              "location": list(unit.location) if isinstance(unit.location, tuple) else unit.location, "label": label,
              "receptive_field": list(box) if box else None,
              "seconds": round(seconds[0], 3), "cpu_seconds": round(seconds[1], 3)}  # per unit: its batch's wall / process time over its units
    record["facets"] = [{"seed": f.seed, "activation": f.activation, "file": store.save_image(folder, f"dgnam_s{f.seed}.png", _array(f.image))}
                        for f in facets]  # fmt: skip
    if pixel is not None:
        record["pixel"] = {"method": method.pixel.method, "seed": pixel.seed, "activation": pixel.activation,
                           "file": store.save_image(folder, "pixel.png", _array(pixel.image))}
    for name, indices in (("top", found.top), ("bottom", found.bottom)):
        crops = exemplar_crops(data, indices, box)
        record[name] = [{"index": int(i), "source": data.names[i], "activation": float(column[i]),
                         "file": store.save_image(folder, f"{name}_{j}.jpg", crops[j])} for j, i in enumerate(indices)]
    if accent is not None:
        top = int(found.top[0])
        record["accent"] = {"source_index": top, "source": data.names[top], "source_activation": float(column[top]),
                            "source_file": store.save_image(folder, "accent_source.jpg", data.image(top)),
                            "activation": accent.activation, "file": store.save_image(folder, "accent.png", _array(accent.image))}
    finite = column[np.isfinite(column)]
    counts, edges = histogram(column, config.bins)
    record["natural"] = {"images": int(len(column)), "max": float(finite.max()) if len(finite) else None,
                         "min": float(finite.min()) if len(finite) else None, "mean": float(finite.mean()) if len(finite) else None,
                         "histogram": {"counts": counts, "edges": edges}}  # fmt: skip
    return record


def _output_layers(target) -> set[str]:
    """Layers whose units are classes (named by ``target.categories``): what the net returns
    (``output``; ``logits`` names it for nets without such a module) and a registered net's ``output_layer``."""
    from ..nets import get_net_spec, list_nets

    layers = {"output", "logits"}
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
    shown = {**settings, "k": exemplar_count(config.k, len(data)), "key": key, "seeds": list(config.seeds), "steps": (method.config or method.pixel).steps,
             "pixel_method": method.pixel.method if method.pixel is not None else None, "data": str(data.path),
             "data_images": next((r["natural"]["images"] for r in records), None), "requested": sorted(wanted),
             "command": list(command), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    claim_files(site, [store.SETTINGS_FILE])
    write_text_atomic(site / store.SETTINGS_FILE, json.dumps(shown, indent=1, default=str))
    return write_site(site, shown, info, records)


def _all_records(site: Path, key: str) -> list[dict]:
    """Every finished unit record of ``key`` under ``site/units`` (files checked)."""
    found = []
    for path in sorted((site / "units").glob(f"*/*/{store.UNIT_FILE}")):
        record = store.load_unit_record(path, key)  # checked against its schema, its images there
        if record is None:
            continue
        try:
            if path.parent.name != store.safe_name(f"{record['slug']}.png")[:-4] or path.parent.parent.name != store.layer_slug(record["layer"]):
                continue  # a record that does not belong to its folder
        except (ValueError, KeyError, TypeError):
            continue
        found.append(record)
    return found


__all__ = ["AtlasMethod", "AtlasSummary", "build_atlas", "open_data", "plan_units", "split_unit_list", "ensure_pool", "default_pool_dir"]
