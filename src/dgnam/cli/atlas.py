"""``dgnam atlas NET ...`` and ``dgnam atlas serve SITE``: flags to :func:`~dgnam.atlas.build_atlas` / :func:`~dgnam.atlas.serve`."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from ..atlas.compute import AtlasConfig
from ..methods.pixel import METHODS as PIXEL_METHODS
from .common import add_device_flag, add_method_flags, add_net_flags, add_quiet_flag, add_unit_flags, net_from_args, unit_texts
from .values import int_in, seed_list, step_count


def add_atlas_parser(sub) -> None:
    """``dgnam atlas NET`` and ``dgnam atlas serve SITE`` (the defaults are :class:`~dgnam.atlas.compute.AtlasConfig`'s)."""
    defaults = AtlasConfig()
    at = sub.add_parser("atlas", help="a browsable static site of a net's units (DGN-AM, pixel baseline, exemplars, accentuation); "
                        "`dgnam atlas serve SITE` serves one on localhost")
    add_net_flags(at, positional=True, help="target net (as --net takes it), or 'serve' to serve a built site", spec=True)
    at.add_argument("site", nargs="?", help="with 'serve': the site folder")
    at.add_argument("--layers", help="comma-separated layers, e.g. logits,_blocks.15 (default: those of --units)")
    add_unit_flags(at, default="; only these units (default: every unit of --layers)")
    at.add_argument("--data", help="natural images: any image folder, a pool folder or a .npz pool (default: the offline pool "
                    "in $DGNAM_HOME/pool, built on first use as `dgnam pool build` does)")
    at.add_argument("--out", help="the site folder (an atlas already there is completed, not redone)")
    add_method_flags(at, "generator prior (default: the net's default prior)", pixel_help="a pixel method instead of DGN-AM")
    at.add_argument("--baseline", choices=(*PIXEL_METHODS, "none"),
                    help="pixel baseline beside DGN-AM (default: deepinversion with BatchNorm, else fourier)")
    at.add_argument("--seeds", type=seed_list, default=list(defaults.seeds),
                    help=f"DGN-AM facets per unit (default {','.join(map(str, defaults.seeds))})")
    at.add_argument("--steps", type=step_count, help="optimization steps of every image (default: each method's, 200)")
    at.add_argument("-k", type=int, default=defaults.k, help=f"top and bottom natural images per unit (default {defaults.k})")
    at.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                    help="DGN-AM's facets and accentuation under bfloat16 autocast (bf16), fp32 (default) or auto (bf16 where the CPU or GPU "
                    "has it); the pixel baseline stays fp32")
    at.add_argument("--no-accentuate", action="store_true", help="skip the accentuated top exemplar")
    at.add_argument("--batch-size", type=int, default=defaults.batch_size, help=f"images optimized together (default {defaults.batch_size})")
    add_device_flag(at, help="torch device, e.g. cpu or cuda (cuda: cuda:LOCAL_RANK under torchrun)")
    at.add_argument("--port", type=int_in(0, 65535, " (0: any free port)", grouped=False), default=8000, help="with 'serve': the port on 127.0.0.1 (default 8000)")
    add_quiet_flag(at)
    at.set_defaults(handler=run_atlas)


def run_atlas(args: argparse.Namespace) -> int:
    """Run the ``atlas`` sub-command; returns the exit code."""
    if args.net == "serve":
        return _serve(args)
    if args.site is not None:
        raise ValueError(f"dgnam atlas takes one net, got also {args.site!r} (to serve a site: dgnam atlas serve SITE)")
    if not args.out:
        raise ValueError("dgnam atlas needs --out SITE_FOLDER")
    from ..atlas.site import claim_files

    claim_files(args.out, [], write=False)  # someone else's folder is refused before any work (the pool, the net)
    if args.batch_size < 1 or args.k < 1 or (args.steps is not None and args.steps < 1):
        raise ValueError("--batch-size, -k and --steps must be at least 1")
    if args.pixel == "maco" and not args.no_accentuate:  # maco starts from a random phase, never from a photo
        raise ValueError("--pixel maco cannot accentuate a photo (it starts from a random phase): add --no-accentuate, or take another --pixel")
    from ..atlas.build import AtlasMethod, build_atlas, ensure_pool, open_data
    from ..distributed import close_world, init_world
    from ..generators import load_generator
    from ..infra.hardware import resolve_precision
    from ..methods.choose import resolve
    from ..methods.pixel import default_pixel_method

    net = net_from_args(args)  # any net --net takes: registered, torchvision:/timm:/hf:, a model file
    world = init_world(args.device)
    try:
        net.to(world.device)
        steps = {"steps": args.steps}  # the method `dgnam visualize` would run, and its baseline, with --steps
        precision = None if args.precision is None else resolve_precision(args.precision, world.device)
        if precision and args.pixel:
            raise ValueError("--precision sets DGN-AM's nets (through a generator prior); the pixel methods run in fp32")
        choice = resolve(net, args.generator, pixel=args.pixel, overrides={**steps, "precision": precision})
        generator_name = choice.generator if choice.uses_generator else None
        if choice.uses_generator:
            generator = load_generator(generator_name, weights=args.generator_weights, download=args.download).to(world.device)
            baseline = args.baseline or default_pixel_method(net)
            pixel = None if baseline == "none" else resolve(net, pixel=baseline, overrides=steps).config
            method = AtlasMethod(generator, choice.config, pixel, generator_name)
        else:
            method = AtlasMethod(None, None, choice.config)
        baseline_note = f"; pixel baseline beside it: {method.pixel.method}" if choice.uses_generator and method.pixel is not None else ""
        if world.rank == 0 and not args.quiet:
            print(f"dgnam: method {choice.method}: {choice.why}{baseline_note}", file=sys.stderr)
        data_path = Path(args.data) if args.data else ensure_pool(progress=not args.quiet)
        config = AtlasConfig(seeds=tuple(args.seeds), k=args.k, pixel_baseline=generator_name is not None and args.baseline != "none",
                             accentuate=not args.no_accentuate, batch_size=args.batch_size)  # fmt: skip
        layers = [l.strip() for l in (args.layers or "").split(",") if l.strip()]
        size = max(net.spec.size)
        summary = build_atlas(net, args.net, args.out, open_data(data_path, size=size), method, layers, unit_texts(args), config,
                              command=["dgnam"] + args.argv, progress=not args.quiet, world=world)  # fmt: skip
    finally:
        close_world(world)
    if summary.index is not None:
        print(f"atlas of {summary.units} unit(s): {summary.computed} computed now, {summary.cached} already done, "
              f"{summary.activation_passes} activation pass(es) over the data; open {summary.index} or `dgnam atlas serve {args.out}`")
    return summary.exit_code


def _serve(args) -> int:
    from ..atlas.site import serve

    if not args.site:
        raise ValueError("dgnam atlas serve needs the site folder: dgnam atlas serve SITE")
    try:
        server = serve(args.site, port=args.port)
    except OSError as e:  # a bind error names no file: say which port, and what to do
        if e.errno == errno.EADDRINUSE:
            raise ValueError(f"port {args.port} on 127.0.0.1 is in use already: give another --port (e.g. --port {args.port % 65535 + 1}), "
                             "or stop what listens there") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise ValueError(f"port {args.port} on 127.0.0.1 is not open to you (ports below 1024 need root): give --port 8000 or above") from None
        raise
    host, port = server.server_address[:2]
    print(f"serving {args.site} at http://{host}:{port}/index.html (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
