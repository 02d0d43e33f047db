"""Speed of DGN-AM on EfficientNet-Lite0 (CPU): seconds per unit for 200 steps at 224 px.

Times the product's own loop, :func:`dgnam.dgn_am` (whitening, clipping, best-image tracking,
transforms when asked), not a copy of it: each measurement runs ``dgn_am`` for ``1`` and for
``1 + steps`` steps on the same batch, and the difference divided by ``steps`` is the time of one
step (set-up, the final forward pass and the first step's warm-up cancel). Plain and BatchNorm-folded
targets alternate within every repeat, so their ratio is measured side by side. Usage:

    python benchmarks/speed.py [--steps 4] [--repeats 3] [--batches 1,8] [--generator NAME|PATH] [--transforms none|standard] [--json out.json]

With ``--settings`` it times DGNAMConfig settings instead, side by side on the fast target at the prior's resolved
config (each setting beside ``default`` within every repeat), and gives bf16's relative error of the target's
logits against fp32 on the same generated images (median and max over the batch's logits of the units):

    python benchmarks/speed.py --settings precision=bf16 track_every=10 precision=bf16,track_every=10 --generator lite0_blocks7_conv_resize
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time

import torch

import dgnam
from dgnam.generators.prior import PriorConfig, PriorGenerator
from dgnam.methods.choose import resolve
from dgnam.methods.dgn_am import dgn_am
from dgnam.core.units import Unit


def make_generator(name: str | None):
    if name:
        return dgnam.load_generator(name)
    gen = PriorGenerator(PriorConfig()).eval()  # the default architecture; speed does not depend on the weights
    for p in gen.parameters():
        p.requires_grad_(False)
    gen.set_code_stats(torch.full((1280,), 0.3), torch.full((1280,), 0.3), torch.zeros(1280))
    return gen


def time_dgn_am(target, gen, batch: int, steps: int, transforms: str) -> float:
    """Seconds of one ``dgn_am`` step at this batch size: (T(1 + steps) - T(1)) / steps."""
    units = [Unit("logits", i * 37 % 1000) for i in range(batch)]
    seeds = list(range(batch))
    times = []
    for n in (1, 1 + steps):
        t0 = time.perf_counter()
        dgn_am(target, gen, units, seeds, resolve(target, gen, overrides={"steps": n, "transforms": transforms}).config, progress=False)
        times.append(time.perf_counter() - t0)
    return (times[1] - times[0]) / steps


def parse_setting(text: str) -> dict:
    """``precision=bf16,track_every=10`` -> {"precision": "bf16", "track_every": 10} (numbers as numbers)."""
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def bf16_relative_error(target, gen, batch: int) -> dict:
    """The target's logits of the units on the same generated images, under bf16 autocast against fp32."""
    units = [i * 37 % 1000 for i in range(batch)]
    with torch.no_grad():
        images = gen(gen.clip(gen.random_code(list(range(batch)))))
        exact = target(images)[range(batch), units]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = target(images).float()[range(batch), units]
    rel = ((low - exact).abs() / exact.abs().clamp_min(1e-6)).tolist()
    return {"images": batch, "median_relative_error": round(statistics.median(rel), 5), "max_relative_error": round(max(rel), 5)}


def time_settings(args, gen) -> dict:
    """Seconds of one ``dgn_am`` step per setting, alternating with the default within every repeat."""
    target = dgnam.load_net("efficientnet_lite0").fast(["logits"])
    settings = {"default": {}, **{text: parse_setting(text) for text in args.settings}}
    rows = []
    for b in map(int, args.batches.split(",")):
        units, seeds = [Unit("logits", i * 37 % 1000) for i in range(b)], list(range(b))
        configs = {name: resolve(target, gen, overrides={**extra}).config for name, extra in settings.items()}
        for config in configs.values():  # warm-up of each path (oneDNN's bf16 kernels are chosen on first use)
            dgn_am(target, gen, units, seeds, dataclasses.replace(config, steps=1), progress=False)
        times = {name: [] for name in configs}
        for _ in range(args.repeats):
            for name, config in configs.items():
                pair = []
                for n in (1, 1 + args.steps):
                    t0 = time.perf_counter()
                    dgn_am(target, gen, units, seeds, dataclasses.replace(config, steps=n), progress=False)
                    pair.append(time.perf_counter() - t0)
                times[name].append((pair[1] - pair[0]) / args.steps)
        base = statistics.median(times["default"])
        for name, ts in times.items():
            ratios = [d / t for d, t in zip(times["default"], ts)]
            rows.append({"batch": b, "setting": name, "median_step_s": round(statistics.median(ts), 4), "s_per_unit_200_steps": round(200 * statistics.median(ts) / b, 2),
                         "speedup_vs_default": round(base / statistics.median(ts), 2), "speedup_per_repeat": [round(r, 2) for r in ratios]})  # fmt: skip
    return {"rows": rows, "bf16_logits": bf16_relative_error(target, gen, max(map(int, args.batches.split(","))))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--generator")
    ap.add_argument("--transforms", default="none", choices=["none", "standard"])
    ap.add_argument("--json")
    ap.add_argument("--settings", nargs="+", help="DGNAMConfig settings to time beside the default, e.g. precision=bf16 track_every=10")
    args = ap.parse_args()
    if args.settings:
        gen = make_generator(args.generator)
        record = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                  "generator": args.generator, "target": "efficientnet_lite0 224 px (fast form)", "steps": args.steps, "repeats": args.repeats,
                  **time_settings(args, gen)}  # fmt: skip
        print(json.dumps(record, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(record, f, indent=1)
        return
    plain = dgnam.load_net("efficientnet_lite0")
    forms = {"plain": plain, "fast": plain.fast(["logits"])}  # fast: what `dgnam visualize` uses (BatchNorm folded, channels-last)
    gen = make_generator(args.generator)
    rows = []
    for b in map(int, args.batches.split(",")):
        dgn_am(forms["fast"], gen, [Unit("logits", 0)] * b, list(range(b)), resolve(plain, gen, overrides={"steps": 1}).config, progress=False)  # warm-up
        step_s: dict[str, list[float]] = {name: [] for name in forms}
        for _ in range(args.repeats):  # the forms alternate: a noisy machine slows both alike
            for name, target in forms.items():
                step_s[name].append(time_dgn_am(target, gen, b, args.steps, args.transforms))
        for name in forms:
            s = statistics.median(step_s[name])
            rows.append({"batch": b, "target_form": name, "median_step_s": round(s, 4), "s_per_unit_200_steps": round(200 * s / b, 2),
                         "steps_s": [round(v, 4) for v in step_s[name]]})  # fmt: skip
        ratios = [p / f for p, f in zip(step_s["plain"], step_s["fast"])]
        rows.append({"batch": b, "fast_speedup_median": round(statistics.median(ratios), 2), "fast_speedup_per_repeat": [round(r, 2) for r in ratios]})
    record = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "generator_px": gen.output_size[0], "target": "efficientnet_lite0 224 px", "loop": "dgnam.dgn_am",
              "transforms": args.transforms, "steps": args.steps, "repeats": args.repeats, "rows": rows}  # fmt: skip
    print(json.dumps(record, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
