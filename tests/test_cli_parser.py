"""The ``dgnam`` command's package (``dgnam/cli/``): choices from the registries, shared flags declared once, a handler
per sub-command, the entry points (console script, ``python -m dgnam.cli``) and no private names across its files."""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from dgnam import cli
from dgnam.atlas.compute import AtlasConfig
from dgnam.cli.parser import build_parser
from dgnam.methods.choose import OPTIMIZERS
from dgnam.methods.pixel import METHODS
from dgnam.methods.presets import PRESETS
from dgnam.repro.fashion_am import METHODS as REPRO_METHODS

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "src" / "dgnam" / "cli"


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    (action,) = [a for a in parser._actions if flag in a.option_strings]
    return action


def test_choices_come_from_the_registries():
    commands = subparsers(build_parser())
    visualize, atlas = commands["visualize"], commands["atlas"]
    assert tuple(option(visualize, "--pixel").choices) == METHODS
    assert tuple(option(atlas, "--pixel").choices) == METHODS and "maco" in METHODS  # the atlas once dropped maco
    assert tuple(option(atlas, "--baseline").choices) == (*METHODS, "none")
    assert tuple(option(visualize, "--optimizer").choices) == OPTIMIZERS
    assert list(option(visualize, "--preset").choices) == list(PRESETS)
    defaults = AtlasConfig()
    assert option(atlas, "--seeds").default == list(defaults.seeds)
    assert (option(atlas, "-k").default, option(atlas, "--batch-size").default) == (defaults.k, defaults.batch_size)
    fashion = subparsers(commands["repro"])["fashion-mnist"]
    assert ",".join(REPRO_METHODS) in option(fashion, "--methods").help


def test_shared_flags_are_declared_once():
    source = "\n".join(p.read_text() for p in CLI.glob("*.py"))
    for flag in ("--net", "--net-weights", "--download", "--device", "--quiet", "--generator", "--generator-weights", "--pixel"):
        declared = re.findall(r'add_argument\(\s*"' + re.escape(flag) + '"', source)
        assert len(declared) == 1, (flag, len(declared))


def test_every_command_has_its_handler():
    commands = subparsers(build_parser())
    assert list(commands) == ["visualize", "sample", "atlas", "merge", "nets", "generators", "layers", "weights", "pool",
                              "train-generator", "bounds", "evaluate", "neighbors", "exemplars", "report", "repro"]  # fmt: skip
    for name, parser in commands.items():
        handler = parser.get_default("handler")
        assert callable(handler) and handler.__module__.startswith("dgnam.cli.") and handler.__name__.startswith("run_"), name
    args = build_parser().parse_args(["weights", "list"])  # nested sub-commands keep their group's handler
    assert args.handler.__name__ == "run_weights" and args.weights_command == "list"


def test_no_private_name_is_imported_across_the_cli_files():
    crossing = []
    for path in CLI.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                crossing += [f"{path.name}: {alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert crossing == []


def test_atlas_pixel_maco_without_accentuation(tmp_path, capsys):
    """maco is offered to the atlas; it starts from a random phase, so with accentuation on it is refused up front."""
    assert cli.main(["atlas", "some_net", "--pixel", "maco", "--out", str(tmp_path / "site")]) == 2
    assert "--no-accentuate" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


def test_the_console_script_and_python_m_reach_main():
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["dgnam"]
    module, name = script.split(":")
    assert getattr(importlib.import_module(module), name) is cli.main
    result = subprocess.run([sys.executable, "-m", "dgnam.cli", "atlas", "serve"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr == "dgnam: error: dgnam atlas serve needs the site folder: dgnam atlas serve SITE\n"

