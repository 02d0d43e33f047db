"""The ``dgnam`` sub-commands for weights, priors, evaluation, exemplars, reports and reproductions (``cli.main`` dispatches)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path


def recorded_file(run_dir: str | Path, value: object, field: str, flag: str) -> str | None:
    """A file a run's record names (``net_weights``, ``categories_file``): opened only where it lies inside the run folder.

    The path is read as recorded (absolute, or relative to the working directory, as the run's command took it).

    Raises:
        RunFolderError: the path (as recorded, resolved with symlinks) leaves the folder; the message names ``flag``.
    """
    from .io.rundir import RunFolderError
    from .infra.messages import short

    if value is None:
        return None
    if isinstance(value, str) and value and "\x00" not in value and Path(value).resolve().is_relative_to(Path(run_dir).resolve()):
        return value
    raise RunFolderError(f"{short(run_dir)}/results.json records {field} {short(repr(value))} outside the run folder: dgnam opens no file "
                         f"a run folder names elsewhere; pass {flag} explicitly to use it")


def recorded_overrides(record: dict, run_dir: str | Path, categories: str | None = None):
    """The input-spec overrides a run folder's results.json recorded (``net_overrides``), to rebuild its net;
    ``categories`` (``--categories``) replaces the recorded file, which is read only inside the folder."""
    from .io.rundir import RunFolderError
    from .infra.messages import short
    from .nets.adapters import SpecOverrides, read_categories

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
    from .infra.messages import short
    from .nets.adapters import SpecOverrides, check_recorded_ref, load_target, read_categories

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
    if record.get("preset"):
        from .methods.presets import get_preset

        fit = get_preset(record["preset"]).fit
    return load_target(recorded, weights=weights, overrides=overrides, fit=fit)



def _weight_source(name: str):
    from .generators import get_generator_spec, list_generators
    from .nets import get_net_spec, list_nets

    if name in list_nets():
        return get_net_spec(name).weights
    if name in list_generators():
        return get_generator_spec(name).weights
    raise KeyError(f"unknown weights {name!r}: nets {', '.join(list_nets())}; generators {', '.join(list_generators())}")



def _cmd_weights(args) -> int:
    from .infra.hub import WeightsError, download_weights, resolve_weights

    if args.weights_command == "download":
        source = _weight_source(args.name)
        try:
            print(resolve_weights(source))
            return 0
        except WeightsError:
            print(download_weights(source))
            return 0
    from .generators import list_generators
    from .nets import list_nets

    for name in list_nets() + list_generators():
        source = _weight_source(name)
        try:
            where = str(resolve_weights(source))
        except WeightsError:
            where = "not here" + (f" (download from {source.urls[0]})" if source.urls else "")
        print(f"{name:<20} {where}")
    return 0



def _cmd_pool(args) -> int:
    from . import pool

    if args.pool_command == "build":
        n = pool.build_pool(args.dir, cache_dir=args.cache, size=args.size, seed=args.seed,
                            crop_density=args.crop_density, max_crops_per_original=args.max_crops, composites=args.composites).n_images
    elif args.pool_command == "pack":
        card = pool.pack_pool(args.source, args.out, size=args.size, max_mib=args.max_mib)
        packed = card["packed"]
        print(f"packed {card['n_images']} images of {args.size} px into {args.out}: {packed['format']} quality {packed['quality']}, "
              f"{packed['bytes'] / 2**20:.1f} MiB")
        return 0
    else:
        images, meta = pool.load_image_folder(args.folder, size=args.size, progress=True)
        n = pool.save_folder_pool(args.dir, images, meta)["n_images"]
        if meta.get("skipped"):
            print(f"skipped {len(meta['skipped'])} file(s) that are not readable images (warnings above)", file=sys.stderr)
    print(f"pool of {n} images in {args.dir}")
    return 0



def _cmd_train(args) -> int:
    import signal

    from .train.files import prepare_train_folder
    from .train.trainer import TrainConfig, Trainer

    out = Path(args.out)
    ckpt = out / "checkpoint.pt"
    resuming = prepare_train_folder(out, args.resume, args.overwrite, apply=False)  # a used --out: --resume or --overwrite
    base = TrainConfig.read(args.config) if args.config else TrainConfig()
    if args.resume and (out / "config.json").exists() and not args.config:
        base = TrainConfig.read(out / "config.json", what="the training's config")
    prior = dataclasses.replace(base.prior, **{k: v for k, v in {"encoder": args.encoder, "layer": args.layer, "output_size": args.output_size}.items() if v is not None})
    config = dataclasses.replace(base, prior=prior, **{k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size, "device": args.device}.items() if v is not None})
    trainer = Trainer(config, args.pool, args.out, progress=not args.quiet)
    if (args.resume or args.overwrite) and trainer.rank == 0:  # the pool loaded: now clear (or cut back) the old training
        prepare_train_folder(out, args.resume, args.overwrite)
    if resuming:
        trainer.resume(ckpt)
    trainer.train(until=args.until)
    if trainer.interrupted:  # a checkpoint, never an export: the prior is not finished
        if trainer.rank == 0:
            print(f"\ndgnam: train-generator interrupted ({trainer.interrupted}) at step {trainer.step} of {trainer.config.steps}: "
                  f"checkpoint {ckpt} written, the same command with --resume continues" + ("; nothing exported" if args.export else ""),
                  file=sys.stderr)
        return 128 + int(getattr(signal, trainer.interrupted))
    if args.export and trainer.rank == 0:
        print(f"exported {args.export} sha256 {trainer.export(args.export)}")
    return 0



def _cmd_bounds(args) -> int:
    import torch

    from .generators.prior import code_bounds
    from .infra.files import write_json_atomic
    from .infra.messages import short
    from .pool.store import load_any
    from .train.trainer import code_stats, encode_views

    images, _ = load_any(args.data)
    if len(images) < 2:  # one image has no standard deviation: every bound would be NaN
        raise ValueError(f"dgnam bounds needs at least 2 images (a standard deviation per unit), and {short(args.data)} has {len(images)}: "
                         "give a pool or an image folder of many images")
    views = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    stats = code_stats(encode_views(views, args.net, args.layer))
    lower, upper = code_bounds(stats["mean"], stats["std"], stats["min"])
    values = {**stats, "lower": lower, "upper": upper}
    bad = {k: int((~torch.isfinite(v)).sum()) for k, v in values.items() if not torch.isfinite(v).all()}
    if bad:
        raise ValueError(f"{args.net} {args.layer} gave values that are not finite (NaN or infinite) over {short(args.data)}: "
                         f"{', '.join(f'{k} of {n} units' for k, n in bad.items())}; nothing written: check the net and the images")
    record = {"net": args.net, "layer": args.layer, "data": args.data, "images": len(images)}
    record.update({k: v.flatten().tolist() for k, v in values.items()})
    write_json_atomic(args.out, record, indent=None)  # strict JSON: never a NaN literal
    print(f"wrote {args.out}: {len(record['mean'])} units over {len(images)} images")
    return 0



def _load_judges(names: list[str] | None, device) -> tuple[dict, list[str]]:
    """The judge nets: those named, else every registered judge (``dgnam.nets.list_judges``: EfficientNet-Lite1,
    -Lite2 and the out-of-family SqueezeNet v1.1). A default judge whose weights are not installed is skipped
    with its reason; a named one that cannot load is an error."""
    from .infra.hub import WeightsError
    from .nets import list_judges, load_net

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


def _cmd_evaluate(args) -> int:
    import time

    import torch

    from .eval.score import EvaluateConfig, evaluate_run
    from .io.report import EVALUATION_FILE
    from .io.read import read_run
    from .io.write import json_safe, versions
    from .infra.files import write_json_atomic

    record, images = read_run(args.run_dir)
    device = torch.device(args.device)
    net_name = args.net or record.get("net")
    target = run_target(record, args.run_dir, net=args.net, weights=args.net_weights, categories=args.categories)  # a run folder is data
    target = target.to(device) if target is not None else None
    judges, skipped = _load_judges(args.judge, device)
    natural, natural_info = (None, None)
    if args.natural:
        from .pool.store import heldout_sample

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
        from .eval.score import item_unit
        from .eval.exemplars import open_images
        from .eval.psychophysics import units_faithfulness

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
    from .nets import get_net_spec, list_nets

    return get_net_spec(net_name).output_layer if net_name in list_nets() else None



def _cmd_neighbors(args) -> int:
    import numpy as np
    import torch

    from . import load_net
    from .eval.score import find_neighbors
    from .io.report import NEIGHBORS_DIR, NEIGHBORS_FILE, neighbors_sheet
    from .io.read import read_run
    from .io.write import json_safe, save_png
    from .infra.files import write_json_atomic

    record, images = read_run(args.run_dir)
    if not len(images):
        raise ValueError(f"{args.run_dir} has no images")
    from .pool.store import load_any

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



def _cmd_exemplars(args) -> int:
    import torch

    from . import parse_units
    from .cli import net_from_args
    from .eval.exemplars import check_k, exemplars, layer_activations, open_images, save_exemplars, unit_receptive_field
    from .core.objectives import check_units
    from .io.rundir import prepare_run_folder
    from .io.write import unit_label

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



def _cmd_report(args) -> int:
    from .io.report import build_report, check_report_out

    out = Path(args.out) if args.out else (Path(args.run_dirs[0]) / "report.html" if len(args.run_dirs) == 1 else Path("report.html"))
    if out.is_dir():  # --out DIR: the page goes inside it
        out = out / "report.html"
    check_report_out(out)  # never over a file dgnam did not write as a report (a run's results.json)
    out.write_text(build_report(args.run_dirs, title=args.title), encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0



def repro_config(args):
    """The :class:`~dgnam.repro.fashion.ReproConfig` that ``dgnam repro fashion-mnist`` flags ask for."""
    from .repro.fashion import ReproConfig

    base = ReproConfig.quick() if args.quick else ReproConfig()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    return base.with_budget(epochs=args.epochs, generator_steps=args.generator_steps, am_steps=args.am_steps,
                            seeds=args.seeds, methods=methods, train_images=args.train_images)



def _cmd_repro(args) -> int:
    from .repro.fashion import load_fashion_mnist, run_repro, summary_markdown, synthetic_shapes

    config = repro_config(args)
    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    try:
        data = synthetic_shapes() if args.synthetic else load_fashion_mnist(args.cache)
    except (RuntimeError, FileNotFoundError) as exc:  # FileNotFoundError: no apt-get (not a Debian system)
        message = f"{exc.filename} not found: Fashion-MNIST comes from Debian's registry (apt-get download)" if isinstance(exc, FileNotFoundError) and exc.filename else exc
        print(f"dgnam: error: {message}\n(`--synthetic` runs the same pipeline on generated shapes, without the package)", file=sys.stderr)
        return 2
    record = run_repro(data, args.out, config, reuse=args.reuse, progress=not args.quiet, log=log)
    print(summary_markdown(record))
    print(f"\nwrote {Path(args.out) / 'results.json'}")
    return 0
