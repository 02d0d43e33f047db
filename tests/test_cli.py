import json

import pytest
from PIL import Image

import dgnam
from dgnam import cli


def test_visualize_writes_images_sheet_and_results(tmp_path, tiny_registry):
    net_file, gen_file = tiny_registry
    out = tmp_path / "run"
    argv = ["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
            "--unit", "logits:dog", "--unit", "conv2:1-2@mean", "--seeds", "0-1", "--steps", "12", "--batch-size", "4",
            "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["generator"] == "tiny_gen" and record["method"] == "dgn-am:tiny_gen"
    assert record["config"]["steps"] == 12 and record["config"]["lr_start"] == 8.0
    assert record["complete"] and not record["interrupted"]
    files = [item["file"] for item in record["items"]]
    assert files == ["logits_0001_seed0.png", "logits_0001_seed1.png", "conv2_0001_mean_seed0.png",
                     "conv2_0001_mean_seed1.png", "conv2_0002_mean_seed0.png", "conv2_0002_mean_seed1.png"]
    for item in record["items"]:
        assert Image.open(out / item["file"]).size == (32, 32)
        assert (out / item["best_file"]).exists()
        assert len(item["history"]) == 12
        assert item["best_activation"] >= item["final_activation"] - 1e-6
    assert record["items"][0]["label"] == "logits:1 dog"
    assert Image.open(out / "contact_sheet.png").size[0] >= 4 * 32
    # deterministic: the same command gives the same images
    out2 = tmp_path / "run2"
    assert cli.main(argv[:-3] + ["--out", str(out2), "--quiet"]) == 0
    for name in files:
        assert Image.open(out / name).tobytes() == Image.open(out2 / name).tobytes()


def test_interrupt_keeps_finished_batches(tmp_path, tiny_registry, monkeypatch):
    net_file, gen_file = tiny_registry
    calls = {"n": 0}
    real = dgnam.run.dgn_am

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(dgnam.run, "dgn_am", flaky)
    out = tmp_path / "run"
    code = cli.main(["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
                     "--unit", "logits:0-3", "--steps", "3", "--batch-size", "2", "--out", str(out), "--quiet"])
    assert code == 130
    record = json.loads((out / "results.json").read_text())
    assert record["interrupted"] and not record["complete"]
    assert [i["index"] for i in record["items"]] == [0, 1] and record["items_requested"] == 4


def _vis(net_file, gen_file, out, *flags):
    return ["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
            "--unit", "logits:0-2", "--seeds", "0-1", "--steps", "3", "--batch-size", "2", "--out", str(out), "--quiet", *flags]


def _signal_after_batch(monkeypatch, batch, signum=None, check=None):
    """RunWriter.add sends ``signum`` to this process after batch ``batch`` is recorded (and runs
    ``check(out)`` before each later batch)."""
    import os
    import signal as signals

    from dgnam.io.write import RunWriter

    real, calls = RunWriter.add, {"n": 0}

    def add(self, result, seconds=None):
        if check is not None and calls["n"] >= batch:
            check(self.out)
        real(self, result, seconds)
        calls["n"] += 1
        if calls["n"] == batch and signum is not None:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(RunWriter, "add", add)


def test_sigterm_keeps_finished_batches_like_ctrl_c(tmp_path, tiny_registry, monkeypatch, capsys):
    import signal as signals

    net_file, gen_file = tiny_registry
    out = tmp_path / "run"
    _signal_after_batch(monkeypatch, 1, signals.SIGTERM)
    assert cli.main(_vis(net_file, gen_file, out)) == 143  # 128 + SIGTERM
    assert "interrupted (SIGTERM)" in capsys.readouterr().err
    record = json.loads((out / "results.json").read_text())
    assert record["interrupted"] and not record["complete"] and record["items_requested"] == 6
    assert [(i["index"], i["seed"]) for i in record["items"]] == [(0, 0), (0, 1)]
    assert (out / "contact_sheet.png").exists()
    assert cli.main(["report", str(out)]) == 0  # the folder is a usable run


def test_results_json_is_valid_after_every_batch(tmp_path, tiny_registry, monkeypatch):
    net_file, gen_file = tiny_registry
    seen = []

    def check(out):  # what a kill -9 now would leave behind
        record = json.loads((out / "results.json").read_text())
        seen.append(len(record["items"]))
        assert record["interrupted"] and not record["complete"]
        assert all((out / i["file"]).exists() for i in record["items"])
        assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    _signal_after_batch(monkeypatch, 1, check=check)
    assert cli.main(_vis(net_file, gen_file, tmp_path / "run")) == 0
    assert seen == [2, 4]
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["complete"] and not record["interrupted"]


def test_resume_skips_finished_images_and_equals_an_uninterrupted_run(tmp_path, tiny_registry, monkeypatch, capsys, default_sigint):
    import signal as signals

    from dgnam.io.write import RunWriter

    net_file, gen_file = tiny_registry
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cli.main(_vis(net_file, gen_file, straight)) == 0
    real = RunWriter.add
    _signal_after_batch(monkeypatch, 2, signals.SIGINT)
    assert cli.main(_vis(net_file, gen_file, resumed)) == 130
    monkeypatch.setattr(RunWriter, "add", real)
    assert len(json.loads((resumed / "results.json").read_text())["items"]) == 4
    capsys.readouterr()
    # without a flag, a used folder is refused; with other settings, it cannot be resumed
    assert cli.main(_vis(net_file, gen_file, resumed)) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--resume" in err
    assert cli.main(_vis(net_file, gen_file, resumed, "--resume", "--decay", "0.9")) == 2
    assert "cannot resume" in capsys.readouterr().err
    optimized = {"n": 0}
    real_dgn_am = dgnam.run.dgn_am

    def counting(*args, **kwargs):
        optimized["n"] += 1
        return real_dgn_am(*args, **kwargs)

    monkeypatch.setattr(dgnam.run, "dgn_am", counting)
    assert cli.main(_vis(net_file, gen_file, resumed, "--resume")) == 0
    assert optimized["n"] == 1  # only the last batch was optimized
    a, b = (json.loads((d / "results.json").read_text()) for d in (straight, resumed))
    assert b["complete"] and not b["interrupted"] and b["started"] < a["started"] + 60
    assert a["items"] == b["items"] and len(b["batches"]) == 3
    for item in a["items"]:
        for key in ("file", "best_file"):
            assert (straight / item[key]).read_bytes() == (resumed / item[key]).read_bytes(), item[key]
    assert (straight / "contact_sheet.png").read_bytes() == (resumed / "contact_sheet.png").read_bytes()


def test_a_used_run_folder_is_refused_unless_overwrite(tmp_path, tiny_registry, capsys):
    net_file, gen_file = tiny_registry
    out = tmp_path / "run"
    assert cli.main(_vis(net_file, gen_file, out, "--seeds", "0-2")) == 0  # an older run with a third seed
    capsys.readouterr()
    assert cli.main(_vis(net_file, gen_file, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not empty" in err and "--overwrite" in err
    assert cli.main(_vis(net_file, gen_file, out, "--overwrite")) == 0
    assert not (out / "logits_0000_seed2.png").exists()  # no stale image mixed into the new run
    (out / "notes.txt").write_text("mine")
    assert cli.main(_vis(net_file, gen_file, out, "--overwrite")) == 2
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").read_text() == "mine" and (out / "results.json").exists()
    assert cli.main(_vis(net_file, gen_file, tmp_path / "empty", "--resume")) == 0  # nothing to resume in a new folder: a fresh run
    with pytest.raises(SystemExit, match="2"):  # argparse: not both
        cli.main(_vis(net_file, gen_file, out, "--resume", "--overwrite"))


def test_a_failing_batch_still_writes_the_finished_images(tmp_path, tiny_registry, monkeypatch):
    net_file, gen_file = tiny_registry
    calls = {"n": 0}
    real = dgnam.run.dgn_am

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(dgnam.run, "dgn_am", failing)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated"):  # the error is not swallowed ...
        cli.main(["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
                  "--unit", "logits:0-3", "--steps", "3", "--batch-size", "2", "--out", str(out), "--quiet"])
    record = json.loads((out / "results.json").read_text())  # ... and the finished batch is recorded
    assert record["interrupted"] and not record["complete"] and [i["index"] for i in record["items"]] == [0, 1]


@pytest.mark.parametrize(
    "flags, message",
    [(["--evals", "1"], "--evals must be at least 2"), (["--batch-size", "0"], "--batch-size must be at least 1"),
     (["--pixel", "pixel", "--transforms", "standard"], "--transforms applies only to DGN-AM"),
     (["--optimizer", "ga", "--transforms", "none"], "--transforms set the gradient path")],
)
def test_bad_budgets_name_the_flag(tmp_path, tiny_registry, capsys, flags, message):
    net_file, gen_file = tiny_registry
    code = cli.main(["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
                     "--unit", "logits:1", "--out", str(tmp_path / "x"), "--quiet"] + flags)
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_transforms_flag_reaches_the_saved_config(tmp_path, tiny_registry):
    net_file, gen_file = tiny_registry
    runs = {}
    for kind in ("none", "standard"):
        out = tmp_path / kind
        assert cli.main(["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
                         "--unit", "logits:1", "--steps", "6", "--lr-start", "0.5", "--transforms", kind, "--out", str(out), "--quiet"]) == 0
        runs[kind] = json.loads((out / "results.json").read_text())
    assert runs["none"]["config"]["transforms"] == "none" and runs["standard"]["config"]["transforms"] == "standard"
    assert runs["none"]["items"][0]["final_activation"] != runs["standard"]["items"][0]["final_activation"]


def test_repro_without_apt_get_suggests_synthetic(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no apt-get (not a Debian system)
    assert cli.main(["repro", "fashion-mnist", "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "debs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "apt-get not found" in err and "--synthetic" in err


@pytest.mark.parametrize(
    "unit, message",
    [("logits:7", "out of range"), ("conv9:0", "Nearest names: conv2"), ("logits:cow", "unknown class name"), ("conv2:0@cls", "@center")],
)
def test_bad_units_give_clear_errors(tmp_path, tiny_registry, capsys, unit, message):
    net_file, gen_file = tiny_registry
    code = cli.main(["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
                     "--unit", unit, "--out", str(tmp_path / "x"), "--quiet"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_unknown_net_and_missing_weights(tmp_path, tiny_registry, capsys):
    assert cli.main(["layers", "tinny"]) == 2
    assert "Did you mean tiny" in capsys.readouterr().err
    assert cli.main(["visualize", "--net", "tiny", "--unit", "logits:0", "--out", str(tmp_path / "run")]) == 2  # no weights offline:
    err = capsys.readouterr().err  # the error says where to put them
    assert "tiny_net.pth" in err and str(tmp_path / "home" / "weights") in err
    assert cli.main(["layers", "tiny"]) == 0  # the shapes need no weights (issue 28)


def test_layers_lists_shapes(tiny_registry, capsys):
    net_file, _ = tiny_registry
    assert cli.main(["layers", "tiny", "--net-weights", str(net_file)]) == 0
    out = capsys.readouterr().out
    assert "conv2" in out and "(6, 16, 16)" in out and "output" in out


def test_hidden_units_get_their_receptive_field_crop(tmp_path, tiny_registry):
    net_file, gen_file = tiny_registry
    out = tmp_path / "run"
    assert cli.main(["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
                     "--unit", "conv2:0", "--unit", "logits:1", "--steps", "2", "--out", str(out), "--quiet"]) == 0
    items = json.loads((out / "results.json").read_text())["items"]
    assert items[0]["receptive_field"] == [14, 14, 19, 19]  # centre (8, 8) of conv2's 16x16 map
    assert Image.open(out / items[0]["rf_file"]).size == (5, 5)
    assert items[1]["receptive_field"] is None and items[1]["rf_file"] is None


def test_paper_preset_sets_the_papers_schedule(tmp_path, tiny_registry):
    net_file, gen_file = tiny_registry
    out = tmp_path / "run"
    assert cli.main(["visualize", "--preset", "paper", "--net", "tiny", "--generator", "tiny_gen", "--net-weights", str(net_file),
                     "--generator-weights", str(gen_file), "--unit", "logits:1", "--steps", "3", "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["preset"] == "paper"
    cfg = record["config"]
    assert (cfg["lr_start"], cfg["lr_end"], cfg["decay"], cfg["optimizer"], cfg["steps"]) == (8.0, 1e-10, 0.99, "paper", 3)


def test_default_pixel_method_needs_batchnorm():
    from torch import nn

    from dgnam.methods.pixel import default_pixel_method
    from dgnam.nets import InputSpec, wrap_model

    with_bn = wrap_model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), InputSpec(size=(16, 16)))
    without = wrap_model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), InputSpec(size=(16, 16)))
    assert default_pixel_method(with_bn) == "deepinversion"
    assert default_pixel_method(without) == "fourier"


def test_missing_optional_extra_is_a_one_line_error(monkeypatch, capsys):
    import dgnam.cli as cli
    from dgnam.cli import info as cli_info

    def missing(args):
        raise ImportError("vgg16_hed needs h5py: pip install 'dgnam[hed]'")

    monkeypatch.setattr(cli_info, "run_layers", missing)
    assert cli.main(["layers", "vgg16_hed"]) == 2
    assert "pip install" in capsys.readouterr().err
