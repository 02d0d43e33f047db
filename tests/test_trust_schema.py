"""Records read back are checked in one place (dgnam.io.read): a crafted file is one line naming the file and the
field, never a traceback (issue 26, item 17); and the test helpers that keep the suite honest (items 19, 20)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import time

import pytest

from dgnam import cli
from dgnam.atlas import store
from dgnam.core.hooks import NoTensorError, unwrap_output
from dgnam.io.read import RESULTS, RecordError, check_record, load_record
from dgnam.core.units import Unit

from conftest import join_or_kill, missing, needs, require
from test_errors import one_line_error


def _vis(net_file, gen_file, out, *flags):
    return ["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
            "--unit", "logits:0-2", "--seeds", "0-1", "--steps", "2", "--batch-size", "2", "--out", str(out), "--quiet", *flags]  # fmt: skip


@pytest.fixture
def run_dir(tmp_path, tiny_registry, capsys):
    """A finished 6-image run of the tiny net, and a function that edits a copy of its results.json."""
    net_file, gen_file = tiny_registry
    base = tmp_path / "base"
    assert cli.main(_vis(net_file, gen_file, base)) == 0
    capsys.readouterr()

    def edited(name: str, edit) -> "os.PathLike":
        folder = tmp_path / name
        shutil.copytree(base, folder)
        record = json.loads((folder / "results.json").read_text())
        edit(record)
        (folder / "results.json").write_text(json.dumps(record))
        return folder

    return base, edited, (net_file, gen_file)


# ---------------------------------------------------------------------------------------------
# The schema checker itself
# ---------------------------------------------------------------------------------------------


def test_the_schema_names_the_field_and_its_json_type(tmp_path):
    path = tmp_path / "results.json"
    good = {"items": [{"file": "a.png", "unit": "logits:1", "seed": 0, "final_activation": 2, "history": [1.5, None]}], "started": 1.0}
    assert check_record(good, path) is good  # an integer is a number; null stands for NaN
    cases = [
        ({"items": [{"seed": "0"}]}, r"items\[0\]\.seed is a string \"0\", not an integer"),
        ({"items": [{"seed": True}]}, r"items\[0\]\.seed is true/false true, not an integer"),  # True is no integer
        ({"items": [{"seed": 1.5}]}, r"items\[0\]\.seed is a number 1.5, not an integer"),
        ({"items": ["x"]}, r"items\[0\] is a string \"x\", not an object"),
        ({"items": {}}, r"items is an object, not a list"),
        ({"config": [1]}, r"config is a list, not an object or null"),
        ({"batches": [{"images": 1}]}, r"batches\[0\] lacks 'seconds'"),
        ({"items": [{"maps": {"x y": 3}}]}, r'items\[0\]\.maps\["x y"\] is an integer 3, not a string'),
    ]
    for record, message in cases:
        with pytest.raises(RecordError, match=rf"^{path}: {message}: restore the results.json dgnam wrote, or run again$"):
            check_record(record, path)
    with pytest.raises(RecordError, match=r"part\.world_size is 0, less than 1"):
        check_record({"part": {"rank": 0, "world_size": 0, "items_total": 1, "run_keys": []}}, path, RESULTS)


def test_load_record_refuses_deep_nesting_and_names_the_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(RecordError, match=rf"^{path} is nested too deeply"):
        load_record(path)
    path.write_text('{"items": [')
    with pytest.raises(RecordError, match="is not valid JSON"):
        load_record(path)


# ---------------------------------------------------------------------------------------------
# Crafted run folders through the commands: one line, exit 2
# ---------------------------------------------------------------------------------------------


def test_resume_of_an_item_without_label_is_one_line(run_dir, capsys):
    _, edited, (net_file, gen_file) = run_dir

    def drop_label(record):
        del record["items"][1]["label"]
        record.update(interrupted=True, complete=False)

    folder = edited("nolabel", drop_label)  # today: KeyError 'label' from RunWriter.resume
    err = one_line_error(capsys, _vis(net_file, gen_file, folder, "--resume"))
    assert f"{folder / 'results.json'}: items[1] lacks 'label'" in err


def test_deep_nesting_and_wrong_types_in_results_json_are_one_line(run_dir, capsys):
    base, edited, _ = run_dir
    deep = edited("deep", lambda r: None)
    (deep / "results.json").write_text('{"items": ' + "[" * 50_000 + "]" * 50_000 + "}")
    for command in (["report", str(deep)], ["evaluate", str(deep)]):  # today: RecursionError
        assert "results.json is nested too deeply" in one_line_error(capsys, command)
    config = edited("config", lambda r: r.update(config=[1]))  # today: AttributeError in the report
    assert "results.json: config is a list, not an object or null" in one_line_error(capsys, ["report", str(config)])


CRAFTED_EVALUATION = [
    ("evaluation.json", {"summary": [1, 2]}, "summary is a list, not an object or null"),
    ("evaluation.json", {"items": [{"file": "x.png", "judges": {"squeezenet1_1": {"rank": 1}}}]}, "items[0].judges.squeezenet1_1 lacks 'pred_label'"),
    ("evaluation.json", {"summary": {"judges": {"a": [1]}}}, "summary.judges.a is a list, not an object"),
    ("neighbors/neighbors.json", {"items": [{"neighbors": ["near"]}]}, "items[0].neighbors[0] is a string \"near\", not an object"),
]  # fmt: skip


def test_a_crafted_evaluation_or_neighbors_file_is_one_line(run_dir, capsys):
    base, edited, _ = run_dir
    for k, (file, content, field) in enumerate(CRAFTED_EVALUATION):
        folder = edited(f"crafted{k}", lambda r: None)
        (folder / file).parent.mkdir(exist_ok=True)
        (folder / file).write_text(json.dumps(content))  # today: AttributeError / KeyError / TypeError in the report
        assert f"{folder / file}: {field}" in one_line_error(capsys, ["report", str(folder)])


def _parts(base, out, edit):
    """``out/parts/rank000``: ``base``'s run as the one part of a one-process torchrun run, edited."""
    part = out / "parts" / "rank000"
    shutil.copytree(base, part)
    (part / "contact_sheet.png").unlink()
    record = json.loads((part / "results.json").read_text())
    keys = [k for k in record if k not in ("items", "batches", "timing", "started", "created", "seconds", "complete", "interrupted", "versions")]
    record["part"] = {"rank": 0, "world_size": 1, "items_total": len(record["items"]), "run_keys": keys}
    edit(record)
    (part / "results.json").write_text(json.dumps(record))
    return part


CRAFTED_PARTS = [
    (lambda r: r["part"].update(run_keys="net"), "part.run_keys is a string \"net\", not a list"),
    (lambda r: r["part"].update(run_keys=["net", "nope"]), "part.run_keys names 'nope', which the record lacks"),
    (lambda r: r["part"].update(world_size="1"), "part.world_size is a string \"1\", not an integer"),
    (lambda r: r["part"].update(rank=1), "part.rank is 1, not below part.world_size 1"),
    (lambda r: r.pop("interrupted"), "the record lacks 'interrupted'"),
    (lambda r: r["items"][2].pop("final_activation"), "items[2] lacks 'final_activation'"),
    (lambda r: r["batches"][0].update(seconds="1"), "batches[0].seconds is a string \"1\", not a number"),
]  # fmt: skip


def test_merge_of_a_crafted_part_is_one_line_and_moves_nothing(run_dir, capsys, tmp_path):
    base, _, _ = run_dir
    for k, (edit, field) in enumerate(CRAFTED_PARTS):
        out = tmp_path / f"merged{k}"
        part = _parts(base, out, edit)  # today: KeyError / TypeError tracebacks, some after files were moved
        assert f"{part / 'results.json'}: {field}" in one_line_error(capsys, ["merge", str(out)])
        assert sorted(p.name for p in out.iterdir()) == ["parts"] and (part / "logits_0000_seed0.png").is_file()


def test_merge_of_a_good_part_still_works(run_dir, capsys, tmp_path):
    base, _, _ = run_dir
    out = tmp_path / "merged"
    _parts(base, out, lambda r: None)
    assert cli.main(["merge", str(out)]) == 0
    merged, original = (json.loads((d / "results.json").read_text()) for d in (out, base))
    assert merged["items"] == original["items"] and not (out / "parts").exists()


# ---------------------------------------------------------------------------------------------
# A broken atlas unit.json, a model that returns a string
# ---------------------------------------------------------------------------------------------


def _unit_record(folder, **changes):
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("dgnam_s0.png", "top_0.jpg"):
        (folder / name).write_bytes(b"")
    record = {"key": "k1", "unit": "logits:3", "layer": "logits", "index": 3, "slug": "0003", "label": "dog",
              "facets": [{"seed": 0, "activation": 1.5, "file": "dgnam_s0.png"}],
              "top": [{"index": 0, "source": "a.png", "activation": 2.0, "file": "top_0.jpg"}],
              "natural": {"images": 4, "max": 2.0, "histogram": {"counts": [1, 3], "edges": [0.0, 1.0, 2.0]}}, **changes}  # fmt: skip
    (folder / "unit.json").write_text(json.dumps(record))
    return record


@pytest.mark.parametrize("changes, field", [
    ({"facets": "x"}, "facets is a string \"x\", not a list or null"),
    ({"facets": [{"seed": 0, "activation": 1.0}]}, "facets[0] lacks 'file'"),
    ({"top": ["a"]}, "top[0] is a string \"a\", not an object"),
    ({"natural": [1]}, "natural is a list, not an object"),
    ({"facets": [{"seed": 0, "activation": "<b>", "file": "dgnam_s0.png"}]}, "facets[0].activation is a string \"<b>\", not a number or null"),
])  # fmt: skip
def test_a_broken_atlas_unit_json_is_named_and_computed_again(tmp_path, changes, field):
    site, unit = tmp_path / "site", Unit("logits", 3)
    folder = store.unit_dir(site, unit)
    good = _unit_record(folder)
    assert store.read_unit_record(site, unit, "k1") == good and store.read_unit_record(site, unit, "other") is None
    _unit_record(folder, **changes)  # today: KeyError / TypeError from record_files, or from the pages later
    with pytest.warns(UserWarning, match="unit.json") as caught:
        assert store.read_unit_record(site, unit, "k1") is None
    message = str(caught[0].message)
    assert message == f"{folder / 'unit.json'}: {field}: the atlas computes the unit again" and "\n" not in message
    assert store.read_unit_record(site, unit, "other") is None  # another build's record: not read further, no warning


def test_a_model_that_returns_a_string_is_one_line(tmp_path, capsys):
    net = tmp_path / "strnet.py"
    net.write_text("import torch\nfrom torch import nn\n\nclass Words(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                   "        self.conv = nn.Conv2d(3, 4, 3)\n\n    def forward(self, x):\n        self.conv(x)\n        return 'hello'\n\n"
                   "def build():\n    return Words()\n")  # fmt: skip
    err = one_line_error(capsys, ["layers", f"{net}:build"])  # today: a TypeError traceback
    assert "returned str, which holds no tensor to read: make it return a tensor" in err
    with pytest.raises(NoTensorError) as raised:
        unwrap_output("hello", "the model")
    assert isinstance(raised.value, TypeError) and isinstance(raised.value, ValueError)  # hooks still skip such modules


# ---------------------------------------------------------------------------------------------
# Test helpers (items 19, 20): skips that fail under CI, Ctrl-C in a test, children that hang
# ---------------------------------------------------------------------------------------------


def test_a_missing_test_dependency_skips_here_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no_such_module_dgnam"):
        require("no_such_module_dgnam", "nothing")
    with pytest.raises(pytest.skip.Exception, match="a browser"):
        missing("a browser")

    @needs("no_such_module_dgnam", "nothing")
    def test_body(tmp_path):
        raise AssertionError("ran without its module")

    with pytest.raises(pytest.skip.Exception):
        test_body(None)
    monkeypatch.setenv("CI", "1")
    for call in (lambda: require("no_such_module_dgnam", "x"), lambda: missing("a browser"), lambda: test_body(None)):
        with pytest.raises(pytest.fail.Exception, match="CI is set"):
            call()
    assert require("json", "x") is json


def _reads_ci(node) -> bool:
    """``os.environ.get("CI")``, ``os.getenv("CI")``, ``os.environ["CI"]`` or ``"CI" in os.environ``."""
    import ast

    ci = lambda n: isinstance(n, ast.Constant) and n.value == "CI"  # noqa: E731
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "getenv"):
        return bool(node.args) and ci(node.args[0])
    return (isinstance(node, ast.Subscript) and ci(node.slice)) or (isinstance(node, ast.Compare) and ci(node.left))


def test_only_conftest_decides_between_skip_and_fail_under_ci():
    """A test that skips for want of something calls conftest.missing/require/needs, which fail under CI; one that
    reads CI itself (test_report.py's screenshot test did) is a second rule that can drift from the first."""
    import ast
    from pathlib import Path

    here = Path(__file__).resolve().parent
    readers = [f"{path.name}:{node.lineno}" for path in sorted(here.glob("*.py")) if path.name != "conftest.py"
               for node in ast.walk(ast.parse(path.read_text())) if _reads_ci(node)]  # fmt: skip
    assert readers == []


@pytest.fixture
def ignored_sigint():
    """SIGINT ignored, as a shell script that starts pytest in the background leaves it."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGINT, previous)


def test_default_sigint_turns_ctrl_c_back_on(ignored_sigint, default_sigint):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):  # the handler runs between bytecodes
            time.sleep(0.01)


def test_join_or_kill_kills_a_child_that_hangs():
    ctx = multiprocessing.get_context("spawn")
    quick, stuck = ctx.Process(target=time.sleep, args=(0,)), ctx.Process(target=time.sleep, args=(600,))
    for p in (quick, stuck):
        p.start()
    quick.join(60)
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"1 child process\(es\) still running after 1 s were killed"):
        join_or_kill([quick, stuck], 1)
    assert time.monotonic() - started < 20 and not stuck.is_alive() and quick.exitcode == 0
