"""Automated 2AFC psychophysics (Borowski et al. 2021) and faithfulness (Geirhos et al. 2024) per method (issue 18).

For hidden units of EfficientNet-Lite0 (channels spread evenly over each layer, read at the map's
centre, as the paper read them), every method synthesizes ``--seeds`` images that maximize the unit
and as many that minimize it (the negative unit is maximized), each cut to the unit's receptive
field. A subject, a perceptual embedding from a net that took no part in making any image
(``--subject``; default SqueezeNet v1.1 ``fire9``, averaged over space: another architecture family,
another training run), sees the max and min references and two held-out natural queries, one
strongly and one weakly activating, and picks the one closer to the max references
(:func:`dgnam.eval.psychophysics.two_afc_choices`; ``--trials`` query pairs per unit). Natural references
(the unit's 9 strongest and 9 weakest images of the reference split, as in the paper, and the same
number as the synthetic ones) give the ceiling. References and queries come from disjoint photos of
the data (``NaturalImages.groups``: the pool holds many crops of each photo).

Faithfulness: each max image's activations in an earlier layer of the target (half-way to the
unit's layer; averaged over the unit's receptive-field window) are compared with the natural
exemplars of every benchmarked unit of that layer; the score is how often the nearest exemplar set
is the unit's own (chance 1 / units), with a held-out natural image of each unit as the ceiling.

Usage (one thread; about 25-30 min on a loaded 2-core machine with the defaults, the activation passes cached):

    OMP_NUM_THREADS=1 timeout 1800 python benchmarks/psychophysics.py --data /work/pool --out runs/psychophysics

Plumbing check (a minute): ``--units 2 --seeds 1 --steps 2 --max-images 400 --trials 2``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

import dgnam
from dgnam.eval.exemplars import crop_box, exemplar_crops, layer_activations, open_images
from dgnam.core.objectives import receptive_field_box, units_objective
from dgnam.methods.dgn_am import dgn_am
from dgnam.methods.pixel import pixel_am
from dgnam.eval.psychophysics import embed_images, natural_trials, split_references_queries, two_afc_choices, units_faithfulness
from dgnam.infra.images import to_pil
from dgnam.io.write import versions
from dgnam.core.units import Unit


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/work/pool"), help="natural images: a pool (`dgnam pool build`) or an image folder")
    ap.add_argument("--max-images", type=int, default=4000, help="a fixed random subset of the data (one activation pass per layer, cached)")
    ap.add_argument("--net", default="efficientnet_lite0")
    ap.add_argument("--layers", default="_blocks.5,_blocks.10", help="comma-separated hidden layers")
    ap.add_argument("--units", type=int, default=6, help="channels per layer, spread evenly over the layer")
    ap.add_argument("--methods", default="dgn-am,fourier,deepinversion", help="dgn-am (the net's default prior, its shipped settings), fourier, deepinversion")
    ap.add_argument("--generator", help="DGN-AM's prior (default: the net's registered default)")
    ap.add_argument("--seeds", type=int, default=2, help="synthetic references per direction and unit (the paper: 9)")
    ap.add_argument("--steps", type=int, default=80, help="optimization steps of every method (default 80: the CPU budget)")
    ap.add_argument("--trials", type=int, default=5, help="query pairs per unit")
    ap.add_argument("--references", type=int, default=9, help="natural references per direction (the paper: 9)")
    ap.add_argument("--subject", action="append", help="NET:LAYER of a perceptual embedding not involved in making the images "
                    "(repeatable; default squeezenet1_1:fire9 and efficientnet_lite2:pool)")
    ap.add_argument("--k", type=int, default=9, help="natural exemplars per unit for faithfulness")
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--out", type=Path, default=Path("runs/psychophysics"))
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--table", type=Path, help="only print the table of an earlier run's results.json")
    return ap.parse_args(argv)


def spread_channels(channels: int, n: int) -> list[int]:
    """``n`` channel indices spread evenly over ``channels`` (deterministic, no cherry-picking)."""
    return sorted({int(i) for i in np.linspace(0, channels - 1, n + 2)[1:-1].round()})


def method_setup(name: str, target, args):
    """(generator or None, config, prior name) of a method at ``--steps``, through the one resolver."""
    from dgnam.methods.choose import resolve

    choice = resolve(target, args.generator if name == "dgn-am" else None, pixel=None if name == "dgn-am" else name, overrides={"steps": args.steps})
    generator = dgnam.load_generator(choice.generator) if choice.uses_generator else None
    return generator, choice.config, choice.generator


def synthesize(target, generator, config, units, seeds, sign: float, batch_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """Images that maximize ``sign`` x each unit (unit-major, all seeds of a unit together) and the units' activations."""
    jobs = [(u, s) for u in units for s in seeds]
    fast = target.fast([u.layer for u in units])
    images, acts = [], []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        us, ss = [u for u, _ in chunk], [s for _, s in chunk]
        objective = units_objective(us) * sign
        if generator is not None:
            r = dgn_am(fast, generator, us, ss, config, objective=objective, progress=False)
        else:  # DeepInversion matches BatchNorm statistics: the unfused net (pixel_am fuses the others itself)
            r = pixel_am(target, us, ss, config, objective=objective, progress=False)
        images.append(r.images)
        acts.append(sign * r.final.numpy())
    return torch.cat(images), np.concatenate(acts)


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    return [(im.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for im in images]


def mean_sem(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.table:
        print(summary_table(json.loads(args.table.read_text())))
        return 0
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    target = dgnam.load_net(args.net)
    subjects = {s: dgnam.load_net(s.split(":")[0]) for s in (args.subject or ["squeezenet1_1:fire9", "efficientnet_lite2:pool"])}
    if any(net.name == args.net for net in subjects.values()):
        raise SystemExit("a subject must not be the target")
    data = open_images(args.data, max_images=args.max_images)
    ref_idx, query_idx = split_references_queries(len(data), 0.5, seed=0, groups=data.groups)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = list(range(args.seeds))
    record: dict = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "net": args.net, "data": str(args.data),
                    "data_images": len(data), "reference_images": len(ref_idx), "query_images": len(query_idx),
                    "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "subjects": list(subjects), "versions": versions(), "layers": {}}  # fmt: skip
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    for layer in [x.strip() for x in args.layers.split(",") if x.strip()]:
        t0 = time.perf_counter()
        probe = layer_activations(target, layer, data, progress=not args.quiet)
        units = [Unit(layer, c) for c in spread_channels(probe.channels, args.units)]
        log(f"{layer}: activations over {len(data)} images in {time.perf_counter() - t0:.0f} s ({'cached' if probe.cached else 'computed'})")
        size = data.size
        per_unit: dict = {str(u): {} for u in units}
        natural = {}
        for u in units:
            values = probe.values(u)
            trial = natural_trials(values, ref_idx, query_idx, references=args.references, trials=args.trials)
            box = receptive_field_box(target, u, (size, size))
            natural[u] = {name: exemplar_crops(data, getattr(trial, name), box) for name in ("max_refs", "min_refs", "strong", "weak")}
            per_unit[str(u)].update({"receptive_field": list(box) if box else None, "natural_max": float(values.max()), "natural_min": float(values.min()),
                                     "strong_queries": [float(values[i]) for i in trial.strong], "weak_queries": [float(values[i]) for i in trial.weak]})  # fmt: skip
        emb = {s: {u: {k: embed_images(net, s.split(":", 1)[1], v) for k, v in natural[u].items()} for u in units} for s, net in subjects.items()}
        layer_rec: dict = {"units": [str(u) for u in units], "methods": {}, "natural": {}, "per_unit": per_unit}
        record["layers"][layer] = layer_rec  # written after every method: a stopped run keeps what finished
        for s in subjects:
            for n_ref, label in ((args.references, f"natural ({args.references}+{args.references})"), (args.seeds, f"natural ({args.seeds}+{args.seeds})")):
                acc = [two_afc_choices(emb[s][u]["max_refs"][:n_ref], emb[s][u]["min_refs"][:n_ref], emb[s][u]["strong"], emb[s][u]["weak"]).mean() for u in units]
                layer_rec["natural"].setdefault(label, {})[s] = {"accuracy": mean_sem(acc), "per_unit": [round(float(a), 3) for a in acc]}
        for method in methods:
            t1 = time.perf_counter()
            generator, config, prior = method_setup(method, target, args)
            max_images, max_acts = synthesize(target, generator, config, units, seeds, +1.0, args.batch_size)
            min_images, min_acts = synthesize(target, generator, config, units, seeds, -1.0, args.batch_size)
            seconds = time.perf_counter() - t1
            px = tuple(max_images.shape[-2:])
            m_rec: dict = {"prior": prior, "seconds": round(seconds, 1), "image_px": list(px), "twoafc": {}}
            crops_max, crops_min = {}, {}
            for i, u in enumerate(units):
                box = receptive_field_box(target, u, px)
                rows = slice(i * len(seeds), (i + 1) * len(seeds))
                crops_max[u] = [crop_box(im, box) for im in to_uint8(max_images[rows])]
                crops_min[u] = [crop_box(im, box) for im in to_uint8(min_images[rows])]
                nat_max, nat_min = per_unit[str(u)]["natural_max"], per_unit[str(u)]["natural_min"]
                per_unit[str(u)].setdefault("methods", {})[method] = {"max_activation": [round(float(a), 3) for a in max_acts[rows]],
                                                                       "min_activation": [round(float(a), 3) for a in min_acts[rows]],
                                                                       "beyond_natural": float(np.mean(max_acts[rows] > nat_max) / 2 + np.mean(min_acts[rows] < nat_min) / 2)}  # fmt: skip
            for s, net in subjects.items():
                sl = s.split(":", 1)[1]
                acc = []
                for u in units:
                    e_max, e_min = embed_images(net, sl, crops_max[u]), embed_images(net, sl, crops_min[u])
                    acc.append(two_afc_choices(e_max, e_min, emb[s][u]["strong"], emb[s][u]["weak"]).mean())
                m_rec["twoafc"][s] = {"accuracy": mean_sem(acc), "per_unit": [round(float(a), 3) for a in acc]}
            faith = units_faithfulness(target, [u for u in units for _ in seeds], max_images, data, k=args.k, batch_size=args.batch_size)
            m_rec["faithfulness"] = faith["layers"].get(layer)
            layer_rec["faithfulness_natural"] = (faith["layers"].get(layer) or {}).get("natural")
            m_rec["beyond_natural"] = round(float(np.mean([per_unit[str(u)]["methods"][method]["beyond_natural"] for u in units])), 3)
            layer_rec["methods"][method] = m_rec
            (args.out / "results.json").write_text(json.dumps(record, indent=1))
            sheet = [to_pil(im) for im in max_images[:: len(seeds)][:8]] + [to_pil(im) for im in min_images[:: len(seeds)][:8]]
            grid = dgnam_grid(sheet, columns=min(8, len(units)))
            grid.save(args.out / f"{layer.replace('.', '')}_{method}.png")
            log(f"{layer} {method}: {seconds:.0f} s; 2AFC " + ", ".join(f"{s} {m_rec['twoafc'][s]['accuracy'][0]:.3f}" for s in subjects)
                + f"; faithfulness {(m_rec['faithfulness'] or {}).get('accuracy')}")  # fmt: skip
    record["seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "results.json").write_text(json.dumps(record, indent=1))
    print(summary_table(record))
    return 0


def dgnam_grid(images, columns: int, tile: int = 128):
    """Max images (first row block) above min images, one tile per unit (its first seed)."""
    from PIL import Image

    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * tile, rows * tile), "white")
    for i, im in enumerate(images):
        grid.paste(im.resize((tile, tile)), ((i % columns) * tile, (i // columns) * tile))
    return grid


def summary_table(record: dict) -> str:
    """The markdown table of BENCHMARKS.md: 2AFC accuracy per subject and faithfulness, per method, over all layers."""
    layers = [L for L in record["layers"].values() if L.get("methods")]
    subjects = record["subjects"]
    header = ("| references | " + " | ".join(f"2AFC, {s}" for s in subjects)
              + " | faithful: own set nearest (chance) | faithful: rank score (chance 50 %) | past natural range | s / layer |")
    lines = [header, "| --- " * (len(subjects) + 5) + "|"]

    def pooled(key_fn):
        vals = [v for layer in layers for v in key_fn(layer)]
        return mean_sem(vals) if vals else (float("nan"), 0.0)

    first = next(iter(layers[0]["natural"]))
    for label in layers[0]["natural"]:
        cells = []
        for s in subjects:
            m, e = pooled(lambda L, s=s, label=label: L["natural"][label][s]["per_unit"])
            cells.append(f"{100 * m:.0f} ± {100 * e:.0f} %")
        fn = [L.get("faithfulness_natural") or {} for L in layers]
        faith = f"{100 * np.mean([f.get('accuracy', np.nan) for f in fn]):.0f} % ({100 * np.mean([f.get('chance', np.nan) for f in fn]):.0f} %)"
        score = f"{100 * np.mean([f.get('rank_score', np.nan) for f in fn]):.0f} %"
        lines.append(f"| {label} | " + " | ".join(cells) + (f" | {faith} | {score} | | |" if label == first else " | | | | |"))
    for method in [m for m in layers[0]["methods"] if all(m in L["methods"] for L in layers)]:
        cells = []
        for s in subjects:
            m, e = pooled(lambda L, s=s: L["methods"][method]["twoafc"][s]["per_unit"])
            cells.append(f"{100 * m:.0f} ± {100 * e:.0f} %")
        fa = [L["methods"][method]["faithfulness"] or {} for L in layers]
        faith = np.mean([f.get("accuracy", np.nan) for f in fa])
        score = np.mean([f.get("rank_score", np.nan) for f in fa])
        chance = np.mean([f.get("chance", np.nan) for f in fa])
        beyond = np.mean([L["methods"][method]["beyond_natural"] for L in layers])
        secs = np.mean([L["methods"][method]["seconds"] for L in layers])
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {100 * faith:.0f} % ({100 * chance:.0f} %) | {100 * score:.0f} % | {100 * beyond:.0f} % | {secs:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
