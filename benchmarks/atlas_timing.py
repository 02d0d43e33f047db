"""Time an atlas build from the unit records it wrote, and project larger builds.

Each ``unit.json`` records its batch's wall time and process (CPU) time per unit (``seconds``,
``cpu_seconds``); the activation cache cards in ``SITE/cache`` record each pass over the data. This
script prints medians per layer kind (class logits vs hidden units) and projects a build of
``--hidden`` hidden units plus ``--logits`` class units on the same machine. Usage:

    dgnam atlas efficientnet_lite0 --layers logits,_blocks.15 --units logits:0-7,_blocks.15:0-7 --data DIR --out site
    python benchmarks/atlas_timing.py site --hidden 64 --logits 100
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("site")
    p.add_argument("--hidden", type=int, default=64, help="hidden units of the projected build (default 64)")
    p.add_argument("--logits", type=int, default=100, help="class units of the projected build (default 100)")
    args = p.parse_args()
    site = Path(args.site)
    records = [json.loads(f.read_text()) for f in sorted(site.glob("units/*/*/unit.json"))]
    if not records:
        raise SystemExit(f"{site}: no unit.json (build the atlas first)")
    kinds: dict[str, list[dict]] = {"logits": [], "hidden": []}
    for r in records:
        kinds["logits" if r.get("label") else "hidden"].append(r)
    passes = [json.loads(c.read_text()) for c in sorted((site / "cache").glob("*/*.json"))]
    print(f"{len(records)} units; activation passes: " + ", ".join(f"{c['layer']} {c['seconds']:.1f} s" for c in passes))
    medians = {}
    for kind, rs in kinds.items():
        if rs:
            wall = statistics.median(r["seconds"] for r in rs)
            cpu = statistics.median(r.get("cpu_seconds", r["seconds"]) for r in rs)
            medians[kind] = (wall, cpu)
            print(f"{kind:>7}: {len(rs)} units, median {wall:.1f} s wall, {cpu:.1f} s process time per unit")
    if set(medians) == {"logits", "hidden"}:
        for i, label in ((0, "wall"), (1, "process time")):
            total = args.hidden * medians["hidden"][i] + args.logits * medians["logits"][i]
            print(f"projected {args.hidden} hidden + {args.logits} class units ({label}): {total / 60:.0f} min "
                  f"(+ the activation passes, {sum(c['seconds'] for c in passes):.0f} s)")


if __name__ == "__main__":
    main()
