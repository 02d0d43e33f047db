"""Every registry entry, built and checked (after timm's test_models): metadata, forward and backward.

Nets are built with random weights (their real files are mostly not on the machine); the shipped
priors load their real weights from the package; DeePSiM generators are built with random weights.
"""

from __future__ import annotations

import dataclasses
import re
import warnings

import pytest
import torch

import dgnam
from dgnam.generators import get_generator_spec, load_generator
from dgnam.generators.prior import prior_metadata
from dgnam.methods.dgn_am import dgn_am_settings
from dgnam.core.hooks import capture
from dgnam.infra.hub import resolve_weights
from dgnam.nets import Target, get_net_spec

SHA256 = re.compile(r"[0-9a-f]{64}")


def check_source(source, licence: str) -> None:
    assert source.filename and (source.sha256 is None or SHA256.fullmatch(source.sha256)), source
    assert licence and licence != "unknown"
    assert all(u.startswith("https://") for u in source.urls), source.urls  # downloads only over https


@pytest.mark.parametrize("name", dgnam.list_nets())
def test_net_entry(name):
    spec = get_net_spec(name)
    check_source(spec.weights, spec.license)
    assert spec.name == name and spec.description
    inp = spec.input
    assert len(inp.size) == 2 and min(inp.size) >= 32 and len(inp.mean) == len(inp.std) == inp.channels and all(s > 0 for s in inp.std)
    torch.manual_seed(0)
    target = Target(spec.builder().eval(), inp, spec.categories, name=name)
    x = torch.rand(2, inp.channels, *inp.size, requires_grad=True)
    with capture(target.model, [spec.output_layer]) as acts:
        out = target(x)
    scores = acts[spec.output_layer]
    assert scores.shape[0] == 2 and torch.isfinite(scores).all()
    if spec.categories is not None:
        assert len(spec.categories) == scores.shape[1]  # one name per class (ImageNet names two classes "crane")
    scores.float().sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert out.shape[0] == 2


@pytest.mark.parametrize("name", dgnam.list_generators())
def test_generator_entry(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path))  # nothing from this machine's cache
    spec = get_generator_spec(name)
    check_source(spec.weights, spec.license)
    assert spec.output_size is not None and len(spec.output_size) == 2, "the entry states its output size (`dgnam generators` prints it)"
    known = {f.name for f in dataclasses.fields(dgnam.DGNAMConfig)}
    settings = dgn_am_settings(name)  # the prior's measured DGN-AM settings, by name
    assert set(settings) <= known
    assert not hasattr(spec, "dgn_am"), "the settings are stored once, in the prior's file header, not in the registry"
    net, _, layer = spec.encoder.partition(":")
    assert net in dgnam.list_nets() and layer
    if spec.builder is None:  # a shipped prior: the real file, from the package, is the one source
        gen = load_generator(name)
        header = prior_metadata(resolve_weights(spec.weights))
        assert settings == header["dgn_am"] == gen.dgn_am and settings.get("lr_start") == 0.05  # the paper's 8 saturates it
        assert dgn_am_settings(gen) == dgn_am_settings(str(resolve_weights(spec.weights))) == settings  # object, file, name agree
    else:
        assert settings == {}  # built by code, no header: the paper's settings
        torch.manual_seed(0)
        gen = spec.builder().eval()
        if spec.bounds is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the paper's bound files are not in the empty cache: [0, inf) then
                spec.bounds(gen)
    assert tuple(gen.output_size) == tuple(spec.output_size)
    assert bool((gen.lower <= gen.upper).all())
    code = gen.random_code([0, 1]).clamp(gen.lower, gen.upper).requires_grad_(True)
    images = gen(code)
    assert images.shape == (2, 3, *spec.output_size) and images.min() >= 0 and images.max() <= 1
    images.mean().backward()
    assert code.grad is not None and code.grad.shape == code.shape and torch.isfinite(code.grad).all()


def test_exactly_one_default_prior_per_net():
    from dgnam.methods.choose import default_generator

    defaults: dict[str, list[str]] = {}
    for name in dgnam.list_generators():
        spec = get_generator_spec(name)
        if spec.default:
            defaults.setdefault(spec.encoder.split(":")[0], []).append(name)
    # the default net has exactly one; CaffeNet's DeePSiM priors are chosen by the paper preset, none by default
    assert list(defaults) == ["efficientnet_lite0"] and len(defaults["efficientnet_lite0"]) == 1
    assert default_generator("efficientnet_lite0") == defaults["efficientnet_lite0"][0]
    assert default_generator("caffenet") is None
