"""Weight files: package-shipped files are sha256-checked, and downloads verify before they land (offline, file:// URLs)."""

from __future__ import annotations

import hashlib

import pytest

import dgnam
from dgnam.infra.hub import WeightSource, WeightsError, download_weights, resolve_weights


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize("kind", ["package_data", "package"])
def test_a_tampered_packaged_file_is_refused(tmp_path, home, monkeypatch, kind):
    pkg = tmp_path / "site" / "shipped_weights_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pathlib import Path\n\ndef path():\n    return Path(__file__).parent / 'w.bin'\n")
    (pkg / "w.bin").write_bytes(b"the real weights")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    where = {"package_data": ("shipped_weights_pkg", "w.bin")} if kind == "package_data" else {"package": ("shipped_weights_pkg", "path")}
    source = WeightSource("w.bin", sha256=sha(b"the real weights"), **where)
    assert resolve_weights(source) == pkg / "w.bin"
    (pkg / "w.bin").write_bytes(b"the real weightz")  # one byte changed in the installed package
    with pytest.raises(WeightsError, match=r"w\.bin has sha256 [0-9a-f]{64}, expected .* corrupted"):
        resolve_weights(source)


def _mirror(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / "mirrors" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.as_uri()


def test_download_verifies_before_moving_and_tries_the_next_mirror(tmp_path, home):
    good = b"weights " * 1000
    bad = _mirror(tmp_path, "bad.bin", b"a mirror serving the wrong file")
    missing = (tmp_path / "mirrors" / "gone.bin").as_uri()
    source = WeightSource("net.bin", sha256=sha(good), urls=(missing, bad, _mirror(tmp_path, "good.bin", good)))
    path = download_weights(source, progress=False)
    assert path == home / "weights" / "net.bin" and path.read_bytes() == good
    assert sorted(p.name for p in path.parent.iterdir()) == ["net.bin"]  # no .part left behind
    assert resolve_weights(source) == path  # found in the cache now, without download=True


def test_a_failed_download_names_every_mirror_and_leaves_nothing(tmp_path, home):
    bad = _mirror(tmp_path, "bad.bin", b"wrong")
    missing = (tmp_path / "mirrors" / "gone.bin").as_uri()
    source = WeightSource("net.bin", sha256=sha(b"right"), urls=(bad, missing))
    with pytest.raises(WeightsError, match=r"could not download net\.bin: .*bad\.bin: .*sha256.*; .*gone\.bin: "):
        download_weights(source, progress=False)
    assert list((home / "weights").iterdir()) == []  # neither the bad file nor a .part
    with pytest.raises(WeightsError, match="could not download"):
        resolve_weights(source, download=True)
    with pytest.raises(WeightsError, match=r"dgnam weights download|put the file at"):
        resolve_weights(source)  # offline by default: names the fixes, downloads nothing


def test_download_weights_is_the_public_one(tmp_path, home):
    good = b"public weights"
    source = WeightSource("pub.bin", sha256=sha(good), urls=(_mirror(tmp_path, "pub.bin", good),))
    path = dgnam.download_weights(source, progress=False)  # the name users call: it verifies as the hub's does
    assert path == home / "weights" / "pub.bin" and path.read_bytes() == good
    wrong = WeightSource("other.bin", sha256=sha(b"other weights"), urls=(_mirror(tmp_path, "other.bin", good),))
    with pytest.raises(WeightsError, match="sha256"):
        dgnam.download_weights(wrong, progress=False)
    assert not (home / "weights" / "other.bin").exists()
