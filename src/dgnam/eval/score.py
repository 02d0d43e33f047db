"""Scoring a finished run folder, and finding its images' nearest natural images: computation only.

:func:`evaluate_run` takes what a run folder holds (the ``results.json`` record and its images, read
by :func:`dgnam.io.read.read_run`) plus the nets and natural images to compare with, and returns a
:class:`RunEvaluation` built from the measures of :mod:`dgnam.eval.metrics`. :func:`find_neighbors`
ranks natural images by feature distance to each synthesized image. Reading and writing files is the
job of :mod:`dgnam.io.report` and :mod:`dgnam.cli` (``dgnam evaluate``, ``dgnam neighbors``).

Example:
    >>> record, images = read_run("runs/demo")
    >>> natural, _ = load_any("pool/")
    >>> ev = evaluate_run(record, images, load_net("efficientnet_lite0"),
    ...                   {"efficientnet_lite1": load_net("efficientnet_lite1")}, natural)
    >>> ev.summary["judges"]["efficientnet_lite1"]["top5"]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from .metrics import SLOPE_BAND, Images, _forward_layers, _to_nchw, diversity, frechet_distance, judge_pass, mean_saturation, natural_max_activations, relative_activation, spectrum_slope
from ..nets import Target, judge_family, known_class_layers
from ..io.write import json_safe
from ..core.units import Unit, read_unit


@dataclass
class EvaluateConfig:
    """Settings of :func:`evaluate_run`.

    Attributes:
        feature_layer: The judges' layer whose (flattened) output is the feature vector of the
            Fréchet distance and of seed diversity. ``"pool"``: EfficientNet-Lite's globally pooled
            penultimate layer, the analogue of FID's Inception pool3.
        output_layers: Layers whose units are classes (the target's top-1 and the judges' top-k are
            scored only for units of these layers). Default: ``logits``, ``output`` and every registered
            net's ``output_layer`` (:func:`dgnam.nets.known_class_layers`; CaffeNet's ``fc8``).
        ks: The k of the judges' top-k hit rates.
        natural_images: Use at most this many natural images (a fixed draw, seed 0): the reference
            costs one forward pass per image and net.
        batch_size: Images per forward pass.
    """

    feature_layer: str = "pool"
    output_layers: tuple[str, ...] = field(default_factory=known_class_layers)
    ks: tuple[int, ...] = (1, 5)
    natural_images: int = 500
    batch_size: int = 32


@dataclass
class RunEvaluation:
    """What :func:`evaluate_run` measured. ``to_dict()`` gives the JSON-ready form.

    Attributes:
        summary: Aggregates over the run: ``target_top1``, ``judges`` (per judge ``top1``/``top5``/
            ``frechet_distance``/``diversity``), ``relative_activation``, ``spectrum_slope``,
            ``saturation``, ``diversity``, ``speed``.
        items: One record per image, in the order of ``results.json``.
        natural: The natural reference (number of images, slope and saturation statistics), or None.
        notes: Caveats a reader needs (a judge that is the target, too few images for the Fréchet
            distance ...).
        config: The resolved :class:`EvaluateConfig`.
    """

    summary: dict
    items: list[dict]
    natural: dict | None = None
    notes: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return json_safe(asdict(self))


# --------------------------------------------------------------------------------------------------
# Forward passes
# --------------------------------------------------------------------------------------------------


def layer_features(net: Target, layer: str, images: Images, batch_size: int = 32) -> np.ndarray:
    """The flattened output of ``layer`` for each image, e.g. a judge's pooled penultimate features.

    Args:
        net: Any target; images of any size are brought to its native size by the target.
        layer: A module name of ``net.model`` or ``"output"``.
        images: N images (layouts of :mod:`dgnam.eval.metrics`).
        batch_size: Images per forward pass.

    Returns:
        float32 array (N, D).

    Example:
        >>> feats = layer_features(load_net("efficientnet_lite1"), "pool", images)  # (N, 1280)
    """
    parts = [acts[layer].flatten(1).float().cpu().numpy() for _, acts in _forward_layers(net, [layer], images, batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def unit_activations(net: Target, units: Sequence[Unit], images: Images, batch_size: int = 32) -> np.ndarray:
    """Activation of ``units[i]`` on ``images[i]``, read as in the optimization (:func:`~dgnam.core.units.read_unit`).

    Returns:
        float array (N,).
    """
    return _unit_pass(net, units, images, np.zeros(len(units), dtype=bool), batch_size)[0]


def _unit_pass(net: Target, units: Sequence[Unit], images: Images, is_class: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One forward pass: the activation of ``units[i]`` on ``images[i]`` and, where ``is_class[i]``,
    the rank (1 = top) of the unit's class in its own layer and that layer's top class (-1 elsewhere)."""
    units = list(units)
    if len(units) != len(images):
        raise ValueError(f"{len(images)} images but {len(units)} units")
    layers = list(dict.fromkeys(u.layer for u in units))
    values = np.zeros(len(units))
    ranks, preds = np.full(len(units), -1, dtype=np.int64), np.full(len(units), -1, dtype=np.int64)
    for start, acts in _forward_layers(net, layers, images, batch_size):
        chunk = units[start : start + batch_size]
        for layer in dict.fromkeys(u.layer for u in chunk):
            rows = [i for i, u in enumerate(chunk) if u.layer == layer]
            read = read_unit(acts[layer][rows], [chunk[i] for i in rows])
            values[[start + i for i in rows]] = read.float().cpu().numpy()
        for i, unit in enumerate(chunk):
            if is_class[start + i]:
                scores = acts[unit.layer][i].flatten().float()
                ranks[start + i] = 1 + int((scores > scores[unit.index]).sum())
                preds[start + i] = int(scores.argmax())
    return values, ranks, preds


# --------------------------------------------------------------------------------------------------
# A run folder's record
# --------------------------------------------------------------------------------------------------


def item_unit(item: Mapping) -> Unit:
    """The :class:`~dgnam.core.units.Unit` of one ``results.json`` item (``layer``, ``index``, ``location``)."""
    loc = item.get("location")
    return Unit(item["layer"], int(item["index"]), tuple(loc) if isinstance(loc, list) else loc)


def run_speed(record: Mapping) -> dict | None:
    """Seconds per image and per unit (all its seeds), images and units per minute, from ``results.json``.

    Uses the optimization time of ``record["timing"]`` (wall time of each batch, written by
    :class:`~dgnam.io.write.RunWriter`) when present, else the run's total ``seconds`` (which also
    counts loading and writing files; ``source`` says which). None when neither is recorded.
    """
    items = record.get("items") or []
    if not items:
        return None
    timing = record.get("timing") or {}
    if timing.get("optimize_seconds") is not None:
        seconds, source = float(timing["optimize_seconds"]), "timing.optimize_seconds (optimization wall time)"
    elif record.get("seconds") is not None:
        seconds, source = float(record["seconds"]), "seconds (whole run, incl. writing files)"
    else:
        return None
    n_units = len({(it["layer"], it["index"], str(it.get("location"))) for it in items})
    per_image = seconds / len(items)
    per_unit = seconds / n_units
    return {
        "seconds": round(seconds, 3),
        "images": len(items),
        "units": n_units,
        "seconds_per_image": round(per_image, 4),
        "images_per_minute": round(60.0 / per_image, 3) if per_image > 0 else None,
        "seconds_per_unit": round(per_unit, 4),
        "units_per_minute": round(60.0 / per_unit, 3) if per_unit > 0 else None,
        "device": record.get("device"),
        "source": source,
    }


def _same_classes(a: Target, b: Target) -> str | None:
    """None when ``b``'s outputs can be read with ``a``'s class indices, else the reason why not."""
    if a.categories is not None and b.categories is not None and tuple(a.categories) != tuple(b.categories):
        return f"judge {b.name!r} has other categories than the target {a.name!r}"
    return None


def _stats(x: np.ndarray, digits: int = 4) -> dict:
    x = np.asarray(x, dtype=np.float64)
    ok = x[np.isfinite(x)]
    if not len(ok):
        return {"n": 0, "median": None, "mean": None}
    return {"n": int(len(ok)), "median": round(float(np.median(ok)), digits), "mean": round(float(ok.mean()), digits)}


def _fd_or_note(a: np.ndarray, b: np.ndarray, name: str, notes: list[str]) -> float | None:
    if len(a) < 2 or len(b) < 2:
        notes.append(f"{name}: the Fréchet distance needs at least 2 synthesized and 2 natural images")
        return None
    return round(frechet_distance(a, b), 4)


# --------------------------------------------------------------------------------------------------
# evaluate_run
# --------------------------------------------------------------------------------------------------


def evaluate_run(
    record: Mapping,
    images: Images,
    target: Target | None = None,
    judges: Mapping[str, Target] | None = None,
    natural: Images | None = None,
    config: EvaluateConfig | None = None,
) -> RunEvaluation:
    """Score the images of a run folder.

    Per image: the target's rank of the unit's class (class units only), each judge's rank and top
    class, the unit's activation recomputed from the saved image and relative to its highest
    activation over ``natural`` images, the power-spectrum slope and the mean saturation. Over the
    run: the hit rates, the Fréchet distance between each judge's ``feature_layer`` features of the
    run's images and of ``natural``, the mean pairwise cosine distance between the seeds of each unit
    in the first judge's features (:func:`~dgnam.eval.metrics.diversity`), and the speed recorded in
    ``results.json``.

    Args:
        record: The parsed ``results.json`` (its ``items`` say which unit and seed each image is).
        images: The run's images in the order of ``record["items"]``, (N, H, W, 3) uint8 as read from
            the PNGs (or a (N, 3, H, W) tensor in [0, 1]).
        target: The net the run optimized (``record["net"]``); None skips the target's top-1 and the
            activations.
        judges: ``name -> net`` of nets that were never optimized against (EfficientNet-Lite1/2, and
            SqueezeNet v1.1 of another family): their top-k says whether an independent classifier sees
            the class; each judge's entry records its ``family`` relative to ``record["net"]``.
        natural: Natural images (e.g. a pool's ``images.npy``) for the relative activation, the
            Fréchet distance and the slope/saturation reference; None skips those.
        config: :class:`EvaluateConfig`; None takes the defaults.

    Returns:
        A :class:`RunEvaluation`.

    Raises:
        ValueError: the number of images does not match the record's items.
    """
    config = config or EvaluateConfig()
    items_in = list(record.get("items") or [])
    if len(items_in) != len(images):
        raise ValueError(f"{len(images)} images for {len(items_in)} items in results.json")
    if not items_in:
        raise ValueError("the run has no images (results.json lists no items)")
    notes: list[str] = []
    units = [item_unit(it) for it in items_in]
    natural_sample = _natural_sample(natural, config.natural_images)
    items = [
        {
            "unit": it.get("unit", str(u)), "label": it.get("label", str(u)), "seed": it.get("seed"), "file": it.get("file"),
            "recorded_activation": it.get("final_activation"),
        }
        for it, u in zip(items_in, units)
    ]  # fmt: skip
    shape = _to_nchw(images[:1]).shape
    summary: dict = {"images": len(units), "units": len(set(units)), "image_px": [int(shape[2]), int(shape[3])]}
    is_class = np.array([u.layer in config.output_layers and u.location is None for u in units])
    if target is not None:  # BatchNorm folded where that leaves the units' layers unchanged (EfficientNet-Lite)
        target = target.fast([u.layer for u in units])
    judges = {name: judge.fast([config.feature_layer]) for name, judge in dict(judges or {}).items()}
    summary["class_images"] = int(is_class.sum())
    summary.update(_score_target(target, units, images, is_class, natural_sample, items, notes, config.batch_size))
    by_unit: dict[Unit, list[int]] = {}
    for i, u in enumerate(units):
        by_unit.setdefault(u, []).append(i)
    summary["judges"] = {}
    for name, judge in judges.items():
        summary["judges"][name] = _score_judge(name, judge, record.get("net"), target, images, units, is_class, by_unit, natural_sample, items, notes, config)
    # diversity in the first judge's features (the headline number), else none
    first = next(iter(summary["judges"].values()), None)
    summary["diversity"] = first["diversity"] if first else None
    if first:
        for item, u in zip(items, units):
            item["diversity"] = first["diversity_per_unit"].get(str(u))
    natural_info = _image_statistics(images, natural_sample, items, summary)
    summary["spectrum_band_cycles_per_px"] = list(SLOPE_BAND)
    summary["speed"] = run_speed(record)
    if summary["speed"] is None:
        notes.append("results.json records no timing: no speed")
    return RunEvaluation(summary=summary, items=items, natural=natural_info, notes=list(dict.fromkeys(notes)), config=asdict(config))


def _natural_sample(natural: Images | None, most: int) -> Images | None:
    """At most ``most`` of the ``natural`` images (a fixed draw, seed 0, in their order); None for None."""
    if natural is None:
        return None
    if len(natural) == 0:
        raise ValueError("no natural images given")
    idx = np.arange(len(natural))
    if len(idx) > most:
        idx = np.sort(np.random.default_rng(0).choice(idx, size=most, replace=False))
    return natural[idx] if isinstance(natural, torch.Tensor) else np.asarray(natural[idx])


def _score_target(
    target: Target | None, units: list[Unit], images: Images, is_class: np.ndarray, natural_sample: Images | None,
    items: list[dict], notes: list[str], bs: int,
) -> dict:  # fmt: skip
    """The target's class rank and the units' activations (absolute and relative to the natural maximum):
    written into ``items``; returns the summary's ``target_top1``, ``activation`` and ``relative_activation``."""
    summary: dict = {"target_top1": None}
    acts = rel = None
    if target is not None:
        acts, ranks, preds = _unit_pass(target, units, images, is_class, bs)
        for item, a in zip(items, acts):
            item["activation"] = round(float(a), 5)
        if is_class.any():
            rows = np.flatnonzero(is_class)
            for i in rows:
                items[i]["target_rank"] = int(ranks[i])
                items[i]["target_pred"] = int(preds[i])
                items[i]["target_top1"] = bool(ranks[i] == 1)
            summary["target_top1"] = round(float((ranks[rows] == 1).mean()), 4)
        if natural_sample is not None:
            distinct = list(dict.fromkeys(units))
            top = natural_max_activations(target, distinct, natural_sample, batch_size=bs)
            top_of = dict(zip(distinct, top))
            natural_max = np.array([top_of[u] for u in units])
            rel = relative_activation(acts, natural_max)
            for item, m, r in zip(items, natural_max, rel):
                item["natural_max"] = round(float(m), 5)
                item["relative_activation"] = None if np.isnan(r) else round(float(r), 4)
            if np.isnan(rel).any():
                notes.append("relative activation is undefined (null) where the natural maximum is <= 0")
    summary["activation"] = _stats(acts) if acts is not None else None
    summary["relative_activation"] = _stats(rel) if rel is not None else None
    return summary


def _score_judge(
    name: str, judge: Target, run_net: str | None, target: Target | None, images: Images, units: list[Unit],
    is_class: np.ndarray, by_unit: dict[Unit, list[int]], natural_sample: Images | None, items: list[dict],
    notes: list[str], config: EvaluateConfig,
) -> dict:  # fmt: skip
    """One judge's top-k (written per image into ``items``), seed diversity and Fréchet distance: its summary entry."""
    bs = config.batch_size
    entry: dict = {"net": judge.name, "input_px": list(judge.spec.size), "feature_layer": config.feature_layer,
                   "family": judge_family(name, run_net)}  # out-of-family: an independent vote
    if run_net in (name, judge.name):
        notes.append(f"judge {name!r} is the optimized net: its top-k measures how well it was fooled, not recognition")
    rows = np.flatnonzero(is_class)
    reason = _same_classes(target, judge) if target is not None else None
    ranked = len(rows) > 0 and reason is None
    labels = np.array([u.index if c and ranked else -1 for u, c in zip(units, is_class)])
    jranks, jpreds, feats = judge_pass(judge, images, labels, config.feature_layer, bs)  # one pass for both
    if ranked:
        cats = judge.categories
        for i in rows:
            rank, pred = int(jranks[i]), int(jpreds[i])
            items[i].setdefault("judges", {})[name] = {
                "rank": rank, "pred": pred, "pred_label": cats[pred].split(",")[0] if cats and pred < len(cats) else str(pred),
                **{f"top{k}": rank <= k for k in config.ks},
            }  # fmt: skip
        for k in config.ks:
            entry[f"top{k}"] = round(float((jranks[rows] <= k).mean()), 4)
    elif reason:
        notes.append(reason + ": no top-k")
    per_unit = {str(u): diversity([feats[ix]]) for u, ix in by_unit.items() if len(ix) >= 2}
    entry["diversity"] = None if not per_unit else round(diversity([feats[ix] for ix in by_unit.values()]), 4)
    entry["diversity_per_unit"] = {u: round(v, 4) for u, v in per_unit.items()}
    if natural_sample is not None:
        nat = layer_features(judge, config.feature_layer, natural_sample, bs)
        entry["frechet_distance"] = _fd_or_note(feats, nat, name, notes)
        entry["frechet_natural_images"] = int(len(nat))
        if len(feats) < 10 * feats.shape[1]:  # far too few samples for a D x D covariance
            notes.append(
                f"{name}: {len(feats)} images for {feats.shape[1]}-d features: the Fréchet distance is biased "
                "upwards and depends on the number of images; compare runs of equal size only"
            )
    return entry


def _image_statistics(images: Images, natural_sample: Images | None, items: list[dict], summary: dict) -> dict | None:
    """Power-spectrum slope and saturation per image (into ``items``) and over the run (into ``summary``);
    returns the natural reference's statistics (None without natural images)."""
    small = min(summary["image_px"]) < 16
    slopes = np.full(len(items), np.nan) if small else spectrum_slope(images)
    sat = mean_saturation(images)
    for item, s, m in zip(items, slopes, sat):
        item["spectrum_slope"] = None if np.isnan(s) else round(float(s), 3)
        item["saturation"] = round(float(m), 4)
    summary["spectrum_slope"] = _stats(slopes, 3)
    summary["saturation"] = _stats(sat)
    if natural_sample is None:
        return None
    nat_px = _to_nchw(natural_sample[:1]).shape[-1]
    nslopes = spectrum_slope(natural_sample) if nat_px >= 16 else np.full(len(natural_sample), np.nan)
    nsat = mean_saturation(natural_sample)
    ok = nslopes[np.isfinite(nslopes)]
    natural_info = {
        "images": int(len(natural_sample)),
        "image_px": int(nat_px),
        "spectrum_slope": _stats(nslopes, 3),
        "spectrum_slope_p5": round(float(np.percentile(ok, 5)), 3) if len(ok) else None,
        "spectrum_slope_p95": round(float(np.percentile(ok, 95)), 3) if len(ok) else None,
        "saturation": _stats(nsat),
    }
    if len(ok) and np.isfinite(slopes).any():
        lo, hi = natural_info["spectrum_slope_p5"], natural_info["spectrum_slope_p95"]
        fin = slopes[np.isfinite(slopes)]
        summary["spectrum_slope"]["within_natural_p5_p95"] = round(float(((fin >= lo) & (fin <= hi)).mean()), 4)
    return natural_info


# --------------------------------------------------------------------------------------------------
# Nearest neighbours
# --------------------------------------------------------------------------------------------------


@dataclass
class Neighbors:
    """The k nearest data images of each query.

    Attributes:
        index: int array (Q, k): data indices, nearest first.
        distance: float array (Q, k): their distances (see ``metric``).
        metric: ``"cosine"`` (``1 - cos``, 0 for the same direction, 2 for the opposite) or ``"l2"``
            (Euclidean distance of the raw features).
    """

    index: np.ndarray
    distance: np.ndarray
    metric: str


METRICS = ("cosine", "l2")


def nearest_neighbors(queries: np.ndarray | torch.Tensor, data: np.ndarray | torch.Tensor, k: int = 5, metric: str = "cosine", chunk: int = 4096) -> Neighbors:
    """The ``k`` rows of ``data`` nearest to each row of ``queries``.

    Args:
        queries: (Q, D) features.
        data: (M, D) features.
        k: Neighbours per query (at most M).
        metric: ``"cosine"`` or ``"l2"`` (see :class:`Neighbors`).
        chunk: Data rows compared at a time (bounds memory for large sets).

    Returns:
        :class:`Neighbors`; ties are broken by the lower data index.

    Example:
        >>> nn_ = nearest_neighbors(np.eye(3), np.eye(3)[[2, 0, 1]], k=1)
        >>> nn_.index[:, 0], nn_.distance[:, 0]
        (array([1, 2, 0]), array([0., 0., 0.]))
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    q = np.asarray(queries.detach().cpu() if isinstance(queries, torch.Tensor) else queries, dtype=np.float64).reshape(len(queries), -1)
    d = np.asarray(data.detach().cpu() if isinstance(data, torch.Tensor) else data, dtype=np.float64).reshape(len(data), -1)
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"feature sizes differ: queries {q.shape[1]}, data {d.shape[1]}")
    if not 1 <= k <= len(d):
        raise ValueError(f"k must be 1-{len(d)} (the number of data images), got {k}")
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    best_d = np.full((len(q), 0), np.inf)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for start in range(0, len(d), chunk):
        block = d[start : start + chunk]
        if metric == "cosine":
            block = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
            dist = 1.0 - q @ block.T
        else:
            sq = (q**2).sum(1)[:, None] + (block**2).sum(1)[None, :] - 2.0 * q @ block.T
            dist = np.sqrt(np.maximum(sq, 0.0))
        dist = np.maximum(dist, 0.0)  # rounding can make 1 - cos slightly negative
        cand_d = np.concatenate([best_d, dist], 1)
        cand_i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + len(block)), dist.shape)], 1)
        order = np.lexsort((cand_i, cand_d), axis=1)[:, :k]  # by distance, then by index
        best_d = np.take_along_axis(cand_d, order, 1)
        best_i = np.take_along_axis(cand_i, order, 1)
    return Neighbors(index=best_i, distance=best_d, metric=metric)


def find_neighbors(net: Target, layer: str, queries: Images, data: Images, k: int = 5, metric: str = "cosine", batch_size: int = 32) -> Neighbors:
    """Nearest ``data`` images of each query image in the feature space of ``net``'s ``layer``.

    Args:
        net: Feature net (each image brought to its native size by the target).
        layer: Its layer, e.g. ``"pool"`` for EfficientNet-Lite's pooled penultimate features.
        queries: Synthesized images.
        data: Natural images (a pool's ``images.npy``, a memory map works).
        k: Neighbours per query.
        metric: ``"cosine"`` or ``"l2"``.
        batch_size: Images per forward pass.

    Returns:
        :class:`Neighbors`.

    Example:
        >>> nb = find_neighbors(load_net("efficientnet_lite0"), "pool", run_images, pool_images, k=5)
    """
    if metric not in METRICS:  # fail before the forward passes
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    qf = layer_features(net, layer, queries, batch_size)
    df = _features_in_chunks(net, layer, data, batch_size)
    return nearest_neighbors(qf, df, k=k, metric=metric)


def _features_in_chunks(net: Target, layer: str, data: Images, batch_size: int, chunk: int = 1024) -> np.ndarray:
    """Features of a possibly memory-mapped array, reading ``chunk`` images at a time."""
    parts = []
    for start in range(0, len(data), chunk):
        block = data[start : start + chunk]
        parts.append(layer_features(net, layer, block if isinstance(block, torch.Tensor) else np.asarray(block), batch_size))
    return np.concatenate(parts)


__all__ = [
    "EvaluateConfig", "METRICS", "Neighbors", "RunEvaluation", "evaluate_run", "find_neighbors", "item_unit",
    "judge_pass", "layer_features", "nearest_neighbors", "run_speed", "unit_activations",
]  # fmt: skip
