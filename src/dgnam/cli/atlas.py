"""``dgnam atlas NET ...`` and ``dgnam atlas serve SITE``: flags to :func:`~dgnam.atlas.build_atlas` / :func:`~dgnam.atlas.serve`."""

from __future__ import annotations

import errno
from pathlib import Path


def run_atlas(args) -> int:
    """Run the ``atlas`` sub-command (``args`` from :func:`dgnam.cli.build_parser`); returns the exit code."""
    if args.net == "serve":
        return _serve(args)
    if args.site is not None:
        raise ValueError(f"dgnam atlas takes one net, got also {args.site!r} (to serve a site: dgnam atlas serve SITE)")
    if not args.out:
        raise ValueError("dgnam atlas needs --out SITE_FOLDER")
    from .site import claim_files

    claim_files(args.out, [], write=False)  # someone else's folder is refused before any work (the pool, the net)
    if args.batch_size < 1 or args.k < 1 or (args.steps is not None and args.steps < 1):
        raise ValueError("--batch-size, -k and --steps must be at least 1")
    from .. import load_generator
    from ..cli import net_from_args
    from ..distributed import close_world, init_world
    from ..methods.choose import default_pixel_method, resolve
    from ..methods.pixel import PixelConfig
    from .build import AtlasMethod, build_atlas, ensure_pool, open_data
    from .compute import AtlasConfig

    net = net_from_args(args)  # any net --net takes: registered, torchvision:/timm:/hf:, a model file
    world = init_world(args.device)
    try:
        net.to(world.device)
        choice = resolve(net, args.generator, pixel=args.pixel)  # the method `dgnam visualize` would run
        generator_name = choice.generator if choice.uses_generator else None
        if choice.uses_generator:
            generator = load_generator(generator_name, weights=args.generator_weights, download=args.download).to(world.device)
            baseline = args.baseline or default_pixel_method(net)
            method = AtlasMethod(generator, choice.config, None if baseline == "none" else PixelConfig(method=baseline), generator_name)
        else:
            method = AtlasMethod(None, None, choice.config)
        data_path = Path(args.data) if args.data else ensure_pool(progress=not args.quiet)
        config = AtlasConfig(seeds=tuple(args.seeds), steps=args.steps, k=args.k, pixel_baseline=generator_name is not None and args.baseline != "none",
                             accentuate=not args.no_accentuate, batch_size=args.batch_size)  # fmt: skip
        layers = [l.strip() for l in (args.layers or "").split(",") if l.strip()]
        size = max(net.spec.size)
        summary = build_atlas(net, args.net, args.out, open_data(data_path, size=size), method, layers, args.units, config,
                              command=["dgnam"] + args.argv, progress=not args.quiet, world=world)  # fmt: skip
    finally:
        close_world(world)
    if summary.index is not None:
        print(f"atlas of {summary.units} unit(s): {summary.computed} computed now, {summary.cached} already done, "
              f"{summary.activation_passes} activation pass(es) over the data; open {summary.index} or `dgnam atlas serve {args.out}`")
    return summary.exit_code


def _serve(args) -> int:
    from .site import serve

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
