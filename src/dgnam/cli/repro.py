"""``dgnam repro fashion-mnist``: a complete small-scale reproduction, trained here from scratch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..repro.fashion_am import METHODS
from .common import add_quiet_flag
from .values import finite_float, seed_list


def add_repro_parser(sub) -> None:
    """``dgnam repro fashion-mnist``."""
    rp = sub.add_parser("repro", help="complete small-scale reproductions, trained here from scratch")
    rsub = rp.add_subparsers(dest="repro_command", required=True)
    fm = rsub.add_parser("fashion-mnist", help="DGN-AM vs the pixel baselines on Fashion-MNIST (Debian's dataset-fashion-mnist): "
                         "classifier, judges and generator trained in minutes on a CPU")
    fm.add_argument("--out", required=True, help="run folder: models/, sheet_<method>.png, neighbours.png, results.json, summary.md")
    fm.add_argument("--reuse", action="store_true", help="load the weights in OUT/models whose config and data match instead of training")
    fm.add_argument("--quick", action="store_true", help="about 40 %% of the default budget (half an epoch, 400 generator steps, 2 seeds)")
    fm.add_argument("--epochs", type=finite_float, help="classifier epochs (default 1); the judges' epochs keep their ratio to it (MLP 2x, ResNet 1x)")
    fm.add_argument("--generator-steps", type=int, help="generator training steps of 64 images (default 1000)")
    fm.add_argument("--am-steps", type=int, help="optimization steps of every method (default 200, the paper's)")
    fm.add_argument("--seeds", type=seed_list, help="seeds per class (default 0-2)")
    fm.add_argument("--methods", help=f"comma list of {','.join(METHODS)} (default all)")
    fm.add_argument("--train-images", type=int, help="train on the first N training images (default all 60,000)")
    fm.add_argument("--cache", help="Debian package cache (default $DGNAM_HOME/debs)")
    fm.add_argument("--synthetic", action="store_true", help="a synthetic 10-class shape set instead (no download): a dry run")
    add_quiet_flag(fm, help="no progress bars or stage lines")
    rp.set_defaults(handler=run_repro)


def repro_config(args: argparse.Namespace):
    """The :class:`~dgnam.repro.fashion.ReproConfig` that ``dgnam repro fashion-mnist`` flags ask for."""
    from ..repro.fashion import ReproConfig

    base = ReproConfig.quick() if args.quick else ReproConfig()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    return base.with_budget(epochs=args.epochs, generator_steps=args.generator_steps, am_steps=args.am_steps,
                            seeds=args.seeds, methods=methods, train_images=args.train_images)


def run_repro(args: argparse.Namespace) -> int:
    """``dgnam repro fashion-mnist``: train, synthesize, judge; prints the summary."""
    from ..repro import fashion

    config = repro_config(args)
    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    try:
        data = fashion.synthetic_shapes() if args.synthetic else fashion.load_fashion_mnist(args.cache)
    except (RuntimeError, FileNotFoundError) as exc:  # FileNotFoundError: no apt-get (not a Debian system)
        message = f"{exc.filename} not found: Fashion-MNIST comes from Debian's registry (apt-get download)" if isinstance(exc, FileNotFoundError) and exc.filename else exc
        print(f"dgnam: error: {message}\n(`--synthetic` runs the same pipeline on generated shapes, without the package)", file=sys.stderr)
        return 2
    record = fashion.run_repro(data, args.out, config, reuse=args.reuse, progress=not args.quiet, log=log)
    print(fashion.summary_markdown(record))
    print(f"\nwrote {Path(args.out) / 'results.json'}")
    return 0
