"""The ``dgnam`` command: a thin layer over the public API."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

DEFAULT_PIXEL_METHOD = "deepinversion"  # used when no generator prior is registered for the net


def _seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", part)
        if m:
            seeds.extend(range(int(m.group(1)), int(m.group(2)) + 1))
        elif part.strip().isdigit():
            seeds.append(int(part))
        else:
            raise argparse.ArgumentTypeError(f"seeds are integers, ranges or lists (0, 0-4, 1,5), got {text!r}")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dgnam", description="Synthesize the preferred inputs of neurons (DGN-AM).")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("visualize", help="synthesize preferred inputs of units")
    v.add_argument("--net", help="registered target net (`dgnam nets`); default efficientnet_lite0, or the preset's")
    v.add_argument("--net-weights", help="local weight file for the net")
    v.add_argument("--unit", action="append", default=[], help="LAYER:UNIT[@LOC], repeatable; ranges 0-9, class names, @FILE")
    v.add_argument("--units-file", help="file with one unit per line")
    method = v.add_mutually_exclusive_group()
    method.add_argument("--generator", help="registered generator prior (`dgnam generators`); default: the net's default prior")
    method.add_argument("--pixel", choices=["pixel", "yosinski", "fourier", "deepinversion"], help="pixel-space baseline instead of a generator")
    v.add_argument("--generator-weights", help="local weight file for the generator")
    v.add_argument("--download", action="store_true", help="allow downloading registered weights not found offline")
    v.add_argument("--preset", choices=["paper"], help="the paper's settings (with a DeePSiM generator and CaffeNet)")
    v.add_argument("--steps", type=int, help="optimization steps (default 200)")
    v.add_argument("--seeds", type=_seeds, default=[0], help="seeds: 0, 0-4 or 1,5 (one image per unit and seed)")
    v.add_argument("--lr-start", type=float, help="DGN-AM step size at the first step (default 8)")
    v.add_argument("--lr-end", type=float, help="DGN-AM step size at the last step (default 1e-10)")
    v.add_argument("--decay", type=float, help="DGN-AM code decay per step (default 0.99)")
    v.add_argument("--optimizer", choices=["paper", "adam"], help="DGN-AM update rule (default: paper)")
    v.add_argument("--lr", type=float, help="pixel methods: learning rate")
    v.add_argument("--batch-size", type=int, default=8, help="images optimized together (default 8)")
    v.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    v.add_argument("--out", required=True, help="output folder")
    v.add_argument("--quiet", action="store_true", help="no progress bars")

    n = sub.add_parser("nets", help="list registered target nets")
    n.set_defaults()
    sub.add_parser("generators", help="list registered generator priors")
    lay = sub.add_parser("layers", help="list the addressable layers of a net with output shapes")
    lay.add_argument("net")
    lay.add_argument("--net-weights")

    w = sub.add_parser("weights", help="manage weight files")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    wd = wsub.add_parser("download", help="download a registered net's or generator's weights into the cache")
    wd.add_argument("name")
    wsub.add_parser("list", help="registered weights, where they come from, and whether they are here")
    pool = sub.add_parser("pool", help="the offline natural-image training pool")
    psub = pool.add_subparsers(dest="pool_command", required=True)
    pb = psub.add_parser("build", help="assemble the pool from Debian packages and scikit-image photos")
    pb.add_argument("dir")
    pb.add_argument("--size", type=int, default=160)
    pb.add_argument("--seed", type=int, default=0)
    pb.add_argument("--cache", help="download cache (default $DGNAM_HOME/debs)")
    pf = psub.add_parser("folder", help="turn any image folder (class/xxx.jpg or flat) into a pool")
    pf.add_argument("folder")
    pf.add_argument("dir")
    pf.add_argument("--size", type=int, default=160)

    t = sub.add_parser("train-generator", help="train a generator prior (DeePSiM recipe) on a pool")
    t.add_argument("--pool", required=True, help="pool folder (`dgnam pool build`) or any image folder (class/x.jpg or flat)")
    t.add_argument("--out", required=True, help="training folder: config.json, log.csv, samples/, checkpoint.pt")
    t.add_argument("--config", help="JSON file of TrainConfig fields (the flags below override it)")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--encoder", help="encoder net (default efficientnet_lite0)")
    t.add_argument("--layer", help="encoder layer inverted (default pool)")
    t.add_argument("--output-size", type=int, help="generator output size in px (default 128)")
    t.add_argument("--device", help="cpu or cuda")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--until", type=int, help="stop at this step (the loss schedule still spans --steps)")
    t.add_argument("--export", help="also write the generator as a .safetensors prior here")
    t.add_argument("--quiet", action="store_true")

    b = sub.add_parser("bounds", help="per-unit statistics of a net's layer over images: the code clipping bounds")
    b.add_argument("--net", default="efficientnet_lite0")
    b.add_argument("--layer", default="pool")
    b.add_argument("--data", required=True, help="a pool folder or any image folder")
    b.add_argument("--out", required=True, help="output JSON (mean, std, percentiles, bounds [0, mean + 3 std])")
    return p


def _cmd_visualize(args) -> int:
    import torch

    from . import load_generator, load_net, parse_units
    from .optimize import DGNAMConfig
    from .objectives import receptive_field_box
    from .results import RunWriter
    from .run import iter_visualize, make_jobs

    preset = None
    if args.preset:
        from .presets import get_preset

        preset = get_preset(args.preset)
    args.net = args.net or (preset.net if preset else "efficientnet_lite0")
    net = load_net(args.net, weights=args.net_weights, download=args.download, fit=preset.fit if preset else None)
    texts = list(args.unit) + ([f"@{args.units_file}"] if args.units_file else [])
    if not texts:
        print("dgnam: give at least one --unit (e.g. --unit logits:945)", file=sys.stderr)
        return 2
    units = parse_units(texts, net.categories)
    device = torch.device(args.device)
    net.to(device)

    generator_name = args.generator or (preset.generator if preset else None) or (None if args.pixel else default_generator(args.net))
    if generator_name:
        generator = load_generator(generator_name, weights=args.generator_weights, download=args.download).to(device)
        config = preset.apply() if preset else DGNAMConfig()
        if preset is not None and hasattr(generator, "clamp"):
            generator.clamp = preset.generator_clamp
        overrides = {"steps": args.steps, "lr_start": args.lr_start, "lr_end": args.lr_end, "decay": args.decay, "optimizer": args.optimizer}
        method = f"dgn-am:{generator_name}"
    else:
        from .pixel import PixelConfig

        generator = None
        config = PixelConfig(method=args.pixel or DEFAULT_PIXEL_METHOD)
        overrides = {"steps": args.steps, "lr": args.lr}
        method = f"pixel:{config.method}"
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})

    jobs = make_jobs(units, args.seeds)
    settings = {
        "command": ["dgnam"] + sys.argv[1:],
        "net": args.net,
        "net_weights": args.net_weights,
        "generator": generator_name,
        "preset": args.preset,
        "generator_weights": args.generator_weights,
        "method": method,
        "config": dataclasses.asdict(config),
        "seeds": args.seeds,
        "units": [str(u) for u in units],
        "batch_size": args.batch_size,
        "device": str(device),
    }
    batches = iter_visualize(net, jobs, generator, config, args.batch_size, progress=not args.quiet)  # checks units
    size = generator.output_size if generator is not None else net.spec.size
    fields = {u: receptive_field_box(net, u, tuple(size)) for u in units if u.location != "mean" and u.layer not in ("output", "logits")}
    writer = RunWriter(args.out, settings, net.categories, fields)
    interrupted = False
    try:
        for result in batches:
            writer.add(result)
    except KeyboardInterrupt:
        interrupted = True
        print("\ndgnam: interrupted; keeping the finished images", file=sys.stderr)
    path = writer.finish(interrupted=interrupted, requested=len(jobs))
    print(f"wrote {len(writer.items)} image(s) and {path}")
    return 130 if interrupted else 0


def default_generator(net: str) -> str | None:
    """The registered prior trained for ``net`` (its encoder), if any."""
    from .generators import get_generator_spec, list_generators

    for name in list_generators():
        if get_generator_spec(name).encoder.split(":")[0] == net and get_generator_spec(name).default:
            return name
    return None


def _cmd_layers(args) -> int:
    from . import load_net
    from .objectives import all_layer_shapes

    net = load_net(args.net, weights=args.net_weights)
    shapes = all_layer_shapes(net)
    width = max(len(n) for n in shapes)
    for name, shape in shapes.items():
        print(f"{name:<{width}}  {tuple(shape[1:])}")
    return 0


def _cmd_nets(_args) -> int:
    from .nets import get_net_spec, list_nets

    for name in list_nets():
        spec = get_net_spec(name)
        print(f"{name:<20} {spec.input.size[0]}x{spec.input.size[1]}  {spec.license:<12} {spec.description}")
    return 0


def _cmd_generators(_args) -> int:
    from .generators import get_generator_spec, list_generators

    names = list_generators()
    if not names:
        print("no generators registered")
    for name in names:
        spec = get_generator_spec(name)
        print(f"{name:<20} encoder={spec.encoder or '-':<22} {spec.license:<12} {spec.description}")
    return 0


def _weight_source(name: str):
    from .generators import get_generator_spec, list_generators
    from .nets import get_net_spec, list_nets

    if name in list_nets():
        return get_net_spec(name).weights
    if name in list_generators():
        return get_generator_spec(name).weights
    raise KeyError(f"unknown weights {name!r}: nets {', '.join(list_nets())}; generators {', '.join(list_generators())}")


def _cmd_weights(args) -> int:
    from .hub import WeightsError, download_weights, resolve_weights

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
        n = pool.build_pool(args.dir, cache_dir=args.cache, size=args.size, seed=args.seed).n_images
    else:
        images, meta = pool.load_image_folder(args.folder, size=args.size, progress=True)
        n = pool.save_folder_pool(args.dir, images, meta)["n_images"]
    print(f"pool of {n} images in {args.dir}")
    return 0


def _cmd_train(args) -> int:
    import json

    from .train import TrainConfig, Trainer

    base = TrainConfig.from_dict(json.loads(Path(args.config).read_text())) if args.config else TrainConfig()
    if args.resume and (Path(args.out) / "config.json").exists() and not args.config:
        base = TrainConfig.from_dict(json.loads((Path(args.out) / "config.json").read_text()))
    prior = dataclasses.replace(base.prior, **{k: v for k, v in {"encoder": args.encoder, "layer": args.layer, "output_size": args.output_size}.items() if v is not None})
    config = dataclasses.replace(base, prior=prior, **{k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size, "device": args.device}.items() if v is not None})
    trainer = Trainer(config, args.pool, args.out, progress=not args.quiet)
    ckpt = Path(args.out) / "checkpoint.pt"
    if args.resume and ckpt.exists():
        trainer.resume(ckpt)
    trainer.train(until=args.until)
    if args.export and trainer.rank == 0:
        print(f"exported {args.export} sha256 {trainer.export(args.export)}")
    return 0


def _cmd_bounds(args) -> int:
    import json

    import torch

    from .generators.prior import code_bounds
    from .pool import load_any
    from .train import code_stats, encode_views

    images, _ = load_any(args.data)
    views = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    stats = code_stats(encode_views(views, args.net, args.layer))
    record = {"net": args.net, "layer": args.layer, "data": args.data, "images": len(images)}
    record.update({k: v.flatten().tolist() for k, v in stats.items()})
    lower, upper = code_bounds(stats["mean"], stats["std"], stats["min"])
    record["lower"], record["upper"] = lower.flatten().tolist(), upper.flatten().tolist()
    Path(args.out).write_text(json.dumps(record))
    print(f"wrote {args.out}: {len(record['mean'])} units over {len(images)} images")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .hub import WeightsError
    from .units import UnitError

    handlers = {
        "visualize": _cmd_visualize, "layers": _cmd_layers, "nets": _cmd_nets, "generators": _cmd_generators,
        "weights": _cmd_weights, "pool": _cmd_pool, "train-generator": _cmd_train, "bounds": _cmd_bounds,
    }
    try:
        return handlers[args.command](args)
    except (UnitError, WeightsError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"dgnam: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
