"""benchmarks/near_copies.py: the near-copy rule on features (no net needed)."""

import numpy as np
import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("near_copies")


def test_a_copy_of_a_train_image_is_flagged_and_a_new_image_is_not(bench):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 16))
    held = train[:100] + rng.normal(scale=0.5, size=(100, 16))  # new photos: near, never identical
    copy = train[[7, 42]] + 1e-4  # two copies of train images
    fresh = rng.normal(size=(3, 16))  # far from everything
    out = bench.near_copies(train, held, {"copies": copy, "fresh": fresh})
    assert 0 < out["threshold"] < out["heldout"]["median"]
    assert out["queries"]["copies"]["near_copies"] == 2
    assert list(out["queries"]["copies"]["nearest"]) == [7, 42]
    assert out["queries"]["fresh"]["near_copies"] == 0
    assert out["heldout"]["near_copies"] == 1  # the 1st percentile of 100 held-out distances: one falls under it
    assert out["queries"]["fresh"]["min"] > out["threshold"]
