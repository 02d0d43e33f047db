"""Automated psychophysics and faithfulness of feature visualizations: computation only, no files.

Two questions a sceptic asks of any preferred-input method, answered without people:

- **Do the images explain the unit?** :func:`two_afc_choices` runs the two-alternative forced-choice
  task of Borowski et al. (ICLR 2021, "Exemplary natural images explain CNN activations better than
  state-of-the-art feature visualization"). Per hidden unit a subject sees references (9 images that
  drive the unit most and 9 that drive it least: synthesized by a method, or natural exemplars) and
  two held-out natural queries, one strongly and one weakly activating, and must say which query is
  the strong one. People reached 92 +/- 2 % with natural references and 82 +/- 4 % with synthetic
  ones. Here the subject is a perceptual embedding (a net that took no part in making the images):
  it picks the query whose mean similarity to the max references minus its mean similarity to the
  min references is larger (a tie counts 1/2, so a constant embedding scores 50 %).
- **Does the net see the image as it sees the unit's natural images?** :func:`faithfulness` after
  Geirhos, Zimmermann et al. (ICML 2024, "Don't trust your eyes"), who showed that a feature
  visualization can drive a unit through a processing path unlike that of natural images. Per unit,
  the synthesized image's activations in an *earlier* layer of the target (the mean over the unit's
  receptive-field window) are compared with the same features of the natural exemplars of every unit
  in the set; the score is how often the nearest exemplar set is the unit's own (chance: 1 / units).

Example:
    >>> ref, query = split_references_queries(len(data))
    >>> trial = natural_trials(acts.values(unit), ref, query, references=9, trials=5)
    >>> e = embed_images(load_net("squeezenet1_1"), "fire9", crops)   # the subject
    >>> two_afc_choices(e_max, e_min, e_strong, e_weak).mean()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core.hooks import OUTPUT, layer_output
from ..nets import Target

# --------------------------------------------------------------------------------------------------
# The subject: a perceptual embedding
# --------------------------------------------------------------------------------------------------


def _to_batch(images: Sequence[np.ndarray] | np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Images of any sizes ((H, W, 3) uint8, or float in [0, 1]) -> (N, 3, size) float in [0, 1]."""
    out = []
    for image in images:
        a = np.asarray(image)
        t = torch.from_numpy(np.array(a)).permute(2, 0, 1).float()  # a copy: memory-mapped pool images are read-only
        t = t / 255.0 if a.dtype == np.uint8 else t
        if tuple(t.shape[1:]) != tuple(size):
            big = t.shape[1] > size[0] or t.shape[2] > size[1]
            t = F.interpolate(t[None], size=size, mode="bilinear", align_corners=False, antialias=big)[0]
        out.append(t)
    return torch.stack(out) if out else torch.zeros(0, 3, *size)


@torch.no_grad()
def layer_outputs(net: Target, layer: str, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """``layer``'s output for (N, 3, H, W) images in [0, 1], the pass stopped at the layer."""
    device = next(net.buffers()).device
    parts = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        parts.append(layer_output(net, layer, batch).float().cpu())
    if not parts:
        raise ValueError("no images given")
    return torch.cat(parts)


def embed_images(subject: Target, layer: str, images: Sequence[np.ndarray], size: tuple[int, int] | None = None, batch_size: int = 32) -> np.ndarray:
    """A perceptual embedding: ``subject``'s ``layer`` output, averaged over space for maps.

    Args:
        subject: A net that took no part in making the images (not the target, not the prior's
            encoder or comparator), e.g. ``load_net("squeezenet1_1")``.
        layer: Its layer, e.g. ``"fire9"``.
        images: Crops of any sizes, (H, W, 3) uint8 (or float in [0, 1]); each is resized to ``size``.
        size: Input size; None: the subject's native size.
        batch_size: Images per forward pass.

    Returns:
        float32 (N, D).
    """
    size = tuple(size or subject.spec.size)
    out = layer_outputs(subject, layer, _to_batch(images, size), batch_size)
    if out.dim() == 4:
        out = out.mean(dim=(2, 3))
    elif out.dim() == 3:
        out = out.mean(dim=1)
    return out.numpy().astype(np.float32)


# --------------------------------------------------------------------------------------------------
# 2AFC (Borowski et al. 2021)
# --------------------------------------------------------------------------------------------------


def split_references_queries(n: int, query_fraction: float = 0.5, seed: int = 0, groups: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random split of ``n`` image indices into reference and query images (both sorted).

    Args:
        n: Number of images.
        query_fraction: Fraction of the images held out as queries (about, when split by group).
        seed: Seed of the split.
        groups: Per image, the original photo it comes from (:attr:`NaturalImages.groups`): all
            images of a group fall on one side, so no query is a crop of a reference's photo.

    Raises:
        ValueError: a fraction outside (0, 1) or a side left empty.
    """
    if not 0 < query_fraction < 1:
        raise ValueError(f"query_fraction must lie in (0, 1), got {query_fraction}")
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(n)
        n_query = int(round(n * query_fraction))
        is_query = np.zeros(n, dtype=bool)
        is_query[order[:n_query]] = True
    else:
        if len(groups) != n:
            raise ValueError(f"{len(groups)} groups for {n} images")
        names = sorted(set(groups))
        members = {g: [] for g in names}
        for i, g in enumerate(groups):
            members[g].append(i)
        is_query = np.zeros(n, dtype=bool)
        for g in (names[j] for j in rng.permutation(len(names))):  # whole groups, until the fraction is reached
            if is_query.sum() >= query_fraction * n:
                break
            is_query[members[g]] = True
    if is_query.all() or not is_query.any():
        raise ValueError(f"{n} images cannot be split into references and queries at fraction {query_fraction}")
    return np.flatnonzero(~is_query), np.flatnonzero(is_query)


@dataclass
class NaturalTrials:
    """Indices (into the data) of one unit's natural references and queries.

    Attributes:
        max_refs: The reference split's ``references`` strongest images, strongest first.
        min_refs: Its ``references`` weakest, weakest first.
        strong: The query split's ``trials`` strongest, strongest first.
        weak: Its ``trials`` weakest, weakest first (trial t pairs ``strong[t]`` with ``weak[t]``).
    """

    max_refs: np.ndarray
    min_refs: np.ndarray
    strong: np.ndarray
    weak: np.ndarray


def natural_trials(values: np.ndarray, reference_idx: np.ndarray, query_idx: np.ndarray, references: int = 9, trials: int = 5) -> NaturalTrials:
    """Choose one unit's natural references and queries from its activations over the data.

    Args:
        values: (N,) activations of the unit over all images (:meth:`LayerActivations.values`).
        reference_idx: Indices of the reference split (:func:`split_references_queries`).
        query_idx: Indices of the query split.
        references: References per end.
        trials: Query pairs.

    Returns:
        :class:`NaturalTrials` (ties broken by image order).

    Raises:
        ValueError: a split too small for the counts asked for.
    """
    values = np.asarray(values)
    if references < 1 or trials < 1:
        raise ValueError(f"references and trials must be at least 1, got {references} and {trials}")
    if 2 * references > len(reference_idx):
        raise ValueError(f"{references} max and {references} min references need {2 * references} reference images; the split has {len(reference_idx)}")
    if 2 * trials > len(query_idx):
        raise ValueError(f"{trials} query pairs need {2 * trials} query images; the split has {len(query_idx)}")
    ref = reference_idx[np.argsort(-values[reference_idx], kind="stable")]
    qry = query_idx[np.argsort(-values[query_idx], kind="stable")]
    return NaturalTrials(ref[:references], ref[::-1][:references], qry[:trials], qry[::-1][:trials])


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    a = np.divide(a, na, out=np.zeros_like(a), where=na > 0)
    b = np.divide(b, nb, out=np.zeros_like(b), where=nb > 0)
    return a @ b.T


def preference(queries: np.ndarray, max_refs: np.ndarray, min_refs: np.ndarray) -> np.ndarray:
    """Each query's mean cosine similarity to the max references minus that to the min references."""
    return _cosine(queries, max_refs).mean(1) - _cosine(queries, min_refs).mean(1)


def two_afc_choices(max_refs: np.ndarray, min_refs: np.ndarray, strong: np.ndarray, weak: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """The subject's answer in each trial: 1 right, 0 wrong, 0.5 a tie (a guess).

    The subject picks, of the two queries, the one with the larger :func:`preference` (closer to
    the max references than to the min references, in mean cosine similarity of the embeddings).

    Args:
        max_refs: (R, D) embeddings of the max references.
        min_refs: (R', D) embeddings of the min references.
        strong: (T, D) embeddings of the strongly activating queries.
        weak: (T, D) embeddings of the weakly activating queries, paired with ``strong``.
        tol: Preferences closer than this count as a tie.

    Returns:
        float array (T,).

    Example:
        >>> two_afc_choices(e[max_i], e[min_i], e[strong_i], e[weak_i]).mean()  # accuracy of one unit
    """
    strong, weak = np.atleast_2d(strong), np.atleast_2d(weak)
    if len(strong) != len(weak):
        raise ValueError(f"{len(strong)} strong but {len(weak)} weak queries: give pairs")
    if not len(max_refs) or not len(min_refs):
        raise ValueError("the subject needs at least one max and one min reference")
    diff = preference(strong, max_refs, min_refs) - preference(weak, max_refs, min_refs)
    return np.where(np.abs(diff) <= tol, 0.5, (diff > 0).astype(np.float64))


# --------------------------------------------------------------------------------------------------
# Faithfulness (Geirhos, Zimmermann et al. 2024)
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def earlier_layer(target: Target, layer: str) -> str:
    """A layer about half-way to ``layer``, for :func:`faithfulness`.

    Among the (N, C, H, W) maps computed before ``layer`` at its own nesting level (its siblings,
    and the children of sibling containers that are not called themselves, e.g. a ``ModuleList``
    of blocks), the middle one in forward order: ``_blocks.3`` for EfficientNet-Lite's
    ``_blocks.7``, ``_blocks.8`` for its ``logits``.

    Raises:
        ValueError: no map is computed before ``layer`` at that level (name one yourself).
    """
    modules = dict(target.model.named_modules())
    order: list[tuple[str, int]] = []
    handles = []
    try:
        for name, module in modules.items():
            if name:
                handles.append(module.register_forward_hook(lambda m, i, o, name=name: order.append((name, o.dim() if isinstance(o, torch.Tensor) else 0))))
        h, w = target.spec.size
        target(torch.zeros(1, 3, h, w, device=next(target.buffers()).device))
    finally:
        for handle in handles:
            handle.remove()
    called = {name for name, _ in order}
    parent = layer.rpartition(".")[0]
    uncalled = {n for n in modules if n and n.rpartition(".")[0] == parent and n not in called}

    def level(name: str) -> bool:
        up = name.rpartition(".")[0]
        return up == parent or up in uncalled

    before = []
    for name, dim in order:
        if name == layer:
            break
        if dim == 4 and level(name) and name not in before:
            before.append(name)
    else:
        if layer != OUTPUT:
            raise ValueError(f"layer {layer!r} was not called by the forward pass")
    if not before:
        raise ValueError(f"no feature map is computed before {layer!r} at its level: name an earlier layer")
    return before[len(before) // 2]


def window(box: tuple[int, int, int, int] | None, map_hw: tuple[int, int], image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """A receptive-field ``box`` in input pixels -> the (top, left, bottom, right) cells of a map that cover it."""
    h, w = map_hw
    if box is None:
        return 0, 0, h, w
    H, W = image_hw
    top, left = int(np.floor(box[0] * h / H)), int(np.floor(box[1] * w / W))
    bottom, right = int(np.ceil(box[2] * h / H)), int(np.ceil(box[3] * w / W))
    return top, left, max(bottom, top + 1), max(right, left + 1)


def window_features(target: Target, layer: str, images: Sequence[np.ndarray] | np.ndarray | torch.Tensor, box: tuple[int, int, int, int] | None, batch_size: int = 32) -> np.ndarray:
    """Each image's ``layer`` map averaged over the window that covers ``box``.

    Args:
        target: The net.
        layer: An earlier layer with (N, C, H, W) output (:func:`earlier_layer`).
        images: Whole images of any size (a (N, 3, H, W) tensor in [0, 1], or (H, W, 3) arrays);
            each is brought to the target's native size.
        box: The unit's receptive field in native-size pixels
            (``receptive_field_box(target, unit, target.spec.size)``); None: the whole map.
        batch_size: Images per forward pass.

    Returns:
        float32 (N, C).
    """
    size = tuple(target.spec.size)
    batch = images.float() if isinstance(images, torch.Tensor) else _to_batch(images, size)
    out = layer_outputs(target, layer, batch, batch_size)
    if out.dim() != 4:
        raise ValueError(f"layer {layer!r} gives {tuple(out.shape[1:])}, not a (C, H, W) map: choose a convolutional layer")
    t, l, b, r = window(box, tuple(out.shape[2:]), size)
    return out[:, :, t:b, l:r].mean(dim=(2, 3)).numpy().astype(np.float32)


@dataclass
class Faithfulness:
    """What :func:`faithfulness` found.

    Attributes:
        rank: Per image, the rank of its own unit's exemplar set among all sets (1 = nearest).
        accuracy: Fraction of images whose nearest set is their unit's own.
        chance: 1 / number of sets.
        mean_rank: Mean of ``rank``.
        rank_score: Mean over images of the fraction of other units' sets that are farther than the
            own set, ``1 - (rank - 1) / (sets - 1)``: 1 when the own set is always nearest, 0.5 by
            chance. Steadier than ``accuracy`` with few units.
        similarity: Per image, cosine similarity to its own set's centroid (standardized features).
    """

    rank: np.ndarray
    accuracy: float
    chance: float
    mean_rank: float
    rank_score: float = float("nan")
    similarity: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict:
        return {"accuracy": round(self.accuracy, 4), "rank_score": round(self.rank_score, 4), "chance": round(self.chance, 4),
                "mean_rank": round(self.mean_rank, 3), "images": int(len(self.rank)), "sets": int(round(1 / self.chance)) if self.chance else 0}  # fmt: skip


def faithfulness(image_features: np.ndarray, owners: Sequence[object], exemplar_features: Mapping[object, np.ndarray]) -> Faithfulness:
    """Is each image nearest to its own unit's natural exemplars in an earlier layer?

    Features are standardized per channel (mean and std over all exemplars of all units), each unit's
    exemplars averaged into a centroid, and every image ranks the centroids by cosine similarity.

    Args:
        image_features: (N, C) features of the images judged (:func:`window_features`; each in its own
            unit's window).
        owners: The unit (any hashable key of ``exemplar_features``) of each image.
        exemplar_features: ``unit -> (k, C)`` features of its natural exemplars, each unit's in its own
            window. At least two units.

    Returns:
        :class:`Faithfulness`.
    """
    keys = list(exemplar_features)
    if len(keys) < 2:
        raise ValueError("faithfulness needs the exemplars of at least two units to choose from")
    missing = [o for o in owners if o not in exemplar_features]
    if missing:
        raise ValueError(f"no exemplars for {missing[0]!r}")
    feats = np.asarray(image_features, dtype=np.float64)
    if len(feats) != len(owners):
        raise ValueError(f"{len(feats)} images but {len(owners)} owners")
    pooled = np.concatenate([np.asarray(exemplar_features[k], dtype=np.float64) for k in keys])
    mu, sd = pooled.mean(0), pooled.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    centroids = np.stack([((np.asarray(exemplar_features[k], dtype=np.float64) - mu) / sd).mean(0) for k in keys])
    sims = _cosine((feats - mu) / sd, centroids)  # (N, units)
    own = np.array([keys.index(o) for o in owners])
    own_sim = sims[np.arange(len(own)), own]
    rank = 1 + (sims > own_sim[:, None]).sum(1)
    empty = not len(rank)
    return Faithfulness(rank=rank, accuracy=float("nan") if empty else float((rank == 1).mean()), chance=1.0 / len(keys),
                        mean_rank=float("nan") if empty else float(rank.mean()),
                        rank_score=float("nan") if empty else float(np.mean(1 - (rank - 1) / (len(keys) - 1))), similarity=own_sim)  # fmt: skip




# --------------------------------------------------------------------------------------------------
# Faithfulness of a run's images (what `dgnam evaluate --data` reports)
# --------------------------------------------------------------------------------------------------


def _held_out_top(values: np.ndarray, top: np.ndarray, groups: Sequence[str], n: int) -> list[int]:
    """The ``n`` most activating images outside ``top`` and, where groups are known, outside their photos
    (filled up with the next images outside ``top`` when too few photos are left)."""
    taken = {groups[i] for i in top} if groups else set()
    chosen = set(int(i) for i in top)
    order = [int(i) for i in np.argsort(-values, kind="stable") if int(i) not in chosen]
    picked = [i for i in order if not groups or groups[i] not in taken][:n]
    picked += [i for i in order if i not in picked][: n - len(picked)]
    if not picked:
        raise ValueError("no image is left outside the exemplars for the natural ceiling")
    return picked


def _layer_faithfulness(
    target: Target, early: str, distinct: list, units: list, pick: Callable[[list[int]], object], acts, data, k: int, natural_images: int, batch_size: int,
) -> tuple[Faithfulness, Faithfulness, list[int]]:  # fmt: skip
    """:func:`faithfulness` of the images of one layer's ``distinct`` units (``pick(rows)`` gives the images of
    ``units[rows]``) and of their natural ceiling, in ``early``'s features over each unit's window; with the rows
    of ``units`` in the order of the first result's ranks."""
    from .exemplars import exemplars
    from ..core.objectives import receptive_field_box

    sets, natural, natural_owners = {}, [], []
    own_feats, owners, rows_all = [], [], []
    for u in distinct:
        top = exemplars(acts, u, k).top
        box = receptive_field_box(target, u, tuple(target.spec.size))
        sets[u] = window_features(target, early, data.batch(top), box, batch_size)
        held = _held_out_top(acts.values(u), top, data.groups, natural_images)
        natural.append(window_features(target, early, data.batch(held), box, batch_size))
        natural_owners += [u] * len(held)
        rows = [i for i, v in enumerate(units) if v == u]
        own_feats.append(window_features(target, early, pick(rows), box, batch_size))
        owners += [u] * len(rows)
        rows_all += rows
    return faithfulness(np.concatenate(own_feats), owners, sets), faithfulness(np.concatenate(natural), natural_owners, sets), rows_all


def units_faithfulness(
    target: Target,
    units: Sequence[object],
    images: Sequence[np.ndarray] | np.ndarray | torch.Tensor,
    data,
    k: int = 9,
    layer: str | None = None,
    cache_dir=None,
    batch_size: int = 32,
    natural_images: int = 3,
) -> dict:
    """:func:`faithfulness` of images synthesized for units, against natural exemplars from ``data``.

    Per layer of the units (each with at least two distinct units): one cached pass over ``data``
    (:func:`~dgnam.eval.exemplars.layer_activations`) gives every unit's top ``k`` natural images (its
    exemplar set) and its ``natural_images`` best images outside the set and outside their photos
    (``data.groups``) as the *natural ceiling*: natural images that drive the unit, judged the same
    way as the synthesized images. Features are the earlier
    layer's map averaged over each unit's receptive-field window.

    Args:
        target: The net the images were optimized for.
        units: The :class:`~dgnam.core.units.Unit` of each image.
        images: The synthesized images (N, H, W, 3) uint8, or a (N, 3, H, W) tensor in [0, 1].
        data: Natural images (:func:`dgnam.eval.exemplars.open_images`).
        k: Exemplars per unit (``k + 1`` <= images of ``data``).
        layer: The earlier layer; None: :func:`earlier_layer` of each units' layer.
        cache_dir: Activation cache (see :func:`~dgnam.eval.exemplars.layer_activations`).
        batch_size: Images per forward pass.
        natural_images: Held-out natural images per unit for the ceiling.

    Returns:
        ``{"layers": {layer: {"earlier_layer", "units", "k", "accuracy", "rank_score", "chance", "mean_rank",
        "images", "sets", "natural": {...}}}, "accuracy", "natural_accuracy", "rank": [per image or
        None], "notes": [...]}``; accuracies are over the images of all scored layers (None when
        no layer could be scored).
    """
    from .exemplars import check_k, layer_activations

    units = list(units)
    if len(units) != len(images):
        raise ValueError(f"{len(images)} images for {len(units)} units")
    check_k(k, len(data))
    if k + 1 > len(data):
        raise ValueError(f"-k {k} needs {k + 1} images (k exemplars and one held-out image per unit); the data has {len(data)}")
    rank: list[int | None] = [None] * len(units)
    result: dict = {"layers": {}, "notes": []}
    hits, natural_hits, scores, natural_scores = [], [], [], []
    if isinstance(images, torch.Tensor):
        pick = lambda rows: images[rows]  # noqa: E731
    else:
        pick = lambda rows: [np.asarray(images[i]) for i in rows]  # noqa: E731
    for unit_layer in dict.fromkeys(u.layer for u in units):
        distinct = list(dict.fromkeys(u for u in units if u.layer == unit_layer))
        if len(distinct) < 2:
            result["notes"].append(f"faithfulness: {unit_layer} has one unit; it needs two or more to choose between")
            continue
        early = layer or earlier_layer(target, unit_layer)
        acts = layer_activations(target, unit_layer, data, units=distinct, cache_dir=cache_dir, batch_size=batch_size)
        found, ceiling, rows_all = _layer_faithfulness(target, early, distinct, units, pick, acts, data, k, natural_images, batch_size)
        for i, r in zip(rows_all, found.rank):
            rank[i] = int(r)
        hits += list(found.rank == 1)
        natural_hits += list(ceiling.rank == 1)
        scores += list(1 - (found.rank - 1) / (len(distinct) - 1))
        natural_scores += list(1 - (ceiling.rank - 1) / (len(distinct) - 1))
        result["layers"][unit_layer] = {"earlier_layer": early, "units": len(distinct), "k": k, **found.to_dict(), "natural": ceiling.to_dict()}
    result["accuracy"] = round(float(np.mean(hits)), 4) if hits else None
    result["natural_accuracy"] = round(float(np.mean(natural_hits)), 4) if natural_hits else None
    result["rank_score"] = round(float(np.mean(scores)), 4) if scores else None
    result["natural_rank_score"] = round(float(np.mean(natural_scores)), 4) if natural_scores else None
    result["rank"] = rank
    return result


__all__ = [
    "Faithfulness", "NaturalTrials", "earlier_layer", "embed_images", "faithfulness", "layer_outputs",
    "natural_trials", "preference", "split_references_queries", "two_afc_choices", "units_faithfulness", "window", "window_features",
]  # fmt: skip
