"""The selection rule for a prior's exports, fixed before any judge figure (BENCHMARKS.md, "Prior v2").

No judge is loaded here. For each prior (a registered name or an export's .safetensors), DGN-AM runs
with the same settings (default: the shipped prior's carried ``{"lr_start": 0.05, "transforms":
"standard"}``, 200 steps) on the tuning classes (``quality.TUNING``) of the target EfficientNet-Lite0,
``--seeds`` seeds each (default 1: one prior takes 10-20 min at 224 px on the shared CPU), and three
things are measured:

1. the target's top-1 and median logit of the images;
2. the median spectrum slope of the images in their own pixels, against the interquartile range of
   the same slope over all held-out pool *photos* (composites left out) at the same size
   (/work/pool224: 393 photos, [-2.92, -2.17] at 224 px, [-3.00, -2.26] at 128 px);
3. the Fréchet distance between the target's pooled features (``pool``, 1280-d) of the images and of
   ``--reference`` held-out pool photos (sets of equal size for every prior, so the values compare).

Candidates are (prior, settings) pairs: ``--settings`` changes the DGN-AM settings of a run, and
``--merge`` brings runs with other settings into one decision; the chosen pair names both.

The rule: a prior is eligible when every image is the target's top-1 and its median slope lies inside
the pool photos' interquartile range; among the eligible, the lowest Fréchet distance wins (ties: the
higher median logit). None eligible: none is chosen, and the table says by how much each missed.

Usage (one prior per run, merged at the end):
    python benchmarks/select_prior.py lite0_blocks7_conv_resize --pool /work/pool224 --out runs/select/default
    python benchmarks/select_prior.py /work/train_v2/run/priors/step000500.safetensors --out runs/select/s500
    python benchmarks/select_prior.py --merge runs/select/*/selection.json --out runs/select/all
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import dgnam
from dgnam.eval.score import layer_features
from dgnam.eval.metrics import frechet_distance, spectrum_slope
from dgnam.pool.store import load_any
from dgnam.infra.images import to_pil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dgn_am_step import run_variant  # noqa: E402
from quality import CLASSES, TUNING  # noqa: E402

DEFAULT_SETTINGS = {"lr_start": 0.05, "transforms": "standard"}


def heldout_photos(pool_dir: Path, n: int, seed: int = 0) -> np.ndarray:
    """``n`` held-out pool photos (stamp composites left out), a fixed draw for ``seed``."""
    images, meta = load_any(pool_dir, mmap=True)
    records = meta.get("records") or json.loads((pool_dir / "sources.json").read_text())
    held = [i for i in meta["heldout_idx"] if "background" not in records[i]]
    pick = np.sort(np.random.default_rng(seed).choice(held, size=min(n, len(held)), replace=False))
    return np.asarray(images[pick])


def slope_quartiles(photos: np.ndarray, size: int) -> tuple[float, float]:
    """25th and 75th percentile of the photos' spectrum slope at ``size`` px."""
    x = torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    s = spectrum_slope(x)
    return float(np.nanpercentile(s, 25)), float(np.nanpercentile(s, 75))


def apply_rule(rows: list[dict]) -> str | None:
    """The chosen prior (see the module docstring) with the DGN-AM settings it was measured with, or None."""
    eligible = [r for r in rows if r["all_top1"] and r["slope_inside_iqr"]]
    if not eligible:
        return None
    best = min(eligible, key=lambda r: (r["frechet"], -r["median_logit"]))
    return f"{best['prior']} {json.dumps(best.get('settings', DEFAULT_SETTINGS))}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("priors", nargs="*", help="registered priors or .safetensors exports")
    ap.add_argument("--pool", type=Path, default=Path("/work/pool224"), help="pool whose held-out photos are the reference")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per tuning class (default 1)")
    ap.add_argument("--merge", type=Path, nargs="*", default=[], help="selection.json files of earlier runs (same settings): their rows join this run's before the rule")
    ap.add_argument("--reference", type=int, default=256, help="held-out photos for the Fréchet distance (default 256)")
    ap.add_argument("--settings", type=json.loads, default=DEFAULT_SETTINGS, help="DGNAMConfig fields, the same for every prior")
    ap.add_argument("--out", type=Path, default=Path("runs/select_prior"))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    net = dgnam.load_net("efficientnet_lite0")
    classes = [c[0] for c in CLASSES[TUNING]]
    photos = heldout_photos(args.pool, args.reference)
    all_photos = heldout_photos(args.pool, 10**9)  # the slope quartiles use every held-out photo
    ref_feats = layer_features(net, "pool", torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 255.0)
    quartiles: dict[int, tuple[float, float]] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.priors:
        t0 = time.perf_counter()
        gen = dgnam.load_generator(name)
        images, logits, top1 = [], [], 0
        for seed in range(args.seeds):
            record, imgs = run_variant(net, gen, classes, dict(args.settings), seed=seed)
            images.append(imgs)
            hit, total = map(int, record["target_top1"].split("/"))
            top1 += hit
        images = torch.cat(images)
        with torch.no_grad():
            out = net(images)
        own = out[torch.arange(len(images)), torch.tensor(classes * args.seeds)]
        size = images.shape[-1]
        if size not in quartiles:
            quartiles[size] = slope_quartiles(all_photos, size)
        q25, q75 = quartiles[size]
        slope = float(np.nanmedian(spectrum_slope(images)))
        row = {
            "prior": name, "settings": args.settings, "px": size, "target_top1": f"{top1}/{len(images)}", "all_top1": top1 == len(images),
            "median_logit": round(float(own.median()), 2), "median_slope": round(slope, 3),
            "pool_slope_iqr": [round(q25, 3), round(q75, 3)], "slope_inside_iqr": q25 <= slope <= q75,
            "slope_miss": round(max(q25 - slope, slope - q75, 0.0), 3),
            "frechet": round(frechet_distance(layer_features(net, "pool", images), ref_feats), 2),
            "seconds": round(time.perf_counter() - t0, 1),
        }  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
        to_pil(torch.cat(list(images[: len(classes)]), 2)).save(args.out / f"{Path(name).stem}.png")
    for earlier in args.merge:  # rows written before they named their settings take their run's
        data = json.loads(earlier.read_text())
        rows = [{"settings": data.get("settings", DEFAULT_SETTINGS), **r} for r in data["rows"]] + rows
    chosen = apply_rule(rows)
    summary = {"chosen": chosen, "rows": rows, "settings": args.settings, "classes": classes, "seeds": args.seeds,
               "pool": str(args.pool), "reference_photos": len(photos), "slope_photos": len(all_photos)}  # fmt: skip
    (args.out / "selection.json").write_text(json.dumps(summary, indent=1))
    print(f"chosen by the rule: {chosen}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
