"""benchmarks/generalization.py: FOREIGN_RULE on summary rows (no net needed)."""

import pytest
from conftest import load_benchmark

BAND = (-4.0, -2.5, -1.3)  # photos' slope 5 / 50 / 95 %


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("generalization")


def row(net: str, layer: str, dgn: float, fourier: float, slope: float) -> dict:
    return {"net": net, "layer": layer, "dgn-am": {"relative_activation": dgn, "spectrum_slope": slope},
            "fourier": {"relative_activation": fourier, "spectrum_slope": -2.0}}  # fmt: skip


def test_every_foreign_layer_must_pass_and_the_decision_names_the_measured_prior(bench):
    passing = [row("vgg16_hed@128px", "conv3_3", 16.9, 0.95, -2.3), row("squeezenet1_1", "logits", 10.4, 8.5, -2.5)]
    decision = bench.decide(passing, BAND, "/work/cand/v2.safetensors")
    assert decision["default"] == "dgn-am:/work/cand/v2.safetensors" and decision["layers"] == 2
    weaker = passing[:1] + [row("squeezenet1_1", "logits", 8.2, 8.5, -3.5)]  # 0.97x Fourier: one layer fails (a)
    decision = bench.decide(weaker, BAND, "lite0_blocks7_conv_resize")
    assert decision["default"].startswith("pixel default") and "squeezenet1_1 logits" in decision["why"]
    smooth = [row("squeezenet1_1", "logits", 10.0, 8.5, -4.5)]  # activation passes, slope outside the band (b)
    assert "outside" in bench.decide(smooth, BAND, "p")["why"]
    own = [row("efficientnet_lite0", "_blocks.5", 1.0, 2.0, -2.0)]  # the encoder's own layers are not foreign
    assert bench.decide(own, BAND, "p")["layers"] == 0
