"""Issue 29's sweep: the declared candidates, each run by ``benchmarks/quality.py`` on one half of the classes and one
seed at a time, then one table of them all.

The candidates and their flags are fixed in :data:`CANDIDATES` (BENCHMARKS.md, "Quality 3: the protocol", declared
before any judged figure). Each (candidate, seed) is its own ``quality.py`` run in ``OUT/SPLIT/NAME/seedS``; a run
whose ``results.json`` exists is skipped, so the sweep resumes where it stopped. SqueezeNet top-5 ranks the
candidates on A only; B is run for the default and the chosen ones. Usage:

    OMP_NUM_THREADS=1 python benchmarks/quality_sweep.py run --split A --seeds 0 [--only default eot2 ...] [--out /work/q29]
    python benchmarks/quality_sweep.py table --split A [--out /work/q29]      # Markdown table of what has finished
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PRIOR = "dgn-am:lite0_blocks7_conv_resize"  # the shipped default prior of EfficientNet-Lite0

#: name -> (what it is, quality.py flags beyond the default's). Declared in BENCHMARKS.md before any figure.
CANDIDATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "default": ("the shipped default (lr 0.05, standard transforms, 200 steps, linear schedule)", ()),
    "eot2": ("2 random views per step, standard transforms", ("--eot", "2")),
    "eot4": ("4 random views per step, standard transforms", ("--eot", "4")),
    "harsh_eot2": ("2 random views per step, the harsh transform set", ("--eot", "2", "--transforms", "harsh")),
    "steps150": ("150 steps", ("--steps", "150")),
    "steps300": ("300 steps", ("--steps", "300")),
    "lr_half": ("first step 0.025 (half)", ("--lr-start", "0.025")),
    "lr_double": ("first step 0.1 (double)", ("--lr-start", "0.1")),
    "cosine": ("cosine step schedule", ("--schedule", "cosine")),
}


def run_dir(out: Path, split: str, name: str, seed: int) -> Path:
    return out / split / name / f"seed{seed}"


def run(args) -> int:
    names = args.only or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        sys.exit(f"unknown candidate(s) {', '.join(unknown)}; declared: {', '.join(CANDIDATES)}")
    script = Path(__file__).with_name("quality.py")
    for seed in args.seeds:
        for name in names:
            folder = run_dir(args.out, args.split, name, seed)
            if (folder / "results.json").exists():
                continue
            command = [sys.executable, str(script), PRIOR, "--split", args.split, "--seed", str(seed), "--out", str(folder),
                       "--reuse", "--quiet", *CANDIDATES[name][1]]  # fmt: skip
            print(f"{name} seed {seed}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
            done = subprocess.run(command, stdout=subprocess.DEVNULL)
            if done.returncode:
                print(f"{name} seed {seed}: quality.py exited {done.returncode}", file=sys.stderr)
                return done.returncode
    return 0


def rows(out: Path, split: str) -> list[dict]:
    """One row per candidate with finished seeds: hits pooled over its seeds."""
    table = []
    for name, (what, flags) in CANDIDATES.items():
        seeds, items, seconds = [], [], []
        for folder in sorted((out / split / name).glob("seed*")):
            results = folder / "results.json"
            if not results.exists():
                continue
            record = json.loads(results.read_text())["methods"][PRIOR]
            seeds.append(int(folder.name[4:]))
            items += record["items"]
            seconds.append(record["summary"]["seconds_per_unit"])
        if not items:
            continue
        n = len(items)

        def rate(key: str, k: int) -> float:
            return sum(it[key] <= k for it in items) / n

        table.append({"name": name, "what": what, "flags": " ".join(flags), "seeds": seeds, "images": n, "target_top1": rate("target_rank", 1),
                      "lite1_top5": rate("judge_rank", 5), "lite2_top5": rate("judge2_rank", 5), "oof_top1": rate("oof_rank", 1),
                      "oof_top5": rate("oof_rank", 5), "seconds_per_unit": sorted(seconds)[len(seconds) // 2]})  # fmt: skip
    return table


def table(args) -> int:
    lines = ["| candidate | flags | seeds | images | target top-1 | Lite1 top-5 | Lite2 top-5 | **SqueezeNet top-1 / top-5** | s / unit |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows(args.out, args.split):
        lines.append(f"| {r['name']} | `{r['flags'] or '-'}` | {','.join(map(str, r['seeds']))} | {r['images']} | {r['target_top1']:.0%} | "
                     f"{r['lite1_top5']:.0%} | {r['lite2_top5']:.0%} | **{r['oof_top1']:.0%} / {r['oof_top5']:.0%}** | {r['seconds_per_unit']:.1f} |")
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the candidates' missing (candidate, seed) pairs")
    r.add_argument("--seeds", type=int, nargs="+", default=[0])
    r.add_argument("--only", nargs="+", help="these candidates (default: all, in declared order)")
    t = sub.add_parser("table", help="Markdown table of the finished runs")
    for p in (r, t):
        p.add_argument("--split", choices=("A", "B"), required=True)
        p.add_argument("--out", type=Path, default=Path("/work/q29"))
    args = ap.parse_args(argv)
    return run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    sys.exit(main())
