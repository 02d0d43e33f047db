"""One resolver (dgnam.methods.choose.resolve): the CLI and the API run the same method and config.

For every registered net (random weights: no file is read) and for every request kind (nothing said,
an explicit prior, a pixel method), the command line and ``dgnam.run.visualize`` are run up to the
point where the work starts, and what reaches the loop (generator and config) is compared.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import dgnam
import dgnam.cli as cli
import dgnam.run as run
from dgnam.methods.choose import Choice, default_generator, default_pixel_method, resolve
from dgnam.methods.dgn_am import DGNAMConfig
from dgnam.methods.pixel import PixelConfig
from dgnam.nets import Target, get_net_spec

PRIOR = "lite0_blocks7_conv_resize"  # the shipped default prior (package data: loads offline)


class Reached(Exception):
    """Raised where the optimization would start: the test has what it came for."""


def random_target(name: str) -> Target:
    spec = get_net_spec(name)
    return Target(spec.builder().eval(), spec.input, spec.categories, name=name)


def unit_of(name: str) -> str:
    return f"{get_net_spec(name).output_layer}:0"


def capture(monkeypatch) -> list:
    """Record (generator, config) where the loop would start, then stop."""
    seen = []

    def batches(target, jobs, generator, config, *args, **kwargs):
        seen.append((generator, config))
        raise Reached

    monkeypatch.setattr(run, "_batches", batches)
    return seen


def via_cli(name, target, flags, tmp_path, monkeypatch):
    seen = capture(monkeypatch)
    monkeypatch.setattr(cli, "net_from_args", lambda args, fit=None: target)
    try:
        cli.main(["visualize", "--net", name, "--unit", unit_of(name), "--out", str(tmp_path / "cli"), "--quiet", *flags])
    except Reached:
        pass
    assert seen, "the CLI never reached the loop"
    return seen[0]


def via_api(name, target, generator, config, monkeypatch):
    seen = capture(monkeypatch)
    units = dgnam.parse_units([unit_of(name)], target.categories)
    with pytest.raises(Reached):
        run.visualize(target, units, seeds=[0], generator=generator, config=config, progress=False)
    return seen[0]


def same(cli_seen, api_seen):
    (g1, c1), (g2, c2) = cli_seen, api_seen
    assert (g1 is None) == (g2 is None)
    if g1 is not None:
        assert type(g1) is type(g2) and g1.output_size == g2.output_size and g1.dgn_am_defaults == g2.dgn_am_defaults
    assert type(c1) is type(c2) and dataclasses.asdict(c1) == dataclasses.asdict(c2)


@pytest.mark.parametrize("name", dgnam.list_nets())
def test_cli_and_api_agree_without_a_prior_given(name, tmp_path, monkeypatch):
    target = random_target(name)
    cli_seen, api_seen = via_cli(name, target, [], tmp_path, monkeypatch), via_api(name, target, None, None, monkeypatch)
    same(cli_seen, api_seen)
    prior = default_generator(name)
    if prior is None:  # the pixel default: DeepInversion with BatchNorm statistics, else Fourier
        assert cli_seen[0] is None and cli_seen[1].method == default_pixel_method(target)
        has_bn = any(isinstance(m, nn.BatchNorm2d) for m in target.model.modules())
        assert cli_seen[1].method == ("deepinversion" if has_bn else "fourier")
    else:  # the net's shipped prior with its measured settings
        assert cli_seen[1] == DGNAMConfig(**dgnam.generators.get_generator_spec(prior).dgn_am)


@pytest.mark.parametrize("name", dgnam.list_nets())
def test_cli_and_api_agree_with_a_prior_given(name, tmp_path, monkeypatch):
    target = random_target(name)
    cli_seen = via_cli(name, target, ["--generator", PRIOR, "--steps", "7"], tmp_path, monkeypatch)
    gen = dgnam.load_generator(PRIOR)
    api_seen = via_api(name, target, gen, dgnam.dgnam_config(gen, steps=7), monkeypatch)
    same(cli_seen, api_seen)
    assert cli_seen[1] == DGNAMConfig(steps=7, lr_start=0.05, transforms="standard")  # the prior's measured step, the flag on top


@pytest.mark.parametrize("name", ["efficientnet_lite0", "caffenet"])
def test_cli_and_api_agree_on_an_explicit_pixel_method(name, tmp_path, monkeypatch):
    target = random_target(name)
    cli_seen = via_cli(name, target, ["--pixel", "yosinski", "--steps", "9", "--lr", "0.02"], tmp_path, monkeypatch)
    api_seen = via_api(name, target, None, PixelConfig(method="yosinski", steps=9, lr=0.02), monkeypatch)
    same(cli_seen, api_seen)


def test_resolve_names_where_each_choice_came_from():
    lite0 = random_target("efficientnet_lite0")
    choice = resolve(lite0)
    assert isinstance(choice, Choice) and choice.method == f"dgn-am:{PRIOR}" and choice.generator == PRIOR and "measured" in choice.why
    assert resolve(lite0, pixel="fourier").config == PixelConfig(method="fourier").resolved()  # fully resolved
    squeeze = random_target("squeezenet1_1")  # no BatchNorm, no prior
    assert resolve(squeeze).method == "pixel:fourier" and "no BatchNorm" in resolve(squeeze).why
    paper = resolve("caffenet", preset="paper", overrides={"steps": 3})
    assert paper.generator == "deepsim_fc6" and paper.config.steps == 3 and paper.preset == "paper"
    assert resolve(lite0, optimizer="cmaes", overrides={"evals": 40}).config.evals == 40
    assert resolve(lite0, overrides={"evals": 40}).config.steps == 39  # a gradient step per evaluation, plus the final image


@pytest.mark.parametrize("kwargs, message", [
    (dict(pixel="fourier", overrides={"transforms": "standard"}), "--transforms applies only to DGN-AM"),
    (dict(overrides={"lr": 0.1}), "--lr-start"),
    (dict(optimizer="cmaes", overrides={"steps": 5}), "takes its budget from --evals"),
    (dict(overrides={"steps": 5, "evals": 9}), "not both"),
    (dict(pixel="fourier", generator=PRIOR), "choose one"),
    (dict(optimizer="sgd"), "unknown optimizer"),
    (dict(overrides={"lr_star": 1.0}), "unknown setting(s) lr_star"),
])  # fmt: skip
def test_resolve_refuses_settings_that_do_not_apply(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(random_target("efficientnet_lite0"), **kwargs)


def test_the_api_asks_for_a_generator_for_a_code_space_config_on_a_net_without_a_prior(monkeypatch):
    target = random_target("squeezenet1_1")
    units = dgnam.parse_units(["logits:0"], target.categories)
    with pytest.raises(ValueError, match="needs a generator"):
        run.visualize(target, units, config=DGNAMConfig(steps=1), progress=False)
    assert torch.is_tensor(target.mean)
