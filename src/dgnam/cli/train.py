"""``dgnam pool``, ``train-generator`` and ``bounds``: the natural-image pool, a prior trained on it, its code bounds."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .common import add_device_flag, add_net_flags, add_quiet_flag
from .values import MAX_TRAIN_STEPS, finite_float, image_side, int_in, train_steps


def add_pool_parser(sub) -> None:
    """``dgnam pool build | folder | pack``."""
    pool = sub.add_parser("pool", help="the offline natural-image training pool")
    psub = pool.add_subparsers(dest="pool_command", required=True)
    pb = psub.add_parser("build", help="assemble the pool from Debian packages and scikit-image photos")
    pb.add_argument("dir")
    pb.add_argument("--size", type=image_side, default=160)
    pb.add_argument("--seed", type=int, default=0)
    pb.add_argument("--cache", help="download cache (default $DGNAM_HOME/debs)")
    pb.add_argument("--crop-density", type=float, default=40.0, help="crops per output-size of an original's short side (default 40)")
    pb.add_argument("--max-crops", type=int, default=600, help="most crops from one original (default 600)")
    pb.add_argument("--composites", type=int, default=3000, help="stamp-on-photo composites (default 3000)")
    pf = psub.add_parser("folder", help="turn any image folder (class/xxx.jpg or flat) into a pool")
    pf.add_argument("folder")
    pf.add_argument("dir")
    pf.add_argument("--size", type=image_side, default=160)
    pp = psub.add_parser("pack", help="write a pool (or image folder) as one small .npz of compressed images, e.g. for the GPU machine")
    pp.add_argument("source", help="pool folder or image folder")
    pp.add_argument("out", help="the .npz to write (train-generator --pool takes it)")
    pp.add_argument("--size", type=image_side, default=128, help="side of the stored images (the training resolution)")
    pp.add_argument("--max-mib", type=finite_float, default=40.0, help="size budget; the best WebP/JPEG quality that fits is chosen")
    pool.set_defaults(handler=run_pool)


def add_train_parser(sub) -> None:
    """``dgnam train-generator``."""
    t = sub.add_parser("train-generator", help="train a generator prior (DeePSiM recipe) on a pool")
    t.add_argument("--pool", required=True, help="pool folder (`dgnam pool build`) or any image folder (class/x.jpg or flat)")
    t.add_argument("--out", required=True, help="training folder: config.json, log.csv, samples/, checkpoint.pt")
    t.add_argument("--config", help="JSON file of TrainConfig fields (the flags below override it)")
    t.add_argument("--steps", type=train_steps)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--encoder", help="encoder net (default efficientnet_lite0)")
    t.add_argument("--layer", help="encoder layer inverted (default pool)")
    t.add_argument("--output-size", type=int, help="generator output size in px (default 128)")
    add_device_flag(t, default=None, help="cpu or cuda")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (a used --out needs --resume or --overwrite)")
    t.add_argument("--overwrite", action="store_true", help="start again in a used --out (removes only train-generator's files; keeps cache/)")
    t.add_argument("--until", type=int_in(0, MAX_TRAIN_STEPS, " training steps"), help="stop at this step (the loss schedule still spans --steps)")
    t.add_argument("--export", help="also write the generator as a .safetensors prior here")
    add_quiet_flag(t)
    t.set_defaults(handler=run_train)


def add_bounds_parser(sub) -> None:
    """``dgnam bounds``."""
    b = sub.add_parser("bounds", help="per-unit statistics of a net's layer over images: the code clipping bounds")
    add_net_flags(b, default="efficientnet_lite0", help="the encoder net, a registered name (default efficientnet_lite0)", weights_help=None,
                  download=False)  # fmt: skip
    b.add_argument("--layer", default="pool")
    b.add_argument("--data", required=True, help="a pool folder or any image folder")
    b.add_argument("--out", required=True, help="output JSON (mean, std, percentiles, bounds [0, mean + 3 std])")
    b.set_defaults(handler=run_bounds)


def run_pool(args: argparse.Namespace) -> int:
    """``dgnam pool build | folder | pack``."""
    from ..pool import build_pool, load_image_folder, pack_pool, save_folder_pool

    if args.pool_command == "build":
        n = build_pool(args.dir, cache_dir=args.cache, size=args.size, seed=args.seed,
                       crop_density=args.crop_density, max_crops_per_original=args.max_crops, composites=args.composites).n_images
    elif args.pool_command == "pack":
        card = pack_pool(args.source, args.out, size=args.size, max_mib=args.max_mib)
        packed = card["packed"]
        print(f"packed {card['n_images']} images of {args.size} px into {args.out}: {packed['format']} quality {packed['quality']}, "
              f"{packed['bytes'] / 2**20:.1f} MiB")
        return 0
    else:
        images, meta = load_image_folder(args.folder, size=args.size, progress=True)
        n = save_folder_pool(args.dir, images, meta)["n_images"]
        if meta.get("skipped"):
            print(f"skipped {len(meta['skipped'])} file(s) that are not readable images (warnings above)", file=sys.stderr)
    print(f"pool of {n} images in {args.dir}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    """``dgnam train-generator``: train (or ``--resume``) a prior in ``--out``; exits 128 + N on signal N."""
    import signal

    from ..train.files import prepare_train_folder
    from ..train.trainer import TrainConfig, Trainer

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


BOUNDS_KEYS = ("net", "layer", "images", "lower", "upper")  # what every bounds file dgnam writes holds


def check_bounds_out(path: str | Path) -> None:
    """Refuse ``bounds --out`` over a file that is not a bounds file dgnam wrote (a JSON object with
    :data:`BOUNDS_KEYS`): dgnam never replaces a file it did not write, nor a symlink or a folder.

    Raises:
        RunFolderError: one line naming ``path`` and the fix.
    """
    import json

    from ..infra.messages import short
    from ..io.read import RunFolderError

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_file() and not path.is_symlink():
        try:
            record = json.loads(path.read_bytes())
        except (ValueError, OSError, RecursionError):  # not JSON (or not UTF-8, or nested too deep): not ours
            record = None
        if isinstance(record, dict) and all(key in record for key in BOUNDS_KEYS):
            return
    raise RunFolderError(f"--out {short(path)} exists and is not a bounds file dgnam wrote: give another --out "
                         "(dgnam never replaces a file it did not write)")


def run_bounds(args: argparse.Namespace) -> int:
    """``dgnam bounds``: per-unit statistics of a layer over images, and the code bounds, into a JSON file."""
    import torch

    from ..generators.prior import code_bounds
    from ..infra.files import write_json_atomic
    from ..infra.messages import short
    from ..pool.store import load_any
    from ..train.codes import code_stats, encode_views

    check_bounds_out(args.out)  # before any work
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
