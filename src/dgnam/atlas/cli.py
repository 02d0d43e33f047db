"""``dgnam atlas NET ...`` and ``dgnam atlas serve SITE``: flags to :func:`~dgnam.atlas.build_atlas` / :func:`~dgnam.atlas.serve`."""

from __future__ import annotations

from pathlib import Path


def run_atlas(args) -> int:
    """Run the ``atlas`` sub-command (``args`` from :func:`dgnam.cli.build_parser`); returns the exit code."""
    if args.net == "serve":
        return _serve(args)
    if args.site is not None:
        raise ValueError(f"dgnam atlas takes one net, got also {args.site!r} (to serve a site: dgnam atlas serve SITE)")
    if not args.out:
        raise ValueError("dgnam atlas needs --out SITE_FOLDER")
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
    server = serve(args.site, port=args.port)
    host, port = server.server_address[:2]
    print(f"serving {args.site} at http://{host}:{port}/index.html (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
