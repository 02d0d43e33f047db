"""Export a trained prior into the package with its model card.

    python scripts/ship_prior.py TRAIN_DIR NAME [--step N] [--quality runs/quality/results.json --method dgn-am:PATH]

Writes ``src/dgnam/data/NAME.safetensors`` (fp16 weights, config and training summary in the metadata)
and ``src/dgnam/data/NAME.md`` (the model card: data, command, settings, losses, held-out
reconstruction quality, the quality benchmark's figures when given), and prints the sha256 that the
registry entry (``dgnam/generators/registry.py``) must carry.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from dgnam.generators.prior import load_prior, save_prior
from dgnam.train.checkpoint import load_checkpoint
from dgnam.train.trainer import TrainConfig, load_trained

DATA = Path(__file__).resolve().parents[1] / "src" / "dgnam" / "data"


def training_summary(train_dir: Path, step: int | None = None) -> dict:
    """Steps, last logged losses (median of the last 50 steps) and the held-out evaluations, up to
    ``step`` (default: the checkpoint's)."""
    rows = list(csv.DictReader(open(train_dir / "log.csv")))
    if step is not None:
        rows = [r for r in rows if int(r["step"]) <= step]
    if not rows:
        raise SystemExit(f"{train_dir}/log.csv is empty")
    last = rows[-50:]

    def median(key: str) -> float | None:
        values = sorted(float(r[key]) for r in last if r.get(key))
        return round(values[len(values) // 2], 5) if values else None

    heldout = [
        {"step": int(r["step"]), "psnr": round(float(r["heldout_psnr"]), 2), "code_cos": round(float(r["heldout_code_cos"]), 3)}
        for r in rows
        if r.get("heldout_psnr")
    ]
    state = load_checkpoint(train_dir / "checkpoint.pt")
    seconds, segments = train_time(rows)
    return {
        "steps": int(state["step"]) if step is None else int(rows[-1]["step"]),
        "train_seconds": seconds,
        "segments": segments,
        "final_losses": {k: median(k) for k in ("pix", "feat", "adv", "loss_d")},
        "heldout": heldout,
        "config": state["config"],
    }


def train_time(rows: list[dict]) -> tuple[float, int]:
    """Wall time of the logged steps over every resumed segment (each process logs seconds from its
    own start), and the number of segments."""
    total, last, segments = 0.0, 0.0, 1
    for r in rows:
        seconds = float(r["seconds"])
        if seconds < last:  # a resumed run starts counting again
            total, segments = total + last, segments + 1
        last = seconds
    return total + last, segments


def quality_summary(path: Path | None, method: str | None) -> dict | None:
    if path is None:
        return None
    record = json.loads(path.read_text())
    methods = record["methods"]
    if method not in methods:
        raise SystemExit(f"{path} has no method {method!r}; it has {', '.join(methods)}")
    return {
        "command": record["command"],
        "classes": record["settings"]["classes"],
        "steps": record["settings"]["steps"],
        "this prior (DGN-AM)": methods[method]["summary"],
        **{(f"this prior + BatchNorm-statistics term (`{name.split(':')[0]}`)" if name.split(":", 1)[-1] == method.split(":", 1)[-1] else name): rec["summary"]
           for name, rec in methods.items() if name != method},
    }


def card_text(name: str, sha: str, size: int, train_dir: Path, summary: dict, quality: dict | None, pool_card: dict | None,
              dgn_am: dict | None = None, limits: tuple[str, ...] = ()) -> str:
    cfg = TrainConfig.from_dict(summary["config"])
    held = summary["heldout"][-1] if summary["heldout"] else {}
    lines = [
        f"# Model card: `{name}`",
        "",
        f"A DeePSiM-style generator prior for EfficientNet-Lite0, trained by dgnam on this project's offline "
        f"natural-image pool. sha256 `{sha}`, {size / 1e6:.1f} MB (fp16 weights).",
        "",
        "## What it inverts",
        f"- encoder `{cfg.prior.encoder}`, layer `{cfg.prior.layer}`, code shape {list(cfg.prior.code_shape)}; "
        f"output {cfg.prior.output_size} px RGB in [0, 1] ({cfg.prior.output} output)",
        f"- clipping bounds: [min(0, data minimum), mean + {cfg.prior.bound_sigmas} std] per code unit over the training codes",
        f"- DGN-AM settings it carries (applied unless overridden): {json.dumps(dgn_am) if dgn_am else 'none (the paper’s)'}",
        "",
        "## Data",
    ]
    if pool_card:
        sources = pool_card.get("sources", "?")
        if isinstance(sources, list):  # the pool card's per-source records: name and image count only
            sources = f"{len(sources)} (" + ", ".join(f"{x.get('name', '?')}: {x.get('n_images', '?')}" for x in sources) + ")"
        lines.append(
            f"- `dgnam pool build` pool: {pool_card.get('n_images')} images at {pool_card.get('size')} px from "
            f"{sources} sources, {len(pool_card.get('train_idx', []))} train / "
            f"{len(pool_card.get('heldout_idx', []))} held out (split by original). It has only a few hundred originals "
            "(wallpapers, sample photos, video frames, Tux Paint animal/object cut-outs on photo backgrounds): "
            "far less varied than ImageNet. Licences per source in the pool's POOL.md."
        )
    lines += [
        "",
        "## Training",
        f"- command: `dgnam train-generator --pool POOL --out {train_dir.name} --config configs/priors/{name}.json"
        + (f" --until {summary['steps']}`: the step-{summary['steps']} checkpoint of a {cfg.steps}-step schedule (the lr and loss "
           "stages follow the full schedule; chosen among the run's checkpoints by DGN-AM's target activation and image statistics on tuning "
           "classes, never by a judge; see BENCHMARKS.md)"
           if summary["steps"] < cfg.steps else "`"),
        f"- {summary['steps']} steps of batch {cfg.batch_size}, {summary['train_seconds'] / 60:.0f} min on the 2-core CPU machine "
        "(shared with other jobs; one thread"
        + (f"; in {summary['segments']} segments, resumed exactly from checkpoints)" if summary.get("segments", 1) > 1 else ")"),
        f"- losses: pixel MSE (weight {cfg.w_pix}), comparator feature MSE at `{cfg.comparator_layer}` of the encoder "
        f"(weight {cfg.w_feat}, from {cfg.feat_start:.0%} of the steps), adversarial with a code-conditioned "
        f"discriminator (weight {cfg.w_adv}, from {cfg.adv_start:.0%}); Adam lr {cfg.lr} cosine to x{cfg.lr_final}, "
        f"gradient norm clipped at {cfg.grad_clip}",
        f"- last 50 steps (median): {json.dumps(summary['final_losses'])}",
        "",
        "## Reconstruction of held-out pool images",
        f"- at step {held.get('step')}: PSNR {held.get('psnr')} dB, cos(E(G(E(x))), E(x)) {held.get('code_cos')}",
        "- history: " + ", ".join(f"{h['step']}: {h['psnr']} dB / {h['code_cos']}" for h in summary["heldout"]),
    ]
    if quality:
        lines += ["", "## Quality (benchmarks/quality.py)", f"`{quality['command']}` ({quality['classes']} classes, {quality['steps']} steps; "
                  "the prior file named there holds this file's weights). Judge: EfficientNet-Lite1, never optimized against.", ""]
        lines += ["| method | target top-1 | judge top-1 | judge top-5 | 2nd judge (Lite2) top-1 / top-5 | median rel. act. | median spectrum slope | saturation |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for method, s in quality.items():
            if isinstance(s, dict):
                second = f"{s['judge2_top1']:.0%} / {s['judge2_top5']:.0%}" if "judge2_top1" in s else "-"
                lines.append(
                    f"| {method} | {s['target_top1']:.0%} | {s['judge_top1']:.0%} | {s['judge_top5']:.0%} | {second} | "
                    f"{s['relative_activation_median']} | {s['spectrum_slope_median']} | {s['saturation_mean']} |"
                )
    lines += ["", "## Limits", f"- Trained for {summary['train_seconds'] / 60:.0f} minutes on a CPU on a small pool: blurry, low-detail images; "
              "see BENCHMARKS.md for how it compares with the pixel-space baselines."]
    lines += [f"- {text}" for text in limits]
    if dgn_am:
        lines.append(f"- DGN-AM through it uses the settings it carries ({json.dumps(dgn_am)}); the paper's step of 8 drives the codes "
                     "to their bounds and the images to saturated blobs (BENCHMARKS.md).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train_dir", type=Path)
    ap.add_argument("name")
    ap.add_argument("--quality", type=Path, help="results.json of benchmarks/quality.py")
    ap.add_argument("--method", help="this prior's method key in that results.json (e.g. dgn-am:/path/prior.safetensors)")
    ap.add_argument("--pool", type=Path, default=Path("/work/pool"), help="the pool it was trained on (for the card)")
    ap.add_argument("--out-dir", type=Path, default=DATA, help="where the .safetensors and .md go (default: the package's data folder)")
    ap.add_argument("--dgn-am", type=json.loads, default=None, metavar="JSON",
                    help='measured DGN-AM settings the prior carries (e.g. \'{"lr_start": 0.05}\'): dgnam_config applies them')
    ap.add_argument("--limit", action="append", default=[], help="one more line for the card's Limits (repeatable)")
    ap.add_argument("--step", type=int, help="ship the generator the run exported at this step (TrainConfig.export_every: "
                    "TRAIN_DIR/priors/stepNNNNNN.safetensors) instead of its last checkpoint")
    args = ap.parse_args(argv)
    summary = training_summary(args.train_dir, args.step)
    if args.step is None:
        gen = load_trained(args.train_dir / "checkpoint.pt")
    else:
        exported = args.train_dir / "priors" / f"step{args.step:06d}.safetensors"
        if not exported.exists():
            raise SystemExit(f"{exported} does not exist: the run exported {sorted(p.name for p in (args.train_dir / 'priors').glob('*.safetensors'))}")
        gen = load_prior(exported)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"{args.name}.safetensors"
    # the file's training record: steps, time, losses, held-out quality (the segment count is for the card)
    extra = {"training": {k: v for k, v in summary.items() if k not in ("config", "segments")}, "name": args.name}
    if args.dgn_am:
        extra["dgn_am"] = args.dgn_am
    sha = save_prior(gen, out, extra)
    pool_card = json.loads((args.pool / "card.json").read_text()) if (args.pool / "card.json").exists() else None
    quality = quality_summary(args.quality, args.method)
    (args.out_dir / f"{args.name}.md").write_text(card_text(args.name, sha, out.stat().st_size, args.train_dir, summary, quality, pool_card, args.dgn_am, tuple(args.limit)))
    print(f"{out}\nsha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
