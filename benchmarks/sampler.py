"""PPGN-h sampler settings on a prior, scored without any judge (BENCHMARKS.md, "Sampler settings").

Each variant is a JSON dict of :class:`dgnam.methods.ppgn.SampleConfig` fields. Units: class logits of
EfficientNet-Lite0 for the tuning classes of ``benchmarks/dgn_am_step.py`` (entries 26-33 of the quality
benchmark's list, which ``benchmarks/quality.py --classes 25`` does not report). Every class gets
``--chains`` chains (seeds 0, 1, ...) and ``--samples`` kept states. Printed per variant, all from the
target and the images only (never a judge, whose figures would then mean nothing):

- target top-1: how often EfficientNet-Lite0 ranks the class first over all samples;
- median p(y | x) of the samples under the target;
- diversity: mean 1 - cos between a class's samples in the target's pooled features (``pool``), and in
  pixels (each image minus its mean), averaged over classes;
- median spectrum slope and saturation of the samples.

A strip of each variant's samples is saved (rows: classes). Usage:

    python benchmarks/sampler.py PRIOR '{}' '{"eps3": 0.1}' '{"eps1": 0.1}' [--samples 4 --chains 2] [--out runs/sampler]
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
from dgnam.eval.metrics import diversity, image_diversity, mean_saturation, spectrum_slope
from dgnam.core.hooks import capture
from dgnam.infra.images import to_pil
from dgnam.methods.ppgn import SampleConfig, sample
from dgnam.core.units import Unit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import CLASSES, TUNING  # noqa: E402


def score_samples(net, images: torch.Tensor, classes: list[int]) -> dict:
    """Target-only scores of (classes, samples, 3, H, W) images; see the module docstring."""
    n, s = images.shape[:2]
    flat = images.flatten(0, 1)
    with torch.no_grad(), capture(net.model, ["pool"]) as acts:
        logits = net(flat)
    labels = torch.tensor(classes).repeat_interleave(s)
    prob = logits.softmax(1)[torch.arange(len(flat)), labels]
    feats = acts["pool"].flatten(1).view(n, s, -1)
    return {
        "target_top1": round(float((logits.argmax(1) == labels).float().mean()), 3),
        "median_p": round(float(prob.median()), 3),
        "diversity_features": round(diversity([f for f in feats]), 3),
        "diversity_pixels": round(image_diversity({str(c): images[i] for i, c in enumerate(classes)})["pixels"], 3),
        "median_slope": round(float(np.nanmedian(spectrum_slope(flat))), 2),
        "median_saturation": round(float(np.median(mean_saturation(flat))), 2),
    }


def run_variant(net, gen, classes: list[int], variant: dict, samples: int, chains: int) -> tuple[dict, torch.Tensor]:
    config = SampleConfig.for_samples(samples, chains, **variant)
    units = [Unit("logits", c) for c in classes for _ in range(chains)]
    seeds = [k for _ in classes for k in range(chains)]
    encoder = gen.config.layer if getattr(gen, "config", None) is not None and gen.config.encoder == net.name else None
    r = sample(net, gen, units, seeds, config, encoder=encoder, progress=False)
    # (classes * chains, S, ...) -> (classes, chains * S, ...), the first `samples` of each class
    images = r.images.view(len(classes), chains * r.images.shape[1], *r.images.shape[2:])[:, :samples]
    return {"variant": variant, **score_samples(net, images, classes)}, images


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prior", help="a registered prior or a .safetensors file")
    ap.add_argument("variants", nargs="+", type=json.loads, help="JSON dicts of SampleConfig fields ('{}': the defaults)")
    ap.add_argument("--samples", type=int, default=4, help="samples kept per class")
    ap.add_argument("--chains", type=int, default=2, help="chains per class")
    ap.add_argument("--out", type=Path, default=Path("runs/sampler"))
    args = ap.parse_args(argv)
    gen = dgnam.load_generator(args.prior)
    net = dgnam.load_net("efficientnet_lite0")
    classes = [c[0] for c in CLASSES[TUNING]]
    args.out.mkdir(parents=True, exist_ok=True)
    for i, variant in enumerate(args.variants):
        t0 = time.perf_counter()
        record, images = run_variant(net, gen, classes, variant, args.samples, args.chains)
        record["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(record), flush=True)
        to_pil(torch.cat([torch.cat(list(row), 2) for row in images], 1)).save(args.out / f"variant{i}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
