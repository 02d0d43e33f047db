"""The values the ``dgnam`` flags take, checked as each flag is read (before any work): seeds, sizes, devices, bounded numbers."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable

from ..infra.images import MAX_SIDE, MIN_SIDE
from ..infra.messages import short

MAX_SEED = 2**32 - 1  # seeds feed torch and NumPy generators; NumPy takes 32-bit seeds
MAX_STEPS = 1_000_000  # optimization steps of one image (the paper: 200)
MAX_TRAIN_STEPS = 100_000_000  # generator training steps
MIN_INPUT_SIDE = 8  # the smallest side of a net's input that --input-size takes


def seed_list(text: str) -> list[int]:
    """``--seeds``: ``0``, ``0-4`` or ``1,5`` as distinct seeds in order (a note says when one repeats)."""
    seeds: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise argparse.ArgumentTypeError(f"seed range {part.strip()!r} is empty (end before start): write it as {hi}-{lo}")
            if hi - lo >= 1_000_000:
                raise argparse.ArgumentTypeError(f"seed range {part.strip()!r} asks for {hi - lo + 1:,} images per unit: give a smaller range")
            seeds.extend(range(lo, hi + 1))
        elif part.strip().isdigit():
            seeds.append(int(part))
        else:
            raise argparse.ArgumentTypeError(f"seeds are integers, ranges or lists (0, 0-4, 1,5), got {text[:80]!r}")
    if max(seeds) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed {max(seeds)} is too large: seeds go from 0 to {MAX_SEED}")
    distinct = list(dict.fromkeys(seeds))  # a seed twice would make one image twice, into one file
    if len(distinct) < len(seeds):
        print(f"dgnam: note: --seeds {text[:80]!r} repeats a seed; each is used once ({len(distinct)} seed(s))", file=sys.stderr)
    return distinct


def finite_float(text: str) -> float:
    """A float flag that must be a finite number (``nan`` and ``inf`` would give black images and invalid JSON)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:80]!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text[:80]!r}")
    return value


def torch_device(text: str) -> str:
    """A ``--device`` that this torch build can use: cpu, cuda, cuda:N or mps (checked before any work)."""
    if text == "cpu":
        return text
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text[:80]!r} is not a torch device: use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise argparse.ArgumentTypeError(f"{text} asked for, but this torch build ({torch.__version__}) has no CUDA: use --device cpu, "
                                             "or install a CUDA build of torch")
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text} asked for, but no GPU is visible (CUDA_VISIBLE_DEVICES, driver): use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: there are only {torch.cuda.device_count()} GPU(s) (cuda:0-{torch.cuda.device_count() - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text} asked for, but MPS is not available here: use --device cpu")
    elif device.type not in ("cuda", "mps", "cpu"):
        raise argparse.ArgumentTypeError(f"--device {text}: dgnam runs on cpu, cuda or mps")
    return text


def float_list(text: str) -> tuple[float, ...]:
    """Comma-separated numbers (``--mean``, ``--std``)."""
    try:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, e.g. 0.485,0.456,0.406; got {text!r}") from None


def int_in(low: int, high: int, limit: str = "", grouped: bool = True) -> Callable[[str], int]:
    """An integer flag from ``low`` to ``high``, checked as the flag is read (before any work); ``limit`` says what the
    bound is, ``grouped`` writes it with thousands separators (1,000,000; not for a port)."""
    high_text = f"{high:,}" if grouped else str(high)

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high_text}{limit}, got {text[:80]!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{short(value, 40)} is out of range: give {low} to {high_text}{limit}")
        return value

    return parse


def input_size(text: str) -> tuple[int, int]:
    """``--input-size``: ``S`` or ``HxW`` (each side from :data:`MIN_INPUT_SIDE` to ``MAX_SIDE`` px)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+))?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size S or HxW, e.g. 224 or 240x320; got {text[:80]!r}")
    size = int(m.group(1)), int(m.group(2) or m.group(1))
    if not all(MIN_INPUT_SIDE <= s <= MAX_SIDE for s in size):
        raise argparse.ArgumentTypeError(f"{short(text.strip(), 40)} is out of range: each side is {MIN_INPUT_SIDE} to {MAX_SIDE:,} px")
    return size


step_count = int_in(1, MAX_STEPS, " steps (the paper used 200)")
image_side = int_in(MIN_SIDE, MAX_SIDE, " px a side")
train_steps = int_in(1, MAX_TRAIN_STEPS, " training steps")
