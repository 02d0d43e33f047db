"""Tests of dgnam.pool on small images made here: no network, no apt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgnam import pool
from dgnam.pool.store import ImageFolderPool, choose_heldout, load_image_folder, load_pool, split_indices
from dgnam.infra.images import center_square_resize, crop_resize, to_rgb
from dgnam.pool.crops import alpha_composite, composite_batch, crops_per_original, image_detail, place_stamp, random_crops, sample_crop_box, stamp_statistics, trim_dark_borders, video_crops
from dgnam.pool.build import build_pool
from dgnam.pool.debian import licence_for, parse_dep5
from dgnam.pool.sources import is_photographic_stamp


def noise(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)


def save_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


# --- pixel operations ------------------------------------------------------------------------


def test_to_rgb_converts_grey_alpha_and_bool():
    grey = np.array([[0, 200]], dtype=np.uint8)
    assert to_rgb(grey).tolist() == [[[0, 0, 0], [200, 200, 200]]]
    rgba = np.array([[[1, 2, 3, 4]]], dtype=np.uint8)
    assert to_rgb(rgba).tolist() == [[[1, 2, 3]]]
    assert to_rgb(np.array([[True, False]])).tolist() == [[[255] * 3, [0] * 3]]
    with pytest.raises(ValueError, match="expected uint8 pixels, got float32"):
        to_rgb(np.zeros((2, 2), dtype=np.float32))


def test_trim_dark_borders_removes_letterbox():
    image = np.zeros((10, 12, 3), dtype=np.uint8)
    image[2:8, 3:9] = 100
    image[4, 5] = 5  # dark pixel inside stays
    trimmed = trim_dark_borders(image)
    assert trimmed.shape == (6, 6, 3)
    assert trimmed[2, 2].tolist() == [5, 5, 5]
    assert trim_dark_borders(np.zeros((4, 4, 3), np.uint8)).shape == (4, 4, 3)


def test_sample_crop_box_stays_inside_and_respects_floor():
    rng = np.random.default_rng(0)
    sides = []
    for _ in range(500):
        top, left, side = sample_crop_box(300, 500, rng, min_side=120, min_scale=0.2)
        assert 0 <= top and top + side <= 300 and 0 <= left and left + side <= 500
        sides.append(side)
    assert min(sides) >= 120 and max(sides) <= 300
    assert max(sides) - min(sides) > 100  # several scales
    # an image smaller than the floor gives its full short side
    assert sample_crop_box(50, 80, rng, min_side=120)[2] == 50


def test_crop_resize_takes_the_requested_square():
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    image[:50, :50] = [255, 0, 0]
    image[:50, 50:] = [0, 255, 0]
    image[50:, :50] = [0, 0, 255]
    pil = Image.fromarray(image)
    top_left = crop_resize(pil, (0, 0, 50), 16)
    assert top_left.shape == (16, 16, 3)
    # the resampling filter may reach a pixel past the box, so check inside a 1-pixel rim
    assert (top_left[1:-1, 1:-1] == [255, 0, 0]).all()
    bottom_left = crop_resize(pil, (50, 0, 50), 8)
    assert (bottom_left[1:-1, 1:-1] == [0, 0, 255]).all()


def test_random_crops_flip_and_reproducibility():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[:, :32] = [255, 0, 0]
    image[:, 32:] = [0, 0, 255]
    crops = random_crops(image, 40, 16, np.random.default_rng(3), min_scale=1.0)
    assert crops.shape == (40, 16, 16, 3) and crops.dtype == np.uint8
    left_red = crops[:, 8, 0, 0] == 255
    assert left_red.any() and (~left_red).any()  # both orientations occur
    assert (crops[~left_red, 8, 0] == [0, 0, 255]).all()  # mirrored ones have blue on the left
    again = random_crops(image, 40, 16, np.random.default_rng(3), min_scale=1.0)
    np.testing.assert_array_equal(crops, again)


def test_random_crops_avoid_flat_regions():
    image = np.full((200, 200, 3), 128, dtype=np.uint8)
    image[:, 100:] = noise(200, 100)
    crops = random_crops(image, 30, 32, np.random.default_rng(0), min_scale=0.2, flip=False, tries=20)
    assert min(image_detail(c) for c in crops) >= 0.7
    assert image_detail(np.full((8, 8, 3), 7, np.uint8)) == 0.0
    ramp = np.repeat(np.arange(8, dtype=np.uint8)[None, :, None] * 10, 8, axis=0).repeat(3, -1)
    assert image_detail(ramp) == pytest.approx(5.0)  # 10 per step across, 0 down


def test_center_square_resize():
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, 20:60] = 200  # the central 40x40 square
    out = center_square_resize(image, 10)
    assert out.shape == (10, 10, 3)
    assert (out[:, 2:-2] == 200).all()  # (the rim may see the black sides through the filter)


def test_crops_per_original_scales_with_short_side_and_caps():
    assert crops_per_original(480, 640, 160, 40, 600) == 120
    assert crops_per_original(1600, 2560, 160, 40, 600) == 400
    assert crops_per_original(2880, 5120, 160, 40, 600) == 600
    assert crops_per_original(10, 10, 160, 40, 600) == 2


def test_video_crops_skip_blank_frames_and_letterbox():
    frame = np.zeros((60, 80, 3), dtype=np.uint8)
    frame[10:50] = noise(40, 80) // 2 + 100  # picture between two black bars
    blank = np.zeros_like(frame)
    crops = video_crops([frame, blank, frame], 16, np.random.default_rng(0))
    assert crops.shape == (2, 16, 16, 3)
    assert (crops.min(axis=(1, 2, 3)) >= 60).all()  # no black bar survives
    assert video_crops([blank], 16, np.random.default_rng(0)).shape == (0, 16, 16, 3)


# --- compositing -------------------------------------------------------------------------------


def test_alpha_composite_blends_where_expected():
    background = np.full((10, 10, 3), 100, dtype=np.uint8)
    stamp = np.zeros((3, 4, 4), dtype=np.uint8)
    stamp[..., :3] = [200, 0, 50]
    stamp[0, :, 3] = 255  # opaque row
    stamp[1, :, 3] = 0  # transparent row
    stamp[2, :, 3] = 128  # half row
    out = alpha_composite(background, stamp, top=2, left=5)
    assert out[2, 5:9].tolist() == [[200, 0, 50]] * 4
    assert out[3, 5:9].tolist() == [[100, 100, 100]] * 4
    a = 128 / 255
    half = [round(100 * (1 - a) + c * a) for c in (200, 0, 50)]
    assert out[4, 5:9].tolist() == [half] * 4
    untouched = np.ones((10, 10), bool)
    untouched[2:5, 5:9] = False
    assert (out[untouched] == 100).all()
    assert (background == 100).all()  # input not modified


def test_alpha_composite_clips_overhang():
    background = np.zeros((6, 6, 3), dtype=np.uint8)
    stamp = np.full((4, 4, 4), 255, dtype=np.uint8)
    out = alpha_composite(background, stamp, top=-2, left=4)
    assert (out[0:2, 4:6] == 255).all()
    assert out.sum() == 2 * 2 * 3 * 255
    assert (alpha_composite(background, stamp, 10, 10) == 0).all()


def test_place_stamp_puts_an_opaque_object_on_the_background():
    background = np.zeros((64, 64, 3), dtype=np.uint8)
    stamp = np.zeros((40, 40, 4), dtype=np.uint8)
    stamp[10:30, 10:30] = [255, 0, 0, 255]  # a red square in a transparent margin
    rng = np.random.default_rng(1)
    for _ in range(10):
        out = place_stamp(background, stamp, rng, scale_range=(0.5, 0.5), max_overhang=0.0)
        red = out[..., 0] > 128
        rows, cols = np.flatnonzero(red.any(1)), np.flatnonzero(red.any(0))
        # the margin is cut off, so the red square itself is scaled to 0.5 * 64 = 32 pixels
        assert 30 <= rows.size <= 33 and 30 <= cols.size <= 33
        assert (out[red][:, 1:] < 20).all()  # no colour other than red
        assert (out[~red] < 128).all()


def test_composite_batch_uses_stamps_evenly_and_records_pairs():
    stamps = [(f"s{i}", np.full((8, 8, 4), 255, np.uint8)) for i in range(3)]
    backgrounds = [("bg:a", noise(50, 50, 1)), ("bg:b", noise(60, 40, 2))]
    images, pairs = composite_batch(stamps, backgrounds, 9, 24, np.random.default_rng(0))
    assert images.shape == (9, 24, 24, 3)
    used = [p[0] for p in pairs]
    assert sorted(used) == sorted(["s0", "s1", "s2"] * 3)
    assert {p[1] for p in pairs} <= {"bg:a", "bg:b"}
    assert (images == 255).all(axis=-1).any(axis=(1, 2)).all()  # a white stamp in every image


def test_is_photographic_stamp_rule():
    rng = np.random.default_rng(0)
    photo = np.concatenate([noise(80, 80), np.full((80, 80, 1), 255, np.uint8)], axis=-1)
    clipart = np.zeros((80, 80, 4), np.uint8)
    clipart[..., :3] = [30, 200, 30]
    clipart[..., 3] = 255
    assert is_photographic_stamp("animals/birds/lark.png", photo)
    assert not is_photographic_stamp("animals/birds/lark.png", clipart)
    assert not is_photographic_stamp("food/fruit/cartoon/banana.png", photo)
    assert not is_photographic_stamp("symbols/money/coin.png", photo)
    assert not is_photographic_stamp("vehicles/dumper_mirror.png", photo)
    assert not is_photographic_stamp("clothes/button.png", photo)
    assert not is_photographic_stamp("animals/tiny.png", photo[:20, :20])
    opaque, colours, flat = stamp_statistics(clipart)
    assert (opaque, colours, flat) == (6400, 1, 1.0)
    del rng


# --- split -------------------------------------------------------------------------------------


def test_choose_heldout_is_per_source_deterministic_and_seeded():
    files = {"a": [f"a{i}.jpg" for i in range(40)], "b": [f"b{i}" for i in range(20)], "c": ["one"]}
    held = choose_heldout(files, 0.05, seed=0)
    assert sum(k.startswith("a:") for k in held) == 2
    assert sum(k.startswith("b:") for k in held) == 1
    assert not any(k.startswith("c:") for k in held)
    assert held == choose_heldout(dict(reversed(list(files.items()))), 0.05, seed=0)
    assert held != choose_heldout(files, 0.05, seed=1)
    # a tiny pool still holds one file out
    assert len(choose_heldout({"a": ["x", "y"]}, 0.05, seed=0)) == 1


def test_split_never_shares_an_original():
    rng = np.random.default_rng(0)
    records = [{"source": "s", "file": f"f{int(rng.integers(30))}"} for _ in range(600)]
    held = choose_heldout({"s": sorted({r["file"] for r in records})}, 0.2, seed=5)
    train_idx, heldout_idx = split_indices(records, held)
    assert sorted(train_idx + heldout_idx) == list(range(600))
    train_files = {records[i]["file"] for i in train_idx}
    held_files = {records[i]["file"] for i in heldout_idx}
    assert train_files.isdisjoint(held_files) and held_files


# --- licences ----------------------------------------------------------------------------------

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: test

Files: *
Copyright: someone
License: GPL-2+

Files: 16.04/photo_*.jpg
       16.04/other.jpg
Copyright: a photographer
License: CC-BY-4.0

Files: 16.04/photo_special.jpg
Copyright: another
License: CC0-1.0

License: GPL-2+
 text of the licence
"""


def test_licence_lookup_last_match_wins():
    stanzas = parse_dep5(COPYRIGHT)
    assert [s[1] for s in stanzas] == ["GPL-2+", "CC-BY-4.0", "CC0-1.0"]
    assert stanzas[1][0] == ["16.04/photo_*.jpg", "16.04/other.jpg"]
    assert licence_for("16.04/photo_a.jpg", stanzas, "?") == "CC-BY-4.0"
    assert licence_for("16.04/other.jpg", stanzas, "?") == "CC-BY-4.0"
    assert licence_for("16.04/photo_special.jpg", stanzas, "?") == "CC0-1.0"
    assert licence_for("anything/else.png", stanzas, "?") == "GPL-2+"
    assert licence_for("x", [], "unknown") == "unknown"


# --- image folders -----------------------------------------------------------------------------


def make_folder(root: Path, nested: bool) -> None:
    for i in range(6):
        name = f"{'cat' if i % 2 else 'dog'}/img{i}.jpg" if nested else f"img{i}.png"
        pixels = np.full((30 + i, 50, 3), 10 * i, np.uint8)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=100)
    (root / "notes.txt").write_text("not an image")


def test_image_folder_nested(tmp_path):
    make_folder(tmp_path, nested=True)
    folder = ImageFolderPool(tmp_path, size=16)
    assert len(folder) == 6
    assert folder.classes == ["cat", "dog"]
    assert folder.relpaths[0] == "cat/img1.jpg" and folder.labels[0] == "cat"
    assert folder[0].shape == (16, 16, 3)
    images, meta = load_image_folder(tmp_path, size=16, crops_per_image=2, random=True, heldout_fraction=0.5)
    assert images.shape == (12, 16, 16, 3) and images.dtype == np.uint8
    assert [r["label"] for r in meta["records"][:2]] == ["cat", "cat"]
    held = {meta["records"][i]["file"] for i in meta["heldout_idx"]}
    train = {meta["records"][i]["file"] for i in meta["train_idx"]}
    assert held and train and held.isdisjoint(train)
    assert len(meta["train_idx"]) + len(meta["heldout_idx"]) == 12


def test_image_folder_flat_center_crop_values(tmp_path):
    make_folder(tmp_path, nested=False)
    images, meta = load_image_folder(tmp_path, size=8)
    assert images.shape == (6, 8, 8, 3)
    assert meta["classes"] == []
    assert [r["file"] for r in meta["records"]] == [f"img{i}.png" for i in range(6)]
    for i in range(6):
        assert (images[i] == 10 * i).all()  # flat PNGs keep their exact value
    assert ImageFolderPool(tmp_path, size=8, max_images=2).relpaths == ["img0.png", "img1.png"]
    with pytest.raises(FileNotFoundError):
        ImageFolderPool(tmp_path / "missing")


# --- end to end on a fake package cache ----------------------------------------------------------


def fake_cache(cache: Path) -> None:
    """Unpacked 'packages' as fetch_deb leaves them, so build_pool never calls apt."""

    def package(name: str, copyright_text: str = "Files: *\nLicense: TEST-1\n") -> Path:
        root = cache / name / "root"
        doc = root / "usr/share/doc" / name
        doc.mkdir(parents=True)
        (doc / "copyright").write_text(copyright_text)
        (root / ".dgnam-version").write_text("1.0-test\n")
        return root

    ocv = package("opencv-doc") / pool.OPENCV_DATA_DIR
    for i, name in enumerate(["apple.jpg", "baboon.jpg", "fruits.jpg", "LinuxLogo.jpg"]):
        save_png(ocv / name, noise(90, 120, i))
    mate = package("mate-backgrounds") / "usr/share/backgrounds/mate"
    for i, name in enumerate(["nature/Aqua.jpg", "nature/Dune.jpg", "abstract/Flow.png"]):
        save_png(mate / name, noise(100, 150, 10 + i))
    package("lomiri-wallpapers-16.04")
    package("lomiri-wallpapers-20.04")
    plasma = package("plasma-workspace-wallpapers") / "usr/share/wallpapers"
    save_png(plasma / "Path/contents/images/320x240.png", noise(240, 320, 20))
    save_png(plasma / "Path/contents/images/64x48.png", noise(48, 64, 21))
    (plasma / "Path/contents/images/800x600.png").symlink_to("320x240.png")
    stamps = package("tuxpaint-stamps-default") / pool.TUXPAINT_STAMPS_DIR
    for i in range(8):
        rgba = np.concatenate([noise(60, 60, 30 + i), np.full((60, 60, 1), 255, np.uint8)], -1)
        save_png(stamps / f"animals/a{i}.png", rgba)
    flat = np.zeros((60, 60, 4), np.uint8)
    flat[..., 3] = 255
    save_png(stamps / "animals/cartoon/toon.png", flat)
    from test_pool_gcompris_tuxpaint_palapeli import encoded, photo, write_rcc

    from dgnam.pool.gcompris_tuxpaint_palapeli import GCOMPRIS_RCC_DIR, PALAPELI_COLLECTION_DIR, TUXPAINT_DATA_DIR

    rcc = package("gcompris-qt-data") / GCOMPRIS_RCC_DIR
    rcc.mkdir(parents=True)
    res = "/gcompris/src/activities/erase/resource"
    (rcc / "erase.rcc").write_bytes(write_rcc({f"{res}/p{i}.webp": encoded(noise(170, 200, 40 + i)) for i in range(2)}))
    tux = package("tuxpaint-data") / TUXPAINT_DATA_DIR
    save_png(tux / "templates/t.jpg", noise(180, 180, 50))
    save_png(tux / "starters/drawn.png", noise(180, 180, 51))  # not a photo starter
    pal = package("palapeli-data") / PALAPELI_COLLECTION_DIR
    save_png(pal / "p.jpg", noise(180, 200, 52))
    save_png(pal / "twin.jpg", photo(300, 400, 9))  # the same smooth picture as the gcompris one below, larger
    (rcc / "details.rcc").write_bytes(write_rcc({"/gcompris/src/activities/details/resource/image/x.webp": encoded(photo(200, 266, 9))}))
    from dgnam.pool.photo_folders import MORE_PHOTOS, QABCS_PICS_DIR

    for spec in MORE_PHOTOS:
        package(spec.package)
    save_png(cache / "scratch/root" / MORE_PHOTOS[0].folder / "Nature/lake.jpg", noise(180, 240, 60))
    package("enlightenment-data")
    qabcs = package("qabcs-data") / QABCS_PICS_DIR
    rgba = np.concatenate([noise(60, 60, 61), np.full((60, 60, 1), 255, np.uint8)], -1)
    rgba[:5, :, 3] = 0
    save_png(qabcs / "animals/bear.png", rgba)


def test_build_pool_end_to_end_without_network(tmp_path, monkeypatch):
    fake_cache(tmp_path / "debs")
    monkeypatch.setattr(pool.build, "skimage_source", lambda limit=None: None)
    monkeypatch.setattr(pool.build, "video_decoder", lambda: None)
    kwargs = dict(cache_dir=tmp_path / "debs", size=24, composites=40, seed=3, progress=False,
                  crop_density=4, heldout_fraction=0.34)  # fmt: skip
    with pytest.warns(UserWarning, match="skipped"):
        card = build_pool(tmp_path / "pool", **kwargs)
    images, meta = load_pool(tmp_path / "pool")
    assert images.shape == (card.n_images, 24, 24, 3) and images.dtype == np.uint8
    assert json.loads((tmp_path / "pool" / "card.json").read_text())["n_images"] == len(images)
    assert "Natural-image pool" in (tmp_path / "pool" / "POOL.md").read_text()

    by_source = {s["name"]: s for s in meta["sources"]}
    assert by_source["opencv-doc"]["n_originals"] == 3  # LinuxLogo is not on the allow-list
    assert by_source["mate-backgrounds"]["n_originals"] == 2  # abstract/ is not used
    assert [o["file"] for o in by_source["plasma-workspace-wallpapers"]["originals"]] == [
        "Path/contents/images/320x240.png"
    ]  # the largest image of the folder
    assert by_source["tuxpaint-stamps-default"]["n_originals"] == 8  # the cartoon is left out
    assert by_source["tuxpaint-stamps-default"]["n_images"] + by_source["qabcs-data"]["n_images"] == 40
    assert by_source["qabcs-data"]["n_images"] == round(40 * 1 / 9)  # shared in proportion to the stamps
    assert by_source["scratch"]["n_originals"] == 1 and by_source["enlightenment-data"]["n_originals"] == 0
    assert by_source["opencv-doc"]["licences"] == ["TEST-1"]
    assert by_source["gcompris-qt-data"]["n_originals"] == 3
    assert by_source["tuxpaint-data"]["n_originals"] == 1  # only the template
    assert [o["file"] for o in by_source["palapeli-data"]["originals"]] == ["p.jpg"]  # the twin is dropped
    assert any("near-duplicate removed: palapeli-data:twin.jpg (repeats gcompris-qt-data:" in n for n in meta["notes"])
    assert sum(s["n_images"] for s in meta["sources"]) == len(images)
    assert any("video" in n for n in meta["notes"]) and any("scikit" in n for n in meta["notes"])

    records = meta["records"]
    assert sorted(meta["train_idx"] + meta["heldout_idx"]) == list(range(len(images)))
    held = {(records[i]["source"], records[i]["file"]) for i in meta["heldout_idx"]}
    train = {(records[i]["source"], records[i]["file"]) for i in meta["train_idx"]}
    assert held and held.isdisjoint(train)
    held_keys = {f"{s}:{f}" for s, f in held}
    for r in records:
        if "background" in r:  # composites never mix the two sides
            assert (r["background"] in held_keys) == r["heldout"]

    with pytest.warns(UserWarning):
        again = build_pool(tmp_path / "pool2", **kwargs)
    np.testing.assert_array_equal(images, load_pool(tmp_path / "pool2")[0])
    assert again.heldout_idx == card.heldout_idx


def smooth_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients (photo-like spectra: they compress well and survive lossy coding)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = [np.stack([a * xx + b * yy + c for a, b, c in rng.uniform(0, 1, (3, 3))], -1) for _ in range(n)]
    return (np.clip(np.stack(out) / 3, 0, 1) * 255).astype(np.uint8)


def test_pack_pool_round_trip_keeps_images_and_split(tmp_path):
    images = smooth_images(12, 40)
    card = {"size": 40, "n_images": 12, "train_idx": list(range(9)), "heldout_idx": [9, 10, 11]}
    pool.save_folder_pool(tmp_path / "pool", images, {**card, "records": [{"file": str(i)} for i in range(12)]})
    written = pool.pack_pool(tmp_path / "pool", tmp_path / "pool.npz", size=32, max_mib=1.0, progress=False)
    assert written["packed"]["quality"] == pool.PACK_QUALITIES[0]  # a roomy budget keeps the best quality
    loaded, meta = pool.load_any(tmp_path / "pool.npz")
    assert loaded.shape == (12, 32, 32, 3) and loaded.dtype == np.uint8
    assert meta["train_idx"] == card["train_idx"] and meta["heldout_idx"] == [9, 10, 11] and meta["size"] == 32
    expected = np.stack([np.asarray(Image.fromarray(im).resize((32, 32), Image.BICUBIC)) for im in images]).astype(float)
    psnr = 10 * np.log10(255.0**2 / np.mean((loaded - expected) ** 2))
    assert psnr > 30, psnr


def test_pack_images_steps_quality_down_to_fit_the_budget():
    images = np.stack([noise(32, 32, seed) for seed in range(6)])
    best, q_best, fmt = pool.pack_images(images, max_bytes=10**7)
    budget = int(0.6 * sum(map(len, best)))
    squeezed, q, _ = pool.pack_images(images, max_bytes=budget, fmt=fmt)
    assert q < q_best and sum(map(len, squeezed)) <= budget
    with pytest.raises(ValueError, match="do not fit"):
        pool.pack_images(images, max_bytes=100, fmt=fmt)


def test_a_packed_pool_is_not_any_npz(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a packed pool"):
        pool.load_any(tmp_path / "other.npz")
    with pytest.raises(ValueError, match=".npz"):
        pool.pack_pool(tmp_path, tmp_path / "pool.zip")


def test_heldout_sample_draws_only_held_out_images_reproducibly(tmp_path):
    images = smooth_images(12, 16)
    images[:, 0, 0, 0] = np.arange(12)  # tag each image with its index
    card = {"size": 16, "n_images": 12, "train_idx": list(range(7)), "heldout_idx": [7, 8, 9, 10, 11]}
    pool.save_folder_pool(tmp_path / "pool", images, {**card, "records": [{"file": str(i)} for i in range(12)]})
    every, info = pool.heldout_sample(tmp_path / "pool")
    assert sorted(every[:, 0, 0, 0]) == [7, 8, 9, 10, 11] and info["split"] == "heldout" and info["available"] == 5
    three, info = pool.heldout_sample(tmp_path / "pool", 3, seed=1)
    assert info["images"] == 3 and set(three[:, 0, 0, 0]) <= {7, 8, 9, 10, 11}
    assert list(three[:, 0, 0, 0]) == sorted(three[:, 0, 0, 0])  # in index order
    assert np.array_equal(three, pool.heldout_sample(tmp_path / "pool", 3, seed=1)[0])
    draws = {tuple(pool.heldout_sample(tmp_path / "pool", 3, seed=s)[0][:, 0, 0, 0]) for s in range(6)}
    assert len(draws) > 1  # the seed changes the draw
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.fromarray(images[i]).save(flat / f"{i}.png")
    folder, info = pool.heldout_sample(flat, size=16)
    assert folder.shape == (3, 16, 16, 3) and info["split"] == "all (image folder)"
