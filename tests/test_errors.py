"""Bad, empty and hostile input (issue 21 items 7-10): one clear line naming the thing and the fix, exit code 2."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch
from PIL import Image

import dgnam
from dgnam import cli
from dgnam.cli import info as cli_info
from dgnam.infra.errors import error_line
from dgnam.nets import InputSpec

from test_assess import write_color_run


@pytest.fixture
def tiny(tiny_registry):
    """A registered tiny net and generator (weights are files given on the command line)."""
    return tiny_registry


def vis(tiny, out, *flags, unit="logits:1"):
    net_file, gen_file = tiny
    return ["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
            "--unit", unit, "--steps", "2", "--out", str(out), "--quiet", *flags]  # fmt: skip


def one_line_error(capsys, argv) -> str:
    """Run ``dgnam argv``; it must exit 2 with exactly one line on stderr, which is returned."""
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own errors (usage + one error line), also exit code 2
        code = e.code
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2, err
        return err
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("dgnam: error: "), err
    return err


# ---- item 7: errors that used to print a traceback


def test_out_naming_a_file_or_a_path_under_a_file(tmp_path, tiny, capsys):
    (tmp_path / "taken").write_text("x")
    assert "is a file" in one_line_error(capsys, vis(tiny, tmp_path / "taken"))
    assert "not a folder you can write to" in one_line_error(capsys, vis(tiny, tmp_path / "taken" / "run"))


@pytest.mark.parametrize("exc, expected", [
    (PermissionError(errno.EACCES, "Permission denied", "/ro/run"), "/ro/run cannot be accessed (permission denied): give a path you can read"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/run"), "/ro/run is on a read-only file system: give a path on a writable disk"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "runs/x"), "runs/x is a folder, not a file: give a file name"),
    (FileExistsError(errno.EEXIST, "File exists", "a", None, "b"), "a (and b) exists already"),
    (KeyError("config"), None),  # a bare KeyError is a bug: its traceback is kept
    (RuntimeError("boom"), None),
])  # fmt: skip
def test_os_errors_become_one_line_naming_the_path(exc, expected):
    line = error_line(exc)
    assert line == expected if expected is None else expected in line


def test_a_read_only_folder_is_named(tmp_path, capsys, monkeypatch):
    run = write_color_run(tmp_path / "run")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")  # the page is written atomically (infra.files)

    monkeypatch.setattr(dgnam.infra.files, "_write_fd", read_only)
    assert "report.html is on a read-only file system" in one_line_error(capsys, ["report", str(run)])


@pytest.mark.parametrize("device, message", [("cuda", "no CUDA|no GPU is visible"), ("cuda:7", "no CUDA|no GPU|only"), ("bogus", "is not a torch device")])
def test_bad_devices_are_refused_before_any_work(tmp_path, tiny, capsys, device, message):
    import re

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: cuda is a valid device")
    assert re.search(message, one_line_error(capsys, vis(tiny, tmp_path / "run", "--device", device)))
    assert not (tmp_path / "run").exists()


def test_pool_folder_skips_unreadable_images_with_a_count(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), 60 * i, np.uint8)).save(src / f"ok{i}.jpg")
    whole = (src / "ok0.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (src / "fake.png").write_text("not an image")
    with pytest.warns(UserWarning, match=r"skipping .*(truncated\.jpg|fake\.png)"):
        assert cli.main(["pool", "folder", str(src), str(tmp_path / "pool"), "--size", "16"]) == 0
    assert "skipped 2 file(s)" in capsys.readouterr().err
    card = json.loads((tmp_path / "pool" / "card.json").read_text())
    assert card["n_images"] == 3 and sorted(card["skipped"]) == ["fake.png", "truncated.jpg"]
    assert np.load(tmp_path / "pool" / "images.npy").shape == (3, 16, 16, 3)


def test_units_file_that_includes_itself(tmp_path, tiny, capsys):
    units = tmp_path / "units.txt"
    units.write_text(f"logits:1\n@{units}\n")
    assert "includes itself" in one_line_error(capsys, vis(tiny, tmp_path / "run", "--units-file", str(units)))


def test_results_json_that_is_a_list_and_report_out_a_folder(tmp_path, capsys):
    run = write_color_run(tmp_path / "run")
    folder = tmp_path / "pages"
    folder.mkdir()
    assert cli.main(["report", str(run), "--out", str(folder)]) == 0  # --out DIR: the page goes inside
    assert (folder / "report.html").stat().st_size > 1000
    (run / "results.json").write_text("[1, 2]")
    for command in (["report", str(run)], ["evaluate", str(run)], ["neighbors", str(run), "--data", str(tmp_path)]):
        assert "holds a JSON list, not the object dgnam writes" in one_line_error(capsys, command)
    (run / "results.json").write_text('{"items": [{"file": "a.png"}]}')
    assert "items[0] lacks 'unit'" in one_line_error(capsys, ["evaluate", str(run)])  # not a bare KeyError


def test_debug_flag_and_environment_show_the_traceback(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no results.json"):
        cli.main(["report", str(tmp_path / "nope"), "--debug"])
    monkeypatch.setenv("DGNAM_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="no results.json"):
        cli.main(["report", str(tmp_path / "nope")])


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli_info, "run_nets", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["nets"])


# ---- item 8: empty or impossible input


@pytest.mark.parametrize("text", ["", "# only a comment\n\n   # another\n"])
def test_an_empty_units_file_is_refused(tmp_path, tiny, capsys, text):
    (tmp_path / "units.txt").write_text(text)
    assert "has no units" in one_line_error(capsys, vis(tiny, tmp_path / "run", "--units-file", str(tmp_path / "units.txt")))


@pytest.mark.parametrize("seeds, message", [("3-1", "is empty (end before start)"), ("99999999999999999999", "is too large")])
def test_impossible_seeds(tmp_path, tiny, capsys, seeds, message):
    assert message in one_line_error(capsys, vis(tiny, tmp_path / "run", "--seeds", seeds))


def test_empty_location_after_at(tmp_path, tiny, capsys):
    assert "nothing after '@'" in one_line_error(capsys, vis(tiny, tmp_path / "run", unit="conv2:3@"))
    with pytest.raises(dgnam.UnitError, match="nothing after '@'"):
        dgnam.parse_unit("_blocks.15:3@")


def test_empty_folders_are_refused(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images in" in one_line_error(capsys, ["pool", "folder", str(empty), str(tmp_path / "pool")])
    assert not (tmp_path / "pool").exists()
    run = write_color_run(tmp_path / "run")
    assert "no images" in one_line_error(capsys, ["neighbors", str(run), "--data", str(empty)])


def test_a_file_given_as_pool_names_the_fix(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    line = one_line_error(capsys, ["train-generator", "--pool", str(tmp_path / "afile"), "--out", str(tmp_path / "t")])
    assert "afile is not a folder: give a folder of images, a pool folder" in line


def test_train_generator_on_an_empty_pool(tmp_path, capsys):
    pool = tmp_path / "pool"
    pool.mkdir()
    np.save(pool / "images.npy", np.zeros((0, 16, 16, 3), np.uint8))
    (pool / "card.json").write_text(json.dumps({"size": 16, "n_images": 0, "train_idx": [], "heldout_idx": []}))
    (pool / "sources.json").write_text("[]")
    assert "has no training images" in one_line_error(capsys, ["train-generator", "--pool", str(pool), "--out", str(tmp_path / "t")])


@pytest.mark.parametrize("k", ["0", "99"])
def test_neighbors_k_is_checked_before_any_feature(tmp_path, capsys, monkeypatch, k):
    import dgnam.eval.score

    run = write_color_run(tmp_path / "run")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 80 * i, np.uint8)).save(data / f"{i}.png")
    monkeypatch.setattr(dgnam.eval.score, "find_neighbors", lambda *a, **kw: pytest.fail("features computed"))
    assert "give 1 to 3 neighbours" in one_line_error(capsys, ["neighbors", str(run), "--data", str(data), "-k", k])


# ---- item 9: NaN and Inf


@pytest.mark.parametrize("flag", ["--lr-start", "--decay", "--lr-end"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused(tmp_path, tiny, capsys, flag, value):
    assert "expected a finite number" in one_line_error(capsys, vis(tiny, tmp_path / "run", f"{flag}={value}"))


def test_sample_eps_nan_is_refused(capsys):
    assert "expected a finite number" in one_line_error(capsys, ["sample", "tiny", "logits:1", "--eps2", "nan", "--out", "x"])


def test_nan_weights_stop_the_run_naming_unit_and_step(tmp_path, tiny, capsys):
    net_file, _ = tiny
    state = torch.load(net_file, weights_only=True)
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, net_file)
    line = one_line_error(capsys, vis(tiny, tmp_path / "run", "--batch-size", "2"))
    assert "the activation of unit logits:1 became nan at step 0" in line
    line = one_line_error(capsys, vis(tiny, tmp_path / "pix", "--pixel", "pixel", "--batch-size", "2"))
    assert "became nan at step 0" in line


@pytest.mark.parametrize("changes, message", [({"std": (0.2, 0.0, 0.2)}, "must be positive"), ({"mean": (0.5, float("nan"), 0.5)}, "finite"),
                                              ({"value_range": 0.0}, "must be positive")])  # fmt: skip
def test_input_spec_rejects_zero_std_and_nan(changes, message):
    with pytest.raises(ValueError, match=message):
        InputSpec(**changes)


def test_records_are_strict_json(tmp_path):
    from dgnam.infra.files import write_json_atomic

    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "r.json", {"a": float("nan")})
    assert (tmp_path / "r.json").read_text() == "{}" and len(list(tmp_path.iterdir())) == 1  # unchanged, no temp file left
    run = write_color_run(tmp_path / "run")

    def strict(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    json.loads((run / "results.json").read_text(), parse_constant=strict)


# ---- item 10: messages that name the right thing


def test_units_file_errors_name_file_and_line(tmp_path, tiny, capsys):
    units = tmp_path / "units.txt"
    units.write_text("logits:1\n# comment\nconv2:x-\n")
    assert f"{units}:3: " in one_line_error(capsys, vis(tiny, tmp_path / "run", "--units-file", str(units)))
    line = one_line_error(capsys, vis(tiny, tmp_path / "run", "--units-file", str(tmp_path / "missing.txt")))
    assert "units file" in line and "does not exist" in line and "has no ':'" not in line


def test_generator_file_and_weight_folder_are_named(tmp_path, tiny, capsys):
    line = one_line_error(capsys, vis(tiny, tmp_path / "run", "--generator", str(tmp_path / "missing.safetensors")))
    assert "generator file" in line and "does not exist" in line and "unknown generator" not in line
    net_file, gen_file = tiny
    argv = vis((tmp_path, gen_file), tmp_path / "run")  # a folder as --net-weights
    assert "is a folder: give the weight file itself" in one_line_error(capsys, argv)


def test_broken_prior_metadata_names_the_file(tmp_path):
    from safetensors.torch import save_file

    from dgnam.generators.prior import load_prior

    save_file({"x": torch.zeros(1)}, str(tmp_path / "p.safetensors"), metadata={"dgnam_prior_config": "{broken"})
    with pytest.raises(dgnam.WeightsError, match=r"p\.safetensors: its dgnam_prior_config/dgn_am metadata is broken"):
        load_prior(tmp_path / "p.safetensors")


def test_unknown_layer_is_reported_before_an_unknown_class(tmp_path, tiny, capsys):
    line = one_line_error(capsys, vis(tiny, tmp_path / "run", unit="logitz:notaclass"))
    assert "unknown layer 'logitz'" in line and "Nearest names: logits" in line and "class" not in line


def test_a_huge_name_is_cut(tmp_path, tiny, capsys):
    line = one_line_error(capsys, vis(tiny, tmp_path / "run", unit="x" * 100_000 + ":1"))
    assert "unknown layer" in line and len(line) < 400 and "…" in line
    line = one_line_error(capsys, vis(tiny, tmp_path / "run", unit="logits:" + "y" * 100_000))
    assert "unknown class name" in line and len(line) < 400
