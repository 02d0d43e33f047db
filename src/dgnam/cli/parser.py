"""The ``dgnam`` argument parser: each command group's module adds its sub-commands (and the function that runs each)."""

from __future__ import annotations

import argparse

from .atlas import add_atlas_parser
from .evaluate import add_evaluate_parser, add_exemplars_parser, add_neighbors_parser, add_report_parser
from .info import add_generators_parser, add_layers_parser, add_nets_parser, add_weights_parser
from .repro import add_repro_parser
from .train import add_bounds_parser, add_pool_parser, add_train_parser
from .visualize import add_merge_parser, add_sample_parser, add_visualize_parser

#: The sub-commands in the order ``dgnam --help`` lists them; each sets ``handler``, the function that runs it.
COMMANDS = (
    add_visualize_parser, add_sample_parser, add_atlas_parser, add_merge_parser, add_nets_parser, add_generators_parser, add_layers_parser,
    add_weights_parser, add_pool_parser, add_train_parser, add_bounds_parser, add_evaluate_parser, add_neighbors_parser,
    add_exemplars_parser, add_report_parser, add_repro_parser,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``dgnam`` command; ``parse_args(...).handler(args)`` runs the command given."""
    p = argparse.ArgumentParser(prog="dgnam", description="Synthesize the preferred inputs of neurons (DGN-AM).")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line; or DGNAM_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return p
