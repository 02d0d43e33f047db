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


#: Which method a run gets, shown under ``dgnam visualize --help`` (the rules of :mod:`dgnam.methods.choose`).
METHOD_RULES = """which method runs (each run prints it, and results.json records it as method_reason):
  --preset NAME         the preset's net, generator and settings
  --generator NAME      DGN-AM through that prior (--optimizer cmaes/ga: a gradient-free search in its code space)
  --pixel METHOD        that pixel-space method
  none of these         DGN-AM through the net's default prior (efficientnet_lite0: lite0_blocks7_conv_resize); a net
                        without one (torchvision:, timm:, hf:, your own) gets DeepInversion where it has BatchNorm, else
                        Fourier, e.g. `no prior for torchvision:resnet18 -> DeepInversion (the net has BatchNorm statistics
                        to match); --generator lite0_blocks7_conv_resize for DGN-AM through the Lite0 prior`"""

#: Two or three examples under each sub-command's ``--help`` (tests/test_cli_friendly.py parses every one).
EXAMPLES = {
    "visualize": ["dgnam visualize --unit logits:espresso --unit logits:945 --out runs/demo",
                  "dgnam visualize --net torchvision:resnet18 --units logits:1,5,9 --seeds 0-3 --out runs/rn18",
                  "dgnam visualize --net my_model.py:build --unit layer4:7 --pixel fourier --out runs/mine"],
    "sample": ["dgnam sample efficientnet_lite0 logits:945 --samples 16 --out runs/samples",
               "dgnam sample efficientnet_lite0 'logits:bell pepper' --chains 2 --eps1 0 --out runs/pepper"],
    "atlas": ["dgnam atlas efficientnet_lite0 --units logits:0-7,_blocks.15:0-7 --data photos/ --out site",
              "dgnam atlas torchvision:resnet18 --layers layer4 --unit layer4:0-15 --out site_rn18",
              "dgnam atlas serve site --port 8001"],
    "merge": ["dgnam merge runs/big"],
    "nets": ["dgnam nets"],
    "generators": ["dgnam generators"],
    "layers": ["dgnam layers efficientnet_lite0", "dgnam layers torchvision:resnet18", "dgnam layers my_model.py:build"],
    "weights": ["dgnam weights list", "dgnam weights download deepsim_fc6"],
    "pool": ["dgnam pool build pool/", "dgnam pool folder photos/ pool/", "dgnam pool pack pool/ pool.npz"],
    "train-generator": ["dgnam train-generator --pool pool/ --out train/mine --config configs/priors/lite0_blocks7_conv_resize.json",
                        "dgnam train-generator --pool pool/ --out train/mine --resume --export mine.safetensors"],
    "bounds": ["dgnam bounds --data pool/ --out bounds.json", "dgnam bounds --net efficientnet_lite0 --layer _blocks.7 --data pool/ --out b7.json"],
    "evaluate": ["dgnam evaluate runs/demo", "dgnam evaluate runs/demo --judge resnet18 --data photos/"],
    "neighbors": ["dgnam neighbors runs/demo --data photos/", "dgnam neighbors runs/demo --data photos/ -k 5 --metric l2"],
    "exemplars": ["dgnam exemplars efficientnet_lite0 _blocks.7:0-15 --data photos/ -k 9 --out runs/exemplars"],
    "report": ["dgnam report runs/demo", "dgnam report runs/a runs/b --out reports/compare.html --title 'a vs b'"],
    "repro": ["dgnam repro fashion-mnist --out runs/fmnist --quick"],
}  # fmt: skip


def _friendly(parser: argparse.ArgumentParser) -> None:
    """No prefix matching (``--units`` never silently becomes ``--units-file``), on ``parser`` and every sub-command below it."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _friendly(child)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``dgnam`` command; ``parse_args(...).handler(args)`` runs the command given."""
    from ..infra import version

    p = argparse.ArgumentParser(prog="dgnam", description="Synthesize the preferred inputs of neurons (DGN-AM).", allow_abbrev=False)
    p.add_argument("--version", action="version", version=f"dgnam {version.__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line; or DGNAM_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    for name, command in sub.choices.items():
        rules = METHOD_RULES + "\n\n" if name == "visualize" else ""
        command.epilog = rules + "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
        command.formatter_class = argparse.RawDescriptionHelpFormatter  # the epilog's lines as written
    _friendly(p)
    return p
