"""Issue 26, what was left (items 7, 8, 18, 20): every image, sheet and array dgnam writes goes to a temporary file
that is renamed (a full disk is one line naming the file and leaves the old file or none, never half of one),
``bounds --out`` never replaces a file dgnam did not write, and the atlas's clean-up survives a second SIGTERM.

Each test fails on the code before: the writers there opened the target itself (PIL's ``save``, ``np.save``,
``Path.write_text``), so a failing write left a truncated file and ``files._write_fd`` was never called.
"""

from __future__ import annotations

import ast
import errno
import io
import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from dgnam import cli
from dgnam.atlas import build as atlas_build
from dgnam.atlas import store as atlas_store
from dgnam.infra.errors import error_line
from dgnam.infra.files import write_npy_atomic
from dgnam.infra.messages import short
from dgnam.pool import store as pool_store
from dgnam.train.files import foreign_entries
from dgnam.train.trainer import Trainer

from test_assess import write_color_run
from test_atlas import _build, photos, tiny  # noqa: F401 (fixtures)
from test_train import register_tiny_encoder, write_pool
from test_trust_files import _full_disk_after, sigterm_raises  # noqa: F401 (fixture)

SRC = Path(atlas_store.__file__).resolve().parents[1]  # the dgnam package under test
PIXELS = np.arange(12 * 10 * 3, dtype=np.uint8).reshape(12, 10, 3)


def _card(n: int) -> pool_store.PoolCard:
    return pool_store.PoolCard(size=10, seed=0, n_images=n, heldout_fraction=0.0, build_seconds=0.0, sources=[],
                               train_idx=list(range(n)), heldout_idx=[])  # fmt: skip


def _trainer_stub(out: Path) -> SimpleNamespace:
    """What ``Trainer.save_samples`` reads: two held-out views, an identity 'generator', step 7."""

    class Echo(torch.nn.Module):
        def forward(self, codes):
            return codes

    views = torch.from_numpy(np.stack([PIXELS, PIXELS[::-1]])).permute(0, 3, 1, 2).contiguous()
    return SimpleNamespace(config=SimpleNamespace(heldout_samples=2), held_rows=np.arange(2), rank=0, gen=Echo(),
                           views=views, codes=views.float() / 255, device="cpu", out=out, step=7)  # fmt: skip


def _pack_source(folder: Path) -> Path:
    pool_store.save_folder_pool(folder, np.stack([PIXELS] * 3), {"size": 10, "records": []})
    return folder


# (what is written, the file it writes first, the call): every one through files.write_bytes_atomic
WRITERS = {
    "atlas png": ("units/a.png", lambda t: atlas_store.save_image(t / "units", "a.png", PIXELS)),
    "atlas jpg": ("units/a.jpg", lambda t: atlas_store.save_image(t / "units", "a.jpg", PIXELS)),
    "training samples": ("samples/step000007.png", lambda t: Trainer.save_samples(_trainer_stub(t))),
    "pool": ("pool/images.npy", lambda t: pool_store.save_pool(t / "pool", np.stack([PIXELS] * 2), [{}, {}], _card(2))),
    "folder pool": ("pool/images.npy", lambda t: pool_store.save_folder_pool(t / "pool", np.stack([PIXELS] * 2), {"records": []})),
    "packed pool": ("pool.npz", lambda t: pool_store.pack_pool(t / "src", t / "pool.npz", size=10, progress=False)),
}


@pytest.mark.parametrize("what", list(WRITERS))
def test_a_full_disk_keeps_the_old_file_and_is_one_line_naming_it(tmp_path, monkeypatch, what):
    name, write = WRITERS[what]
    if what == "packed pool":
        _pack_source(tmp_path / "src")
    target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"the earlier, complete file")
    _full_disk_after(monkeypatch, 0)  # the first write fills the disk half-way
    with pytest.raises(OSError) as raised:
        write(tmp_path)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert error_line(raised.value) == f"{short(target)} cannot be written: the disk is full: free some space or write elsewhere"
    assert target.read_bytes() == b"the earlier, complete file"  # today: a truncated (or a complete new) file
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("what", list(WRITERS))
def test_each_writer_makes_the_bytes_it_made_before(tmp_path, what):
    name, write = WRITERS[what]
    if what == "packed pool":
        _pack_source(tmp_path / "src")
    write(tmp_path)
    data = (tmp_path / name).read_bytes()
    if name.endswith((".png", ".jpg")) and what != "training samples":
        reference = io.BytesIO()
        Image.fromarray(PIXELS).save(reference, format="JPEG" if name.endswith(".jpg") else "PNG", **({"quality": 88} if name.endswith(".jpg") else {}))
        assert data == reference.getvalue()  # what PIL's save(path) wrote before
    elif what == "training samples":
        with Image.open(tmp_path / name) as im:
            assert im.size == (20, 24) and np.array_equal(np.asarray(im)[:12, :10], PIXELS)  # originals above, reconstructions below
        assert foreign_entries(tmp_path) == []
    elif name.endswith(".npy"):
        reference = io.BytesIO()
        np.save(reference, np.load(tmp_path / name))
        assert data == reference.getvalue()
    else:
        images, card = pool_store.load_any(tmp_path / name)
        assert images.shape == (3, 10, 10, 3) and card["packed"]["format"] in ("WEBP", "JPEG")


def test_write_npy_atomic_writes_what_np_save_writes(tmp_path):
    for array in (PIXELS, np.zeros((0, 4), np.float32), np.asfortranarray(np.arange(12.0).reshape(3, 4)), np.array(5), PIXELS[::2, ::3]):
        reference = io.BytesIO()
        np.save(reference, array)
        assert write_npy_atomic(tmp_path / "a.npy", array).read_bytes() == reference.getvalue()
    with pytest.raises(ValueError, match="pickle"):
        write_npy_atomic(tmp_path / "b.npy", np.array([{}], dtype=object))
    assert not (tmp_path / "b.npy").exists()


def test_a_temporary_sample_left_by_a_kill_is_train_generators_own(tmp_path):
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / ".step000004.png.k2j_x9.tmp").write_bytes(b"half")  # kill -9 during a write
    (tmp_path / "samples" / "step000004.png.mine").write_bytes(b"a user's")
    assert foreign_entries(tmp_path) == ["samples/step000004.png.mine"]


def test_report_on_a_full_disk_is_one_line_and_keeps_the_old_page(tmp_path, monkeypatch, capsys):
    run = write_color_run(tmp_path / "run")
    assert cli.main(["report", str(run)]) == 0
    page = run / "report.html"
    before = page.read_bytes()
    _full_disk_after(monkeypatch, 0)
    assert cli.main(["report", str(run), "--title", "another title " * 50]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{short(page)} cannot be written: the disk is full" in err and "Traceback" not in err
    assert page.read_bytes() == before and not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def _save_calls(tree: ast.AST):
    """``X.save(first, ...)`` and ``np.savez(first, ...)`` calls, except ``torch.save`` (to a temporary name)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("save", "savez", "savez_compressed"):
            owner = node.func.value
            if not (isinstance(owner, ast.Name) and owner.id == "torch"):
                yield node


def test_no_image_or_array_is_saved_straight_to_its_file():
    """PIL's and numpy's ``save`` only ever fill an in-memory buffer; the file is written by infra.files (atomically).
    Today repro/fashion.py's sheets, atlas/store.py, train/trainer.py's samples and pool/store.py save to the path."""
    direct = []
    for path in sorted(SRC.rglob("*.py")):
        for call in _save_calls(ast.parse(path.read_text())):
            first = call.args[0] if call.args else None
            if not (isinstance(first, ast.Name) and first.id in ("buf", "buffer")):
                direct.append(f"{path.relative_to(SRC)}:{call.lineno}")
    assert direct == []


# --- item 7: `bounds --out` never replaces a file dgnam did not write ------------------------------------------------

@pytest.fixture
def bounds_setup(tmp_path, monkeypatch):
    register_tiny_encoder(tmp_path / "home", monkeypatch)
    pool = write_pool(tmp_path / "pool", n=3)

    def bounds(out):
        return cli.main(["bounds", "--net", "tiny_enc", "--layer", "pool", "--data", str(pool), "--out", str(out)])

    return bounds


@pytest.mark.parametrize("foreign", ["my notes\n", '{"net": "mine", "layer": "pool"}', "[1, 2]", "{broken"])
def test_bounds_refuses_to_replace_a_file_it_did_not_write(tmp_path, bounds_setup, capsys, foreign):
    out = tmp_path / "stats.json"
    out.write_text(foreign)
    assert bounds_setup(out) == 2  # today: 0, and the file is replaced
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "is not a bounds file dgnam wrote" in err and short(out) in err
    assert out.read_text() == foreign


def test_bounds_replaces_its_own_file_and_refuses_a_folder_or_link(tmp_path, bounds_setup, capsys):
    out = tmp_path / "bounds.json"
    assert bounds_setup(out) == 0
    first = json.loads(out.read_text())
    assert bounds_setup(out) == 0 and json.loads(out.read_text()) == first  # its own file: written again
    mine = tmp_path / "mine.txt"
    mine.write_text("keep")
    (tmp_path / "link.json").symlink_to(mine)
    (tmp_path / "folder.json").mkdir()
    for other in ("link.json", "folder.json"):
        capsys.readouterr()
        assert bounds_setup(tmp_path / other) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert mine.read_text() == "keep" and (tmp_path / "link.json").is_symlink()


# --- item 18: a second SIGTERM during the atlas's clean-up (its pages) is ignored ------------------------------------

@pytest.mark.parametrize("first_signal", [True, False])
def test_a_sigterm_while_the_atlas_writes_its_pages_is_ignored(tiny, photos, tmp_path, monkeypatch, sigterm_raises, first_signal):  # noqa: F811
    net, gen = tiny
    real_synthesize, real_pages, calls = atlas_build.synthesize, atlas_build._write_pages, []

    def synthesize(*args, **kwargs):
        calls.append(1)
        if first_signal and len(calls) > 2:  # the scheduler's SIGTERM in the second batch
            os.kill(os.getpid(), signal.SIGTERM)
        return real_synthesize(*args, **kwargs)

    def pages(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # (another) SIGTERM while the pages are written: today it kills the build
        return real_pages(*args, **kwargs)

    monkeypatch.setattr(atlas_build, "synthesize", synthesize)
    monkeypatch.setattr(atlas_build, "_write_pages", pages)
    summary = _build(net, gen, tmp_path / "site", photos)
    assert (tmp_path / "site" / "index.html").is_file() and summary.index is not None
    if first_signal:
        assert summary.interrupted and summary.exit_code == 143 and summary.computed == 2
    else:
        assert not summary.interrupted and summary.exit_code == 0 and summary.computed == 5
    with pytest.raises(sigterm_raises):  # the previous handler is back after the build
        os.kill(os.getpid(), signal.SIGTERM)
