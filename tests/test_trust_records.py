"""A run folder is data (issue 26, item 1): no net string, module or file a results.json names is run,
and no weight or class-name file it names outside the folder is opened; what the user types runs as given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dgnam
from dgnam import cli
from dgnam.infra.hub import WeightSource
from dgnam.nets import InputSpec, NetSpec

from conftest import CATEGORIES, TinyNet
from test_assess import write_color_run

SPEC = InputSpec(size=(32, 32), min_size=8)
MODEL = """
from pathlib import Path
from torch import nn
import dgnam

Path({marker!r}).write_text("ran")  # at import: what a hostile file would do


def build():
    Path({marker!r}).write_text("ran")
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)), dgnam.InputSpec(size=(32, 32), min_size=8)
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A registered net ``tiny`` whose weights are in the cache (also the judge: evaluate loads no real net)."""
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    monkeypatch.setenv("DGNAM_HOME", str(home))
    torch.manual_seed(0)
    torch.save(TinyNet().state_dict(), home / "weights" / "tiny_net.pth")
    dgnam.nets.catalog._ensure_builtin()
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "tiny", NetSpec("tiny", TinyNet, WeightSource("tiny_net.pth"), SPEC, CATEGORIES))
    return home / "weights" / "tiny_net.pth"


def crafted_run(tmp_path: Path, **fields) -> Path:
    """A run folder as `dgnam visualize` writes it, with ``fields`` written into its results.json."""
    run = write_color_run(tmp_path / "run")
    record = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**record, **fields}))
    return run


def evil_file(path: Path, marker: Path) -> Path:
    path.write_text(MODEL.format(marker=str(marker)))
    return path


def one_line(capsys, argv) -> str:
    """Run ``dgnam argv``: exit code 2 and exactly one line on stderr, which is returned."""
    capsys.readouterr()  # what earlier commands printed
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dgnam: error: "), err
    return err


def hostile_nets(tmp_path: Path, monkeypatch) -> tuple[Path, list[str]]:
    """The marker file and the net strings of a hostile record: an absolute file, a relative file inside the
    run folder (the working directory is the run folder), an importable module, and a standard library call."""
    marker = tmp_path / "marker"
    evil_file(tmp_path / "evil.py", marker)
    (tmp_path / "mods").mkdir()
    evil_file(tmp_path / "mods" / "evilmod.py", marker)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    return marker, [f"{tmp_path / 'evil.py'}:build", "evil.py:build", "evilmod:build", "os:getpid", "hf:" + str(tmp_path / "mods")]


def test_evaluate_runs_no_code_a_record_names(tmp_path, tiny, monkeypatch, capsys):
    marker, nets = hostile_nets(tmp_path, monkeypatch)
    for net in nets:
        run = crafted_run(tmp_path, net=net)
        evil_file(run / "evil.py", marker)
        monkeypatch.chdir(run)  # where a relative "evil.py" is found
        err = one_line(capsys, ["evaluate", str(run), "--judge", "tiny"])
        assert "pass --net explicitly" in err and "code or a path" in err, (net, err)
        assert not marker.exists(), net
        assert not (run / "evaluation.json").exists()
    run = crafted_run(tmp_path, net=["not", "a", "string"])
    assert "not a net string" in one_line(capsys, ["evaluate", str(run), "--judge", "tiny"])
    run = crafted_run(tmp_path, net="tiny", net_overrides=["categories_file"])
    assert "net_overrides is" in one_line(capsys, ["evaluate", str(run), "--judge", "tiny"])


def test_evaluate_the_users_own_net_file_runs(tmp_path, tiny, capsys):
    marker = tmp_path / "marker"
    mine = evil_file(tmp_path / "mine.py", marker)
    run = crafted_run(tmp_path, net=f"{mine}:build")
    assert cli.main(["evaluate", str(run), "--judge", "tiny", "--net", f"{mine}:build"]) == 0  # typed by the user: runs
    assert marker.read_text() == "ran"
    assert json.loads((run / "evaluation.json").read_text())["target"] == f"{mine}:build"


def test_evaluate_a_registered_net_from_the_record(tmp_path, tiny, capsys):
    run = crafted_run(tmp_path, net="tiny")
    assert cli.main(["evaluate", str(run), "--judge", "tiny"]) == 0
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["target"] == "tiny" and evaluation["summary"]["target_top1"] in (0.0, 0.5, 1.0)


def test_recorded_weights_and_categories_outside_the_folder_are_not_opened(tmp_path, tiny, capsys, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    torch.save(TinyNet().state_dict(), outside / "w.pth")
    (outside / "cats.txt").write_text("a\nb\nc\nd\ne\n")
    opened = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda path, *a, **k: opened.append(Path(path)) or real(path, *a, **k))
    run = crafted_run(tmp_path, net="tiny", net_weights=str(outside / "w.pth"))
    err = one_line(capsys, ["evaluate", str(run), "--judge", "tiny"])
    assert "net_weights" in err and "pass --net-weights explicitly" in err and opened == []
    (run / "w.pth").symlink_to(outside / "w.pth")  # inside by name, outside once resolved
    run = crafted_run(tmp_path, net="tiny", net_weights=str(run / "w.pth"))
    assert "pass --net-weights" in one_line(capsys, ["evaluate", str(run), "--judge", "tiny"]) and opened == []
    assert cli.main(["evaluate", str(run), "--judge", "tiny", "--net-weights", str(outside / "w.pth")]) == 0  # the user's
    assert outside / "w.pth" in opened

    run = crafted_run(tmp_path, net="tiny", net_overrides={"categories_file": str(outside / "cats.txt")})
    (outside / "cats.txt").chmod(0)  # a read would fail with another message
    err = one_line(capsys, ["evaluate", str(run), "--judge", "tiny"])
    assert "net_overrides.categories_file" in err and "pass --categories explicitly" in err
    (outside / "cats.txt").chmod(0o644)
    assert cli.main(["evaluate", str(run), "--judge", "tiny", "--categories", str(outside / "cats.txt")]) == 0


def test_recorded_files_inside_the_folder_are_used(tmp_path, tiny, monkeypatch):
    opened = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda path, *a, **k: opened.append(Path(path)) or real(path, *a, **k))
    run = write_color_run(tmp_path / "run")
    torch.manual_seed(7)
    torch.save(TinyNet().state_dict(), run / "w.pth")
    (run / "cats.txt").write_text("a\nb\nc\nd\ne\n")
    record = json.loads((run / "results.json").read_text())
    record.update(net="tiny", net_weights=str(run / "w.pth"), net_overrides={"categories_file": str(run / "cats.txt"), "size": [32, 32]})
    (run / "results.json").write_text(json.dumps(record))
    assert cli.main(["evaluate", str(run), "--judge", "tiny"]) == 0
    assert run / "w.pth" in opened


@pytest.mark.parametrize("ref", ["tiny", "efficientnet_lite0", "torchvision:resnet50", "torchvision:vit_b_16:IMAGENET1K_V1", "timm:convnext_tiny.fb_in1k",
                                 "hf:google/vit-base-patch16-224", "hf:microsoft/resnet-50"])  # fmt: skip
def test_check_recorded_ref_allows_names(ref):
    from dgnam.nets.adapters import check_recorded_ref

    assert check_recorded_ref(ref, "r.json") == ref


@pytest.mark.parametrize("ref", ["/x/evil.py:build", "evil.py:build", "os:getpid", "pkg.mod:build", "hf:/abs/dir", "hf:./dir", "hf:~/dir",
                                 "hf:../x", "hf:a/b/c", "timm:local-dir:/x", "timm:hf-hub:org/x", "torchvision:../x", "C:\\x\\evil.py:build",
                                 "", 3, None])  # fmt: skip
def test_check_recorded_ref_refuses_code_and_paths(ref):
    from dgnam.nets.adapters import check_recorded_ref

    with pytest.raises(ValueError, match="pass --net explicitly"):
        check_recorded_ref(ref, "r.json")


def test_check_recorded_ref_refuses_an_hf_name_that_is_a_local_folder(tmp_path, monkeypatch):
    from dgnam.nets.adapters import check_recorded_ref

    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "model").mkdir(parents=True)  # hf:org/model would load this folder
    with pytest.raises(ValueError, match="code or a path"):
        check_recorded_ref("hf:org/model", "r.json")
    assert check_recorded_ref("hf:org/other", "r.json") == "hf:org/other"


def test_neighbors_and_report_run_no_code_a_record_names(tmp_path, tiny, monkeypatch, capsys):
    marker, nets = hostile_nets(tmp_path, monkeypatch)
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data / f"{i}.png")
    for net in nets:
        run = crafted_run(tmp_path, net=net, net_weights=str(tmp_path / "evil.py"), net_overrides={"categories_file": "/etc/passwd"})
        evil_file(run / "evil.py", marker)
        monkeypatch.chdir(run)
        assert cli.main(["neighbors", str(run), "--data", str(data), "--net", "tiny", "-k", "2", "--size", "32", "--out", str(tmp_path / "nb")]) == 0
        assert json.loads((tmp_path / "nb" / "neighbors.json").read_text())["net"] == "tiny"  # the flag's net, not the record's
        assert cli.main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
        assert not marker.exists(), net


def test_resume_runs_no_code_a_record_names(tmp_path, tiny, monkeypatch, capsys):
    marker, nets = hostile_nets(tmp_path, monkeypatch)
    out = tmp_path / "vis"
    argv = ["visualize", "--net", "tiny", "--pixel", "pixel", "--unit", "logits:0", "--seeds", "0", "--steps", "2", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    record = json.loads((out / "results.json").read_text())
    for net in nets:
        (out / "results.json").write_text(json.dumps({**record, "net": net, "interrupted": True, "complete": False}))
        evil_file(out / "evil.py", marker)
        monkeypatch.chdir(out)
        err = one_line(capsys, argv + ["--resume"])
        assert "cannot resume" in err and "net:" in err, err  # the net is the command line's; the record's is only compared
        assert not marker.exists(), net
        (out / "evil.py").unlink()
