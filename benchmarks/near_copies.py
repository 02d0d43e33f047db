"""Near-copy check of a prior (issue 16, item 4): are its images copies of the photos it was trained on?

    python benchmarks/near_copies.py runs/quality50/images/dgn-am-NAME [more image folders] --pool POOL

Each image of each folder gets its nearest *train-split* pool image in the pooled features of EfficientNet-Lite0
(1 - cosine, the default measure of ``dgnam neighbors``: the same features and :func:`dgnam.eval.score.nearest_neighbors`). The
reference is what a *new* photo gives: the held-out pool photos' nearest train images (the split is by original
file, so a held-out photo is never a crop of a train photo). The rule, fixed before any figure was seen (as for
the Fashion-MNIST check in BENCHMARKS.md): an image is a near-copy when it is closer to a train image than the 1st
percentile of the held-out photos' nearest distances. Writes ``OUT/near_copies.json`` (every distance and the
nearest train image's file) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

PERCENTILE = 1.0  # the near-copy threshold: this percentile of the held-out photos' nearest distances


def folder_images(folder: Path) -> tuple[np.ndarray, list[str]]:
    """The PNG images of ``folder`` (sorted by name) as (n, S, S, 3) uint8."""
    from PIL import Image

    files = sorted(folder.glob("*.png"))
    if not files:
        raise SystemExit(f"{folder} has no .png images: give a folder of images (e.g. a quality run's images/METHOD)")
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]), [f.name for f in files]


def summarize(distances: np.ndarray, threshold: float) -> dict:
    """Closest and median nearest distance, and how many fall under ``threshold``."""
    return {"images": int(len(distances)), "min": round(float(distances.min()), 4), "median": round(float(np.median(distances)), 4),
            "near_copies": int((distances < threshold).sum())}  # fmt: skip


def near_copies(train_f: np.ndarray, held_f: np.ndarray, queries: dict[str, np.ndarray]) -> dict:
    """The rule on features: the threshold from the held-out photos, then each query set's nearest distances.

    Args:
        train_f: (N, D) features of the train-split pool images.
        held_f: (H, D) features of the held-out photos.
        queries: name -> (n, D) features of synthesized images.

    Returns:
        ``{"threshold", "heldout": summary, "queries": {name: summary + "distance" + "nearest" (train row)}}``.
    """
    from dgnam.eval.score import nearest_neighbors

    held_d = nearest_neighbors(held_f, train_f, k=1).distance[:, 0]
    threshold = float(np.percentile(held_d, PERCENTILE))
    out = {"threshold": threshold, "heldout": summarize(held_d, threshold), "queries": {}}
    for name, feats in queries.items():
        nb = nearest_neighbors(feats, train_f, k=1)
        out["queries"][name] = {**summarize(nb.distance[:, 0], threshold), "distance": nb.distance[:, 0], "nearest": nb.index[:, 0]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="folders of synthesized images (PNG)")
    ap.add_argument("--pool", type=Path, required=True, help="the pool the prior was trained on (its train split is searched)")
    ap.add_argument("--heldout", type=int, default=None, help="held-out photos used as the reference (default: all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("runs/near_copies"))
    args = ap.parse_args(argv)

    from dgnam import load_net
    from dgnam.eval.score import layer_features  # gradient-free already
    from dgnam.pool.store import heldout_sample, load_pool

    images, meta = load_pool(args.pool, mmap=True)
    train_idx = np.asarray(sorted(meta["train_idx"]))
    held_images, _ = heldout_sample(args.pool, n=args.heldout)  # all held-out photos, or a fixed draw of n
    records = meta["records"]
    net = load_net("efficientnet_lite0").fast(["pool"])
    train_f = layer_features(net, "pool", np.asarray(images[train_idx]), args.batch_size)
    held_f = layer_features(net, "pool", held_images, args.batch_size)
    loaded = {folder: folder_images(folder) for folder in args.folders}
    feats = {str(f): layer_features(net, "pool", q, args.batch_size) for f, (q, _) in loaded.items()}
    result = near_copies(train_f, held_f, feats)
    threshold, held = result["threshold"], result["heldout"]
    report = {"pool": str(args.pool), "train_images": int(len(train_idx)), "feature": "efficientnet_lite0 pool, 1 - cosine",
              "rule": f"near-copy: nearest train distance < the {PERCENTILE:g} percentile of the held-out photos' ({threshold:.4f})",
              "heldout": {**held, "threshold": round(threshold, 5)}, "folders": {}}  # fmt: skip
    rows = [f"| held-out pool photos (reference) | {held['images']} | {held['min']:.4f} | {held['median']:.4f} | {held['near_copies']} |"]
    for folder, (_, names) in loaded.items():
        r = result["queries"][str(folder)]
        items = [{"image": n, "distance": round(float(x), 5), "nearest": records[int(train_idx[i])].get("file")}
                 for n, x, i in zip(names, r["distance"], r["nearest"])]  # fmt: skip
        report["folders"][str(folder)] = {k: r[k] for k in ("images", "min", "median", "near_copies")} | {"items": items}
        rows.append(f"| `{folder.name}` | {r['images']} | {r['min']:.4f} | {r['median']:.4f} | {r['near_copies']} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "near_copies.json").write_text(json.dumps(report, indent=1))
    print(f"near-copy threshold: {threshold:.4f} (the {PERCENTILE:g}st percentile of {held['images']} held-out photos' nearest train distances)")
    print("| images | n | closest | median nearest | near-copies |\n| --- | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
