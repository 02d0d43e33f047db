"""DGN-AM's step settings on a prior, scored without any judge (BENCHMARKS.md, "DGN-AM's step on these priors").

Each variant is a JSON dict of :class:`dgnam.DGNAMConfig` fields, plus two extras tried on the way:
``bound_k`` (clip codes to mean +- k std, inside the prior's own bounds) and ``recon`` (the PPGN-h
reconstruction prior as a penalty, ``-recon * mean(((E(G(h)) - h) / std)^2)``, E = the target's own
layer that the prior inverts, read in the same forward pass). Units: class logits of EfficientNet-Lite0
for a tuning set of classes (``quality.TUNING``, entries 26-33 of its list): not among the 25 classes of
the first quality runs; with ``--classes 50`` quality.py also gives the judge rates without them.
Printed per variant: target top-1, median logit, median spectrum slope, median saturation; a strip of
the images is saved per variant. Usage:

    python benchmarks/dgn_am_step.py PRIOR.safetensors '{"lr_start": 0.05}' '{"lr_start": 0.05, "bn_weight": 0.01}' [--out runs/step]
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
from dgnam.eval.metrics import mean_saturation, spectrum_slope
from dgnam.core.objectives import Objective, units_objective
from dgnam.methods.dgn_am import DGNAMConfig, dgn_am
from dgnam.infra.images import to_pil
from dgnam.core.units import Unit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import CLASSES, TUNING  # noqa: E402



def run_variant(net, gen, classes: list[int], variant: dict, seed: int = 0) -> tuple[dict, torch.Tensor]:
    v = dict(variant)
    w, k = v.pop("recon", 0.0), v.pop("bound_k", None)
    lower, upper = gen.lower.clone(), gen.upper.clone()
    if k is not None:
        gen.set_bounds(lower=torch.maximum(lower, gen.code_mean - k * gen.code_std), upper=torch.minimum(upper, gen.code_mean + k * gen.code_std))
    logit = units_objective([Unit("logits", c) for c in classes])
    layer, seen = gen.config.layer, {}
    handle = gen.register_forward_pre_hook(lambda _m, inputs: seen.__setitem__("code", inputs[0]))

    def score(acts):
        s = logit(acts)
        if w:
            s = s - w * ((acts[layer] - seen["code"]) / gen.code_std).pow(2).flatten(1).mean(1)
        return s

    try:
        r = dgn_am(net, gen, [Unit("logits", c) for c in classes], [seed] * len(classes), DGNAMConfig(**v),
                   objective=Objective(score, logit.layers + ((layer,) if w else ()), "logit"), progress=False)
    finally:
        handle.remove()
        gen.set_bounds(lower=lower, upper=upper)
    with torch.no_grad():
        out = net(r.images)
    own = out[torch.arange(len(classes)), torch.tensor(classes)]
    return {"variant": variant, "target_top1": f"{int((out.argmax(1) == torch.tensor(classes)).sum())}/{len(classes)}",
            "median_logit": round(float(own.median()), 2), "median_slope": round(float(np.nanmedian(spectrum_slope(r.images))), 2),
            "median_saturation": round(float(np.median(mean_saturation(r.images))), 2)}, r.images


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prior", help="a registered prior or a .safetensors file")
    ap.add_argument("variants", nargs="+", type=json.loads, help="JSON dicts of DGNAMConfig fields (+ bound_k, recon)")
    ap.add_argument("--out", type=Path, default=Path("runs/dgn_am_step"))
    args = ap.parse_args(argv)
    net, gen = dgnam.load_net("efficientnet_lite0"), dgnam.load_generator(args.prior)
    classes = [c[0] for c in CLASSES[TUNING]]
    args.out.mkdir(parents=True, exist_ok=True)
    for i, variant in enumerate(args.variants):
        t0 = time.perf_counter()
        record, images = run_variant(net, gen, classes, variant)
        record["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(record), flush=True)
        to_pil(torch.cat(list(images), 2)).save(args.out / f"variant{i}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
