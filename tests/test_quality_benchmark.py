"""The quality benchmark's bookkeeping (benchmarks/quality.py): which earlier records may be reused and
how the figures are computed from per-class records."""

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def quality():
    return load_benchmark("quality")


def key(classes, **other):
    return {"classes": classes, "steps": 200, "seed": 0, "batch_size": 8, "config": {"lr_start": 0.05}, **other}


def test_reuse_takes_all_of_an_identical_run_and_only_whole_batches_of_a_shorter_one(quality):
    assert quality.reusable_classes(key(25), key(25), 8) == 25
    assert quality.reusable_classes(key(25), key(50), 8) == 24  # batches 0-7, 8-15, 16-23; class 24 was alone in its batch
    assert quality.reusable_classes(key(16), key(50), 8) == 16
    assert quality.reusable_classes(key(5), key(50), 8) == 0  # no whole batch
    assert quality.reusable_classes(key(50), key(25), 8) == 0  # a longer run is not cut
    assert quality.reusable_classes(key(25), key(50, steps=100), 8) == 0
    assert quality.reusable_classes(key(25, generator_sha256="a"), key(50, generator_sha256="b"), 8) == 0  # re-shipped prior
    assert quality.reusable_classes(key(25, config={"lr_start": 8.0}), key(50), 8) == 0


def test_issue_29_split_is_fixed_balanced_and_disjoint(quality):
    a, b = quality.SPLITS["A"], quality.SPLITS["B"]
    assert len(a) == len(b) == 25 and not set(a) & set(b)
    assert set(a) | set(b) == {c[0] for c in quality.CLASSES}
    assert a[:4] == (292, 779, 945, 980) and b[:4] == (1, 504, 949, 973) and b[-1] == 291  # as BENCHMARKS.md lists them
    groups = {c[0]: c[2] for c in quality.CLASSES}
    for group in {"animal", "object", "food", "scene"}:
        in_a = sum(groups[i] == group for i in a)
        in_b = sum(groups[i] == group for i in b)
        assert abs(in_a - in_b) <= 1, group
    assert quality.reusable_classes(key(25, split="A"), key(25, split="B"), 8) == 0


def item(index, target_rank, judge_rank, rel, slope, sat):
    return {"index": index, "target_rank": target_rank, "judge_rank": judge_rank, "relative_activation": rel,
            "spectrum_slope": slope, "saturation": sat}


def test_summary_from_records_and_the_rates_without_the_tuning_classes(quality):
    tuning = [c[0] for c in quality.CLASSES[quality.TUNING]]
    others = [c[0] for c in quality.CLASSES[: quality.TUNING.start]]
    items = [item(others[0], 1, 1, 2.0, -3.0, 0.2), item(others[1], 2, 4, None, -2.0, 0.4),
             item(others[2], 1, 9, 4.0, None, 0.3), item(tuning[0], 1, 1, 8.0, -1.0, 0.1)]
    s = quality.summarize(items, seconds=8.0, image_px=[128, 128])
    assert s["target_top1"] == 0.75 and s["judge_top1"] == 0.5 and s["judge_top5"] == 0.75
    assert s["relative_activation_median"] == 4.0 and s["relative_activation_n"] == 3  # None is skipped
    assert s["spectrum_slope_median"] == -2.0 and s["saturation_mean"] == 0.25 and s["seconds_per_unit"] == 2.0
    assert s["untuned_classes"] == 3 and s["untuned_judge_top1"] == round(1 / 3, 4) and s["untuned_judge_top5"] == round(2 / 3, 4)
    assert "untuned_classes" not in quality.summarize(items[:3], seconds=1.0, image_px=[128, 128])  # no tuning class: no split
