"""The side-by-side speed harness's bookkeeping (benchmarks/speed_vs_lucent.py), without lucent: the command it
times and the BENCHMARKS.md rows it writes from a record."""

from pathlib import Path

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def svl():
    return load_benchmark("speed_vs_lucent")


def run(wall, cpu):
    return {"wall_s": wall, "cpu_s": cpu}


def test_rows_give_medians_and_lucent_over_dgnam_ratios_per_setting(svl):
    record = {"runs": [
        {"classes": 3, "dgnam": {"": [run(30, 60), run(29, 56), run(100, 100)], "--precision bf16": [run(20, 40), run(21, 38), run(19, 39)]},
         "lucent": [run(100, 200), run(105, 190), run(102, 199)]},
        {"classes": 12, "dgnam": {"": [run(50, 100)], "--precision bf16": [run(40, 80)]}, "lucent": [run(400, 800)]},
    ]}  # fmt: skip
    lines = svl.table(record)
    assert lines[0] == "| N classes | dgnam wall / CPU | lucent wall / CPU | ratio wall / CPU |"
    assert lines[2] == "| 3 | 30.0 s / 60.0 s | 102.0 s / 199.0 s | 3.40× / 3.32× |"  # medians, not means (the 100 s outlier)
    assert lines[3] == "| 3 (--precision bf16) | 20.0 s / 39.0 s | 102.0 s / 199.0 s | 5.10× / 5.10× |"
    assert lines[4:] == ["| 12 | 50.0 s / 100.0 s | 400.0 s / 800.0 s | 8.00× / 8.00× |",
                         "| 12 (--precision bf16) | 40.0 s / 80.0 s | 400.0 s / 800.0 s | 10.00× / 10.00× |"]  # fmt: skip


def test_dgnam_command_is_the_cli_at_its_defaults_plus_the_setting(svl):
    cmd = svl.dgnam_cmd("dgnam", [292, 779], Path("/tmp/x/run"), 2, None, "--precision bf16 --track-every 4")
    assert cmd == ["dgnam", "visualize", "--unit", "logits:292", "--unit", "logits:779", "--out", "/tmp/x/run", "--quiet",
                   "--threads", "2", "--precision", "bf16", "--track-every", "4"]  # fmt: skip
    assert "--steps" not in cmd  # the default steps unless a plumbing check overrides them
    assert svl.dgnam_cmd("dgnam", [1], Path("o"), 1, 3, "")[-2:] == ["--steps", "3"]
