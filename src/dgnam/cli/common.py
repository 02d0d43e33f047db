"""The flags several ``dgnam`` commands share, each declared once here, and the net they ask for (:func:`net_from_args`)."""

from __future__ import annotations

import argparse
import sys

from ..methods.pixel import METHODS as PIXEL_METHODS
from .values import finite_float, float_list, input_size, int_in, torch_device

NET_HELP = ("target net: a registered name (`dgnam nets`), torchvision:NAME[:WEIGHTS], timm:NAME, hf:REPO_ID or hf:DIR, "
            "or your own builder PATH.py:FUNC / package.module:FUNC (imported and run as your code) returning an nn.Module, "
            "(module, InputSpec) or (module, InputSpec, categories)")  # fmt: skip
WEIGHTS_HELP = "local weight file for the net"
DEVICE_HELP = "torch device, e.g. cpu or cuda"


def add_net_flags(parser: argparse.ArgumentParser, *, positional: bool = False, help: str = NET_HELP, default: str | None = None,
                  weights_help: str | None = WEIGHTS_HELP, download: bool = True, spec: bool = False) -> None:
    """The net a command runs: ``--net`` (or, ``positional``, a NET argument), ``--net-weights`` (none where
    ``weights_help`` is None), ``--download`` and, with ``spec``, the input-spec flags: what :func:`net_from_args` reads."""
    if positional:  # NET, or --net NAME in its place (as every other command takes it): _NetParser reads both
        parser.add_argument("net", help=help)
        parser.__class__ = _NetParser
    parser.add_argument("--net", **({"dest": "net_flag", "metavar": "NAME", "help": "the net, as NET (the one or the other)"}
                                    if positional else {"default": default, "help": help}))  # fmt: skip
    if weights_help is not None:
        parser.add_argument("--net-weights", help=weights_help)
    if download:
        parser.add_argument("--download", action="store_true", help="allow downloading registered weights not found offline")
    if spec:
        add_spec_flags(parser)


class _NetParser(argparse.ArgumentParser):
    """A sub-command whose net is a positional NET that ``--net NAME`` may give instead; both, differing: one error line."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        rest, flags = _pop_net_flags(list(sys.argv[1:] if args is None else args))
        if not flags:
            return super().parse_known_args(rest, namespace)
        if len(set(flags)) > 1:
            self.exit(2, f"dgnam: error: --net given twice, {flags[0]!r} and {flags[1]!r}: give one\n")
        parsed, extras = super().parse_known_args([flags[0], *rest], namespace)
        if extras and not extras[0].startswith("-"):  # a positional NET too: parse as given, and the two must agree
            parsed, extras = super().parse_known_args(rest, namespace)
            if parsed.net != flags[0]:
                self.exit(2, f"dgnam: error: two nets, NET {parsed.net!r} and --net {flags[0]!r}: give one of them\n")
        after = [a for a in self._actions if not a.option_strings][1:2]  # the positional after NET (sample's units, atlas's site)
        value = getattr(parsed, after[0].dest, None) if after else None
        if isinstance(value, list) and len(value) > 1 and value[0] == flags[0]:  # NET given as --net too, the same
            setattr(parsed, after[0].dest, value[1:])
        elif value is not None and value == flags[0]:
            setattr(parsed, after[0].dest, None)
        return parsed, extras


def _pop_net_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """``args`` without its ``--net NAME`` / ``--net=NAME`` (up to a ``--``), and the names they gave."""
    rest, flags, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg == "--net" and i + 1 < len(args):
            flags.append(args[i + 1])
            i += 2
            continue
        if arg.startswith("--net="):
            flags.append(arg[len("--net="):])
        else:
            rest.append(arg)
        i += 1
    return rest, flags


def add_spec_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that override or supply a net's input spec (for nets without one, e.g. PATH.py:FUNC)."""
    g = parser.add_argument_group("input spec (overrides the net's own; a builder without an InputSpec gets 224 px RGB, ImageNet mean/std)")
    g.add_argument("--input-size", type=input_size, help="the size the net takes: S or HxW")
    g.add_argument("--mean", type=float_list, help="per-channel mean after scaling, e.g. 0.485,0.456,0.406 (its length sets the channel count)")
    g.add_argument("--std", type=float_list, help="per-channel std, e.g. 0.229,0.224,0.225")
    g.add_argument("--value-range", type=finite_float, help="1 for inputs in [0, 1], 255 for Caffe-style nets")
    g.add_argument("--bgr", action="store_true", default=None, help="the net takes BGR (3 channels)")
    g.add_argument("--categories", help="file of class names, one per line, for the output units")


def add_unit_flags(parser: argparse.ArgumentParser, default: str = "") -> None:
    """The units a command works on, the same three flags everywhere (``visualize``, ``atlas``): ``--unit`` (one unit
    string), ``--units`` (a comma-separated list) and ``--units-file``, each read by :func:`unit_texts`."""
    parser.add_argument("--unit", action="append", default=[], help="LAYER:UNIT[@LOC], repeatable; ranges 0-9, class names, @FILE" + default)
    parser.add_argument("--units", action="append", default=[], help="a comma-separated list, e.g. logits:0-7,_blocks.15:0-7 (repeatable)")
    parser.add_argument("--units-file", help="file with one unit per line")


def unit_texts(args: argparse.Namespace) -> list[str]:
    """The unit strings of ``--unit``, ``--units`` (each list split where a ``LAYER:`` follows a comma) and ``--units-file``."""
    from ..atlas.build import split_unit_list

    listed = [text for group in args.units for text in split_unit_list(group)]
    return list(args.unit) + listed + ([f"@{args.units_file}"] if args.units_file else [])


def add_method_flags(parser: argparse.ArgumentParser, generator_help: str, pixel_help: str | None = None) -> None:
    """``--generator`` and ``--generator-weights``; with ``pixel_help`` also ``--pixel`` (any registered pixel method),
    the one or the other."""
    methods = parser.add_mutually_exclusive_group() if pixel_help else parser
    methods.add_argument("--generator", help=generator_help)
    if pixel_help:
        methods.add_argument("--pixel", choices=PIXEL_METHODS, help=pixel_help)
    parser.add_argument("--generator-weights", help="local weight file for the generator")


def add_device_flag(parser: argparse.ArgumentParser, default: str | None = "cpu", help: str = DEVICE_HELP) -> None:
    """``--device``, checked against this torch build as it is read."""
    parser.add_argument("--device", type=torch_device, default=default, help=help)


def add_quiet_flag(parser: argparse.ArgumentParser, help: str = "no progress bars") -> None:
    """``--quiet``."""
    parser.add_argument("--quiet", action="store_true", help=help)


def add_run_folder_flags(parser: argparse.ArgumentParser, resume: bool = True) -> None:
    """--resume / --overwrite: what to do with a run folder that is not empty (by default: refuse)."""
    flags = parser.add_mutually_exclusive_group()
    if resume:
        flags.add_argument("--resume", action="store_true",
                           help="continue the interrupted run in --out: same command, finished images are kept and skipped")
    flags.add_argument("--overwrite", action="store_true", help="remove the earlier run's outputs in --out first")
    if resume:  # the thread count is recorded: a resume under another count would make other bytes, so it is refused
        parser.add_argument("--threads", type=int_in(1, 1024, " CPU threads"), help="torch CPU threads (default: torch's, OMP_NUM_THREADS); "
                            "recorded in results.json, and --resume needs the same")


def net_from_args(args: argparse.Namespace, fit: str | None = None, pretrained: bool = True):
    """The :class:`~dgnam.nets.Target` that ``--net``, ``--net-weights``, ``--download`` and the input-spec flags ask for
    (``pretrained=False``: the architecture only, no weights unless ``--net-weights``; see ``load_target``)."""
    from ..nets.adapters import load_target

    return load_target(args.net, weights=args.net_weights, download=getattr(args, "download", False), overrides=spec_overrides(args), fit=fit,
                       pretrained=pretrained)  # fmt: skip


def spec_overrides(args: argparse.Namespace):
    """The :class:`~dgnam.nets.adapters.SpecOverrides` of the input-spec flags (all None when absent)."""
    from ..nets.adapters import SpecOverrides, read_categories

    get = lambda name: getattr(args, name, None)  # noqa: E731  (sub-commands without the flags)
    categories = read_categories(args.categories) if get("categories") else None
    return SpecOverrides(size=get("input_size"), mean=get("mean"), std=get("std"), value_range=get("value_range"), bgr=get("bgr"),
                         categories=categories)  # fmt: skip
