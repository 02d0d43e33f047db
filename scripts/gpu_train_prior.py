"""Train a generator prior inside one call of the lent GPU machine, sized to a wall-clock budget.

The device tool gives a session 15 minutes of GPU time (start included) and 10 minutes per command,
so the number of steps is set from a measured speed: a short probe with every loss on (the slowest
stage), then ``steps = rate * minutes``; the cosine schedule and the loss stages span those steps.
Writes the prior (safetensors + its training card), log.csv, config.json and the last sample grid
to ``--out`` (the device's $OUT). DEVELOPERS.md ("Training priors on the GPU") has the whole recipe.

    python3 scripts/gpu_train_prior.py --config configs/priors/lite0_blocks7_conv_resize.json \
        --pool .gpu/pool.npz --minutes 7 --out $OUT
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from dgnam.train.trainer import TrainConfig, Trainer


def probe_rate(trainer: Trainer, steps: int = 30, warmup: int = 5) -> float:
    """Steps per second with all three losses on; the trainer's state is restored afterwards."""
    saved = copy.deepcopy({"gen": trainer.gen.state_dict(), "disc": trainer.disc.state_dict(),
                           "opt_g": trainer.opt_g.state_dict(), "opt_d": trainer.opt_d.state_dict()})
    trainer.step = trainer.config.steps - 1  # the last stage: pixel + feature + adversarial
    for i in range(warmup + steps):
        if i == warmup:
            if trainer.device.type == "cuda":
                torch.cuda.synchronize(trainer.device)
            start = time.perf_counter()
        trainer.train_step(*trainer.batch())
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    rate = steps / (time.perf_counter() - start)
    trainer.gen.load_state_dict(saved["gen"])
    trainer.disc.load_state_dict(saved["disc"])
    trainer.opt_g.load_state_dict(saved["opt_g"])
    trainer.opt_d.load_state_dict(saved["opt_d"])
    trainer.step = 0
    return rate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="training settings (configs/priors/*.json)")
    ap.add_argument("--pool", required=True, help="packed pool (.npz from `dgnam pool pack`) or pool folder")
    ap.add_argument("--minutes", type=float, default=7.0, help="wall-clock budget of the training itself")
    ap.add_argument("--out", required=True, help="where the prior and its logs go (the device's $OUT)")
    ap.add_argument("--work", default="/tmp/dgnam_gpu_run", help="checkpoints and code cache (too big to bring back)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, help="override the config's batch size")
    ap.add_argument("--max-steps", type=int, default=200_000)
    args = ap.parse_args(argv)

    t0 = time.time()
    config = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    config = replace(config, device=args.device, **({"batch_size": args.batch_size} if args.batch_size else {}))
    trainer = Trainer(config, args.pool, args.work, progress=False)
    setup = time.time() - t0
    rate = probe_rate(trainer)
    steps = max(100, min(args.max_steps, int(rate * 60 * args.minutes)))
    trainer.config = replace(trainer.config, steps=steps, sample_every=max(250, steps // 20))
    print(f"setup {setup:.0f} s; {rate:.1f} steps/s (batch {trainer.config.batch_size}) -> {steps} steps in {args.minutes} min", flush=True)
    t1 = time.time()
    trainer.train()
    train_s = time.time() - t1
    held = trainer.heldout_metrics()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    card = {"device": torch.cuda.get_device_name(0) if trainer.device.type == "cuda" else "cpu", "steps": trainer.step,
            "batch_size": trainer.config.batch_size, "train_seconds": round(train_s, 1), "steps_per_second": round(rate, 2),
            "heldout": held, "config": args.config}
    sha = trainer.export(out / "prior.safetensors", card)
    (out / "summary.json").write_text(json.dumps({**card, "sha256": sha, "train_config": asdict(trainer.config)}, indent=1))
    for name in ("log.csv", "config.json"):
        shutil.copy(Path(args.work) / name, out / name)
    samples = sorted((Path(args.work) / "samples").glob("*.png"))
    if samples:
        shutil.copy(samples[-1], out / "samples_last.png")
    print(json.dumps({"steps": trainer.step, "train_seconds": round(train_s, 1), **held, "sha256": sha}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
