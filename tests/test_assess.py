"""Scoring a run folder (dgnam.eval.score.evaluate_run) and nearest neighbours, on inputs whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import dgnam
from dgnam.eval.score import EvaluateConfig, evaluate_run, find_neighbors, layer_features, nearest_neighbors, run_speed
from dgnam.methods.base import AMResult
from dgnam.io.read import read_run
from dgnam.io.write import RunWriter
from dgnam.core.units import Unit

COLOR_CLASSES = ("red", "green", "blue")
PLAIN = dgnam.InputSpec(size=(16, 16), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), min_size=8)


class ColorNet(nn.Module):
    """``pool`` = the image's mean R, G, B; ``logits`` = ``scale * pool + bias`` (class 0 red, 1 green, 2 blue)."""

    def __init__(self, scale: float = 1.0, bias=(0.0, 0.0, 0.0)):
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.logits = nn.Linear(3, 3)
        with torch.no_grad():
            self.logits.weight.copy_(scale * torch.eye(3))
            self.logits.bias.copy_(torch.tensor(bias))

    def forward(self, x):
        return self.logits(self.pool(x))


def color_target(name="colors") -> dgnam.Target:
    return dgnam.wrap_model(ColorNet(), PLAIN, COLOR_CLASSES, name=name)


def constant_judge() -> dgnam.Target:
    """Always ranks green first, blue second, red third (its pool still sees the image's colours)."""
    return dgnam.wrap_model(ColorNet(scale=0.0, bias=(0.0, 5.0, 3.0)), PLAIN, COLOR_CLASSES, name="judge")


#: (unit, seed, RGB in 0-255) of the hand-made run: exact 8-bit values, so the PNGs hold them exactly.
RUN = [
    (Unit("logits", 0), 0, (255, 0, 0)),
    (Unit("logits", 0), 1, (200, 100, 100)),
    (Unit("logits", 2), 0, (0, 255, 0)),
    (Unit("logits", 2), 1, (0, 0, 255)),
]


def solid(rgb, size: int = 32) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1).expand(3, size, size) / 255.0


def write_color_run(out, seconds: float = 3.0, size: int = 32):
    """A run folder as `dgnam visualize` writes it, with solid-colour images whose scores are known."""
    images = torch.stack([solid(rgb, size) for _, _, rgb in RUN])
    n = len(RUN)
    result = AMResult(
        units=[u for u, _, _ in RUN], seeds=[s for _, s, _ in RUN], images=images, best_images=images,
        history=torch.linspace(0, 1, 6).repeat(n, 1) * torch.arange(1, n + 1)[:, None], final=torch.ones(n),
        best=torch.ones(n), best_step=torch.full((n,), 5), method="pixel", config={"steps": 6},
    )  # fmt: skip
    settings = {"net": "colors", "method": "pixel:test", "config": {"steps": 6}, "seeds": [0, 1], "units": ["logits:0", "logits:2"]}
    writer = RunWriter(out, settings, COLOR_CLASSES)
    writer.add(result, seconds=seconds)
    writer.finish(requested=n)
    return out


def test_evaluate_run_known_values(tmp_path):
    record, images = read_run(write_color_run(tmp_path / "run"))
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    natural = np.stack([np.asarray(images[i]) for i in range(4)])  # the same four colours
    ev = evaluate_run(record, images, color_target(), {"judge": constant_judge()}, natural, EvaluateConfig(ks=(1, 2)))
    s, items = ev.summary, ev.items
    # target: red -> rank 1; pink (200,100,100) -> class 0 rank 1; green for class 2: blue logit 0 < green -> rank 2; blue -> 1
    assert [it["target_rank"] for it in items] == [1, 1, 2, 1]
    assert s["target_top1"] == pytest.approx(0.75)
    # the judge always says green > blue > red: class 0 has rank 3, class 2 rank 2
    assert [it["judges"]["judge"]["rank"] for it in items] == [3, 3, 2, 2]
    assert [it["judges"]["judge"]["pred_label"] for it in items] == ["green"] * 4
    assert s["judges"]["judge"]["top1"] == 0.0 and s["judges"]["judge"]["top2"] == 0.5
    # activations recomputed from the PNGs = mean colour; natural maxima are 1.0 (red and blue images are natural)
    np.testing.assert_allclose([it["activation"] for it in items], [1.0, 200 / 255, 0.0, 1.0], atol=1e-5)
    np.testing.assert_allclose([it["relative_activation"] for it in items], [1.0, 200 / 255, 0.0, 1.0], atol=1e-4)
    assert s["relative_activation"]["median"] == pytest.approx((200 / 255 + 1.0) / 2, abs=1e-4)
    # Fréchet distance of identical feature sets is 0
    assert s["judges"]["judge"]["frechet_distance"] == pytest.approx(0.0, abs=1e-4)
    # diversity in the judge's pool features (mean RGB): 1 - cos(red, pink) and 1 - cos(green, blue) = 1
    div0 = 1 - 200 / math.sqrt(200**2 + 100**2 + 100**2)
    assert s["judges"]["judge"]["diversity_per_unit"] == {"logits:0": pytest.approx(div0, abs=1e-4), "logits:2": pytest.approx(1.0, abs=1e-6)}
    assert s["diversity"] == pytest.approx((div0 + 1.0) / 2, abs=1e-4)
    # saturation: pink is (200-100)/200 = 0.5, the primaries 1
    np.testing.assert_allclose([it["saturation"] for it in items], [1.0, 0.5, 1.0, 1.0], atol=1e-6)
    assert s["saturation"]["mean"] == pytest.approx(0.875)
    assert len([it["spectrum_slope"] for it in items]) == 4 and s["spectrum_band_cycles_per_px"] == [0.04, 0.25]
    # speed: 3 s for 4 images of 2 units
    assert s["speed"]["seconds_per_image"] == 0.75 and s["speed"]["images_per_minute"] == 80.0
    assert s["speed"]["seconds_per_unit"] == 1.5 and s["speed"]["units_per_minute"] == 40.0
    d = ev.to_dict()
    import json

    json.dumps(d, allow_nan=False)  # JSON-clean: NaN became null


def test_evaluate_runs_each_net_once_over_the_run(tmp_path):
    record, images = read_run(write_color_run(tmp_path / "run"))
    target, judge = color_target(), constant_judge()
    calls = {"target": 0, "judge": 0}
    for name, net in (("target", target), ("judge", judge)):
        net.model.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    target.fast = lambda layers: target  # keep the counted modules (fast() may rebuild them)
    judge.fast = lambda layers: judge
    ev = evaluate_run(record, images, target, {"judge": judge}, None, EvaluateConfig(batch_size=2))
    # 4 images in batches of 2: two passes each, giving activations + class ranks (target) and ranks + features (judge)
    assert calls == {"target": 2, "judge": 2}
    assert [it["target_rank"] for it in ev.items] == [1, 1, 2, 1]
    assert [it["judges"]["judge"]["rank"] for it in ev.items] == [3, 3, 2, 2]


def test_judge_pass_ranks_labelled_images_and_returns_features():
    images = torch.stack([solid((255, 0, 0)), solid((0, 0, 255)), solid((0, 255, 0))])
    ranks, preds, feats = dgnam.eval.score.judge_pass(color_target(), images, [0, -1, 2], "pool", batch_size=2)
    assert ranks.tolist() == [1, -1, 2] and preds.tolist() == [0, -1, 1]  # green image: blue (2) is second
    np.testing.assert_allclose(feats, [[1, 0, 0], [0, 0, 1], [0, 1, 0]], atol=1e-6)
    assert dgnam.eval.score.judge_pass(color_target(), images, [0, 1, 2])[2] is None
    with pytest.raises(ValueError, match="labels must lie"):
        dgnam.eval.score.judge_pass(color_target(), images, [0, 1, 3])


def test_evaluate_fd_matches_direct_computation_and_shift(tmp_path):
    record, images = read_run(write_color_run(tmp_path / "run"))
    shift = 30
    natural = np.clip(images.astype(int) + shift, 0, 255).astype(np.uint8)  # shifted colours, some clipped
    ev = evaluate_run(record, images, None, {"judge": constant_judge()}, natural)
    expected = dgnam.eval.metrics.frechet_distance(images.reshape(4, -1, 3).mean(1) / 255.0, natural.reshape(4, -1, 3).mean(1) / 255.0)
    assert ev.summary["judges"]["judge"]["frechet_distance"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert expected > 0.01
    assert ev.summary["target_top1"] is None and "activation" not in ev.items[0]  # no target given
    assert any("Fréchet distance is biased" in n for n in ev.notes)  # 4 images for 3-d features


def test_evaluate_judge_with_other_categories_is_skipped_with_a_note(tmp_path):
    record, images = read_run(write_color_run(tmp_path / "run"))
    other = dgnam.wrap_model(ColorNet(), PLAIN, ("a", "b", "c"), name="other")
    ev = evaluate_run(record, images, color_target(), {"other": other})
    assert "top1" not in ev.summary["judges"]["other"]
    assert any("other categories" in n for n in ev.notes)
    with pytest.raises(ValueError, match="3 images for 4 items"):
        evaluate_run(record, images[:3], color_target())


def test_run_speed_fallback_and_missing():
    items = [{"layer": "logits", "index": 1, "location": None}] * 4
    assert run_speed({"items": items, "seconds": 8.0})["seconds_per_unit"] == 8.0
    assert run_speed({"items": items, "seconds": 8.0})["source"].startswith("seconds")
    assert run_speed({"items": items}) is None


def test_nearest_neighbors_cosine_and_l2():
    data = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 0.0]])
    queries = np.array([[2.0, 0.0], [1.0, 1.2]])
    nb = nearest_neighbors(queries, data, k=2, metric="cosine", chunk=3)  # chunks exercise the merge
    np.testing.assert_array_equal(nb.index, [[0, 2], [2, 1]])
    np.testing.assert_allclose(nb.distance[0], [0.0, 1 - 1 / math.sqrt(2)], atol=1e-12)
    nb = nearest_neighbors(queries, data, k=3, metric="l2", chunk=1)
    np.testing.assert_array_equal(nb.index[0], [0, 1, 3])  # distances 1, sqrt 8, 3 (sqrt 10 to [3, 3] is 4th)
    np.testing.assert_allclose(nb.distance[0], [1.0, math.sqrt(8), 3.0])
    with pytest.raises(ValueError, match="metric"):
        nearest_neighbors(queries, data, metric="manhattan")
    with pytest.raises(ValueError, match="k must be"):
        nearest_neighbors(queries, data, k=5)


def test_find_neighbors_finds_the_copied_image(tiny_target):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    queries = np.stack([data[7], rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)])
    nb = find_neighbors(tiny_target, "pool", queries, data, k=3)
    assert nb.index[0, 0] == 7 and nb.distance[0, 0] < 1e-6 and nb.distance[0, 1] > 1e-5
    feats = layer_features(tiny_target, "pool", data)
    assert feats.shape == (20, 6)


def test_judges_are_labelled_by_family_relative_to_the_target(tmp_path):
    record, images = read_run(write_color_run(tmp_path / "run"))
    judges = {"squeezenet1_1": constant_judge(), "efficientnet_lite1": color_target("lite1"), "mine": constant_judge()}
    ev = evaluate_run(dict(record, net="efficientnet_lite0"), images, None, judges)
    families = {name: j["family"] for name, j in ev.summary["judges"].items()}
    assert families == {"squeezenet1_1": "out-of-family", "efficientnet_lite1": "in-family", "mine": None}
    assert ev.summary["judges"]["squeezenet1_1"]["top1"] == 0.0 and ev.summary["judges"]["efficientnet_lite1"]["top1"] == 0.75
    ev = evaluate_run(dict(record, net="caffenet"), images, None, {"efficientnet_lite1": color_target("lite1")})
    assert ev.summary["judges"]["efficientnet_lite1"]["family"] == "out-of-family"  # Lite1 judging an AlexNet run
