"""Near-duplicate removal by perceptual hash (dgnam.pool.duplicates)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from dgnam.pool.duplicates import drop_near_duplicates, hamming, near_duplicates, perceptual_hash
from dgnam.pool.sources import Original, Source

from test_pool_gcompris_tuxpaint_palapeli import encoded, photo


def test_perceptual_hash_survives_resizing_and_compression_and_tells_photos_apart():
    a, b = photo(240, 320, 1), photo(240, 320, 2)
    resized = np.asarray(Image.fromarray(a).resize((160, 120), Image.Resampling.BILINEAR))
    recompressed = np.asarray(Image.open(io.BytesIO(encoded(a, "JPEG"))))
    ha = perceptual_hash(a)
    assert hamming(ha, perceptual_hash(resized)) <= 4
    assert hamming(ha, perceptual_hash(recompressed)) <= 4
    assert hamming(ha, perceptual_hash(b)) > 12
    assert hamming(ha, perceptual_hash(a[:, ::-1].copy())) > 12  # a mirror image is another picture here


def test_near_duplicates_keeps_the_first_of_each_group():
    h = [0b0, 0b1, 0xFFFF, 0b11, 0xFFFE]
    assert near_duplicates(h, max_bits=2) == [1, 3, 4]
    assert near_duplicates(h, max_bits=0) == []


def test_drop_near_duplicates_across_sources_leaves_stamps_alone():
    a, b, c = photo(200, 200, 1), photo(200, 200, 2), photo(200, 200, 3)
    big_a = np.asarray(Image.fromarray(a).resize((300, 300)))

    def src(name, kind, images):
        return Source(name, name, "1", kind, "", [Original(f"f{i}", "L", lambda x=x: x) for i, x in enumerate(images)])

    sources = [src("s1", "photo", [a, b]), src("s2", "photo", [c, big_a]), src("stamps", "stamp", [a, a])]
    kept, report = drop_near_duplicates(sources)
    assert [len(s.originals) for s in kept] == [2, 1, 2]
    assert report.removed == [("s2", "f1", "s1:f0")]
