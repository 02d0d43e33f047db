"""Hidden-unit objectives stop the forward pass after their layer: time per forward+backward step
against a full pass that reads the same layer (BENCHMARKS.md, "Speed of DGN-AM").

    OMP_NUM_THREADS=1 python benchmarks/early_stop.py [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import dgnam
from dgnam.core.hooks import capture
from dgnam.core.objectives import run_objective, units_objective
from dgnam.core.units import Unit

CASES = (("efficientnet_lite0", "_blocks.6"), ("vgg16_hed", "conv3_3"))


def time_step(fn, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    fn().sum().backward()
    x.grad = None
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    for net_name, layer in CASES:
        net = dgnam.load_net(net_name)
        objective = units_objective([Unit(layer, 3, "mean")] * 2)
        x = torch.rand(2, 3, 224, 224, requires_grad=True)

        def full():
            with capture(net.model, [layer]) as acts:
                net(x)
            return acts[layer][:, 3].mean((1, 2))

        times = {"early": [], "full": []}
        for _ in range(args.reps):  # alternated, side by side
            times["early"].append(time_step(lambda: run_objective(net, x, objective), x))
            times["full"].append(time_step(full, x))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{net_name} {layer}: early stop {med['early']:.3f} s, full pass {med['full']:.3f} s per fwd+bwd step "
              f"(batch 2, 224 px, median of {args.reps}): {med['full'] / med['early']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
