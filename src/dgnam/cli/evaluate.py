"""``dgnam evaluate``, ``neighbors``, ``exemplars`` and ``report``: score, explain and show run folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_device_flag, add_net_flags, add_quiet_flag, add_run_folder_flags, net_from_args
from .values import image_side


def add_evaluate_parser(sub) -> None:
    """``dgnam evaluate``."""
    e = sub.add_parser("evaluate", help="score a run folder: target/judge top-k, relative activation, realism, diversity, speed")
    e.add_argument("run_dir", help="a folder written by `dgnam visualize`")
    e.add_argument("--judge", action="append", default=None,
                   help="judge net, never optimized against (repeatable; default: every registered judge, each at its own size: "
                   "efficientnet_lite1 and _lite2 (the target's family) and squeezenet1_1 (out-of-family))")
    e.add_argument("--natural", help="natural images for relative activation, Fréchet distance and slope/saturation: a pool "
                   "folder (its held-out split is used) or any image folder")
    e.add_argument("--natural-images", type=int, default=500, help="use at most this many natural images (default 500)")
    e.add_argument("--natural-size", type=image_side, default=160, help="side of an image folder's images (default 160, as pools)")
    add_net_flags(e, help="target net (default: the run's)", download=False,
                  weights_help="local weight file for the target (default: the run's, if inside the run folder)")
    e.add_argument("--categories", help="file of class names, one per line, for the target (default: the run's, if inside the run folder)")
    e.add_argument("--feature-layer", default="pool", help="judges' feature layer for Fréchet distance and diversity (default pool)")
    e.add_argument("--data", help="natural images (image folder or pool) for the faithfulness check (Geirhos et al. 2024): is each image "
                   "nearest to its own unit's top-k natural exemplars in an earlier layer of the target? (needs 2+ units per layer)")
    e.add_argument("-k", type=int, default=9, help="natural exemplars per unit for --data (default 9)")
    e.add_argument("--faithfulness-layer", help="the earlier layer (default: half-way to each unit's layer among its siblings)")
    e.add_argument("--max-images", type=int, help="--data: a fixed random subset of this many images (default: all; one cached pass per layer)")
    e.add_argument("--batch-size", type=int, default=32)
    add_device_flag(e)
    e.add_argument("--out", help="output JSON (default RUN_DIR/evaluation.json)")
    e.set_defaults(handler=run_evaluate)


def add_neighbors_parser(sub) -> None:
    """``dgnam neighbors``."""
    nb = sub.add_parser("neighbors", help="each synthesized image beside its nearest natural images in a net's feature space")
    nb.add_argument("run_dir", help="a folder written by `dgnam visualize`")
    nb.add_argument("--data", required=True, help="a pool folder or any image folder")
    add_net_flags(nb, default="efficientnet_lite0", help="feature net (default efficientnet_lite0)", download=False,
                  weights_help="local weight file for the feature net")
    nb.add_argument("--layer", default="pool", help="feature layer (default pool: the pooled penultimate features)")
    nb.add_argument("-k", type=int, default=5, help="neighbours per image (default 5)")
    nb.add_argument("--metric", choices=["cosine", "l2"], default="cosine", help="1 - cosine similarity (default) or Euclidean distance")
    nb.add_argument("--size", type=image_side, default=160, help="side of an image folder's images (default 160)")
    nb.add_argument("--max-images", type=int, help="search a fixed random subset of this many data images (default: all)")
    nb.add_argument("--batch-size", type=int, default=32)
    add_device_flag(nb)
    nb.add_argument("--out", help="output folder (default RUN_DIR/neighbors): one sheet PNG per image and neighbors.json")
    nb.set_defaults(handler=run_neighbors)


def add_exemplars_parser(sub) -> None:
    """``dgnam exemplars``."""
    ex = sub.add_parser("exemplars", help="each unit's top-k and bottom-k natural images (receptive-field crops), one cached pass per layer")
    add_net_flags(ex, positional=True, help="the net: a registered name (`dgnam nets`), torchvision:NAME, timm:NAME, hf:REPO_ID, PATH.py:FUNC ...",
                  spec=True)  # fmt: skip
    ex.add_argument("unit", nargs="+", help="LAYER:UNIT[@LOC], e.g. _blocks.7:0-15 or logits:espresso")
    ex.add_argument("--data", required=True, help="any image folder (searched recursively), a pool folder or a packed .npz pool")
    ex.add_argument("-k", type=int, default=9, help="images per end (default 9, as Borowski et al.)")
    ex.add_argument("--out", required=True, help="output folder (RUN/exemplars keeps them with a visualize run; `dgnam report` shows them)")
    add_run_folder_flags(ex, resume=False)  # a used --out is refused (its results.json is not replaced) unless --overwrite
    ex.add_argument("--size", type=image_side, default=160, help="side of an image folder's images (default 160, as pools)")
    ex.add_argument("--max-images", type=int, help="use a fixed random subset of this many images (default: all)")
    ex.add_argument("--cache-dir", help="activation cache (default $DGNAM_HOME/activations)")
    ex.add_argument("--no-cache", action="store_true", help="compute the pass without reading or writing the cache")
    ex.add_argument("--batch-size", type=int, default=32)
    add_device_flag(ex)
    add_quiet_flag(ex)
    ex.set_defaults(handler=run_exemplars)


def add_report_parser(sub) -> None:
    """``dgnam report``."""
    r = sub.add_parser("report", help="one self-contained HTML page of run folders (images, curves, metrics, neighbours, settings)")
    r.add_argument("run_dirs", nargs="+", help="folders written by `dgnam visualize`")
    r.add_argument("--out", help="HTML file (default RUN_DIR/report.html for one run, ./report.html for several)")
    r.add_argument("--title", default="dgnam report")
    r.set_defaults(handler=run_report)


def recorded_file(run_dir: str | Path, value: object, field: str, flag: str) -> str | None:
    """A file a run's record names (``net_weights``, ``categories_file``): opened only where it lies inside the run folder.

    The path is read as recorded (absolute, or relative to the working directory, as the run's command took it).

    Raises:
        RunFolderError: the path (as recorded, resolved with symlinks) leaves the folder; the message names ``flag``.
    """
    from ..io.read import RunFolderError
    from ..infra.messages import short

    if value is None:
        return None
    if isinstance(value, str) and value and "\x00" not in value and Path(value).resolve().is_relative_to(Path(run_dir).resolve()):
        return value
    raise RunFolderError(f"{short(run_dir)}/results.json records {field} {short(repr(value))} outside the run folder: dgnam opens no file "
                         f"a run folder names elsewhere; pass {flag} explicitly to use it")


def recorded_overrides(record: dict, run_dir: str | Path, categories: str | None = None):
    """The input-spec overrides a run folder's results.json recorded (``net_overrides``), to rebuild its net;
    ``categories`` (``--categories``) replaces the recorded file, which is read only inside the folder."""
    from ..io.read import RunFolderError
    from ..infra.messages import short
    from ..nets.adapters import SpecOverrides, read_categories

    given = record.get("net_overrides") or {}
    if not isinstance(given, dict):
        raise RunFolderError(f"{short(run_dir)}/results.json: net_overrides is {short(repr(given))}, not an object; the file was edited or is not dgnam's")
    tuples = {k: tuple(given[k]) for k in ("size", "mean", "std") if given.get(k) is not None}
    path = categories or recorded_file(run_dir, given.get("categories_file"), "net_overrides.categories_file", "--categories")
    return SpecOverrides(value_range=given.get("value_range"), bgr=given.get("bgr"), categories=read_categories(path) if path else None, **tuples)


def run_target(record: dict, run_dir: str | Path, net: str | None = None, weights: str | None = None, categories: str | None = None):
    """The net a run optimized, re-created from its results.json: the one place a command reads a net from a record.

    A run folder is data: the recorded ``net`` must pass :func:`~dgnam.nets.adapters.check_recorded_ref` (no code,
    no path) and the files it records are opened only inside the folder. An explicit ``net`` (``--net``) is the
    user's and runs as given; when it is the recorded net, the record's input-spec overrides and preset fit apply.

    Args:
        record: The run's results.json.
        run_dir: The run folder.
        net, weights, categories: ``--net``, ``--net-weights``, ``--categories`` (None: the record's).

    Returns:
        The :class:`~dgnam.nets.Target`, or None where neither the record nor ``net`` names one.
    """
    from ..infra.messages import short
    from ..nets.adapters import SpecOverrides, check_recorded_ref, load_target, read_categories

    recorded = record.get("net")
    if net is None and recorded in (None, ""):
        return None
    if net is not None and net != recorded:  # another net: none of the record's settings
        return load_target(net, weights=weights, overrides=SpecOverrides(categories=read_categories(categories)) if categories else None)
    if net is None:
        check_recorded_ref(recorded, f"{short(run_dir)}/results.json")
    overrides = recorded_overrides(record, run_dir, categories)
    weights = weights or recorded_file(run_dir, record.get("net_weights"), "net_weights", "--net-weights")
    fit = None
    if record.get("preset"):  # the preset's input fit, as resolve gives it to the run (dgnam.methods.choose.prepare)
        from ..methods.choose import resolve

        fit = resolve(recorded, preset=record["preset"]).fit
    return load_target(recorded, weights=weights, overrides=overrides, fit=fit)


def _load_judges(names: list[str] | None, device) -> tuple[dict, list[str]]:
    """The judge nets: those named, else every registered judge (``dgnam.nets.list_judges``: EfficientNet-Lite1,
    -Lite2 and the out-of-family SqueezeNet v1.1). A default judge whose weights are not installed is skipped
    with its reason; a named one that cannot load is an error."""
    from ..infra.hub import WeightsError
    from ..nets import list_judges, load_net

    judges, skipped = {}, []
    for name in dict.fromkeys(names or list_judges()):
        try:
            judges[name] = load_net(name).to(device)
        except WeightsError as exc:
            if names:
                raise
            skipped.append(f"judge {name} skipped: {exc}")
    return judges, skipped


def _family_note(judge: dict) -> str:
    return f" ({judge['family']})" if judge.get("family") else ""


def run_evaluate(args: argparse.Namespace) -> int:
    """``dgnam evaluate RUN``: the run's scores into evaluation.json."""
    import time

    import torch

    from ..eval.score import EvaluateConfig, evaluate_run
    from ..io.report import EVALUATION_FILE
    from ..io.read import read_run
    from ..io.write import json_safe, versions
    from ..infra.files import write_json_atomic

    record, images = read_run(args.run_dir)
    device = torch.device(args.device)
    net_name = args.net or record.get("net")
    target = run_target(record, args.run_dir, net=args.net, weights=args.net_weights, categories=args.categories)  # a run folder is data
    target = target.to(device) if target is not None else None
    judges, skipped = _load_judges(args.judge, device)
    natural, natural_info = (None, None)
    if args.natural:
        from ..pool.store import heldout_sample

        natural, natural_info = heldout_sample(args.natural, size=args.natural_size)
    config = EvaluateConfig(feature_layer=args.feature_layer, natural_images=args.natural_images, batch_size=args.batch_size)
    output_layer = _output_layer(net_name)
    if output_layer and output_layer not in config.output_layers:
        config.output_layers = config.output_layers + (output_layer,)
    result = evaluate_run(record, images, target, judges, natural, config)
    result.notes.extend(skipped)
    for note in skipped:
        print(f"dgnam: {note}", file=sys.stderr)
    faith = None
    if args.data:
        from ..eval.score import item_unit
        from ..eval.exemplars import open_images
        from ..eval.psychophysics import units_faithfulness

        if target is None:
            raise ValueError("--data scores faithfulness in the target's layers: give --net (the run records none)")
        data = open_images(args.data, size=args.natural_size, max_images=args.max_images)
        faith = units_faithfulness(target, [item_unit(it) for it in record["items"]], images, data, k=args.k, layer=args.faithfulness_layer,
                                   batch_size=args.batch_size)  # fmt: skip
        faith.update({"data": str(args.data), "data_images": len(data)})
    out = Path(args.out) if args.out else Path(args.run_dir) / EVALUATION_FILE
    document = {
        "run": str(args.run_dir), "target": net_name, "judges": list(judges), "natural_source": natural_info,
        "command": ["dgnam"] + args.argv, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions(),
        **result.to_dict(),
    }  # fmt: skip
    if faith is not None:
        document["faithfulness"] = faith
    write_json_atomic(out, json_safe(document))  # strict JSON: a NaN score is null
    s = result.summary
    parts = [f"target top-1 {s['target_top1']}" if s.get("class_images") else None]
    parts += [f"{n}{_family_note(j)} top-1 {j.get('top1')} top-5 {j.get('top5')} FD {j.get('frechet_distance')}" for n, j in s["judges"].items()]
    if faith is not None:
        parts.append(f"faithfulness {faith['accuracy']} (natural {faith['natural_accuracy']}; chance "
                     + ", ".join(f"{L['chance']} in {name}" for name, L in faith["layers"].items())
                     + f"), rank score {faith['rank_score']} (natural {faith['natural_rank_score']}; chance 0.5)" if faith["layers"] else
                     "faithfulness: " + "; ".join(faith["notes"]))  # fmt: skip
    print(f"wrote {out}: " + "; ".join(p for p in parts if p))
    return 0


def _output_layer(net_name: str | None) -> str | None:
    from ..nets import get_net_spec, list_nets

    return get_net_spec(net_name).output_layer if net_name in list_nets() else None


def run_neighbors(args: argparse.Namespace) -> int:
    """``dgnam neighbors RUN``: each image of a run beside its nearest natural images."""
    import numpy as np
    import torch

    from ..nets import load_net
    from ..eval.score import find_neighbors
    from ..io.report import NEIGHBORS_DIR, NEIGHBORS_FILE, neighbors_sheet
    from ..io.read import read_run
    from ..io.write import json_safe, save_png
    from ..infra.files import write_json_atomic

    record, images = read_run(args.run_dir)
    if not len(images):
        raise ValueError(f"{args.run_dir} has no images")
    from ..pool.store import load_any

    data, meta = load_any(args.data, size=args.size, mmap=True)  # every image of a pool (memory-mapped) or folder
    records, available = meta.get("records") or [], len(data)
    usable = min(available, args.max_images or available)
    if not 1 <= args.k <= usable:  # before any feature is computed
        raise ValueError(f"-k {args.k}: give 1 to {usable} neighbours ({args.data} has {usable} image(s) to search)" if usable
                         else f"{args.data} has no images to search: give a pool or a folder of images")
    chosen = np.arange(len(data))
    if args.max_images and args.max_images < len(data):
        chosen = np.sort(np.random.default_rng(0).choice(len(data), size=args.max_images, replace=False))
        data = np.asarray(data[chosen])
    net = load_net(args.net, weights=args.net_weights).to(torch.device(args.device)).fast([args.layer])
    nb = find_neighbors(net, args.layer, images, data, k=args.k, metric=args.metric, batch_size=args.batch_size)
    out = Path(args.out) if args.out else Path(args.run_dir) / NEIGHBORS_DIR
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for q, item in enumerate(record["items"]):
        found = []
        for i, d in zip(nb.index[q], nb.distance[q]):
            original = int(chosen[i])
            file = records[original].get("file") if original < len(records) else None
            found.append({"index": original, "file": file, "source": records[original].get("source") if original < len(records) else None,
                          "distance": round(float(d), 6)})  # fmt: skip
        sheet = f"{Path(item['file']).stem}.png"
        captions = [f"d={n['distance']:.4f}\n{n['file'] or n['index']}" for n in found]
        save_png(neighbors_sheet(images[q], [np.asarray(data[i]) for i in nb.index[q]], captions, title=f"{item.get('label', item['unit'])}\nseed {item['seed']}"),
                 out / sheet)  # atomically: a full disk leaves no truncated sheet
        entries.append({"file": item["file"], "unit": item["unit"], "label": item.get("label"), "seed": item["seed"], "sheet": sheet, "neighbors": found})
    document = {
        "run": str(args.run_dir), "data": args.data, "data_images": int(len(data)), "data_available": available,
        "net": args.net, "layer": args.layer, "metric": args.metric, "k": args.k,
        "distance": "1 - cosine similarity of the features" if args.metric == "cosine" else "Euclidean distance of the features",
        "items": entries,
    }  # fmt: skip
    write_json_atomic(out / NEIGHBORS_FILE, json_safe(document))
    print(f"wrote {len(entries)} sheet(s) and {out / NEIGHBORS_FILE}")
    return 0


def run_exemplars(args: argparse.Namespace) -> int:
    """``dgnam exemplars NET UNIT...``: each unit's top and bottom natural images into ``--out``."""
    import torch

    from ..core.units import parse_units
    from ..eval.exemplars import check_k, exemplars, layer_activations, open_images, save_exemplars, unit_receptive_field
    from ..core.objectives import check_units
    from ..io.rundir import prepare_run_folder
    from ..io.write import unit_label

    net = net_from_args(args).to(torch.device(args.device))
    units = list(dict.fromkeys(parse_units(args.unit, net.categories)))
    data = open_images(args.data, size=args.size, max_images=args.max_images)  # lists files only
    check_k(args.k, len(data))  # before any forward pass
    check_units(net, units)
    prepare_run_folder(args.out, overwrite=args.overwrite, apply=False)  # a used --out: refused before any pass, unless --overwrite
    cache = False if args.no_cache else args.cache_dir
    results, passes = [], {}
    for layer in dict.fromkeys(u.layer for u in units):
        mine = [u for u in units if u.layer == layer]
        acts = layer_activations(net, layer, data, units=mine, cache_dir=cache, batch_size=args.batch_size, progress=not args.quiet)
        passes[layer] = {"key": acts.key, "cached": acts.cached, "shape": list(acts.shape)}
        for unit in mine:
            results.append((exemplars(acts, unit, args.k), unit_receptive_field(net, unit, data.size), unit_label(unit, net.categories)))
    settings = {"command": ["dgnam"] + args.argv, "net": args.net, "net_weights": args.net_weights, "units": [str(u) for u in units], "k": args.k,
                "data": {"path": str(args.data), "images": len(data), "size": data.size, "fingerprint": data.fingerprint},
                "passes": passes, "device": str(args.device)}  # fmt: skip
    prepare_run_folder(args.out, overwrite=args.overwrite)  # --overwrite: removes only what the earlier run wrote
    path = save_exemplars(args.out, data, results, settings)
    how = ", ".join(f"{layer}: {'cached' if p['cached'] else 'computed'}" for layer, p in passes.items())
    print(f"wrote the top and bottom {args.k} of {len(units)} unit(s) over {len(data)} images and {path} ({how})")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """``dgnam report RUN...``: one HTML page of the runs."""
    from ..infra.files import write_text_atomic
    from ..io.report import build_report, check_report_out

    out = Path(args.out) if args.out else (Path(args.run_dirs[0]) / "report.html" if len(args.run_dirs) == 1 else Path("report.html"))
    if out.is_dir():  # --out DIR: the page goes inside it
        out = out / "report.html"
    check_report_out(out)  # never over a file dgnam did not write as a report (a run's results.json)
    out.parent.mkdir(parents=True, exist_ok=True)  # --out reports/multi.html: the folder is made
    write_text_atomic(out, build_report(args.run_dirs, title=args.title))  # a full disk: one line, the old page kept
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0

