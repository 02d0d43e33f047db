"""Hardening (issue 21): a user's model is left as it was, signals stop a run cleanly, channel counts are checked up front."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

import dgnam
from dgnam.infra.interrupts import stop_on_signals
from dgnam.nets import frozen_eval

from conftest import TinyNet


class DropNet(TinyNet):
    """TinyNet with dropout before the logits (on in train mode)."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.conv2(x))
        return self.logits(self.drop(self.pool(x)))


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", ["pixel", "dgn-am"])
def test_a_run_leaves_the_users_model_as_it_was(tiny_generator, method):
    torch.manual_seed(0)
    model = DropNet().train()  # the user's model, in train mode, parameters trainable
    model.conv2.weight.requires_grad_(False)  # ... one of them frozen by the user
    before = _snapshot(model)
    target = dgnam.wrap_model(model, dgnam.InputSpec(size=(32, 32), min_size=8), name="user")
    assert model.training and model.conv1.weight.requires_grad  # wrapping changes nothing
    units = dgnam.parse_units(["logits:1", "conv2:2"])
    if method == "pixel":
        result = dgnam.visualize(target, units, seeds=[0, 1], config=dgnam.PixelConfig(method="pixel", steps=3), batch_size=2, progress=False)
    else:
        result = dgnam.visualize(target, units, seeds=[0], generator=tiny_generator, config=dgnam.DGNAMConfig(steps=3), progress=False)
    assert torch.isfinite(result.final).all()
    assert all(m.training for m in model.modules())  # train mode back, on every submodule
    assert [p.requires_grad for p in model.parameters()] == [n != "conv2.weight" for n, _ in model.named_parameters()]
    after = model.state_dict()
    for key, value in before.items():  # BatchNorm running statistics (and weights) untouched
        assert torch.equal(value, after[key]), key
    assert all(p.grad is None for p in model.parameters())


def test_the_run_sees_eval_mode(tiny_generator):
    torch.manual_seed(0)
    model = DropNet().train()
    target = dgnam.wrap_model(model, dgnam.InputSpec(size=(32, 32), min_size=8), name="user")
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        a, b = target(images), target(images)  # dropout off, BatchNorm on running statistics: deterministic
    assert torch.equal(a, b)
    with torch.no_grad(), frozen_eval(model):
        expected = model(target.preprocess(images))
    assert torch.equal(a, expected) and model.training


def test_frozen_eval_restores_after_an_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout()).train()
    model[1].eval()  # a mixed model: one submodule in eval mode
    with pytest.raises(RuntimeError, match="boom"):
        with frozen_eval(model):
            assert not any(m.training for m in model.modules())
            assert not any(p.requires_grad for p in model.parameters())
            raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == [True, True, False, True]
    assert all(p.requires_grad for p in model.parameters())


class FourChannelNet(nn.Module):
    def __init__(self, channels=4):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.conv(x)).flatten(1)


@pytest.mark.parametrize("channels", [1, 4])
def test_wrap_model_checks_the_input_channels_up_front(channels):
    with pytest.raises(ValueError, match=rf"first convolution 'conv' takes {channels} input channel\(s\), but the input spec gives 3"):
        dgnam.wrap_model(FourChannelNet(channels), dgnam.InputSpec(size=(16, 16), min_size=8), name="four")
    dgnam.wrap_model(FourChannelNet(3), dgnam.InputSpec(size=(16, 16), min_size=8))  # 3 channels: fine


def test_stop_on_signals_turns_sigterm_into_a_clean_stop():
    previous = signal.getsignal(signal.SIGTERM)
    done = []
    with stop_on_signals() as stop:
        for i in range(5):
            done.append(i)
            if i == 2:
                os.kill(os.getpid(), signal.SIGTERM)
    assert done == [0, 1, 2] and stop.interrupted and stop.signal == "SIGTERM" and stop.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is previous
    with stop_on_signals() as stop:
        raise KeyboardInterrupt  # Ctrl-C
    assert stop.signal == "SIGINT" and stop.exit_code == 130
    with stop_on_signals() as stop:
        pass
    assert not stop.interrupted and stop.exit_code == 0
    with pytest.raises(ValueError):  # other errors pass through
        with stop_on_signals():
            raise ValueError("not a signal")
    assert signal.getsignal(signal.SIGTERM) is previous
