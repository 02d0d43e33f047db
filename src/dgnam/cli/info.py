"""``dgnam nets``, ``generators``, ``layers`` and ``weights``: what is registered, what a net holds, which weights are here."""

from __future__ import annotations

import argparse

from .common import add_net_flags, net_from_args


def add_nets_parser(sub) -> None:
    """``dgnam nets``."""
    sub.add_parser("nets", help="list registered target nets").set_defaults(handler=run_nets)


def add_generators_parser(sub) -> None:
    """``dgnam generators``."""
    sub.add_parser("generators", help="list registered generator priors").set_defaults(handler=run_generators)


def add_layers_parser(sub) -> None:
    """``dgnam layers``."""
    lay = sub.add_parser("layers", help="list the addressable layers of a net (dotted module names) with output shapes")
    add_net_flags(lay, positional=True, spec=True)
    lay.set_defaults(handler=run_layers)


def add_weights_parser(sub) -> None:
    """``dgnam weights download NAME`` and ``dgnam weights list``."""
    w = sub.add_parser("weights", help="manage weight files")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    wd = wsub.add_parser("download", help="download a registered net's or generator's weights into the cache")
    wd.add_argument("name")
    wsub.add_parser("list", help="registered weights, where they come from, and whether they are here")
    w.set_defaults(handler=run_weights)


def run_layers(args: argparse.Namespace) -> int:
    """``dgnam layers NET``: every addressable layer and its output shape."""
    from ..core.objectives import all_layer_shapes

    net = net_from_args(args, pretrained=False)  # shapes need no weights: none are looked for, none downloaded
    shapes = all_layer_shapes(net)
    width = max(len(n) for n in shapes)
    for name, shape in shapes.items():
        print(f"{name:<{width}}  {tuple(shape[1:])}")
    return 0


def run_nets(args: argparse.Namespace) -> int:
    """``dgnam nets``: the registered target nets."""
    from ..nets import get_net_spec, list_nets

    for name in list_nets():
        spec = get_net_spec(name)
        print(f"{name:<20} {spec.input.size[0]}x{spec.input.size[1]}  {spec.license:<12} {spec.description}")
    return 0


def run_generators(args: argparse.Namespace) -> int:
    """``dgnam generators``: the registered priors and their DGN-AM settings."""
    from ..generators import get_generator_spec, list_generators
    from ..infra.hub import WeightsError
    from ..methods.dgn_am import dgn_am_settings

    names = list_generators()
    if not names:
        print("no generators registered")
    for name in names:
        spec = get_generator_spec(name)
        size = "x".join(map(str, spec.output_size)) if spec.output_size else "?"
        try:  # stored in the prior's file header only: a prior not downloaded yet cannot say
            dgn_am = ", ".join(f"{k}={v}" for k, v in dgn_am_settings(name).items()) or "the paper's"
        except WeightsError:
            dgn_am = f"in its file, not here yet (dgnam weights download {name})"
        default = " (default for its net)" if spec.default else ""
        print(f"{name:<26} encoder={spec.encoder or '-':<30} {size:>7} px  DGN-AM: {dgn_am}{default}\n{'':<26} {spec.license}: {spec.description}")
    return 0


def _weight_source(name: str):
    from ..generators import get_generator_spec, list_generators
    from ..nets import get_net_spec, list_nets

    if name in list_nets():
        return get_net_spec(name).weights
    if name in list_generators():
        return get_generator_spec(name).weights
    raise KeyError(f"unknown weights {name!r}: nets {', '.join(list_nets())}; generators {', '.join(list_generators())}")


def run_weights(args: argparse.Namespace) -> int:
    """``dgnam weights download NAME`` (the path of the weights, fetched if absent) and ``dgnam weights list``."""
    from ..infra.hub import WeightsError, download_weights, resolve_weights

    if args.weights_command == "download":
        source = _weight_source(args.name)
        try:
            print(resolve_weights(source))
            return 0
        except WeightsError:
            print(download_weights(source))
            return 0
    from ..generators import list_generators
    from ..nets import list_nets

    for name in list_nets() + list_generators():
        source = _weight_source(name)
        try:
            where = str(resolve_weights(source))
        except WeightsError:
            where = "not here" + (f" (download from {source.urls[0]})" if source.urls else "")
        print(f"{name:<20} {where}")
    return 0
