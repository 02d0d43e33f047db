"""Issue 26: dgnam never deletes or replaces a file it did not write, writes every file atomically (a full disk
is one line and leaves no truncated file), and a resume makes the bytes an uninterrupted run makes."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat

import pytest
import torch
from PIL import Image

import dgnam
from dgnam import cli
from dgnam.cli.visualize import distinct_units
from dgnam.infra import files
from dgnam.io.read import RunFolderError
from dgnam.io.rundir import prepare_run_folder
from dgnam.infra.files import write_text_atomic
from dgnam.io.write import RunWriter
from dgnam.methods.base import AMResult


def _vis(net_file, gen_file, out, *flags):
    return ["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
            "--unit", "logits:0-2", "--seeds", "0-1", "--steps", "2", "--batch-size", "2", "--out", str(out), "--quiet", *flags]


def _batch(units, seeds, images):
    n = len(units)
    return AMResult(units=units, seeds=seeds, images=images, best_images=images.clone(), history=torch.zeros(n, 2),
                    final=torch.ones(n), best=torch.ones(n), best_step=torch.zeros(n, dtype=torch.long))


def _tree(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _photo(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 4), colour).save(path)


@pytest.fixture
def sigterm_raises():
    """SIGTERM raises here instead of killing pytest (what old code would let through)."""

    class Killed(Exception):
        pass

    def handler(signum, frame):
        raise Killed("SIGTERM reached the default handler")

    previous = signal.signal(signal.SIGTERM, handler)
    yield Killed
    signal.signal(signal.SIGTERM, previous)


# --- item 5 / 18: --overwrite removes only what the earlier run's record lists --------------------------------------

def test_overwrite_refuses_a_folder_of_foreign_pngs(tmp_path):
    photos = tmp_path / "photos"
    for name in ("holiday.png", "best/cat.png"):
        _photo(photos / name)
    before = _tree(photos)
    with pytest.raises(RunFolderError, match=r"--overwrite removes only what dgnam wrote, but .* also holds best/cat.png, holiday.png") as e:
        prepare_run_folder(photos, overwrite=True)
    assert "\n" not in str(e.value) and _tree(photos) == before  # nothing removed


def test_overwrite_keeps_a_users_photo_beside_a_run_and_removes_the_rest(tmp_path, tiny_registry, capsys):
    net_file, gen_file = tiny_registry
    out = tmp_path / "run"
    assert cli.main(_vis(net_file, gen_file, out)) == 0
    _photo(out / "holiday.png")
    _photo(out / "best" / "mine.png")
    before = _tree(out)
    capsys.readouterr()
    assert cli.main(_vis(net_file, gen_file, out, "--overwrite")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "best/mine.png, holiday.png" in err and "move those away" in err
    assert _tree(out) == before  # refused before anything was removed
    (out / "holiday.png").unlink()
    (out / "best" / "mine.png").unlink()
    # what a kill -9 in the middle of a batch leaves: an image not yet in the record, a temporary file
    record = json.loads((out / "results.json").read_text())
    record["items"] = record["items"][:4]
    (out / "results.json").write_text(json.dumps(record))
    (out / ".logits_0002_seed1.png.ab12_x.tmp").write_bytes(b"half")
    (out / "report.html").write_text("<p>dgnam report</p>")
    assert cli.main(_vis(net_file, gen_file, out, "--overwrite", "--seeds", "0")) == 0
    names = ["logits_0000_seed0.png", "logits_0001_seed0.png", "logits_0002_seed0.png"]
    assert _tree(out) == ["best", *[f"best/{n}" for n in names], "contact_sheet.png", *names, "results.json"]  # no seed 1, .tmp, report


def test_overwrite_without_a_readable_record_keeps_the_images(tmp_path):
    out = tmp_path / "run"
    _photo(out / "logits_0001_seed0.png")
    (out / "results.json").write_text("{not json")
    with pytest.raises(RunFolderError, match=r"holds logits_0001_seed0.png \(results.json cannot be read"):
        prepare_run_folder(out, overwrite=True)
    assert (out / "logits_0001_seed0.png").is_file() and (out / "results.json").is_file()


def test_overwrite_removes_the_folders_dgnam_made_and_a_records_listed_files_only(tmp_path):
    out = tmp_path / "ex"
    record = {"kind": "exemplars", "units": ["blur:0"], "items": [
        {"unit": "blur:0", "sheet": "blur_0000.png", "top": [{"file": "blur_0000/top_01.png"}], "bottom": [{"file": "blur_0000/bottom_01.png"}]}]}
    (out / "blur_0000").mkdir(parents=True)
    for name in ("blur_0000.png", "blur_0000/top_01.png", "blur_0000/bottom_01.png"):
        _photo(out / name)
    (out / "results.json").write_text(json.dumps(record))
    prepare_run_folder(out, overwrite=True)
    assert out.is_dir() and _tree(out) == []
    # the same record, and a listed folder that also holds a photo of the user's: refused, all kept
    for name in ("blur_0000.png", "blur_0000/top_01.png", "blur_0000/bottom_01.png", "blur_0000/mine.png"):
        _photo(out / name)
    (out / "results.json").write_text(json.dumps(record))
    with pytest.raises(RunFolderError, match="also holds blur_0000/mine.png"):
        prepare_run_folder(out, overwrite=True)
    assert len(_tree(out)) == 6


def test_a_symlink_is_never_followed_or_removed(tmp_path):
    out = tmp_path / "run"
    _photo(tmp_path / "elsewhere" / "keep.png")
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"items": [{"file": "best/keep.png"}]}))
    (out / "best").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RunFolderError, match="also holds best/"):
        prepare_run_folder(out, overwrite=True)
    assert (tmp_path / "elsewhere" / "keep.png").is_file()


# --- item 7: exemplars --out USED and merge never replace a file dgnam did not write -------------------------------

def _part(out, units):
    from dgnam.distributed import World, part_dir, part_settings

    writer = RunWriter(part_dir(out, 0), part_settings({"net": "tiny", "units": [str(u) for u in units]}, World(0, 1), len(units)), None)
    writer.add(_batch(units, [0] * len(units), torch.full((len(units), 3, 8, 8), 0.5)), seconds=1.0)
    writer.finish(requested=len(units))
    return part_dir(out, 0)


@pytest.mark.parametrize("name", ["results.json", "parts/rank000/results.json", "contact_sheet.png"])
def test_merge_refuses_a_part_that_names_a_record(tmp_path, name):
    from dgnam.io.merge import merge_parts

    out = tmp_path / "run"
    part = _part(out, [dgnam.Unit("logits", 0)])
    record = json.loads((part / "results.json").read_text())
    record["items"][0]["file"] = name
    (part / "results.json").write_text(json.dumps(record))
    with pytest.raises(RunFolderError, match="which is not an image of the run"):
        merge_parts(out)
    assert json.loads((part / "results.json").read_text()) == record and not (out / "results.json").exists()


def test_merge_never_replaces_a_file_it_did_not_move_and_refuses_a_file_named_twice(tmp_path, capsys):
    out = tmp_path / "run"
    part = _part(out, [dgnam.Unit("logits", 0), dgnam.Unit("logits", 1)])
    _photo(out / "logits_0001_seed0.png", (1, 2, 3))
    assert cli.main(["merge", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "logits_0001_seed0.png is there already" in err
    assert Image.open(out / "logits_0001_seed0.png").getpixel((0, 0)) == (1, 2, 3) and (part / "logits_0000_seed0.png").is_file()
    (out / "logits_0001_seed0.png").unlink()
    record = json.loads((part / "results.json").read_text())
    record["items"][1]["best_file"] = record["items"][0]["best_file"]
    (part / "results.json").write_text(json.dumps(record))
    assert cli.main(["merge", str(out)]) == 2
    assert "as rank000 items[0].best_file does" in capsys.readouterr().err and not (out / "results.json").exists()


# --- item 8: every file atomically; a full disk is one line and leaves no truncated file --------------------------

def _full_disk_after(monkeypatch, writes):
    """files._write_fd writes half of every file after the first ``writes`` files, then fails: the disk is full."""
    real, calls = files._write_fd, {"n": 0}

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] > writes:
            real(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(files, "_write_fd", write)
    return calls


def test_a_full_disk_is_one_line_and_leaves_only_complete_files(tmp_path, tiny_registry, monkeypatch, capsys):
    net_file, gen_file = tiny_registry
    out = tmp_path / "run"
    _full_disk_after(monkeypatch, 1 + 5 + 1)  # the first record, batch 1 (4 images and its record), one image of batch 2
    assert cli.main(_vis(net_file, gen_file, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the disk is full" in err and str(out) in err and "Traceback" not in err
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # no temporary file left
    for png in out.rglob("*.png"):
        with Image.open(png) as image:
            image.load()  # complete: a truncated PNG raises here
    record = json.loads((out / "results.json").read_text())
    assert [i["file"] for i in record["items"]] == ["logits_0000_seed0.png", "logits_0000_seed1.png"] and record["interrupted"]
    assert not (out / "contact_sheet.png").exists()  # it could not be written: none rather than half of one


def test_write_text_atomic_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "index.html"
    path.write_text("old page")
    _full_disk_after(monkeypatch, 0)
    with pytest.raises(OSError) as e:
        write_text_atomic(path, "new page " * 1000)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert path.read_text() == "old page" and os.listdir(tmp_path) == ["index.html"]
    from dgnam.infra.errors import error_line

    assert error_line(e.value) == f"{path} cannot be written: the disk is full: free some space or write elsewhere"


def test_atomic_writes_get_the_mode_the_umask_gives(tmp_path, tiny_registry):
    net_file, gen_file = tiny_registry
    mask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
        os.umask(0o077)
        write_text_atomic(tmp_path / "b.txt", "x")
        assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o600
        os.umask(0o022)
        assert cli.main(_vis(net_file, gen_file, tmp_path / "run", "--seeds", "0", "--unit", "logits:0")) == 0
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "run").rglob("*") if p.is_file()}
        assert modes and set(modes.values()) == {0o644}, modes
    finally:
        os.umask(mask)


# --- item 10: --resume under another thread count (or torch build, device) is refused ------------------------------

def test_resume_under_another_thread_count_is_refused(tmp_path, tiny_registry, monkeypatch, capsys):
    net_file, gen_file = tiny_registry
    threads = torch.get_num_threads()
    out, straight = tmp_path / "run", tmp_path / "straight"
    calls, real = {"n": 0}, dgnam.run.dgn_am

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(dgnam.run, "dgn_am", flaky)
    assert cli.main(_vis(net_file, gen_file, out, "--threads", "1")) == 130
    monkeypatch.setattr(dgnam.run, "dgn_am", real)
    assert torch.get_num_threads() == threads  # --threads holds for the command only
    record = json.loads((out / "results.json").read_text())
    assert record["runtime"]["threads"] == 1 and record["runtime"]["torch"] == torch.__version__
    capsys.readouterr()
    assert cli.main(_vis(net_file, gen_file, out, "--resume", "--threads", "3")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "it ran with torch threads 1, this process has torch threads 3" in err
    assert "--threads 1" in err and "--overwrite" in err
    record["runtime"]["torch"] = "1.0.0+other"  # a record from another torch build
    (out / "results.json").write_text(json.dumps(record))
    assert cli.main(_vis(net_file, gen_file, out, "--resume", "--threads", "1")) == 2
    assert "torch \"1.0.0+other\"" in capsys.readouterr().err
    record["runtime"]["torch"] = torch.__version__
    (out / "results.json").write_text(json.dumps(record))
    assert cli.main(_vis(net_file, gen_file, out, "--resume", "--threads", "1")) == 0
    assert cli.main(_vis(net_file, gen_file, straight, "--threads", "1")) == 0
    for item in json.loads((straight / "results.json").read_text())["items"]:
        assert (out / item["file"]).read_bytes() == (straight / item["file"]).read_bytes()


# --- item 13: one file per item, records with an item twice, a run killed before its first batch ------------------

def test_a_seed_or_unit_given_twice_is_made_once(tmp_path, tiny_registry, capsys):
    net_file, gen_file = tiny_registry
    out = tmp_path / "run"
    assert cli.main(_vis(net_file, gen_file, out, "--unit", "logits:dog", "--seeds", "0,0")) == 0
    err = capsys.readouterr().err
    assert "repeats a seed" in err and "given twice" in err
    record = json.loads((out / "results.json").read_text())
    assert [(i["unit"], i["seed"]) for i in record["items"]] == [("logits:0", 0), ("logits:1", 0), ("logits:2", 0)]
    with pytest.raises(ValueError, match="would write the same files"):
        distinct_units([dgnam.Unit("conv.1", 0), dgnam.Unit("conv-1", 0)])


def test_a_record_listing_an_item_twice_is_refused_on_resume(tmp_path, tiny_registry, capsys):
    net_file, gen_file = tiny_registry
    out = tmp_path / "run"
    assert cli.main(_vis(net_file, gen_file, out)) == 0
    record = json.loads((out / "results.json").read_text())
    record["items"].append(dict(record["items"][0]))
    record["interrupted"] = True
    (out / "results.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert cli.main(_vis(net_file, gen_file, out, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "items[6] repeats items[0]" in err
    assert len(json.loads((out / "results.json").read_text())["items"]) == 7  # left as it was


def test_a_run_killed_before_its_first_batch_can_be_resumed(tmp_path, tiny_registry, monkeypatch):
    net_file, gen_file = tiny_registry
    out, straight = tmp_path / "run", tmp_path / "straight"
    real = dgnam.run.iter_visualize

    def killed(*args, **kwargs):
        raise SystemExit(143)  # the scheduler's SIGTERM, before any image

    monkeypatch.setattr(dgnam.run, "iter_visualize", killed)
    with pytest.raises(SystemExit):
        cli.main(_vis(net_file, gen_file, out))
    record = json.loads((out / "results.json").read_text())
    assert record["items"] == [] and record["interrupted"] and record["items_requested"] == 6
    monkeypatch.setattr(dgnam.run, "iter_visualize", real)
    assert cli.main(_vis(net_file, gen_file, out, "--resume")) == 0
    assert cli.main(_vis(net_file, gen_file, straight)) == 0
    a, b = (json.loads((d / "results.json").read_text()) for d in (straight, out))
    assert a["items"] == b["items"] and b["complete"]
    # a folder with only the empty folders of a run (killed before even its first record): --resume starts it afresh
    (tmp_path / "bare" / "best").mkdir(parents=True)
    assert prepare_run_folder(tmp_path / "bare", resume=True) is False


# --- item 18: the receptive-field crop of a non-square box; a second SIGTERM during the clean-up ---------------------

def test_the_receptive_field_crop_of_a_non_square_box(tmp_path):
    unit = dgnam.Unit("conv2", 0, (1, 2))
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    writer = RunWriter(tmp_path / "run", {"units": [str(unit)]}, None, fields={unit: (2, 5, 10, 30)})  # (top, left, bottom, right)
    writer.add(_batch([unit], [0], images), seconds=0.1)
    item = writer.items[0]
    assert item["receptive_field"] == [2, 5, 10, 30] and item["rf_file"] == "rf/conv2_0000_at1-2_seed0.png"
    crop = Image.open(tmp_path / "run" / item["rf_file"])
    full = Image.open(tmp_path / "run" / item["file"])
    assert crop.size == (25, 8)  # (width, height): 30 - 5 columns, 10 - 2 rows
    assert crop.tobytes() == full.crop((5, 2, 30, 10)).tobytes()


def test_a_second_sigterm_during_the_clean_up_is_ignored(sigterm_raises):
    cleaned = []
    with stop_on_signals_() as stop:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        finally:  # the clean-up inside the block, while the first SIGTERM unwinds
            os.kill(os.getpid(), signal.SIGTERM)
            cleaned.append("inside")
    assert cleaned == ["inside"] and stop.signal == "SIGTERM" and stop.exit_code == 143
    with stop_on_signals_() as stop:
        with stop.interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            cleaned.append("never")
        os.kill(os.getpid(), signal.SIGTERM)  # the clean-up after the work: protected
        cleaned.append("after")
    assert cleaned == ["inside", "after"] and stop.exit_code == 143
    with pytest.raises(sigterm_raises):  # the previous handler is back after the block
        os.kill(os.getpid(), signal.SIGTERM)


def stop_on_signals_():
    from dgnam.infra.interrupts import stop_on_signals

    return stop_on_signals()


def test_the_clean_up_after_the_batches_is_protected_from_a_second_sigterm(tmp_path, tiny_registry, monkeypatch, sigterm_raises):
    net_file, gen_file = tiny_registry
    out = tmp_path / "run"
    real_add, real_finish = RunWriter.add, RunWriter.finish

    def add(self, result, seconds=None):
        real_add(self, result, seconds)
        os.kill(os.getpid(), signal.SIGTERM)  # the scheduler's time limit, after batch 1

    def finish(self, interrupted=False, requested=None):
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM while the finished images are saved
        return real_finish(self, interrupted, requested)

    monkeypatch.setattr(RunWriter, "add", add)
    monkeypatch.setattr(RunWriter, "finish", finish)
    assert cli.main(_vis(net_file, gen_file, out)) == 143
    record = json.loads((out / "results.json").read_text())
    assert record["interrupted"] and len(record["items"]) == 2 and (out / "contact_sheet.png").is_file()
