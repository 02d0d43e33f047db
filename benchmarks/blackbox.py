"""Gradient-free search against gradient DGN-AM at the same budget of image evaluations.

Every method maximizes units of EfficientNet-Lite0 through one generator prior, spending the same
number of image evaluations per unit and seed (``--evals``):

- ``gradient``: DGN-AM (the paper's update), ``evals - 1`` steps plus the final image. One step is
  counted as one evaluation although it is a forward *and* a backward pass (about 3x the compute of
  a forward pass); a recorded neuron offers no backward pass at all.
- ``cmaes``: CMA-ES (``dgnam.methods.blackbox.cmaes_am``, cma's default population, 25 for a 1280-d code).
- ``ga``: the XDream-style genetic algorithm (``dgnam.methods.blackbox.ga_am``, population 40).

Score per unit and seed: the best activation the method reached within the budget, divided by the
best any method reached for that unit from that seed (1.0 = the winner), averaged over seeds. The table gives these normalized scores per
unit, their median per method, and the published anchors for comparison (AlexNet fc8, same
normalization, as quoted in issue 6: GA ~0.31, CMA-ES ~0.70, sphere CMA ~0.87; dgnam has no sphere
CMA). Writes ``results.json`` (settings, versions, per unit raw and normalized scores, seconds),
``table.md`` and, per method, a run folder (PNGs, best/, contact sheet, results.json) as
``dgnam visualize`` writes. Usage:

    python benchmarks/blackbox.py [--generator NAME_OR_FILE] [--evals 1000] [--classes 10] [--hidden 0]
        [--seeds 0] [--methods gradient,cmaes,ga] [--batch-size 8] [--out runs/blackbox]

Quick check of the plumbing (seconds): ``--classes 2 --evals 40``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import dgnam
from dgnam.io.write import RunWriter, versions
from dgnam.methods.choose import resolve
from dgnam.run import visualize
from dgnam.core.units import Unit

TARGET = "efficientnet_lite0"

#: (ImageNet index, name): the first ten classes of benchmarks/quality.py (animals, objects, food, scenes).
CLASSES: tuple[tuple[int, str], ...] = (
    (292, "tiger"), (779, "school bus"), (945, "bell pepper"), (980, "volcano"), (1, "goldfish"),
    (504, "coffee mug"), (949, "strawberry"), (973, "coral reef"), (22, "bald eagle"), (546, "electric guitar"),
)  # fmt: skip

#: Hidden channels, read at the centre of the map as in the paper; spread over depth.
HIDDEN: tuple[str, ...] = ("_blocks.15:37", "_blocks.15:200", "_blocks.12:10", "_blocks.10:50", "_blocks.6:20")

#: Median score / best of all methods on AlexNet fc8, as quoted in issue 6.
ANCHORS = {"ga": 0.31, "cmaes": 0.70, "sphere-cmaes": 0.87}

BUDGET_NOTE = ("budget = image evaluations per unit and seed; gradient DGN-AM spends one per step "
               "(a forward+backward pass counted as one evaluation) plus one for its final image")  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", help="generator prior: a registered name or a .safetensors file; "
                    f"default: the registered default prior of {TARGET}")  # fmt: skip
    ap.add_argument("--evals", type=int, default=1000, help="image evaluations per unit and seed, for every method")
    ap.add_argument("--classes", type=int, default=len(CLASSES), help=f"class logits: the first N of {len(CLASSES)}")
    ap.add_argument("--hidden", type=int, default=0, help=f"hidden units too: the first N of {len(HIDDEN)} ({', '.join(HIDDEN)})")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (each unit from each seed)")
    ap.add_argument("--methods", default="gradient,cmaes,ga", help="comma-separated subset of gradient,cmaes,ga")
    ap.add_argument("--batch-size", type=int, default=8, help="units x seeds optimized together")
    ap.add_argument("--out", type=Path, default=Path("runs/blackbox"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if not set(args.methods) <= {"gradient", "cmaes", "ga"} or not args.methods:
        ap.error("--methods is a comma-separated subset of gradient,cmaes,ga")
    if not 0 <= args.classes <= len(CLASSES) or not 0 <= args.hidden <= len(HIDDEN) or args.classes + args.hidden == 0:
        ap.error(f"--classes 0-{len(CLASSES)} and --hidden 0-{len(HIDDEN)}, at least one unit")
    if args.generator is None:
        from dgnam.methods.choose import default_generator

        args.generator = default_generator(TARGET)
        if args.generator is None:
            ap.error(f"no default prior is registered for {TARGET}: give --generator NAME or FILE.safetensors")
    return args


def method_config(method: str, evals: int, generator=None):
    """The config that spends ``evals`` image evaluations per unit and seed, as ``dgnam visualize
    --optimizer METHOD --evals N`` resolves it (DGN-AM: the generator's measured settings, with
    steps = evals - 1: that many forward+backward passes, then one forward for the final image)."""
    # without random transforms, which would add a forward pass per step (the activation is tracked without them)
    overrides = {"evals": evals} if method != "gradient" else {"evals": evals, "transforms": "none"}
    return resolve(TARGET, generator, optimizer=method, overrides=overrides).config


def normalized_scores(best: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each method's best score per item over the best of all methods for that item (NaN where the
    best of all is not positive: a ratio would not rank)."""
    top = np.max(np.stack(list(best.values())), axis=0)
    safe = np.where(top > 0, top, np.nan)
    return {m: b / safe for m, b in best.items()}


def markdown_table(units: list[str], labels: list[str], norm: dict[str, np.ndarray], best: dict[str, np.ndarray], medians: dict) -> str:
    methods = list(norm)
    lines = ["| unit | " + " | ".join(f"{m} (best)" for m in methods) + " |", "| --- |" + " --- |" * len(methods)]
    for i, (u, label) in enumerate(zip(units, labels)):
        cells = [f"{norm[m][i]:.2f} ({best[m][i]:.2f})" if np.isfinite(norm[m][i]) else f"- ({best[m][i]:.2f})" for m in methods]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| **median** | " + " | ".join("-" if medians[m] is None else f"**{medians[m]:.2f}**" for m in methods) + " |")
    anchors = ", ".join(f"{k} ~{v:.2f}" for k, v in ANCHORS.items())
    return "\n".join(lines) + f"\n\nScore: best activation / best of all methods for the unit (raw best in brackets); {BUDGET_NOTE}.\n" \
        f"Published anchors (AlexNet fc8, same normalization, as quoted in issue 6): {anchors}.\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    net = dgnam.load_net(TARGET).to(args.device)
    texts = [f"logits:{idx}" for idx, _ in CLASSES[: args.classes]] + list(HIDDEN[: args.hidden])
    units = dgnam.parse_units(texts, net.categories)
    generator = dgnam.load_generator(args.generator).to(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {"command": shlex.join([sys.executable, *sys.argv]), "net": TARGET, "generator": args.generator,
                "evals": args.evals, "seeds": args.seeds, "units": texts, "batch_size": args.batch_size,
                "device": args.device, "budget": BUDGET_NOTE}  # fmt: skip
    best, final, seconds, configs = {}, {}, {}, {}
    for method in args.methods:
        config = method_config(method, args.evals, generator)
        t0 = time.perf_counter()
        result = visualize(net, units, seeds=args.seeds, generator=generator, config=config,
                           batch_size=args.batch_size, progress=not args.quiet)  # fmt: skip
        seconds[method] = time.perf_counter() - t0
        best[method], final[method] = result.best.numpy(), result.final.numpy()
        configs[method] = result.config
        writer = RunWriter(args.out / method, {**settings, "method": f"{method}:{args.generator}", "config": result.config}, net.categories)
        writer.add(result)
        writer.finish(requested=len(units) * len(args.seeds))
        print(f"{method}: {seconds[method]:.0f} s, median best {np.median(best[method]):.3f}", file=sys.stderr)
    norm = normalized_scores(best)
    n_seeds = len(args.seeds)
    # items are unit-major (all seeds of a unit are neighbours): average each unit over its seeds
    with warnings.catch_warnings():  # a unit whose best is not positive anywhere stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        per_unit = {m: np.nanmean(v.reshape(len(units), n_seeds), axis=1) for m, v in norm.items()}
    best_unit = {m: v.reshape(len(units), n_seeds).mean(axis=1) for m, v in best.items()}
    medians = {m: (round(float(np.nanmedian(v)), 4) if np.isfinite(v).any() else None) for m, v in per_unit.items()}
    labels = [f"{u} {net.categories[u.index].split(',')[0]}" if u.layer == "logits" else str(u) for u in units]
    record = {
        **settings,
        "versions": versions(),
        "anchors_alexnet_fc8": ANCHORS,
        "methods": {m: {"median_normalized": medians[m], "seconds_per_unit_seed": round(seconds[m] / (len(units) * n_seeds), 2),
                        "config": configs[m]} for m in args.methods},  # fmt: skip
        "units": [
            {"unit": str(u), "label": labels[i],
             **{m: {"normalized": None if not np.isfinite(per_unit[m][i]) else round(float(per_unit[m][i]), 4),
                    "best": [round(float(x), 4) for x in best[m].reshape(len(units), n_seeds)[i]],
                    "final": [round(float(x), 4) for x in final[m].reshape(len(units), n_seeds)[i]]} for m in args.methods}}
            for i, u in enumerate(units)
        ],  # fmt: skip
    }
    (args.out / "results.json").write_text(json.dumps(record, indent=1))
    table = markdown_table([str(u) for u in units], labels, per_unit, best_unit, medians)
    (args.out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
