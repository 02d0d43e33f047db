"""torchvision, timm and transformers for real: each adapter builds its library's net with random weights made here
(no download), and a short ``dgnam visualize`` runs end to end through the command line.

The main venv's CPU ``torch==2.13.0`` cannot import torchvision 0.28/0.29 ("operator torchvision::nms does not
exist"), so there this module skips, saying so. ``.ci/run`` runs it in a second venv (torch 2.14.1, torchvision
0.29.1, timm 1, transformers 5; README "Set-up") with ``DGNAM_REAL_ADAPTERS=1``: there a library that does not import
fails the run instead of skipping.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

REASON = ("torchvision, timm and transformers do not all import beside this torch ({}); .ci/run runs this file in its "
          "second venv (torch 2.14.1 + torchvision 0.29.1 + timm 1 + transformers 5, see README 'Set-up')")  # fmt: skip
try:
    import torchvision.models as tv  # first: its failure beside the main venv's torch is the reason to report
    import timm
    import transformers
except Exception as exc:  # torchvision beside the CPU torch 2.13.0: RuntimeError "operator torchvision::nms does not exist"
    if os.environ.get("DGNAM_REAL_ADAPTERS"):  # the second venv of .ci/run: these libraries are the point
        pytest.fail(REASON.format(f"{type(exc).__name__}: {str(exc)[:200]}"), pytrace=False)
    pytest.skip(REASON.format(f"{type(exc).__name__}: {str(exc)[:80]}"), allow_module_level=True)

from dgnam import cli  # noqa: E402
from dgnam.infra.hub import WeightsError  # noqa: E402
from dgnam.nets.adapters import load_target  # noqa: E402


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    """No cached weights and no network: every net here is built from random weights made by the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "dgnam_home"))


def _visualize(net: str, unit: str, out, *extra: str) -> dict:
    """``dgnam visualize`` of one unit for a few steps; the run's results.json, with its files checked."""
    assert cli.main(["visualize", "--net", net, "--unit", unit, "--steps", "4", "--out", str(out), "--quiet", *extra]) == 0
    record = json.loads((out / "results.json").read_text())
    item = record["items"][0]
    assert (out / item["file"]).is_file() and (out / "results.json").is_file()
    assert len(item["history"]) == 4 and item["final_activation"] > item["history"][0], item["history"]  # the ascent raised the unit
    return record


def _saved(model: torch.nn.Module, path) -> str:
    torch.save(model.state_dict(), path)
    return str(path)


def test_torchvision_resnet18_with_a_local_weight_file(tmp_path):
    torch.manual_seed(1)
    weights = _saved(tv.resnet18(), tmp_path / "resnet18.pth")
    with pytest.raises(WeightsError, match="--net-weights FILE"):  # nothing cached: the error names the ways out
        load_target("torchvision:resnet18")
    record = _visualize("torchvision:resnet18", "logits:3", tmp_path / "run", "--net-weights", weights, "--input-size", "64")
    assert record["net"] == "torchvision:resnet18" and record["net_input"]["size"] == [64, 64]
    assert "tiger shark" in record["items"][0]["label"]  # class names from the weights' metadata (ImageNet class 3)
    net = load_target("torchvision:resnet18", weights=weights)
    assert torch.equal(net.model.fc.weight, torch.load(weights)["fc.weight"])  # the file's weights, not another init


def test_torchvision_vit_b_16_untrained_token_unit(tmp_path, capsys):
    record = _visualize("torchvision:vit_b_16:none", "encoder.layers.encoder_layer_1:10@cls", tmp_path / "vit")
    assert record["items"][0]["unit"] == "encoder.layers.encoder_layer_1:10@cls" and record["net_input"]["size"] == [224, 224]
    capsys.readouterr()
    assert cli.main(["layers", "torchvision:vit_b_16"]) == 0  # no weights needed to list the layers
    assert "(197, 768)" in capsys.readouterr().out  # 196 patches + the class token


def test_timm_resnet18_with_a_local_weight_file(tmp_path):
    torch.manual_seed(2)
    weights = _saved(timm.create_model("resnet18", pretrained=False), tmp_path / "timm_resnet18.pth")
    with pytest.raises(WeightsError, match="timm:resnet18:none"):
        load_target("timm:resnet18")
    record = _visualize("timm:resnet18", "logits:7", tmp_path / "run", "--net-weights", weights, "--input-size", "64")
    assert record["net"] == "timm:resnet18"
    net = load_target("timm:resnet18", weights=weights)
    assert torch.equal(net.model.fc.weight, torch.load(weights)["fc.weight"])


def test_timm_convnext_atto_untrained(tmp_path):
    record = _visualize("timm:convnext_atto:none", "stages.2:5", tmp_path / "run", "--input-size", "64")
    assert record["net"] == "timm:convnext_atto:none"
    first, second = load_target("timm:convnext_atto:none"), load_target("timm:convnext_atto:none")
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()))  # seeded


def test_hf_local_folder(tmp_path):
    labels = {0: "cat", 1: "dog", 2: "eel"}
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                    num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})  # fmt: skip
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    (tmp_path / "vit" / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"height": 32, "width": 32}}))
    record = _visualize(f"hf:{tmp_path / 'vit'}", "logits:dog", tmp_path / "run")
    assert record["items"][0]["unit"] == "logits:1" and record["net_input"]["size"] == [32, 32]


@pytest.mark.parametrize("ref, nearest", [
    ("torchvision:resnt18", "Did you mean resnet18"),
    ("torchvision:resnet18:IMAGENET1K_V3", "Did you mean IMAGENET1K_V1?"),
    ("timm:resnt18", "Did you mean resnet18"),
    ("timm:resnet18.a9_in1k", "Did you mean resnet18.a"),
])  # fmt: skip
def test_misspelt_names_get_the_nearest_valid_ones(ref, nearest, capsys):
    assert cli.main(["layers", ref]) == 2
    err = capsys.readouterr().err
    assert nearest in err and len(err.strip().splitlines()) == 1, err


def test_torchvision_notebook_runs_headless(tmp_path):
    """examples/torchvision_resnet.ipynb: resnet18 untrained, DGN-AM through the Lite0 prior and the pixel default,
    each shown inline and saved; the reason for the default printed."""
    import base64

    from conftest import run_notebook

    outputs = run_notebook("torchvision_resnet.ipynb", tmp_path)
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "DeepInversion" in text and "lite0_blocks7_conv_resize" in text and "dgn-am" in text and "deepinversion" in text
    pngs = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 2  # the prior's result, then the pixel default's
    for png, run in zip(pngs, ["resnet18_prior", "resnet18_pixel"]):
        assert base64.b64decode(png) == (tmp_path / "runs" / run / "contact_sheet.png").read_bytes()
        assert json.loads((tmp_path / "runs" / run / "results.json").read_text())["items"][0]["label"]
