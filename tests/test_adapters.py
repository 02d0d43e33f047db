"""Your own model from the command line: --net strings, spec derivation, outputs, layers and channels."""

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import run_notebook
from PIL import Image
from torch import nn

import dgnam
from dgnam import cli
from dgnam.core.hooks import unwrap_output
from dgnam.infra.hub import WeightsError
from dgnam.nets import InputSpec, Target
from dgnam.nets.adapters import SpecOverrides, hf_spec, load_target, normalize_built, parse_net_ref, timm_spec, torchvision_spec
from dgnam.core.objectives import all_layer_shapes, check_units
from dgnam.methods.pixel import PixelConfig, pixel_am
from dgnam.core.units import UnitError, parse_unit

MODEL_FILE = '''
import torch
from torch import nn
from dgnam import InputSpec


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 5))


class Dict(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        features = self.body(x)
        return {"features": features, "logits": self.head(features)}


def with_spec(channels=1):
    torch.manual_seed(0)
    return Dict(channels), InputSpec(size=(24, 24), mean=(0.5,) * channels, std=(0.25,) * channels, min_size=8), ["a", "b", "c", "d"]


def four():
    return with_spec(4)


def not_a_model():
    return 42
'''


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(MODEL_FILE)
    return path


def test_net_strings_parse():
    assert parse_net_ref("efficientnet_lite0") == ("registered", "efficientnet_lite0")
    assert parse_net_ref("torchvision:vit_b_16:IMAGENET1K_V1") == ("torchvision", "vit_b_16:IMAGENET1K_V1")
    assert parse_net_ref("timm:convnext_tiny.fb_in1k") == ("timm", "convnext_tiny.fb_in1k")
    assert parse_net_ref("hf:google/vit-base-patch16-224") == ("hf", "google/vit-base-patch16-224")
    assert parse_net_ref("dir/my_model.py:build") == ("file", "dir/my_model.py:build")
    assert parse_net_ref("pkg.models:build") == ("module", "pkg.models:build")
    with pytest.raises(ValueError, match="torchvision:NAME"):
        parse_net_ref("pkg.models:")
    with pytest.raises(ValueError, match="names no model"):
        parse_net_ref("timm:")


def test_torchvision_spec_from_its_transforms_and_meta():
    # the attributes of torchvision's ImageClassification preset (vit_b_16 IMAGENET1K_V1: resize 256, crop 224)
    transforms = SimpleNamespace(crop_size=[224], resize_size=[256], mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    spec, categories = torchvision_spec(transforms, {"categories": ["tench", "goldfish"]})
    assert spec.size == (224, 224) and spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)
    assert spec.value_range == 1.0 and spec.channel_order == "RGB" and categories == ("tench", "goldfish")
    spec, categories = torchvision_spec(SimpleNamespace(crop_size=[299], mean=[0.5] * 3, std=[0.5] * 3), {})
    assert spec.size == (299, 299) and categories is None


def test_timm_spec_from_pretrained_cfg():
    cfg = {"input_size": (3, 288, 288), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "crop_pct": 0.95,
           "interpolation": "bicubic", "num_classes": 1000}  # fmt: skip
    spec, categories = timm_spec(cfg)
    assert spec.size == (288, 288) and spec.mean == (0.5,) * 3 and len(categories) == 1000
    assert categories[945].startswith("bell pepper")
    spec, categories = timm_spec({"input_size": (1, 64, 64), "mean": (0.485, 0.456, 0.406), "std": (0.2, 0.2, 0.2), "num_classes": 10})
    assert spec.channels == 1 and spec.mean == pytest.approx((0.449,), abs=1e-3) and categories is None
    _, categories = timm_spec({"input_size": (3, 32, 32), "label_names": ["x", "y"], "num_classes": 2})
    assert categories == ("x", "y")


def test_hf_spec_from_config_and_processor():
    config = {"num_channels": 3, "image_size": 384, "id2label": {"1": "dog", "0": "cat", "10": "z", "2": "eel"}}
    spec, categories = hf_spec(config, {"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"height": 224, "width": 224}})
    assert spec.size == (224, 224) and spec.mean == (0.5,) * 3 and categories == ("cat", "dog", "eel", "z")
    spec, _ = hf_spec(config, {"size": {"shortest_edge": 256}, "do_center_crop": True, "crop_size": {"height": 240, "width": 240},
                               "do_normalize": False, "do_rescale": False})  # fmt: skip
    assert spec.size == (240, 240) and spec.mean == (0.0,) * 3 and spec.std == (1.0,) * 3 and spec.value_range == 255.0
    spec, categories = hf_spec({"num_channels": 1, "image_size": 28})  # no processor config: transformers' default 0.5/0.5
    assert spec.size == (28, 28) and spec.mean == (0.5,) and spec.std == (0.5,) and categories is None


def test_outputs_rule():
    x = torch.arange(3.0)
    assert unwrap_output(x) is x
    assert unwrap_output((x, torch.zeros(2))) is x
    assert unwrap_output({"features": torch.zeros(2), "logits": x}) is x
    assert unwrap_output({"features": x, "aux": torch.zeros(1)}) is x
    assert unwrap_output([(x,)]) is x
    with pytest.raises(TypeError, match="holds no tensor"):
        unwrap_output(None)


def test_builder_file_with_spec_categories_and_a_dict_output(model_file):
    net = load_target(f"{model_file}:with_spec")
    assert net.spec.size == (24, 24) and net.spec.channels == 1 and net.categories == ("a", "b", "c", "d")
    shapes = all_layer_shapes(net)
    assert shapes["body.0"] == (1, 6, 24, 24) and shapes["head"] == (1, 4)
    assert shapes["logits"] == shapes["output"] == (1, 4)  # the dict's "logits": the classifier output
    with torch.no_grad():
        out = net(torch.rand(2, 1, 24, 24))
    assert out.shape == (2, 4)
    with pytest.raises(UnitError, match="Nearest names: head"):
        check_units(net, parse_unit("haed:0"))
    with pytest.raises(ValueError, match="nn.Module"):
        load_target(f"{model_file}:not_a_model")
    with pytest.raises(ValueError, match="no callable 'nope'"):
        load_target(f"{model_file}:nope")


def test_overrides_replace_the_spec(model_file, tmp_path):
    over = SpecOverrides(size=(40, 40), mean=(0.4, 0.4, 0.4), std=(0.2, 0.2, 0.2), value_range=255.0, bgr=True, categories=tuple("abcde"))
    net = load_target(f"{model_file}:build", overrides=over)
    assert net.spec == InputSpec(size=(40, 40), mean=(0.4,) * 3, std=(0.2,) * 3, value_range=255.0, channel_order="BGR")
    assert net.categories == tuple("abcde")
    with pytest.raises(ValueError, match="one value per channel"):
        load_target(f"{model_file}:build", overrides=SpecOverrides(mean=(0.5,)))


def test_explicit_weights_for_a_builder_are_checked_strictly(model_file, tmp_path):
    good = tmp_path / "w.pth"
    torch.manual_seed(3)
    torch.save(normalize_built(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 5)))[0].state_dict(), good)
    net = load_target(f"{model_file}:build", weights=good)
    assert torch.equal(net.model[0].weight, torch.load(good, weights_only=True)["0.weight"])
    bad = tmp_path / "bad.pth"
    torch.save({"0.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="do not fit"):
        load_target(f"{model_file}:build", weights=bad)


def test_cli_visualize_and_layers_on_a_model_file(model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "x"
    # the command, as from a fresh clone (plus a short budget): no input spec given, so 224 px RGB
    assert cli.main(["visualize", "--net", "my_model.py:build", "--unit", "logits:3", "--out", "runs/x", "--steps", "4", "--quiet"]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["net"] == "my_model.py:build" and record["net_input"]["size"] == [224, 224]
    assert record["method"] == "pixel:fourier"  # no BatchNorm, no prior of its own
    assert Image.open(out / record["items"][0]["file"]).size == (224, 224)
    assert cli.main(["visualize", "--net", "my_model.py:build", "--input-size", "32", "--unit", "logits:3", "--steps", "2",
                     "--out", str(tmp_path / "small"), "--quiet"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "small" / "results.json").read_text())["net_input"]["size"] == [32, 32]
    assert cli.main(["evaluate", str(tmp_path / "small")]) == 2  # a run folder is data: its model file is not run
    assert "pass --net explicitly" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path / "small"), "--net", "my_model.py:build"]) == 0  # the user's own: its --input-size too
    evaluation = json.loads((tmp_path / "small" / "evaluation.json").read_text())
    assert evaluation["target"] == "my_model.py:build" and evaluation["summary"]["target_top1"] in (0.0, 1.0)
    capsys.readouterr()
    assert cli.main(["layers", "my_model.py:build", "--input-size", "32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["0", "1", "2", "3", "4", "logits", "output"]
    assert "(6, 32, 32)" in lines[0] and "(5,)" in lines[-1]
    assert cli.main(["visualize", "--net", "my_model.py:build", "--unit", "logit:3", "--out", str(out), "--quiet"]) == 2
    assert "Nearest names: logits" in capsys.readouterr().err


def test_missing_library_weights_name_cache_flag_and_extra(monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        load_target("hf:nobody/no-such-vit-for-dgnam-tests")
    assert "--download" in str(err.value) and "dgnam[hf]" in str(err.value) and "cache" in str(err.value)


# --- Hugging Face: a tiny randomly initialised ViT from a local config folder ----------------------


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny_vit")
    labels = {i: name for i, name in enumerate(["cat", "dog", "eel"])}
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=32, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})  # fmt: skip
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"height": 32, "width": 32}}))
    return folder


def test_hf_vit_lists_token_layers_and_logits(tiny_vit):
    net = load_target(f"hf:{tiny_vit}")
    assert net.spec.size == (32, 32) and net.categories == ("cat", "dog", "eel")
    assert not net.model.training and not any(p.requires_grad for p in net.model.parameters())
    shapes = all_layer_shapes(net)
    blocks = [name for name in shapes if name.count(".") == 2 and name.split(".")[-1] == "0"]  # vit.encoder.layer.0 or vit.layers.0
    assert blocks and shapes[blocks[0]] == (1, 17, 16)  # 16 patches + the class token, width 16
    assert shapes["logits"] == shapes["output"] == (1, 3)


def test_hf_vit_end_to_end_through_the_cli(tiny_vit, tmp_path, capsys):
    out = tmp_path / "vit"
    assert cli.main(["visualize", "--net", f"hf:{tiny_vit}", "--unit", "logits:dog", "--steps", "6", "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "results.json").read_text())
    item = record["items"][0]
    assert item["unit"] == "logits:1" and item["label"].endswith("dog") and len(item["history"]) == 6
    assert item["final_activation"] > item["history"][0]  # the ascent raised the logit
    capsys.readouterr()
    assert cli.main(["layers", f"hf:{tiny_vit}"]) == 0
    assert "(17, 16)" in capsys.readouterr().out  # token shapes


# --- channels ------------------------------------------------------------------------------------


def test_one_channel_net_sees_rgb_as_luminance(model_file):
    net = load_target(f"{model_file}:with_spec")
    rgb = torch.rand(2, 3, 24, 24)
    expected = 0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]
    assert torch.allclose(net.to_channels(rgb), expected)
    with torch.no_grad():
        assert torch.allclose(net(rgb), net(expected), atol=1e-6)


@pytest.mark.parametrize("method", ["pixel", "yosinski", "fourier"])
@pytest.mark.parametrize("builder", ["with_spec", "four"])
def test_pixel_methods_work_in_the_nets_own_channels(model_file, method, builder):
    net = load_target(f"{model_file}:{builder}")
    r = pixel_am(net, parse_unit("logits:2"), [0], PixelConfig(method=method, steps=8), progress=False)
    assert r.images.shape == (1, net.spec.channels, 24, 24)
    assert r.final[0] > r.history[0, 0]


def test_n_channel_net_with_a_prior_is_a_clear_error(model_file, tiny_generator):
    net = load_target(f"{model_file}:four")
    with pytest.raises(ValueError, match="4-channel.*pixel method"):
        dgnam.dgn_am(net, tiny_generator, parse_unit("logits:0"), [0], dgnam.DGNAMConfig(steps=2), progress=False)


def test_one_channel_net_with_a_prior_runs(model_file, tiny_generator):
    net = load_target(f"{model_file}:with_spec")
    r = dgnam.dgn_am(net, tiny_generator, parse_unit("logits:1"), [0], dgnam.DGNAMConfig(steps=4, lr_start=1.0), progress=False)
    assert r.images.shape[1] == 3 and torch.isfinite(r.final).all()


def test_n_channel_images_are_saved_as_png_and_npy(model_file, tmp_path, capsys):
    out = tmp_path / "four"
    assert cli.main(["visualize", "--net", f"{model_file}:four", "--unit", "logits:0", "--steps", "3", "--pixel", "pixel",
                     "--out", str(out), "--quiet"]) == 0  # fmt: skip
    item = json.loads((out / "results.json").read_text())["items"][0]
    import numpy as np

    raw = np.load(out / item["raw_file"], allow_pickle=False)
    assert raw.shape == (4, 24, 24)
    png = np.asarray(Image.open(out / item["file"]))
    assert png.shape == (24, 24) and np.abs(png.astype(float) - np.round(raw.clip(0, 1).mean(0) * 255)).max() <= 1
    capsys.readouterr()
    assert cli.main(["visualize", "--net", f"{model_file}:four", "--unit", "logits:0", "--generator", "lite0_blocks7_conv_resize", "--out", str(out)]) == 2
    assert "4-channel images" in capsys.readouterr().err


def test_cma_is_a_core_dependency():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert any(dep.split(">")[0].split("=")[0].strip() == "cma" for dep in project["dependencies"])
    assert {"torchvision", "timm", "hf"} <= set(project["optional-dependencies"])


def test_explicit_weight_file_with_another_hash_loads_with_a_warning(tmp_path, monkeypatch):
    from dgnam.infra.hub import WeightSource, WeightsHashWarning, sha256_file
    from dgnam.nets import NetSpec

    from conftest import TinyNet

    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    published, converted = tmp_path / "tiny_net.pth", tmp_path / "converted.pth"
    torch.save(TinyNet().state_dict(), published)
    torch.save(TinyNet().state_dict(), converted)  # same keys and shapes, other values: another sha256
    dgnam.nets.catalog._ensure_builtin()
    source = WeightSource("tiny_net.pth", sha256=sha256_file(published))
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "tiny", NetSpec("tiny", TinyNet, source, InputSpec(size=(32, 32), min_size=8)))
    with pytest.warns(WeightsHashWarning) as caught:
        net = dgnam.load_net("tiny", weights=converted)
    message = str(caught[0].message)
    assert sha256_file(converted) in message and source.sha256 in message
    assert torch.equal(net.model.conv1.weight, torch.load(converted, weights_only=True)["conv1.weight"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dgnam.load_net("tiny", weights=published)  # the published file: no warning
    cached = tmp_path / "home" / "weights" / "tiny_net.pth"  # the cache stays hash-enforced
    cached.parent.mkdir(parents=True)
    cached.write_bytes(converted.read_bytes())
    with pytest.raises(WeightsError, match="corrupted"):
        dgnam.load_net("tiny")
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="do not fit tiny"):
        dgnam.load_net("tiny", weights=bad)


# --- notebooks -----------------------------------------------------------------------------------


def test_displayed_grid_is_byte_for_byte_the_saved_contact_sheet(tiny_target, tmp_path):
    import base64

    units = dgnam.parse_units(["logits:dog", "logits:0", "conv2:1"], tiny_target.categories)
    result = dgnam.visualize(tiny_target, units, seeds=[0, 1], config=PixelConfig(method="fourier", steps=3), progress=False)
    assert result.categories == tiny_target.categories
    assert not hasattr(result, "_repr_png_") and not hasattr(result, "save")  # a plain data object: io/ saves and shows it
    shown = dgnam.show(result)
    png = shown._repr_png_()
    assert dgnam.save_result(result, tmp_path / "run") == tmp_path / "run" / "results.json"
    assert (tmp_path / "run" / "contact_sheet.png").read_bytes() == png
    assert base64.b64encode(png).decode() in shown._repr_html_() and "6 image(s)" in shown._repr_html_()
    # what the CLI's writer saves for the same images is the same file too
    from dgnam.io.write import RunWriter

    writer = RunWriter(tmp_path / "cli", {}, tiny_target.categories)
    writer.add(result.subset(slice(0, 4)))
    writer.add(result.subset([4, 5]))
    writer.finish()
    assert (tmp_path / "cli" / "contact_sheet.png").read_bytes() == png
    assert Image.open(tmp_path / "run" / "logits_0001_seed0.png").tobytes() == dgnam.infra.images.to_pil(result.images[0]).tobytes()
    some = dgnam.show(result, "logits:1")
    assert [str(u) for u in some.result.units] == ["logits:1", "logits:1"] and some.result.seeds == [0, 1]
    assert torch.equal(some.result.images, result.images[:2]) and some._repr_png_() != png
    assert dgnam.show(result, [-1]).result.units == [units[2]] and dgnam.show(result).result is result
    assert json.loads((tmp_path / "run" / "results.json").read_text())["method"] == result.method
    with pytest.raises(ValueError, match="picks no element"):
        dgnam.show(result, "logits:4")


def test_example_notebook_runs_headless(tmp_path):
    outputs = run_notebook("your_model.ipynb", tmp_path)
    pngs = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 2  # the whole result, then the subset
    import base64

    assert base64.b64decode(pngs[0]) == (tmp_path / "runs" / "notebook" / "contact_sheet.png").read_bytes()


def test_a_foreign_net_gets_the_pixel_default_from_the_resolver(model_file):
    from dgnam.methods import resolve

    plain = load_target(f"{model_file}:build")  # no BatchNorm, no prior of its own: Fourier (BENCHMARKS.md, foreign nets)
    assert resolve(plain).method == "pixel:fourier" and resolve(plain).generator is None
    with_bn = dgnam.wrap_model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten()), InputSpec(size=(16, 16), min_size=8), name="bn.py:f")
    assert resolve(with_bn).method == "pixel:deepinversion"
    assert resolve(plain, "lite0_blocks7_conv_resize").method == "dgn-am:lite0_blocks7_conv_resize"  # one flag away


def test_package_module_builder_with_a_categories_file(model_file, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))  # my_model.py importable as a module
    (tmp_path / "classes.txt").write_text("ant\nbee\n\ncat\ndog\neel\n")
    out = tmp_path / "mod"
    assert cli.main(["visualize", "--net", "my_model:build", "--input-size", "24", "--categories", str(tmp_path / "classes.txt"),
                     "--unit", "logits:cat", "--steps", "2", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    record = json.loads((out / "results.json").read_text())
    assert record["items"][0]["unit"] == "logits:2" and record["items"][0]["label"] == "logits:2 cat"
    assert record["net_overrides"]["categories_file"] == str(tmp_path / "classes.txt")
    capsys.readouterr()
    assert cli.main(["layers", "no_such_module_for_dgnam:build"]) == 2
    assert "cannot import 'no_such_module_for_dgnam'" in capsys.readouterr().err
