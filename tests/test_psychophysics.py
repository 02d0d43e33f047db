"""2AFC psychophysics and faithfulness (dgnam.eval.psychophysics) on nets of fixed weights with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import dgnam
from dgnam.eval.exemplars import layer_activations, open_images
from dgnam.eval.psychophysics import earlier_layer, embed_images, faithfulness, natural_trials, split_references_queries, two_afc_choices, units_faithfulness, window, window_features
from dgnam.core.units import Unit


class Fixed(nn.Module):
    """``colour``: a 1x1 conv with fixed weights; ``mix``: a 3x3 conv on it (another fixed map); a pooled head."""

    def __init__(self, colour: list[list[float]], mix: list[list[float]], bias: list[float] | None = None):
        super().__init__()
        self.colour = nn.Conv2d(3, len(colour), 1, bias=bias is not None)
        self.mix = nn.Conv2d(len(colour), len(mix), 3, padding=1, bias=False)
        with torch.no_grad():
            self.colour.weight.copy_(torch.tensor(colour).view(len(colour), 3, 1, 1))
            if bias is not None:
                self.colour.bias.copy_(torch.tensor(bias))
            kernel = torch.zeros(len(mix), len(colour), 3, 3)
            kernel[:, :, 1, 1] = torch.tensor(mix)
            self.mix.weight.copy_(kernel)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))

    def forward(self, x):
        return self.head(self.mix(self.colour(x)))


def fixed_net(colour, mix, name, bias=None):
    spec = dgnam.InputSpec(size=(16, 16), mean=(0, 0, 0), std=(1, 1, 1), min_size=8)
    return dgnam.wrap_model(Fixed(colour, mix, bias), spec, name=name)


IDENTITY = [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]


def solid_folder(path, colours):
    path.mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(colours):
        Image.fromarray(np.full((16, 16, 3), rgb, dtype=np.uint8)).save(path / f"c{i:03d}.png")
    return open_images(path, size=16)


def random_colours(n, seed=0):
    return [tuple(int(v) for v in c) for c in np.random.default_rng(seed).integers(0, 256, size=(n, 3))]


def test_two_afc_perfect_constant_and_reversed_subjects(tmp_path):
    data = solid_folder(tmp_path / "data", random_colours(60))
    target = fixed_net(IDENTITY, IDENTITY, "target")  # unit mix:0 = red
    acts = layer_activations(target, "mix", data, cache_dir=False)
    values = acts.values(Unit("mix", 0))
    ref, query = split_references_queries(len(data), 0.5, seed=0)
    assert len(set(ref) | set(query)) == 60 and not set(ref) & set(query)
    trial = natural_trials(values, ref, query, references=9, trials=5)
    assert values[trial.max_refs].min() >= values[ref].max() - 1e-6 or len(set(trial.max_refs) & set(query)) == 0
    assert values[trial.strong[0]] == values[query].max() and values[trial.weak[0]] == values[query].min()
    assert set(trial.max_refs) <= set(ref) and set(trial.strong) <= set(query)
    images = data.batch(range(len(data)))

    def accuracy(subject):
        e = embed_images(subject, "colour", list(images))
        return two_afc_choices(e[trial.max_refs], e[trial.min_refs], e[trial.strong], e[trial.weak]).mean()

    # a subject that sees exactly red (R, 1 - R) is perfect; a blind (constant) one guesses; with the references swapped it is always wrong
    red = fixed_net([[1.0, 0, 0], [-1.0, 0, 0]], [[1.0, 0], [0, 1.0]], "red", bias=[0.0, 1.0])
    assert accuracy(red) == 1.0
    assert accuracy(fixed_net([[0.0, 0, 0], [0, 0, 0]], [[1.0, 0], [0, 1.0]], "blind", bias=[1.0, 2.0])) == 0.5
    e = embed_images(red, "colour", list(images))
    assert two_afc_choices(e[trial.min_refs], e[trial.max_refs], e[trial.strong], e[trial.weak]).mean() == 0.0
    with pytest.raises(ValueError, match="reference images"):
        natural_trials(values, ref[:10], query, references=9)


def test_faithfulness_scores_known_features():
    sets = {"a": np.array([[3.0, 0, 0], [2.0, 0.1, 0]]), "b": np.array([[0, 3.0, 0], [0, 2.0, 0.2]]), "c": np.array([[0, 0, 3.0], [0.1, 0, 2.0]])}
    feats = np.array([[2.5, 0, 0], [0, 0, 2.5], [0, 2.5, 0]])
    found = faithfulness(feats, ["a", "b", "c"], sets)
    assert list(found.rank) == [1, 2, 3] and found.mean_rank == 2.0 and found.rank_score == pytest.approx(0.5)  # c's exemplars lean a little to red, so a beats c for a green image
    assert found.accuracy == pytest.approx(1 / 3) and found.chance == pytest.approx(1 / 3)
    assert faithfulness(feats, ["a", "c", "b"], sets).accuracy == 1.0
    with pytest.raises(ValueError, match="at least two units"):
        faithfulness(feats[:1], ["a"], {"a": sets["a"]})


def test_window_maps_receptive_fields_to_cells():
    assert window(None, (7, 7), (224, 224)) == (0, 0, 7, 7)
    assert window((96, 96, 128, 128), (7, 7), (224, 224)) == (3, 3, 4, 4)
    assert window((0, 0, 224, 224), (14, 14), (224, 224)) == (0, 0, 14, 14)


def test_earlier_layer_is_half_way_at_the_units_level(tiny_target):
    assert earlier_layer(tiny_target, "conv2") == "bn1"  # conv1, bn1, act1 before it
    assert earlier_layer(tiny_target, "logits") == "act1"  # conv1, bn1, act1, conv2, act2
    with pytest.raises(ValueError, match="no feature map"):
        earlier_layer(tiny_target, "conv1")


def noisy_primaries(n, seed=0):
    """Image i is mostly colour channel i % 3 (150-255) with a little of the others (0-80)."""
    rng = np.random.default_rng(seed)
    colours = []
    for i in range(n):
        c = rng.integers(0, 81, size=3)
        c[i % 3] = rng.integers(150, 256)
        colours.append(tuple(int(v) for v in c))
    return colours


def test_faithful_and_unfaithful_images_through_the_earlier_layer(tmp_path):
    data = solid_folder(tmp_path / "data", noisy_primaries(90))
    # mix:0 = red + 0.2 green, mix:1 = green, mix:2 = blue; colour is the earlier layer (R, G, B)
    target = fixed_net(IDENTITY, [[1.0, 0.2, 0], [0, 1.0, 0], [0, 0, 1.0]], "target")
    units = [Unit("mix", 0), Unit("mix", 1), Unit("mix", 2)]
    faithful = np.stack([np.full((16, 16, 3), c, dtype=np.uint8) for c in [(255, 50, 100), (60, 255, 90), (80, 40, 255)]])
    found = units_faithfulness(target, units, faithful, data, k=9, cache_dir=False)
    layer = found["layers"]["mix"]
    assert layer["earlier_layer"] == "colour" and layer["sets"] == 3
    assert found["accuracy"] == 1.0 and found["natural_accuracy"] == 1.0 and found["rank"] == [1, 1, 1]
    # drives mix:0 as hard as the best photo (0.8 + 0.2 = 1.0) by the green path: nearer mix:1's photos
    unfaithful = np.full((1, 16, 16, 3), (204, 255, 0), dtype=np.uint8)
    feats = window_features(target, "colour", unfaithful, None)
    np.testing.assert_allclose(feats[0], [0.8, 1.0, 0.0], atol=1e-6)
    both = units_faithfulness(target, units + [Unit("mix", 0)], np.concatenate([faithful, unfaithful]), data, k=9, cache_dir=False)
    assert both["rank"] == [1, 1, 1, 2] and both["accuracy"] == 0.75
    single = units_faithfulness(target, [Unit("mix", 0)], faithful[:1], data, k=9, cache_dir=False)
    assert single["accuracy"] is None and "one unit" in single["notes"][0]


def test_split_by_group_keeps_each_photo_on_one_side():
    groups = [f"photo{i // 4}" for i in range(40)]
    ref, query = split_references_queries(40, 0.5, seed=3, groups=groups)
    assert {groups[i] for i in ref}.isdisjoint({groups[i] for i in query})
    assert len(query) == 20 and len(ref) == 20 and sorted(np.concatenate([ref, query])) == list(range(40))


def test_evaluate_with_data_reports_faithfulness(tmp_path, monkeypatch, capsys):
    import json

    from dgnam.cli import main
    from dgnam.io.report import build_report

    solid_folder(tmp_path / "data", noisy_primaries(90))
    target = fixed_net(IDENTITY, [[1.0, 0.2, 0], [0, 1.0, 0], [0, 0, 1.0]], "target")
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("dgnam.nets.adapters.load_target", lambda *a, **k: target)
    monkeypatch.setattr("dgnam.nets.load_net", lambda *a, **k: target)  # the judges
    run = tmp_path / "run"
    run.mkdir()
    colours = [(255, 50, 100), (60, 255, 90), (80, 40, 255), (204, 255, 0)]  # the last drives mix:0 by the green path
    items = []
    for i, (c, unit) in enumerate(zip(colours, [0, 1, 2, 0])):
        Image.fromarray(np.full((16, 16, 3), c, dtype=np.uint8)).save(run / f"img{i}.png")
        items.append({"unit": f"mix:{unit}", "layer": "mix", "index": unit, "location": None, "seed": i, "file": f"img{i}.png"})
    (run / "results.json").write_text(json.dumps({"net": "target", "method": "pixel:test", "items": items}))
    args = ["evaluate", str(run), "--data", str(tmp_path / "data"), "--natural-size", "16", "--feature-layer", "head", "-k", "9"]
    assert main(args) == 0
    assert "faithfulness 0.75 (natural 1.0; chance 0.3333 in mix), rank score 0.875 (natural 1.0; chance 0.5)" in capsys.readouterr().out
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["faithfulness"]["rank"] == [1, 1, 1, 2] and ev["faithfulness"]["layers"]["mix"]["earlier_layer"] == "colour"
    assert "faithfulness in colour" in build_report([run])
    assert main(args + ["-k", "90"]) == 2 and "-k 90 needs 91 images" in capsys.readouterr().err
