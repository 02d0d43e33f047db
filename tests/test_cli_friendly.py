"""Issue 28, items 3 and 5: the method said and recorded, and a uniform, friendly command line."""

import json
import os
import shlex
import stat

import pytest

from dgnam import cli
from dgnam.cli.parser import EXAMPLES, build_parser
from dgnam.infra.images import _fit
from dgnam.methods.choose import resolve

from test_local_weights import fake_libraries  # noqa: F401  (the fake torchvision and timm, a fixture)


def _visualize(tmp_path, tiny_registry, out="run", units=("logits:dog",), extra=(), quiet=True):
    net_file, gen_file = tiny_registry
    argv = ["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
            *[a for u in units for a in ("--unit", u)], *extra, "--steps", "1", "--out", str(tmp_path / out)] + (["--quiet"] if quiet else [])
    return cli.main(argv), tmp_path / out


# item 3: which method runs, and why


def test_visualize_says_and_records_why_its_method_runs(tmp_path, tiny_registry, capsys):
    code, out = _visualize(tmp_path, tiny_registry, quiet=False)
    assert code == 0
    err = capsys.readouterr().err
    assert "dgnam: method dgn-am:tiny_gen: DGN-AM through tiny_gen with the paper's settings (the default prior of tiny)" in err
    assert _visualize(tmp_path, tiny_registry, out="quiet")[0] == 0
    assert "dgnam: method" not in capsys.readouterr().err  # --quiet is quiet; a failing run's error stays one line
    record = json.loads((out / "results.json").read_text())
    assert record["method_reason"] == "DGN-AM through tiny_gen with the paper's settings (the default prior of tiny)"
    code, out = _visualize(tmp_path, tiny_registry, out="pix", extra=("--pixel", "fourier"))
    assert code == 0 and json.loads((out / "results.json").read_text())["method_reason"] == "pixel method fourier (--pixel)"


def test_a_net_without_prior_is_told_its_pixel_default_and_the_lite0_prior(tiny_target):
    why = resolve(tiny_target).why  # "tiny" has no registered prior here: the pixel default, BatchNorm -> DeepInversion
    assert why == ("no prior for tiny -> DeepInversion (the net has BatchNorm statistics to match); "
                   "--generator lite0_blocks7_conv_resize for DGN-AM through the Lite0 prior")


def test_resume_ignores_the_reason_sentence(tmp_path, tiny_registry):
    code, out = _visualize(tmp_path, tiny_registry, units=("logits:dog", "logits:cat"))
    record = json.loads((out / "results.json").read_text())
    record.update(complete=False, interrupted=True, method_reason="worded otherwise by an older dgnam")
    record["items"] = record["items"][:1]
    (out / "results.json").write_text(json.dumps(record))
    assert _visualize(tmp_path, tiny_registry, units=("logits:dog", "logits:cat"), extra=("--resume",))[0] == 0
    assert len(json.loads((out / "results.json").read_text())["items"]) == 2


def test_visualize_help_explains_the_method():
    text = build_parser()._subparsers._group_actions[0].choices["visualize"].format_help()
    assert "which method runs" in text and "--generator lite0_blocks7_conv_resize for DGN-AM through the Lite0 prior" in text


# item 5


def test_report_out_creates_its_folder(tmp_path, tiny_registry):
    _, run = _visualize(tmp_path, tiny_registry)
    page = tmp_path / "reports" / "deeper" / "multi.html"
    assert cli.main(["report", str(run), "--out", str(page)]) == 0
    assert page.read_text(encoding="utf-8").startswith("<!")


def test_a_finished_run_is_called_complete_not_resumable(tmp_path, tiny_registry, capsys):
    _visualize(tmp_path, tiny_registry)
    capsys.readouterr()
    assert _visualize(tmp_path, tiny_registry)[0] == 2
    err = capsys.readouterr().err
    assert "this run is already complete" in err and "--resume" not in err and "--overwrite" in err
    # an unfinished one still points at --resume
    record_path = tmp_path / "run" / "results.json"
    record = json.loads(record_path.read_text())
    record.update(complete=False, interrupted=True)
    record_path.write_text(json.dumps(record))
    assert _visualize(tmp_path, tiny_registry)[0] == 2
    err = capsys.readouterr().err
    assert "give --resume" in err and "already complete" not in err
    record_path.write_text("{broken")  # a broken record: the usual refusal, no traceback
    assert _visualize(tmp_path, tiny_registry)[0] == 2
    assert "give --resume" in capsys.readouterr().err


def test_version(capsys):
    from dgnam import __version__

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"dgnam {__version__}"


@pytest.mark.parametrize("argv", [["visualize", "--units-f", "u.txt", "--out", "o"], ["atlas", "tiny", "--unit-f", "u.txt"],
                                  ["report", "r", "--ti", "t"], ["--vers"], ["pool", "build", "d", "--si", "64"]])
def test_no_prefix_matching(argv):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2


def test_visualize_and_atlas_take_the_same_unit_flags():
    from dgnam.cli.common import unit_texts

    flags = ["--unit", "logits:dog", "--units", "logits:1,3,_blocks.15:0-7", "--units-file", "u.txt"]
    expected = ["logits:dog", "logits:1,3", "_blocks.15:0-7", "@u.txt"]
    assert unit_texts(build_parser().parse_args(["visualize", *flags, "--out", "o"])) == expected
    assert unit_texts(build_parser().parse_args(["atlas", "tiny", *flags])) == expected


def test_every_command_has_examples_that_parse():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(EXAMPLES) == set(commands)
    for name, command in commands.items():
        help_text = command.format_help()
        assert "examples:" in help_text and 2 <= len(EXAMPLES[name]) + 1 <= 4, name
        for line in EXAMPLES[name]:
            assert line in help_text
            words = shlex.split(line)
            assert words[:2] == ["dgnam", name]
            parser.parse_args(words[1:])  # a wrong flag exits 2


def test_a_unit_given_twice_is_made_once(tmp_path, tiny_registry, capsys):
    code, out = _visualize(tmp_path, tiny_registry, units=("logits:dog", "logits:1"), extra=("--units", "logits:1,2"))
    assert code == 0 and "unit(s) given twice; each is made once" in capsys.readouterr().err
    assert [item["unit"] for item in json.loads((out / "results.json").read_text())["items"]] == ["logits:1", "logits:2"]


def test_long_labels_are_cut_in_the_middle():
    assert _fit("encoder.layers.encoder_layer_11:10@cls", 128) == "encoder.la…_11:10@cls"
    assert _fit("logits:945 espresso", 128) == "logits:945 espresso"  # a label that fits is kept as it is
    assert _fit("a" * 30 + "\nlogits:1", 60) == "aaaa…aaaaa\nlogits:1"  # each line on its own


def test_records_and_pages_are_written_0644(tmp_path, tiny_registry):
    old = os.umask(0o022)
    try:
        _, run = _visualize(tmp_path, tiny_registry)
        assert cli.main(["report", str(run)]) == 0
    finally:
        os.umask(old)
    for path in (run / "results.json", run / "report.html"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# item 5: --net the same way in every command


@pytest.mark.parametrize("argv, net, rest", [
    (["layers", "--net", "tiny"], "tiny", None),
    (["layers", "tiny", "--net=tiny"], "tiny", None),  # both, the same: fine
    (["sample", "--net", "tiny", "logits:1", "logits:2", "--out", "o"], "tiny", ["logits:1", "logits:2"]),
    (["sample", "tiny", "logits:1", "--net", "tiny", "--out", "o"], "tiny", ["logits:1"]),
    (["sample", "tiny", "--samples", "4", "logits:1", "--out", "o"], "tiny", ["logits:1"]),  # the positional form as before
    (["exemplars", "logits:0", "--net", "tiny", "--data", "d", "--out", "o"], "tiny", ["logits:0"]),
    (["atlas", "--net", "tiny", "--out", "site"], "tiny", None),
    (["atlas", "serve", "site"], "serve", "site"),
])  # fmt: skip
def test_net_is_taken_as_a_flag_in_every_command(argv, net, rest):
    args = build_parser().parse_args(argv)
    assert args.net == net
    assert (args.site if argv[0] == "atlas" else getattr(args, "unit", None)) == rest


@pytest.mark.parametrize("argv", [["layers", "tiny", "--net", "other"], ["layers", "--net", "a", "--net", "b"]])
def test_two_different_nets_are_one_error_line(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1 and err.startswith("dgnam: error:") and "give one" in err


# item 5: a failed weights download is one line


def test_a_failed_library_download_is_one_line(fake_libraries, monkeypatch, tmp_path, capsys):
    import sys
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(sys.modules["torchvision.models"], "get_model", offline)
    monkeypatch.setattr(sys.modules["timm"], "create_model", offline)
    for ref in ("torchvision:tinynet", "timm:tinynet"):
        argv = ["visualize", "--net", ref, "--download", "--unit", "logits:0", "--pixel", "fourier", "--out", str(tmp_path / "run")]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "could not download or read" in err and "Network is unreachable" in err, err
        assert "--net-weights FILE" in err and f"--net {ref}:none" in err


# item 5: hf: without a preprocessor config says so


def test_a_hf_folder_without_preprocessor_config_warns_once(tmp_path):
    import warnings

    from conftest import require
    from dgnam.nets.adapters import NoPreprocessorWarning, SpecOverrides, load_target

    transformers = require("transformers", "the hf: adapter")
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=32, num_labels=3)  # fmt: skip
    config.save_pretrained(tmp_path / "vit")  # config.json only
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target = load_target(f"hf:{tmp_path / 'vit'}", pretrained=False)
    mine = [w for w in caught if issubclass(w.category, NoPreprocessorWarning)]
    assert len(mine) == 1 and "--mean and --std" in str(mine[0].message) and target.spec.mean == (0.5, 0.5, 0.5)
    with warnings.catch_warnings(record=True) as caught:  # given: nothing to warn about
        warnings.simplefilter("always")
        target = load_target(f"hf:{tmp_path / 'vit'}", pretrained=False, overrides=SpecOverrides(mean=(0.4,) * 3, std=(0.2,) * 3))
    assert not [w for w in caught if issubclass(w.category, NoPreprocessorWarning)] and target.spec.mean == (0.4, 0.4, 0.4)
    (tmp_path / "vit" / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.1] * 3, "image_std": [0.3] * 3}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target = load_target(f"hf:{tmp_path / 'vit'}", pretrained=False)
    assert not [w for w in caught if issubclass(w.category, NoPreprocessorWarning)] and target.spec.mean == (0.1, 0.1, 0.1)


# item 5: --quiet is quiet


def test_quiet_writes_nothing_to_stderr(tmp_path, tiny_registry, capfd):
    code, out = _visualize(tmp_path, tiny_registry, units=("logits:dog", "logits:0"), quiet=True)
    assert code == 0 and (out / "results.json").is_file()
    assert capfd.readouterr().err == ""
    code, out = _visualize(tmp_path, tiny_registry, out="loud", units=("logits:dog", "logits:0"), quiet=False)
    assert code == 0 and "units" in capfd.readouterr().err  # the bar is there without --quiet: the check above can fail
