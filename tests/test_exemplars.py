"""Dataset exemplars (dgnam.eval.exemplars, `dgnam exemplars`): known answers from a net of fixed weights."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import dgnam
from dgnam.eval.score import unit_activations
from dgnam.cli import main
from dgnam.eval.exemplars import check_k, exemplars, layer_activations, open_images, unit_receptive_field
from dgnam.core.units import Unit, UnitError


class ColourNet(nn.Module):
    """``colour``: channel 0 = red, channel 1 = green - blue (1x1 conv, fixed); ``blur``: 5x5 mean of it."""

    def __init__(self):
        super().__init__()
        self.colour = nn.Conv2d(3, 2, 1, bias=False)
        self.blur = nn.Conv2d(2, 2, 5, padding=2, bias=False, groups=2)
        with torch.no_grad():
            self.colour.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, -1.0]]).view(2, 3, 1, 1))
            self.blur.weight.fill_(1 / 25)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))

    def forward(self, x):
        return self.head(self.blur(self.colour(x)))


def colour_net():
    spec = dgnam.InputSpec(size=(32, 32), mean=(0, 0, 0), std=(1, 1, 1), min_size=8)
    return dgnam.wrap_model(ColourNet(), spec, name="colour")


def write_solid_images(folder, colours):
    folder.mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(colours):
        Image.fromarray(np.full((40, 40, 3), rgb, dtype=np.uint8)).save(folder / f"img{i:02d}.png")


RED = [(25 * i, 128, 255 - 25 * i) for i in range(10)]  # red rises, green - blue rises too


def test_top_and_bottom_are_the_known_images(tmp_path):
    write_solid_images(tmp_path / "data", RED)
    data = open_images(tmp_path / "data", size=32)
    net = colour_net()
    acts = layer_activations(net, "colour", data, cache_dir=tmp_path / "cache")
    assert acts.readings["center"].shape == (10, 2) and not acts.cached
    np.testing.assert_allclose(acts.readings["center"][:, 0], [25 * i / 255 for i in range(10)], atol=1e-5)
    ex = exemplars(acts, Unit("colour", 0), k=3)
    assert list(ex.top) == [9, 8, 7] and list(ex.bottom) == [0, 1, 2]
    assert ex.top_values[0] == pytest.approx(225 / 255, abs=1e-5)
    assert ex.stats["max"] == pytest.approx(225 / 255, abs=1e-5) and ex.stats["min"] == pytest.approx(0, abs=1e-6)
    # the same values as reading the unit image by image
    images = data.batch(range(len(data)))
    direct = unit_activations(net, [Unit("colour", 1)] * 10, images)
    np.testing.assert_allclose(acts.values(Unit("colour", 1)), direct, atol=1e-5)
    # and through the net's output layer (a vector)
    out = layer_activations(net, "output", data, cache_dir=False)
    assert list(exemplars(out, Unit("output", 1), k=2).top) == [9, 8]


def test_cache_hit_and_invalidation(tmp_path):
    write_solid_images(tmp_path / "data", RED)
    net = colour_net()
    first = layer_activations(net, "colour", open_images(tmp_path / "data", size=32), cache_dir=tmp_path / "cache")
    again = layer_activations(net, "colour", open_images(tmp_path / "data", size=32), cache_dir=tmp_path / "cache")
    assert again.cached and again.key == first.key
    np.testing.assert_array_equal(again.readings["mean"], first.readings["mean"])
    files = sorted(p.name for p in (tmp_path / "cache" / "colour").iterdir())
    assert files == [f"colour-{first.key[:20]}.json", f"colour-{first.key[:20]}.safetensors"]
    # another image size, other weights, a changed file: each is a new pass
    assert not layer_activations(net, "colour", open_images(tmp_path / "data", size=24), cache_dir=tmp_path / "cache").cached
    other = colour_net()
    with torch.no_grad():
        other.model.colour.weight.mul_(2)
    doubled = layer_activations(other, "colour", open_images(tmp_path / "data", size=32), cache_dir=tmp_path / "cache")
    assert not doubled.cached
    np.testing.assert_allclose(doubled.readings["center"], 2 * first.readings["center"], atol=1e-5)
    Image.fromarray(np.full((40, 40, 3), (255, 0, 0), dtype=np.uint8)).save(tmp_path / "data" / "img00.png")
    os.utime(tmp_path / "data" / "img00.png", ns=(1, 1))
    changed = layer_activations(net, "colour", open_images(tmp_path / "data", size=32), cache_dir=tmp_path / "cache")
    assert not changed.cached and list(exemplars(changed, Unit("colour", 0), 1).top) == [0]


def test_positions_subsets_and_errors(tmp_path):
    write_solid_images(tmp_path / "data", RED)
    net = colour_net()
    data = open_images(tmp_path / "data", size=32)
    at = Unit("colour", 0, (3, 4))
    acts = layer_activations(net, "colour", data, units=[at], cache_dir=False)
    np.testing.assert_allclose(acts.values(at), acts.values(Unit("colour", 0)), atol=1e-6)  # solid images
    with pytest.raises(UnitError, match="not recorded"):
        acts.values(Unit("colour", 0, (1, 1)))
    with pytest.raises(UnitError, match="out of range"):
        acts.values(Unit("colour", 5))
    sub = open_images(tmp_path / "data", size=32, max_images=4)
    assert len(sub) == 4 and sub.names == [f"img{i:02d}.png" for i in sub.indices]
    with pytest.raises(ValueError, match="at least 1"):
        check_k(0, 10)
    with pytest.raises(ValueError, match="more than the 10 images"):
        exemplars(acts, Unit("colour", 0), k=11)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in"):
        open_images(tmp_path / "empty")


def test_receptive_field_crop_of_a_hidden_unit(tmp_path):
    net = colour_net()
    assert unit_receptive_field(net, Unit("blur", 0), 32) == (14, 14, 19, 19)  # the centre's 5x5 window
    assert unit_receptive_field(net, Unit("output", 0), 32) is None


def test_cli_writes_a_run_folder_and_checks_k_first(tmp_path, monkeypatch, capsys):
    write_solid_images(tmp_path / "data", RED)
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("dgnam.nets.adapters.load_target", lambda *a, **k: colour_net())
    out = tmp_path / "ex"
    assert main(["exemplars", "colour", "blur:0", "--data", str(tmp_path / "data"), "-k", "99", "--out", str(out)]) == 2
    assert "more than the 10 images" in capsys.readouterr().err
    assert not (tmp_path / "home" / "activations").exists() and not out.exists()  # checked before any pass
    assert main(["exemplars", "colour", "blur:0-1", "--data", str(tmp_path / "data"), "--size", "32", "-k", "2", "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["kind"] == "exemplars" and record["k"] == 2 and record["units"] == ["blur:0", "blur:1"]
    first = record["items"][0]
    assert [e["name"] for e in first["top"]] == ["img09.png", "img08.png"]
    assert first["receptive_field"] == [14, 14, 19, 19]
    crop = np.asarray(Image.open(out / first["top"][0]["file"]))
    assert crop.shape == (5, 5, 3) and (out / first["sheet"]).is_file()
    assert main(["exemplars", "colour", "blur:0", "--data", str(tmp_path / "data"), "-k", "2", "--out", str(out), "--quiet", "--size", "32"]) == 2
    assert "is not empty" in capsys.readouterr().err  # a used --out: its results.json is not replaced without --overwrite
    assert main(["exemplars", "colour", "blur:0", "--data", str(tmp_path / "data"), "-k", "2", "--out", str(out), "--quiet", "--size", "32",
                 "--overwrite"]) == 0
    assert "blur: cached" in capsys.readouterr().out and not (out / "blur_0001").exists()  # the earlier run's unit 1 went


def test_report_shows_exemplars_alone_and_with_a_run(tmp_path, monkeypatch):
    from dgnam.io.report import build_report
    from dgnam.io.read import read_run

    write_solid_images(tmp_path / "data", RED)
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("dgnam.nets.adapters.load_target", lambda *a, **k: colour_net())
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"method": "pixel:fourier", "net": "colour", "items": []}))
    args = ["exemplars", "colour", "blur:0-1", "--data", str(tmp_path / "data"), "--size", "32", "-k", "2", "--quiet", "--out"]
    assert main(args + [str(run / "exemplars")]) == 0
    for folder in (run, run / "exemplars"):
        page = build_report([folder])
        assert "Dataset exemplars" in page and page.count("data:image/png") == 2  # one sheet per unit
    with pytest.raises(ValueError, match="dataset exemplars"):
        read_run(run / "exemplars")


def test_ties_go_to_the_earlier_image_at_both_ends():
    from dgnam.eval.exemplars import LayerActivations

    values = np.array([[1.0], [0.0], [2.0], [0.0], [1.0], [0.0], [2.0]], dtype=np.float32)
    acts = LayerActivations("n", "fc", (1,), {"value": values}, [f"img{i}.png" for i in range(7)])
    ex = exemplars(acts, Unit("fc", 0), k=2)
    assert list(ex.bottom) == [1, 3] and list(ex.bottom_values) == [0.0, 0.0]  # of the zeros at 1, 3, 5: the first two
    assert list(ex.top) == [2, 6] and list(ex.top_values) == [2.0, 2.0]
    ex = exemplars(acts, Unit("fc", 0), k=4)
    assert list(ex.bottom) == [1, 3, 5, 0] and list(ex.top) == [2, 6, 0, 4]  # a tie across the cut: image order too
