"""A pool on disk: the card, saving and loading, any image folder, the packed single-file pool."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..infra.files import write_bytes_atomic, write_npy_atomic, write_text_atomic
from ..infra.images import MAX_SIDE, center_square_resize, read_image
from .crops import _rng, random_crops, stable_hash
from .sources import DEFAULT_HELDOUT_FRACTION, IMAGE_EXTENSIONS, SourceSummary, _limited, _progress


@dataclass
class PoolCard:
    """Description of a built pool, written as ``card.json`` and ``POOL.md``.

    Attributes:
        size: side of the square images.
        seed: seed the pool was built with.
        n_images: number of images.
        heldout_fraction: fraction of originals (per source) held out.
        build_seconds: wall-clock time of the build.
        sources: one summary per source.
        train_idx: indices (into ``images.npy``) of the training images.
        heldout_idx: indices of the held-out images.
        notes: anything skipped or worth knowing.
    """

    size: int
    seed: int
    n_images: int
    heldout_fraction: float
    build_seconds: float
    sources: list[SourceSummary]
    train_idx: list[int]
    heldout_idx: list[int]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Returns:
        The card as a JSON-serialisable dict.
        """
        return asdict(self)

    def to_markdown(self) -> str:
        """Returns:
        The card as Markdown (a table per source, then the split and notes).
        """
        lines = [
            "# Natural-image pool",
            "",
            f"{self.n_images} images, {self.size}x{self.size} RGB uint8 (`images.npy`), "
            f"seed {self.seed}, built in {self.build_seconds:.0f} s. "
            f"Train {len(self.train_idx)}, held out {len(self.heldout_idx)} "
            f"({self.heldout_fraction:.0%} of the originals of each source, split by original file).",
            "",
            "| source | package | version | licence | originals | images | use |",
            "| --- | --- | --- | --- | ---: | ---: | --- |",
        ]
        for s in self.sources:
            lines.append(
                f"| {s.name} | {s.package} | {s.version} | {', '.join(s.licences)} | "
                f"{s.n_originals} | {s.n_images} | {s.usage} |"
            )
        lines += ["", "## Originals", ""]
        for s in self.sources:
            held = [o["file"] for o in s.originals if o["heldout"]]
            lines.append(f"- **{s.name}** ({s.n_originals}): held out {held or 'none'}")
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------


def save_pool(out_dir: str | Path, images: np.ndarray, records: Sequence[dict], card: PoolCard) -> None:
    """Write a pool folder.

    Args:
        out_dir: folder (created).
        images: (N, S, S, 3) uint8.
        records: N dicts (``source``, ``file``, ...).
        card: its card.
    """
    if len(records) != len(images):
        raise ValueError(f"{len(images)} images but {len(records)} records")
    out = Path(out_dir)
    write_npy_atomic(out / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))  # each file atomically: a full disk is one line
    write_text_atomic(out / "sources.json", json.dumps(list(records)))
    write_text_atomic(out / "card.json", json.dumps(card.to_dict(), indent=1))
    write_text_atomic(out / "POOL.md", card.to_markdown())


def load_pool(directory: str | Path, mmap: bool = False) -> tuple[np.ndarray, dict]:
    """Read a pool written by :func:`build_pool` (or :func:`save_pool`).

    Args:
        directory: the pool folder.
        mmap: memory-map ``images.npy`` instead of reading it.

    Returns:
        ``(images, meta)``: (N, S, S, 3) uint8, and the card as a dict with ``records`` (the
        contents of ``sources.json``) added; ``meta["train_idx"]`` and ``meta["heldout_idx"]``
        give the split.
    """
    directory = Path(directory)
    images = np.load(directory / "images.npy", mmap_mode="r" if mmap else None)
    meta = json.loads((directory / "card.json").read_text())
    meta["records"] = json.loads((directory / "sources.json").read_text())
    return images, meta


# ---------------------------------------------------------------------------------------------
# Any image folder
# ---------------------------------------------------------------------------------------------


class ImageFolderPool:
    """Images of a folder, ImageNet-style (``class/xxx.jpg``) or flat, as size x size RGB.

    Files are found recursively and sorted; an image's label is its first-level folder
    (``None`` for files directly in the root).

    Args:
        root: the folder.
        size: side of the square images.
        extensions: file suffixes counted as images (lower case, with dot).
        max_images: keep only the first this many files (None: all).
    """

    def __init__(
        self,
        root: str | Path,
        size: int = 160,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        max_images: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.size = size
        if not 1 <= size <= MAX_SIDE:  # before any file is listed or decoded
            raise ValueError(f"image size {size} px is out of range: give 1 to {MAX_SIDE} px a side")
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root} is not a folder: give a folder of images, a pool folder (dgnam pool build) or a packed .npz pool")
        exts = {e.lower() for e in extensions}
        files = sorted(
            p for p in self.root.rglob("*")
            if p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")
        )  # fmt: skip
        self.files: list[Path] = _limited(files, max_images)
        self.relpaths = [p.relative_to(self.root).as_posix() for p in self.files]
        self.labels: list[str | None] = [r.split("/")[0] if "/" in r else None for r in self.relpaths]
        self.classes: list[str] = sorted({lab for lab in self.labels if lab is not None})

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        """Args:
            index: image number.

        Returns:
            The central square of the image, (size, size, 3) uint8.
        """
        return center_square_resize(read_image(self.files[index]), self.size)

    def to_array(
        self,
        crops_per_image: int = 1,
        random: bool = False,
        seed: int = 0,
        progress: bool = False,
    ) -> tuple[np.ndarray, list[dict]]:
        """All images as one array.

        Args:
            crops_per_image: views per file.
            random: random multi-scale crops and flips (as in :func:`build_pool`) instead of
                the central square (which then repeats ``crops_per_image`` times).
            seed: seed of the random crops (per file, so order does not matter).
            progress: show a progress bar.

        Returns:
            ``(images, records)``: (N * crops_per_image, size, size, 3) uint8 and one record
            per image (``source`` = label or ``"folder"``, ``file`` = path under the root).
        """
        if not self.files:
            raise ValueError(f"no images in {self.root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}): give a folder of images")
        n = len(self.files) * crops_per_image
        images = np.empty((n, self.size, self.size, 3), dtype=np.uint8)
        records = []
        self.skipped: list[str] = []  # files that are not readable images (truncated, not an image): skipped, counted
        k = 0
        for i in _progress(range(len(self.files)), progress, "images"):
            rel, label = self.relpaths[i], self.labels[i]
            try:
                pixels = read_image(self.files[i])
            except (OSError, ValueError, Image.DecompressionBombError) as e:  # PIL: UnidentifiedImageError, truncated data
                self.skipped.append(rel)
                warnings.warn(f"skipping {self.files[i]}: not a readable image ({str(e)[:120]})", stacklevel=2)
                continue
            if random:
                crops = random_crops(pixels, crops_per_image, self.size, _rng(seed, rel))
            else:
                crops = np.repeat(center_square_resize(pixels, self.size)[None], crops_per_image, 0)
            images[k * crops_per_image : (k + 1) * crops_per_image] = crops
            k += 1
            records += [{"source": label or "folder", "file": rel, "label": label}] * crops_per_image
        if self.skipped:
            warnings.warn(f"skipped {len(self.skipped)} of {len(self.files)} file(s) in {self.root} that are not readable images", stacklevel=2)
        if k == 0:
            raise ValueError(f"none of the {len(self.files)} image file(s) in {self.root} could be read: give a folder of readable images")
        return images[: k * crops_per_image], [dict(r) for r in records]


def load_image_folder(
    path: str | Path,
    size: int = 160,
    crops_per_image: int = 1,
    random: bool = False,
    seed: int = 0,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    max_images: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, dict]:
    """Turn any image folder into the pool format, with the same kind of split.

    Args:
        path: folder, ImageNet-style (``class/xxx.jpg``) or flat.
        size: side of the square images.
        crops_per_image: views per file.
        random: random multi-scale crops instead of the central square.
        seed: seed of the crops and of the split.
        heldout_fraction: fraction of files held out (per class; all crops of a file stay on
            one side).
        max_images: read only the first this many files.
        progress: show a progress bar.

    Returns:
        ``(images, meta)`` like :func:`load_pool`: meta has ``records``, ``train_idx``,
        ``heldout_idx``, ``classes``, ``size``, ``seed``, ``n_images``.
    """
    folder = ImageFolderPool(path, size, max_images=max_images)
    images, records = folder.to_array(crops_per_image, random, seed, progress)
    by_source: dict[str, list[str]] = {}
    for r in records:
        by_source.setdefault(r["source"], []).append(r["file"])
    heldout = choose_heldout(by_source, heldout_fraction, seed)
    train_idx, heldout_idx = split_indices(records, heldout)
    for i in heldout_idx:
        records[i]["heldout"] = True
    for i in train_idx:
        records[i]["heldout"] = False
    meta = {
        "size": size, "seed": seed, "n_images": len(images), "heldout_fraction": heldout_fraction,
        "classes": folder.classes, "train_idx": train_idx, "heldout_idx": heldout_idx,
        "records": records, "root": str(folder.root), "skipped": folder.skipped,
    }  # fmt: skip
    return images, meta


def load_any(path: str | Path, size: int = 160, mmap: bool = False) -> tuple[np.ndarray, dict]:
    """A pool folder (with ``images.npy``) as is, a packed pool (:func:`pack_pool`, ``.npz``), or
    any image folder turned into the same format.

    Args:
        mmap: Memory-map a pool's ``images.npy`` instead of reading it (image folders and packed
            pools are decoded).

    Returns:
        ``(images, meta)`` as :func:`load_pool` gives them, with ``train_idx``/``heldout_idx``.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".npz":
        return load_packed(path)
    if (path / "images.npy").exists():
        return load_pool(path, mmap=mmap)
    return load_image_folder(path, size=size)


def heldout_sample(path: str | Path, n: int | None = None, seed: int = 0, size: int = 160) -> tuple[np.ndarray, dict]:
    """Natural reference images: a pool's held-out split (a generator prior may have been trained on
    the rest; the whole pool when it has fewer than 2 held-out images), or every image of a folder.

    Args:
        path: a pool folder, a packed pool (``.npz``) or any image folder.
        n: draw this many without replacement (a fixed draw for a given ``seed``, in index order);
            None: all of them.
        seed: seed of the draw.
        size: side of the images read from an image folder.

    Returns:
        ``(images, info)``: (n, S, S, 3) uint8, and ``{"path", "split", "available", "images"}``.
    """
    path = Path(path)
    if path.suffix == ".npz" or (path / "images.npy").exists():
        images, meta = load_any(path, mmap=True)
        held = sorted(meta.get("heldout_idx") or [])
        split = "heldout" if len(held) >= 2 else "all"
        candidates = np.asarray(held) if split == "heldout" else np.arange(len(images))
    else:
        images, _ = load_image_folder(path, size=size)
        split, candidates = "all (image folder)", np.arange(len(images))
    if n is not None and n < len(candidates):
        candidates = np.sort(np.random.default_rng(seed).choice(candidates, size=n, replace=False))
    chosen = np.asarray(images[candidates])
    info = {"path": str(path), "split": split, "available": len(images) if split != "heldout" else len(held), "images": len(chosen)}
    return chosen, info


# ---------------------------------------------------------------------------------------------
# A packed pool: the whole pool as one small file (for a machine that takes 64 MiB of data)
# ---------------------------------------------------------------------------------------------

PACK_QUALITIES = (95, 90, 85, 80, 75, 70, 65, 60, 55, 50, 40, 30)  # tried best first


def _encode(image: np.ndarray, fmt: str, quality: int) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def pack_format() -> str:
    """WEBP where Pillow has it (about 35 % smaller than JPEG at equal quality on the pool), else JPEG."""
    from PIL import features

    return "WEBP" if features.check("webp") else "JPEG"


def pack_images(images: np.ndarray, max_bytes: int, fmt: str | None = None, sample: int = 400, seed: int = 0, progress: bool = False) -> tuple[list[bytes], int, str]:
    """Encode ``images`` (N, S, S, 3) uint8 at the best quality of :data:`PACK_QUALITIES` whose
    total fits ``max_bytes``; return (encoded images, quality, format).

    The quality is chosen on a random sample (its size projected to all images), then checked on
    the whole encoding, stepping down while it does not fit.

    Raises:
        ValueError: not even the lowest quality fits.
    """
    fmt = fmt or pack_format()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=min(sample, len(images)), replace=False)
    qualities = list(PACK_QUALITIES)
    while qualities:
        projected = sum(len(_encode(np.asarray(images[i]), fmt, qualities[0])) for i in pick) * len(images) / len(pick)
        if projected <= 0.97 * max_bytes:
            break
        qualities.pop(0)
    for quality in qualities:
        encoded = [_encode(np.asarray(im), fmt, quality) for im in _progress(images, progress, f"packing ({fmt} q{quality})")]
        if sum(map(len, encoded)) <= max_bytes:
            return encoded, quality, fmt
    raise ValueError(f"{len(images)} images do not fit {max_bytes / 2**20:.1f} MiB even at {fmt} quality {PACK_QUALITIES[-1]}: "
                     "pack at a smaller size or allow more")


def pack_pool(source: str | Path, out: str | Path, size: int = 128, max_mib: float = 40.0, progress: bool = True) -> dict:
    """Write a pool (or any image folder) as one ``.npz`` of compressed images of ``size`` px that
    fits ``max_mib``, with its card and train / held-out split; :func:`load_any` reads it back.

    Made for the GPU machine, which takes at most 64 MiB of data beside the code: the 23.6k-image
    offline pool at 128 px is 1.1 GB raw and about 41 MiB as WebP at quality 60.

    Args:
        source: A pool folder or an image folder (:func:`load_any`).
        out: The ``.npz`` file to write.
        size: Side of the stored images (the training resolution: the trainer resizes to it anyway).
        max_mib: Size budget of the encoded images.

    Returns:
        The card stored in the file: ``format``, ``quality``, ``bytes``, ``size`` and the source's card.

    Example:
        >>> pack_pool("/work/pool", "pool128.npz", size=128, max_mib=40)  # then: train-generator --pool pool128.npz
    """
    out = Path(out)
    if out.suffix != ".npz":
        raise ValueError(f"a packed pool is an .npz file, not {out.name}")
    images, meta = load_any(source, size=size, mmap=True)
    resized = np.stack([np.asarray(Image.fromarray(np.asarray(im)).resize((size, size), Image.BICUBIC)) if im.shape[0] != size else np.asarray(im)
                        for im in _progress(images, progress, "resizing")]) if len(images) else np.zeros((0, size, size, 3), np.uint8)
    encoded, quality, fmt = pack_images(resized, int(max_mib * 2**20), progress=progress)
    card = {k: v for k, v in meta.items() if k != "records"}
    card.update(size=size, n_images=len(encoded), packed={"format": fmt, "quality": quality, "bytes": sum(map(len, encoded)), "from": str(source)})
    offsets = np.cumsum([0] + [len(b) for b in encoded]).astype(np.int64)
    import io

    buffer = io.BytesIO()  # the packed pool is small (--max-mib): written whole, atomically
    np.savez(buffer, data=np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets=offsets,
             card=np.frombuffer(json.dumps(card).encode(), dtype=np.uint8))
    write_bytes_atomic(out, buffer.getbuffer())
    return card


def load_packed(path: str | Path, progress: bool = False) -> tuple[np.ndarray, dict]:
    """Decode a pool written by :func:`pack_pool`: ``(images (N, S, S, 3) uint8, card)``."""
    with np.load(path, allow_pickle=False) as f:
        if not {"data", "offsets", "card"} <= set(f.files):
            raise ValueError(f"{path} is not a packed pool (it lacks data/offsets/card)")
        data, offsets, card = f["data"], f["offsets"], json.loads(f["card"].tobytes().decode())
    size = int(card["size"])
    images = np.empty((len(offsets) - 1, size, size, 3), dtype=np.uint8)
    for i in _progress(range(len(images)), progress, "decoding"):
        images[i] = read_image(data[offsets[i] : offsets[i + 1]].tobytes(), name=f"{path} image {i}")
    card["records"] = []
    return images, card


def save_folder_pool(out_dir: str | Path, images: np.ndarray, meta: dict) -> dict:
    """Write what :func:`load_image_folder` returned as a pool folder that :func:`load_pool` reads."""
    out = Path(out_dir)
    write_npy_atomic(out / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))  # each file atomically
    records = meta.get("records", [])
    write_text_atomic(out / "sources.json", json.dumps(records))
    card = {k: v for k, v in meta.items() if k != "records"}
    write_text_atomic(out / "card.json", json.dumps(card))
    return card


# ---------------------------------------------------------------------------------------------
# Train / held-out split
# ---------------------------------------------------------------------------------------------


def choose_heldout(files_by_source: dict[str, Sequence[str]], fraction: float, seed: int) -> set[str]:
    """Pick the held-out originals: in each source, the ``round(fraction * n)`` files with the
    smallest seeded hash (at least one file overall when there are two or more).

    Args:
        files_by_source: source name -> its original files.
        fraction: fraction to hold out per source.
        seed: seed of the hash, so different seeds give different splits.

    Returns:
        Set of ``"source:file"`` keys that are held out.
    """
    held: set[str] = set()
    all_keys = []
    for source, files in files_by_source.items():
        keys = sorted({f"{source}:{f}" for f in files}, key=lambda k: stable_hash(f"{seed}:{k}"))
        all_keys += keys
        held.update(keys[: int(math.floor(fraction * len(keys) + 0.5))])
    if not held and fraction > 0 and len(all_keys) >= 2:
        held.add(min(all_keys, key=lambda k: stable_hash(f"{seed}:{k}")))
    return held


def split_indices(records: Sequence[dict], heldout: set[str]) -> tuple[list[int], list[int]]:
    """Indices of training and held-out images.

    Args:
        records: one dict per image with ``source`` and ``file``.
        heldout: ``"source:file"`` keys that are held out.

    Returns:
        ``(train_idx, heldout_idx)``.
    """
    train, held = [], []
    for i, r in enumerate(records):
        (held if f"{r['source']}:{r['file']}" in heldout else train).append(i)
    return train, held
