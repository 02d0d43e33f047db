"""The photo folders of more packages, Enlightenment's Edje wallpapers, Q ABCs' stamps and the
composite shares: all on fake unpacked packages (nothing is downloaded)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgnam.pool.build import proportional_shares
from dgnam.pool.photo_folders import ENLIGHTENMENT_BACKGROUNDS_DIR, MORE_PHOTOS, QABCS_PICS_DIR, PhotoFolderSpec, enlightenment_source, folder_source, largest_embedded_jpeg, more_sources, qabcs_stamp_source, read_upright
from dgnam.pool.debian import DebPackage


def noise(h: int, w: int, seed: int, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)


def save(path: Path, pixels: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, fmt)


def jpeg_bytes(h: int, w: int, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(noise(h, w, seed)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def package(tmp_path: Path, name: str, copyright_text: str = "") -> DebPackage:
    root = tmp_path / name
    doc = root / "usr/share/doc" / name
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(copyright_text)
    return DebPackage(name, "1.0-test", root)


def test_folder_source_takes_the_globs_minus_the_deny_list_and_the_rule(tmp_path):
    deb = package(tmp_path, "pkg", "Files: *\nLicense: GPL-2+\n\nFiles: media/bg/B/*\nLicense: CC-BY-SA-3.0\n")
    base = deb.root / "usr/share/pkg/bg"
    save(base / "A/photo.jpg", noise(200, 300, 1))
    save(base / "B/photo.png", noise(170, 180, 2))
    save(base / "A/drawn.jpg", noise(200, 300, 3))  # deny list
    save(base / "A/small.jpg", noise(100, 300, 4))  # short side under 160 px
    rgba = noise(200, 200, 5, channels=4)
    rgba[..., 3] = 255
    rgba[:5, :5, 3] = 0
    save(base / "A/cutout.png", rgba)  # transparent pixels: a sprite
    save(base / "A/deeper/photo.jpg", noise(200, 300, 6))  # "*/*.jpg" does not reach two folders down
    save(base / "top.jpg", noise(200, 300, 7))  # nor the folder itself
    spec = PhotoFolderSpec("pkg", "usr/share/pkg/bg", ("*/*.jpg", "*/*.png"), deny=("A/drawn.jpg",),
                           licence_prefix="media/bg/", licence="fallback")  # fmt: skip
    source = folder_source(deb, spec)
    assert source.kind == "photo" and source.name == "pkg" and source.version == "1.0-test"
    assert [o.file for o in source.originals] == ["A/photo.jpg", "B/photo.png"]
    assert [o.licence for o in source.originals] == ["GPL-2+", "CC-BY-SA-3.0"]
    assert source.originals[1].load().shape == (170, 180, 3)
    assert len(folder_source(deb, spec, limit=1).originals) == 1

    bare = package(tmp_path, "bare")  # no copyright stanza: the spec's licence; no folder: no originals
    save(bare.root / "usr/share/pkg/bg/A/photo.jpg", noise(200, 300, 1))
    assert [o.licence for o in folder_source(bare, spec).originals] == ["fallback"]
    assert folder_source(bare, PhotoFolderSpec("bare", "missing", ("*.jpg",))).originals == []


def test_read_upright_applies_the_exif_orientation(tmp_path):
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :30] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to view
    Image.fromarray(pixels).save(tmp_path / "phone.png", exif=exif)
    upright = read_upright(tmp_path / "phone.png")
    assert upright.shape == (60, 40, 3)
    assert upright[:30].mean() > 200 and upright[30:].mean() < 50  # the white half is now on top
    Image.fromarray(pixels).save(tmp_path / "plain.png")
    np.testing.assert_array_equal(read_upright(tmp_path / "plain.png"), pixels)


def test_largest_embedded_jpeg_finds_the_biggest_image_among_other_bytes():
    data = b"\x1e\xe7\x0f\x42junk\xff\xd8\xffnot-a-jpeg" + jpeg_bytes(40, 60, 1) + bytes(100) + jpeg_bytes(90, 120, 2) + b"tail"
    assert largest_embedded_jpeg(data).shape == (90, 120, 3)
    with pytest.raises(ValueError, match="no JPEG"):
        largest_embedded_jpeg(b"\xff\xd8\xff" + bytes(50))


def test_enlightenment_source_reads_only_the_photographic_wallpapers(tmp_path):
    deb = package(tmp_path, "enlightenment-data", "Files: *\nLicense: BSD-2-clause\n")
    base = deb.root / ENLIGHTENMENT_BACKGROUNDS_DIR
    base.mkdir(parents=True)
    (base / "Bamboo.edj").write_bytes(b"eet" + jpeg_bytes(30, 40, 1) + jpeg_bytes(180, 320, 2))
    (base / "Dunes.edj").write_bytes(b"eet" + jpeg_bytes(180, 320, 3))  # a drawing: not listed
    source = enlightenment_source(deb)
    assert [o.file for o in source.originals] == ["Bamboo.edj"] and source.originals[0].licence == "BSD-2-clause"
    assert source.originals[0].load().shape == (180, 320, 3)


def test_qabcs_stamps_keep_photographic_cutouts_and_the_allow_list(tmp_path):
    deb = package(tmp_path, "qabcs-data", "Files: *\nLicense: GPL-3+\n\nFiles: abcs/all/pics/misc/quarter.png\nLicense: Public-Domain\n")
    base = deb.root / QABCS_PICS_DIR

    def cutout(pixels: np.ndarray) -> np.ndarray:
        rgba = np.concatenate([pixels, np.full((*pixels.shape[:2], 1), 255, np.uint8)], -1)
        rgba[:8, :, 3] = 0
        return rgba

    flat = np.zeros((80, 80, 3), np.uint8)
    save(base / "animals/bear.png", cutout(noise(80, 80, 1)))  # photographic cut-out
    save(base / "animals/cartoon_cat.png", cutout(flat))  # flat: clip-art
    save(base / "animals/duck.png", cutout(flat))  # flat, but on the allow list
    save(base / "misc/quarter.png", cutout(noise(80, 80, 2)))
    save(base / "toys/yeti.png", cutout(noise(80, 80, 3)))  # deny list (a render)
    save(base / "food/opaque.png", noise(80, 80, 4))  # no cut-out
    source = qabcs_stamp_source(deb)
    assert source.kind == "stamp"
    assert [o.file for o in source.originals] == ["animals/bear.png", "animals/duck.png", "misc/quarter.png"]
    assert [o.licence for o in source.originals] == ["GPL-3+", "GPL-3+", "Public-Domain"]
    assert source.originals[0].load().shape == (80, 80, 4)


def test_more_sources_fetches_every_package_in_order(tmp_path):
    fetched = []

    def fetch(name: str, cache_dir: Path) -> DebPackage:
        fetched.append(name)
        return package(cache_dir, name)

    sources = more_sources(fetch, tmp_path)
    assert fetched == [s.package for s in MORE_PHOTOS] + ["enlightenment-data", "qabcs-data"]
    assert [s.kind for s in sources] == ["photo"] * (len(MORE_PHOTOS) + 1) + ["stamp"]
    assert all(not s.originals for s in sources)


def test_proportional_shares_sum_to_the_total():
    assert proportional_shares(10, [2, 1, 0]) == [7, 3, 0]
    assert proportional_shares(1500, [252, 141]) == [962, 538]
    assert proportional_shares(5, [0, 0]) == [0, 0]
    assert sum(proportional_shares(7, [1, 1, 1])) == 7
