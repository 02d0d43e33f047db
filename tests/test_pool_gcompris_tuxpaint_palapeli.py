"""The photo sources of dgnam.pool.gcompris_tuxpaint_palapeli: GCompris' Qt resource files and its photo rule."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from dgnam.pool.debian import DebPackage
from dgnam.pool.gcompris_tuxpaint_palapeli import GCOMPRIS_RCC_DIR, gcompris_photos, gcompris_source, read_rcc


def write_rcc(files: dict[str, bytes], compress_over: int = 1000) -> bytes:
    """A version-1 Qt resource file holding ``files`` (entries over ``compress_over`` bytes zlib'd)."""
    root: dict = {}
    for path, blob in files.items():
        *dirs, name = path.strip("/").split("/")
        node = root
        for d in dirs:
            node = node.setdefault(d, {})
        node[name] = blob
    nodes = [("", root)]  # breadth first: each directory's children get consecutive indices
    first_child = {}
    i = 0
    while i < len(nodes):
        name, node = nodes[i]
        if isinstance(node, dict):
            first_child[i] = len(nodes)
            nodes += sorted(node.items())
        i += 1
    names, data, tree = b"", b"", b""
    for i, (name, node) in enumerate(nodes):
        name_offset = len(names)
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
        if isinstance(node, dict):
            tree += struct.pack(">IHII", name_offset, 2, len(node), first_child[i])
        else:
            flags, payload = (1, struct.pack(">I", len(node)) + zlib.compress(node)) if len(node) > compress_over else (0, node)
            tree += struct.pack(">IHHHI", name_offset, flags, 0, 0, len(data))
            data += struct.pack(">I", len(payload)) + payload
    tree_at = 20
    return b"qres" + struct.pack(">IIII", 1, tree_at, tree_at + len(tree), tree_at + len(tree) + len(data)) + tree + data + names


def encoded(pixels: np.ndarray, fmt: str = "WEBP") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **({"quality": 90} if fmt in ("WEBP", "JPEG") else {}))
    return buf.getvalue()


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth random colour fields (photo-like low frequencies; distinct hashes per seed)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


def test_read_rcc_round_trips_nested_and_compressed_entries():
    files = {"/a/b/one.txt": b"hello", "/a/two.bin": bytes(range(256)) * 10, "/three": b""}
    assert read_rcc(write_rcc(files)) == files
    with pytest.raises(ValueError, match="qres"):
        read_rcc(b"PK\x03\x04" + bytes(40))


def test_gcompris_rule_keeps_only_opaque_large_rasters_of_photo_activities():
    rgba = np.concatenate([photo(200, 200, 3), np.full((200, 200, 1), 255, np.uint8)], -1)
    rgba[:10, :10, 3] = 0
    cat = "/gcompris/src/activities/categorization/resource/images"
    files = {
        "categorization": {
            f"{cat}/fishes/fish1.webp": encoded(photo(200, 260, 1)),
            f"{cat}/fishes/small.webp": encoded(photo(120, 150, 2)),  # short side under 160 px
            f"{cat}/fishes/cutout.png": encoded(rgba, "PNG"),  # transparent pixels: a sprite
            f"{cat}/fishes/drawn.svg": b"<svg/>",
            f"{cat}/alphabets/abc.webp": encoded(photo(200, 200, 4)),  # deny list
        },
        "lang": {"/gcompris/src/activities/lang/resource/words/cat.webp": encoded(photo(300, 300, 5))},  # not allowed
        "details": {"/gcompris/src/activities/details/resource/image/VincentVanGogh0012_background.webp": encoded(photo(300, 300, 6))},
    }
    kept = gcompris_photos(files)
    assert [p for p, _ in kept] == [f"{cat}/fishes/fish1.webp"]


def test_gcompris_source_reads_the_package_and_its_licences(tmp_path):
    root = tmp_path / "gcompris-qt-data"
    (root / GCOMPRIS_RCC_DIR).mkdir(parents=True)
    res = "/gcompris/src/activities/erase/resource"
    (root / GCOMPRIS_RCC_DIR / "erase.rcc").write_bytes(write_rcc({f"{res}/a.webp": encoded(photo(200, 300, 7)),
                                                                  f"{res}/b.webp": encoded(photo(220, 300, 8))}))
    doc = root / "usr/share/doc/gcompris-qt-data"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Files: *\nLicense: GPL-3+\n\nFiles: src/activities/erase/resource/b.jpg\nLicense: CC-BY-SA-3.0\n")
    source = gcompris_source(DebPackage("gcompris-qt-data", "3.1-test", root))
    assert source.kind == "photo" and [o.file for o in source.originals] == [f"{res[1:]}/a.webp", f"{res[1:]}/b.webp"]
    assert [o.licence for o in source.originals] == ["GPL-3+", "CC-BY-SA-3.0"]  # the .jpg stanza names the .webp's source
    assert source.originals[1].load().shape == (220, 300, 3)
