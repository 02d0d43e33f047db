"""Forward hooks (dgnam.core.hooks): the right module's output is captured, by the outputs rule, and every hook
is removed afterwards, also when the forward pass raises."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgnam.core.hooks import NoTensorError, StopForward, capture, forward_until, layer_output, output_names, unwrap_output
from dgnam.core.units import UnitError


class Calls(nn.Module):
    """A linear layer that counts its calls and, like many vision models, returns a tuple."""

    def __init__(self, n: int, seed: int):
        super().__init__()
        self.fc = nn.Linear(n, n)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(n, n, generator=torch.Generator().manual_seed(seed)))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return (self.fc(x), "aux")


class Chain(nn.Module):
    """first -> second -> head; ``nothing`` returns None; ``fail`` makes the pass raise after ``first``."""

    def __init__(self, fail: bool = False):
        super().__init__()
        self.first, self.second = Calls(4, 0), Calls(4, 1)
        self.head = nn.Linear(4, 2)
        self.nothing = nn.Identity()
        self.nothing.forward = lambda x: None
        self.fail = fail

    def forward(self, x):
        a = self.first(x)[0]
        self.nothing(a)
        if self.fail:
            raise RuntimeError("the pass failed half-way")
        b = self.second(torch.relu(a))[0]
        return {"features": b, "logits": self.head(b)}


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


X = torch.randn(3, 4, generator=torch.Generator().manual_seed(5))


def test_capture_records_each_named_modules_output_and_removes_its_hooks():
    model = Chain()
    with capture(model, ["second", "first", "nothing", "output", "logits"]) as acts:
        out = model(X)
    first = model.first.fc(X)
    assert torch.equal(acts["first"], first)  # the tuple's first element
    assert torch.equal(acts["second"], model.second.fc(torch.relu(first)))
    assert "nothing" not in acts  # a module that returns no tensor records nothing, and the pass goes on
    assert torch.equal(acts["output"], out["logits"]) and acts["logits"] is acts["output"]  # a dict: its logits
    assert output_names(model) == ("logits", "output") and hooks_left(model) == 0


def test_hooks_are_removed_when_the_forward_pass_raises():
    model = Chain(fail=True)
    with pytest.raises(RuntimeError, match="half-way"):
        with capture(model, ["first", "second", "output"]) as acts:
            model(X)
    assert list(acts) == ["first"] and hooks_left(model) == 0
    with pytest.raises(UnitError, match="unknown layer 'secnd'.*second"):  # registered 'first' before the bad name
        with capture(model, ["first", "secnd"]):
            pass
    assert hooks_left(model) == 0
    with pytest.raises(RuntimeError, match="half-way"):
        forward_until(model, "second", X)  # the pass raises before reaching the layer
    assert hooks_left(model) == 0


def test_stop_skips_the_rest_of_the_pass():
    model = Chain()
    with capture(model, ["first"], stop=True) as acts:
        with pytest.raises(StopForward):
            model(X)
    assert (model.first.calls, model.second.calls) == (1, 0) and torch.equal(acts["first"], model.first.fc(X))
    assert torch.equal(forward_until(model, "first", X), model.first.fc(X)) and model.second.calls == 0
    assert hooks_left(model) == 0


def test_layer_output_reads_through_the_target_and_stops_at_a_module(tiny_target):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), capture(tiny_target.model, ["conv2"]) as acts:
        full = tiny_target(images)
    heads = []
    handle = tiny_target.model.logits.register_forward_hook(lambda *_: heads.append(1))
    try:
        with torch.no_grad():
            assert torch.equal(layer_output(tiny_target, "conv2", images), acts["conv2"]) and heads == []  # stopped early
            assert torch.equal(layer_output(tiny_target, "output", images), full) and heads == [1]
    finally:
        handle.remove()
    assert hooks_left(tiny_target.model) == 0


def test_unwrap_output_takes_logits_then_the_first_tensor():
    a, b = torch.zeros(1), torch.ones(1)
    assert unwrap_output({"x": "text", "y": a, "logits": b}) is b
    assert unwrap_output({"x": "text", "y": a}) is a
    assert unwrap_output([(a, b), b]) is a
    with pytest.raises(NoTensorError, match="module 'm' returned NoneType"):
        unwrap_output(None, "module 'm'")
