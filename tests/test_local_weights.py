"""Local weights always win (issue 28): ``--net-weights FILE`` for ``torchvision:``/``timm:`` nets, ``NAME:none``
for an untrained net, ``dgnam layers`` without weights, and the nearest valid names for misspelt ones.

Here torchvision and timm are fakes with the libraries' API (they do not import beside this torch); the same
paths run on the real libraries in ``tests/test_adapters_real.py`` (the second venv of ``.ci/run``)."""

from __future__ import annotations

import enum
import sys
import types
from types import SimpleNamespace

import pytest
import torch

from dgnam import cli
from dgnam.infra.hub import WeightsError
from dgnam.nets.adapters import check_recorded_ref, load_target

from conftest import TinyNet

CATEGORIES = [f"class {i}" for i in range(5)]
TRANSFORMS = SimpleNamespace(crop_size=[32], mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])


class _Weights(enum.Enum):
    """What torchvision's ``WeightsEnum`` offers the adapter: names, ``DEFAULT`` (an alias), url, transforms, meta."""

    IMAGENET1K_V1 = "https://download.example/tinynet-v1.pth"
    IMAGENET1K_V2 = "https://download.example/tinynet-v2.pth"
    DEFAULT = "https://download.example/tinynet-v2.pth"

    @property
    def url(self) -> str:
        return self.value

    @property
    def meta(self) -> dict:
        return {"categories": CATEGORIES}

    def transforms(self):
        return TRANSFORMS


@pytest.fixture
def fake_libraries(monkeypatch, tmp_path):
    """``torchvision.models`` and ``timm`` in ``sys.modules``; each builder call is logged (name, pretrained)."""
    calls = []

    def get_model(name, weights=None, num_classes=1000):
        calls.append(("torchvision", name, weights))
        if weights is not None:
            raise AssertionError("the fake has no pretrained weights: the adapter must not ask for them")
        return TinyNet(num_classes)

    tv = types.ModuleType("torchvision.models")
    tv.list_models = lambda module=None: ["tinynet", "tinynet_wide", "resnet18"] + ([] if module is tv else ["tinynet_detector"])
    tv.get_model_weights = lambda name: _Weights
    tv.get_model = get_model

    def create_model(name, pretrained=False, pretrained_cfg_overlay=None):
        calls.append(("timm", name, pretrained))
        if pretrained:
            raise AssertionError("the fake has no pretrained weights: the adapter must not ask for them")
        model = TinyNet(5)
        model.pretrained_cfg, model.num_classes = {"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.25,) * 3, "num_classes": 5}, 5
        return model

    tags = ["tinynet.a1_in1k", "tinynet.a2_in1k"]
    timm = types.ModuleType("timm")
    timm.is_model = lambda arch: arch in ("tinynet", "resnet18")
    timm.list_models = lambda: ["tinynet", "resnet18"]
    timm.list_pretrained = lambda pattern: [t for t in tags if t.startswith(pattern.rstrip("*"))]
    timm.create_model = create_model
    cfgs = {"tinynet": tags[0], **{t: t for t in tags}}
    timm.models = SimpleNamespace(get_pretrained_cfg=lambda name: SimpleNamespace(hf_hub_id=None, url=f"https://x/{cfgs[name]}.pth") if name in cfgs else None)
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.models", tv)
    monkeypatch.setitem(sys.modules, "timm", timm)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty cache
    return calls


@pytest.fixture
def weight_file(tmp_path):
    torch.manual_seed(7)
    path = tmp_path / "mine.pth"
    torch.save(TinyNet(5).state_dict(), path)
    return path


@pytest.mark.parametrize("ref", ["torchvision:tinynet", "torchvision:tinynet:IMAGENET1K_V1", "timm:tinynet", "timm:tinynet.a2_in1k"])
def test_a_weight_file_satisfies_a_library_net_with_an_empty_cache(fake_libraries, weight_file, ref):
    with pytest.raises(WeightsError) as err:  # no cache, no file: the error names every way out
        load_target(ref)
    assert "--net-weights FILE" in str(err.value) and "--download" in str(err.value) and f"{ref.split(':')[0]}:tinynet" in str(err.value)
    fake_libraries.clear()
    net = load_target(ref, weights=weight_file)  # before: the same missing-cache error, the file never read
    state = torch.load(weight_file)
    assert all(torch.equal(net.model.state_dict()[k], v) for k, v in state.items())
    assert net.spec.size == (32, 32) and net.spec.std == (0.25,) * 3  # the spec from the library's metadata
    assert net.categories == (tuple(CATEGORIES) if ref.startswith("torchvision") else None)  # timm: only for 1000 classes
    assert [c[2] for c in fake_libraries] == [None if ref.startswith("torchvision") else False]  # built untrained, then loaded


@pytest.mark.parametrize("ref", ["torchvision:tinynet:none", "timm:tinynet:none", "timm:tinynet.a1_in1k:none"])
def test_none_builds_the_untrained_net_the_same_every_time(fake_libraries, ref):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first, second = load_target(ref), load_target(ref)
    assert torch.equal(torch.rand(1), before)  # the caller's random stream is untouched
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()))
    torch.manual_seed(0)
    assert torch.equal(first.model.conv1.weight, TinyNet(5).conv1.weight)  # seed 0
    assert first.spec.size == (32, 32) and first.spec.mean == (0.5,) * 3
    assert check_recorded_ref(ref, "results.json") == ref  # a run of it can be evaluated from its record


@pytest.mark.parametrize("ref, nearest", [
    ("torchvision:tinynte", "Did you mean tinynet"),
    ("torchvision:tinynet_detector", "is not an image classifier"),
    ("torchvision:tinynet:IMAGENET1K_V3", "Did you mean IMAGENET1K_V2, IMAGENET1K_V1?"),
    ("timm:tinynte", "Did you mean tinynet?"),
    ("timm:tinynet.a3_in1k", "Did you mean tinynet.a2_in1k, tinynet.a1_in1k?"),
])  # fmt: skip
def test_misspelt_names_get_the_nearest_valid_ones(fake_libraries, ref, nearest, capsys):
    with pytest.raises(ValueError, match=nearest.replace("?", r"\?")):
        load_target(ref)
    assert cli.main(["layers", ref]) == 2
    err = capsys.readouterr().err
    assert nearest in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_layers_needs_no_weights(tiny_registry, fake_libraries, capsys):
    """The tiny net's weights are not in the cache, nor torchvision's: `layers` still lists the shapes."""
    with pytest.raises(WeightsError):
        load_target("tiny")
    for ref in ("tiny", "torchvision:tinynet", "timm:tinynet"):
        assert cli.main(["layers", ref]) == 0, capsys.readouterr().err
        lines = capsys.readouterr().out.splitlines()
        assert [line.split()[0] for line in lines][:3] == ["conv1", "bn1", "act1"] and "(5,)" in lines[-1]
    assert all(c[2] in (None, False) for c in fake_libraries)  # nothing pretrained was asked for


def test_layers_of_a_hf_folder_without_its_weights(tmp_path, capsys):
    from conftest import require

    transformers = require("transformers", "the hf: adapter")
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=32, num_labels=3)  # fmt: skip
    config.save_pretrained(tmp_path / "vit")  # config.json only: no weight file
    assert cli.main(["layers", f"hf:{tmp_path / 'vit'}"]) == 0, capsys.readouterr().err
    assert "(17, 16)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="cannot load"):
        load_target(f"hf:{tmp_path / 'vit'}")  # a run needs the weights
