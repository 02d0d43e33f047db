"""Speed of DGN-AM on EfficientNet-Lite0 (CPU): seconds per unit for 200 steps at 224 px.

Measures a few steps per configuration and reports the median step time, extrapolated to 200 steps
(the per-step cost is constant: same shapes every step). Also splits a step into generator and
target time. Usage:

    python benchmarks/speed.py [--steps 5] [--batches 1,8,32] [--generator NAME|PATH] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import dgnam
from dgnam.generators.prior import PriorConfig, PriorGenerator
from dgnam.objectives import run_objective, units_objective
from dgnam.optimize import DGNAMConfig, dgn_am_step
from dgnam.units import Unit


def make_generator(name: str | None):
    if name:
        return dgnam.load_generator(name)
    gen = PriorGenerator(PriorConfig()).eval()  # the shipped architecture; speed does not depend on the weights
    for p in gen.parameters():
        p.requires_grad_(False)
    gen.set_code_stats(torch.full((1280,), 0.3), torch.full((1280,), 0.3), torch.zeros(1280))
    return gen


def time_steps(target, gen, batch: int, steps: int) -> dict:
    units = [Unit("logits", i * 37 % 1000) for i in range(batch)]
    objective = units_objective(units)
    code = gen.clip(gen.random_code(list(range(batch))))
    cfg = DGNAMConfig()
    t_gen, t_target, t_total = [], [], []
    for step in range(steps + 1):  # the first step warms up and is not counted
        t0 = time.perf_counter()
        code = code.detach().requires_grad_(True)
        images = gen(code)
        t1 = time.perf_counter()
        acts = run_objective(target, images, objective)
        (g_img,) = torch.autograd.grad(acts.sum(), images)
        t2 = time.perf_counter()
        (grad,) = torch.autograd.grad(images, code, g_img)
        with torch.no_grad():
            code = dgn_am_step(code, grad, cfg.lr_at(step), cfg.decay, (gen.lower, gen.upper))
        t3 = time.perf_counter()
        if step:
            t_gen.append((t1 - t0) + (t3 - t2))
            t_target.append(t2 - t1)
            t_total.append(t3 - t0)
    step_s = statistics.median(t_total)
    return {
        "batch": batch,
        "median_step_s": round(step_s, 4),
        "generator_share": round(statistics.median(t_gen) / step_s, 3),
        "target_share": round(statistics.median(t_target) / step_s, 3),
        "s_per_unit_200_steps": round(200 * step_s / batch, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--generator")
    ap.add_argument("--json")
    args = ap.parse_args()
    plain = dgnam.load_net("efficientnet_lite0")
    fast = plain.fast(["logits"])  # what `dgnam visualize` uses: BatchNorm folded, channels-last
    gen = make_generator(args.generator)
    rows = []
    for b in args.batches.split(","):  # plain and fast side by side, so their ratio is fair on a noisy machine
        for name, target in (("plain", plain), ("fast", fast)):
            rows.append({"target_form": name, **time_steps(target, gen, int(b), args.steps)})
    record = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "generator_px": gen.output_size[0], "target": "efficientnet_lite0 224 px", "rows": rows}
    print(json.dumps(record, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
