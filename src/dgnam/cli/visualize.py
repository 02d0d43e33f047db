"""The ``dgnam`` command: a thin layer over the public API."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from .commands import _cmd_bounds, _cmd_evaluate, _cmd_exemplars, _cmd_neighbors, _cmd_pool, _cmd_report, _cmd_repro, _cmd_train, _cmd_weights
from .infra.images import MAX_SIDE, MIN_SIDE
from .infra.messages import short



MAX_SEED = 2**32 - 1  # seeds feed torch and NumPy generators; NumPy takes 32-bit seeds


def _seeds(text: str) -> list[int]:
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


def _finite(text: str) -> float:
    """A float flag that must be a finite number (``nan`` and ``inf`` would give black images and invalid JSON)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:80]!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text[:80]!r}")
    return value


def _device(text: str) -> str:
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


NET_HELP = ("target net: a registered name (`dgnam nets`), torchvision:NAME[:WEIGHTS], timm:NAME, hf:REPO_ID or hf:DIR, "
            "or your own builder PATH.py:FUNC / package.module:FUNC (imported and run as your code) returning an nn.Module, "
            "(module, InputSpec) or (module, InputSpec, categories)")  # fmt: skip


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, e.g. 0.485,0.456,0.406; got {text!r}") from None


MAX_STEPS = 1_000_000  # optimization steps of one image (the paper: 200)
MAX_TRAIN_STEPS = 100_000_000  # generator training steps
MIN_INPUT_SIDE = 8  # the smallest side of a net's input that --input-size takes


def _int_in(low: int, high: int, limit: str = "", grouped: bool = True) -> Callable[[str], int]:
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


def _input_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+))?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size S or HxW, e.g. 224 or 240x320; got {text[:80]!r}")
    size = int(m.group(1)), int(m.group(2) or m.group(1))
    if not all(MIN_INPUT_SIDE <= s <= MAX_SIDE for s in size):
        raise argparse.ArgumentTypeError(f"{short(text.strip(), 40)} is out of range: each side is {MIN_INPUT_SIDE} to {MAX_SIDE:,} px")
    return size


_steps = _int_in(1, MAX_STEPS, " steps (the paper used 200)")
_side = _int_in(MIN_SIDE, MAX_SIDE, " px a side")



def add_spec_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that override or supply a net's input spec (for nets without one, e.g. PATH.py:FUNC)."""
    g = parser.add_argument_group("input spec (overrides the net's own; a builder without an InputSpec gets 224 px RGB, ImageNet mean/std)")
    g.add_argument("--input-size", type=_input_size, help="the size the net takes: S or HxW")
    g.add_argument("--mean", type=_floats, help="per-channel mean after scaling, e.g. 0.485,0.456,0.406 (its length sets the channel count)")
    g.add_argument("--std", type=_floats, help="per-channel std, e.g. 0.229,0.224,0.225")
    g.add_argument("--value-range", type=_finite, help="1 for inputs in [0, 1], 255 for Caffe-style nets")
    g.add_argument("--bgr", action="store_true", default=None, help="the net takes BGR (3 channels)")
    g.add_argument("--categories", help="file of class names, one per line, for the output units")


def net_from_args(args, fit: str | None = None):
    """The :class:`~dgnam.nets.Target` that ``--net``, ``--net-weights``, ``--download`` and the input-spec flags ask for."""
    from .nets.adapters import load_target

    return load_target(args.net, weights=args.net_weights, download=getattr(args, "download", False), overrides=spec_overrides(args), fit=fit)


def spec_overrides(args):
    """The :class:`~dgnam.nets.adapters.SpecOverrides` of the input-spec flags (all None when absent)."""
    from .nets.adapters import SpecOverrides, read_categories

    get = lambda name: getattr(args, name, None)  # noqa: E731  (sub-commands without the flags)
    categories = read_categories(args.categories) if get("categories") else None
    return SpecOverrides(size=get("input_size"), mean=get("mean"), std=get("std"), value_range=get("value_range"), bgr=get("bgr"),
                         categories=categories)  # fmt: skip


def _run_folder_flags(parser: argparse.ArgumentParser, resume: bool = True) -> None:
    """--resume / --overwrite: what to do with a run folder that is not empty (by default: refuse)."""
    flags = parser.add_mutually_exclusive_group()
    if resume:
        flags.add_argument("--resume", action="store_true",
                           help="continue the interrupted run in --out: same command, finished images are kept and skipped")
    flags.add_argument("--overwrite", action="store_true", help="remove the earlier run's outputs in --out first")
    if resume:  # the thread count is recorded: a resume under another count would make other bytes, so it is refused
        parser.add_argument("--threads", type=_int_in(1, 1024, " CPU threads"), help="torch CPU threads (default: torch's, OMP_NUM_THREADS); "
                            "recorded in results.json, and --resume needs the same")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dgnam", description="Synthesize the preferred inputs of neurons (DGN-AM).")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line; or DGNAM_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("visualize", help="synthesize preferred inputs of units")
    v.add_argument("--net", help=NET_HELP + "; default efficientnet_lite0, or the preset's")
    v.add_argument("--net-weights", help="local weight file for the net")
    add_spec_flags(v)
    v.add_argument("--unit", action="append", default=[], help="LAYER:UNIT[@LOC], repeatable; ranges 0-9, class names, @FILE")
    v.add_argument("--units-file", help="file with one unit per line")
    method = v.add_mutually_exclusive_group()
    method.add_argument("--generator", help="registered generator prior (`dgnam generators`); default: the net's default prior")
    method.add_argument("--pixel", choices=["pixel", "yosinski", "fourier", "deepinversion", "maco"], help="pixel-space baseline instead of a generator")
    v.add_argument("--generator-weights", help="local weight file for the generator")
    v.add_argument("--download", action="store_true", help="allow downloading registered weights not found offline")
    v.add_argument("--preset", choices=["paper"], help="the paper's settings (with a DeePSiM generator and CaffeNet)")
    v.add_argument("--steps", type=_steps, help="optimization steps (default 200)")
    v.add_argument("--seeds", type=_seeds, default=[0], help="seeds: 0, 0-4 or 1,5 (one image per unit and seed)")
    v.add_argument("--lr-start", type=_finite, help="DGN-AM step size at the first step, in code stds (default: the prior's measured step, else the paper's 8)")
    v.add_argument("--lr-end", type=_finite, help="DGN-AM step size at the last step (default: the prior's, else the paper's 1e-10)")
    v.add_argument("--decay", type=_finite, help="DGN-AM code decay per step (default: the prior's, else the paper's 0.99)")
    v.add_argument("--transforms", choices=["none", "standard"],
                   help="DGN-AM: ascend through random pad/jitter/scale/rotation of the generated image (standard; "
                   "larger, more object-like shapes, lower activation, ~1.45x the time) or not (none; default: the prior's, else the paper's none)")
    v.add_argument("--optimizer", choices=["paper", "adam", "gradient", "cmaes", "ga"],
                   help="search in the generator's code space: paper (default; 'gradient' is the same), adam, or gradient-free cmaes / ga")
    v.add_argument("--evals", type=int, help="image evaluations per unit and seed: the budget of cmaes/ga (default 1000); "
                   "with a gradient optimizer it sets --steps to N - 1 (one forward+backward per step, plus the final image; "
                   "with --transforms standard each step adds a forward pass without transforms)")
    v.add_argument("--init-image", help="feature accentuation (Hamblin et al. 2024): start from this photo instead of noise: DGN-AM "
                   "from its code E(photo) under the prior's encoder, pixel methods from the photo itself")
    v.add_argument("--lr", type=_finite, help="pixel methods: learning rate")
    v.add_argument("--batch-size", type=int, default=8, help="images optimized together (default 8)")
    v.add_argument("--device", type=_device, default="cpu", help="torch device, e.g. cpu or cuda")
    v.add_argument("--out", required=True, help="output folder (new or empty; see --resume, --overwrite)")
    _run_folder_flags(v)
    v.add_argument("--quiet", action="store_true", help="no progress bars")

    sm = sub.add_parser("sample", help="sample many diverse preferred inputs per unit (PPGN-h chain in a generator's code space)")
    sm.add_argument("net", help=NET_HELP)
    sm.add_argument("unit", nargs="+", help="LAYER:UNIT[@LOC], e.g. logits:945 or 'logits:bell pepper'")
    sm.add_argument("--generator", help="generator prior (registered name or FILE.safetensors); default: the net's default prior")
    sm.add_argument("--generator-weights", help="local weight file for the generator")
    sm.add_argument("--net-weights", help="local weight file for the net")
    sm.add_argument("--download", action="store_true", help="allow downloading registered weights not found offline")
    sm.add_argument("--samples", type=int, default=8, help="samples per unit (default 8)")
    sm.add_argument("--chains", type=int, default=4, help="chains per unit, the samples split between them (default 4)")
    sm.add_argument("--burn-in", type=int, help="steps before the first sample (default 40)")
    sm.add_argument("--every", type=int, help="steps between kept samples (default 10)")
    sm.add_argument("--eps1", type=_finite, help="weight of the prior term R(h) - h, R(h) = E(G(h)) (default 0.01; 0: no encoder)")
    sm.add_argument("--eps2", type=_finite, help="step along d log p(y|G(h))/dh (default 1)")
    sm.add_argument("--eps3", type=_finite, help="noise std per (whitened) code unit (default 0.05)")
    sm.add_argument("--seed", type=int, default=0, help="chain c of each unit starts from seed + c (default 0)")
    sm.add_argument("--batch-size", type=int, default=8, help="chains run together (default 8)")
    sm.add_argument("--device", type=_device, default="cpu", help="torch device, e.g. cpu or cuda")
    sm.add_argument("--out", required=True, help="output folder (new or empty; see --resume, --overwrite)")
    _run_folder_flags(sm)
    sm.add_argument("--quiet", action="store_true", help="no progress bars")
    at = sub.add_parser("atlas", help="a browsable static site of a net's units (DGN-AM, pixel baseline, exemplars, accentuation); "
                        "`dgnam atlas serve SITE` serves one on localhost")
    at.add_argument("net", help="target net (as --net takes it), or 'serve' to serve a built site")
    at.add_argument("site", nargs="?", help="with 'serve': the site folder")
    at.add_argument("--layers", help="comma-separated layers, e.g. logits,_blocks.15 (default: those of --units)")
    at.add_argument("--units", action="append", default=[], help="only these units, e.g. logits:0-7,_blocks.15:0-7 (repeatable; default: every unit of --layers)")
    at.add_argument("--data", help="natural images: any image folder, a pool folder or a .npz pool (default: the offline pool "
                    "in $DGNAM_HOME/pool, built on first use as `dgnam pool build` does)")
    at.add_argument("--out", help="the site folder (an atlas already there is completed, not redone)")
    at.add_argument("--net-weights", help="local weight file for the net")
    at_method = at.add_mutually_exclusive_group()
    at_method.add_argument("--generator", help="generator prior (default: the net's default prior)")
    at_method.add_argument("--pixel", choices=["pixel", "yosinski", "fourier", "deepinversion"], help="a pixel method instead of DGN-AM")
    at.add_argument("--generator-weights", help="local weight file for the generator")
    at.add_argument("--baseline", choices=["pixel", "yosinski", "fourier", "deepinversion", "none"],
                    help="pixel baseline beside DGN-AM (default: deepinversion with BatchNorm, else fourier)")
    at.add_argument("--download", action="store_true", help="allow downloading registered weights not found offline")
    at.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="DGN-AM facets per unit (default 0-2)")
    at.add_argument("--steps", type=_steps, help="optimization steps of every image (default: each method's, 200)")
    at.add_argument("-k", type=int, default=9, help="top and bottom natural images per unit (default 9)")
    at.add_argument("--no-accentuate", action="store_true", help="skip the accentuated top exemplar")
    at.add_argument("--batch-size", type=int, default=8, help="images optimized together (default 8)")
    at.add_argument("--device", type=_device, default="cpu", help="torch device, e.g. cpu or cuda (cuda: cuda:LOCAL_RANK under torchrun)")
    at.add_argument("--port", type=_int_in(0, 65535, " (0: any free port)", grouped=False), default=8000, help="with 'serve': the port on 127.0.0.1 (default 8000)")
    at.add_argument("--quiet", action="store_true", help="no progress bars")
    add_spec_flags(at)
    mg = sub.add_parser("merge", help="merge the per-rank parts of a torchrun `dgnam visualize` run that did not merge")
    mg.add_argument("out", help="the run folder (holds parts/rankNNN)")

    n = sub.add_parser("nets", help="list registered target nets")
    n.set_defaults()
    sub.add_parser("generators", help="list registered generator priors")
    lay = sub.add_parser("layers", help="list the addressable layers of a net (dotted module names) with output shapes")
    lay.add_argument("net", help=NET_HELP)
    lay.add_argument("--net-weights", help="local weight file for the net")
    lay.add_argument("--download", action="store_true", help="allow downloading weights not found offline")
    add_spec_flags(lay)

    w = sub.add_parser("weights", help="manage weight files")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    wd = wsub.add_parser("download", help="download a registered net's or generator's weights into the cache")
    wd.add_argument("name")
    wsub.add_parser("list", help="registered weights, where they come from, and whether they are here")
    pool = sub.add_parser("pool", help="the offline natural-image training pool")
    psub = pool.add_subparsers(dest="pool_command", required=True)
    pb = psub.add_parser("build", help="assemble the pool from Debian packages and scikit-image photos")
    pb.add_argument("dir")
    pb.add_argument("--size", type=_side, default=160)
    pb.add_argument("--seed", type=int, default=0)
    pb.add_argument("--cache", help="download cache (default $DGNAM_HOME/debs)")
    pb.add_argument("--crop-density", type=float, default=40.0, help="crops per output-size of an original's short side (default 40)")
    pb.add_argument("--max-crops", type=int, default=600, help="most crops from one original (default 600)")
    pb.add_argument("--composites", type=int, default=3000, help="stamp-on-photo composites (default 3000)")
    pf = psub.add_parser("folder", help="turn any image folder (class/xxx.jpg or flat) into a pool")
    pf.add_argument("folder")
    pf.add_argument("dir")
    pf.add_argument("--size", type=_side, default=160)
    pp = psub.add_parser("pack", help="write a pool (or image folder) as one small .npz of compressed images, e.g. for the GPU machine")
    pp.add_argument("source", help="pool folder or image folder")
    pp.add_argument("out", help="the .npz to write (train-generator --pool takes it)")
    pp.add_argument("--size", type=_side, default=128, help="side of the stored images (the training resolution)")
    pp.add_argument("--max-mib", type=_finite, default=40.0, help="size budget; the best WebP/JPEG quality that fits is chosen")

    t = sub.add_parser("train-generator", help="train a generator prior (DeePSiM recipe) on a pool")
    t.add_argument("--pool", required=True, help="pool folder (`dgnam pool build`) or any image folder (class/x.jpg or flat)")
    t.add_argument("--out", required=True, help="training folder: config.json, log.csv, samples/, checkpoint.pt")
    t.add_argument("--config", help="JSON file of TrainConfig fields (the flags below override it)")
    t.add_argument("--steps", type=_int_in(1, MAX_TRAIN_STEPS, " training steps"))
    t.add_argument("--batch-size", type=int)
    t.add_argument("--encoder", help="encoder net (default efficientnet_lite0)")
    t.add_argument("--layer", help="encoder layer inverted (default pool)")
    t.add_argument("--output-size", type=int, help="generator output size in px (default 128)")
    t.add_argument("--device", type=_device, help="cpu or cuda")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (a used --out needs --resume or --overwrite)")
    t.add_argument("--overwrite", action="store_true", help="start again in a used --out (removes only train-generator's files; keeps cache/)")
    t.add_argument("--until", type=_int_in(0, MAX_TRAIN_STEPS, " training steps"), help="stop at this step (the loss schedule still spans --steps)")
    t.add_argument("--export", help="also write the generator as a .safetensors prior here")
    t.add_argument("--quiet", action="store_true")

    b = sub.add_parser("bounds", help="per-unit statistics of a net's layer over images: the code clipping bounds")
    b.add_argument("--net", default="efficientnet_lite0")
    b.add_argument("--layer", default="pool")
    b.add_argument("--data", required=True, help="a pool folder or any image folder")
    b.add_argument("--out", required=True, help="output JSON (mean, std, percentiles, bounds [0, mean + 3 std])")

    e = sub.add_parser("evaluate", help="score a run folder: target/judge top-k, relative activation, realism, diversity, speed")
    e.add_argument("run_dir", help="a folder written by `dgnam visualize`")
    e.add_argument("--judge", action="append", default=None,
                   help="judge net, never optimized against (repeatable; default: every registered judge, each at its own size: "
                   "efficientnet_lite1 and _lite2 (the target's family) and squeezenet1_1 (out-of-family))")
    e.add_argument("--natural", help="natural images for relative activation, Fréchet distance and slope/saturation: a pool "
                   "folder (its held-out split is used) or any image folder")
    e.add_argument("--natural-images", type=int, default=500, help="use at most this many natural images (default 500)")
    e.add_argument("--natural-size", type=_side, default=160, help="side of an image folder's images (default 160, as pools)")
    e.add_argument("--net", help="target net (default: the run's)")
    e.add_argument("--net-weights", help="local weight file for the target (default: the run's, if inside the run folder)")
    e.add_argument("--categories", help="file of class names, one per line, for the target (default: the run's, if inside the run folder)")
    e.add_argument("--feature-layer", default="pool", help="judges' feature layer for Fréchet distance and diversity (default pool)")
    e.add_argument("--data", help="natural images (image folder or pool) for the faithfulness check (Geirhos et al. 2024): is each image "
                   "nearest to its own unit's top-k natural exemplars in an earlier layer of the target? (needs 2+ units per layer)")
    e.add_argument("-k", type=int, default=9, help="natural exemplars per unit for --data (default 9)")
    e.add_argument("--faithfulness-layer", help="the earlier layer (default: half-way to each unit's layer among its siblings)")
    e.add_argument("--max-images", type=int, help="--data: a fixed random subset of this many images (default: all; one cached pass per layer)")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--device", type=_device, default="cpu")
    e.add_argument("--out", help="output JSON (default RUN_DIR/evaluation.json)")

    nb = sub.add_parser("neighbors", help="each synthesized image beside its nearest natural images in a net's feature space")
    nb.add_argument("run_dir", help="a folder written by `dgnam visualize`")
    nb.add_argument("--data", required=True, help="a pool folder or any image folder")
    nb.add_argument("--net", default="efficientnet_lite0", help="feature net (default efficientnet_lite0)")
    nb.add_argument("--net-weights", help="local weight file for the feature net")
    nb.add_argument("--layer", default="pool", help="feature layer (default pool: the pooled penultimate features)")
    nb.add_argument("-k", type=int, default=5, help="neighbours per image (default 5)")
    nb.add_argument("--metric", choices=["cosine", "l2"], default="cosine", help="1 - cosine similarity (default) or Euclidean distance")
    nb.add_argument("--size", type=_side, default=160, help="side of an image folder's images (default 160)")
    nb.add_argument("--max-images", type=int, help="search a fixed random subset of this many data images (default: all)")
    nb.add_argument("--batch-size", type=int, default=32)
    nb.add_argument("--device", type=_device, default="cpu")
    nb.add_argument("--out", help="output folder (default RUN_DIR/neighbors): one sheet PNG per image and neighbors.json")

    ex = sub.add_parser("exemplars", help="each unit's top-k and bottom-k natural images (receptive-field crops), one cached pass per layer")
    ex.add_argument("net", help="the net: a registered name (`dgnam nets`), torchvision:NAME, timm:NAME, hf:REPO_ID, PATH.py:FUNC ...")
    ex.add_argument("unit", nargs="+", help="LAYER:UNIT[@LOC], e.g. _blocks.7:0-15 or logits:espresso")
    ex.add_argument("--data", required=True, help="any image folder (searched recursively), a pool folder or a packed .npz pool")
    ex.add_argument("-k", type=int, default=9, help="images per end (default 9, as Borowski et al.)")
    ex.add_argument("--out", required=True, help="output folder (RUN/exemplars keeps them with a visualize run; `dgnam report` shows them)")
    _run_folder_flags(ex, resume=False)  # a used --out is refused (its results.json is not replaced) unless --overwrite
    ex.add_argument("--net-weights", help="local weight file for the net")
    ex.add_argument("--size", type=_side, default=160, help="side of an image folder's images (default 160, as pools)")
    ex.add_argument("--max-images", type=int, help="use a fixed random subset of this many images (default: all)")
    ex.add_argument("--cache-dir", help="activation cache (default $DGNAM_HOME/activations)")
    ex.add_argument("--no-cache", action="store_true", help="compute the pass without reading or writing the cache")
    ex.add_argument("--batch-size", type=int, default=32)
    ex.add_argument("--device", type=_device, default="cpu")
    ex.add_argument("--quiet", action="store_true", help="no progress bars")
    ex.add_argument("--download", action="store_true", help="allow downloading the net's weights when not found offline")
    add_spec_flags(ex)

    r = sub.add_parser("report", help="one self-contained HTML page of run folders (images, curves, metrics, neighbours, settings)")
    r.add_argument("run_dirs", nargs="+", help="folders written by `dgnam visualize`")
    r.add_argument("--out", help="HTML file (default RUN_DIR/report.html for one run, ./report.html for several)")
    r.add_argument("--title", default="dgnam report")

    rp = sub.add_parser("repro", help="complete small-scale reproductions, trained here from scratch")
    rsub = rp.add_subparsers(dest="repro_command", required=True)
    fm = rsub.add_parser("fashion-mnist", help="DGN-AM vs the pixel baselines on Fashion-MNIST (Debian's dataset-fashion-mnist): "
                         "classifier, judges and generator trained in minutes on a CPU")
    fm.add_argument("--out", required=True, help="run folder: models/, sheet_<method>.png, neighbours.png, results.json, summary.md")
    fm.add_argument("--reuse", action="store_true", help="load the weights in OUT/models whose config and data match instead of training")
    fm.add_argument("--quick", action="store_true", help="about 40 %% of the default budget (half an epoch, 400 generator steps, 2 seeds)")
    fm.add_argument("--epochs", type=_finite, help="classifier epochs (default 1); the judges' epochs keep their ratio to it (MLP 2x, ResNet 1x)")
    fm.add_argument("--generator-steps", type=int, help="generator training steps of 64 images (default 1000)")
    fm.add_argument("--am-steps", type=int, help="optimization steps of every method (default 200, the paper's)")
    fm.add_argument("--seeds", type=_seeds, help="seeds per class (default 0-2)")
    fm.add_argument("--methods", help="comma list of dgn-am,pixel,yosinski,fourier,deepinversion (default all)")
    fm.add_argument("--train-images", type=int, help="train on the first N training images (default all 60,000)")
    fm.add_argument("--cache", help="Debian package cache (default $DGNAM_HOME/debs)")
    fm.add_argument("--synthetic", action="store_true", help="a synthetic 10-class shape set instead (no download): a dry run")
    fm.add_argument("--quiet", action="store_true", help="no progress bars or stage lines")
    return p


def _cmd_visualize(args) -> int:
    import torch

    from . import load_generator, parse_units
    from .distributed import barrier, clear_stale_parts, close_world, init_world, merge_parts, part_dir, part_settings, shard_jobs
    from .core.hooks import addressable_layers
    from .infra.interrupts import stop_on_signals
    from .nets import class_layers
    from .core.objectives import check_units, receptive_field_box
    from .io.rundir import check_same_settings, prepare_run_folder, read_json_object
    from .io.write import RunWriter, runtime
    from .run import iter_visualize, make_jobs

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if torchrun and args.resume:
        raise ValueError("--resume continues a one-process run; under torchrun, merge the finished parts with `dgnam merge OUT` "
                         "and run the rest into another --out")
    preset = None
    if args.preset:
        from .methods.presets import get_preset

        preset = get_preset(args.preset)
    args.net = args.net or (preset.net if preset else "efficientnet_lite0")
    net = net_from_args(args, fit=preset.fit if preset else None)
    from .nets import list_judges

    if args.net in list_judges():  # allowed, but its images then fool that judge: say so once
        print(f"dgnam: note: {args.net} is one of the judges (dgnam evaluate); images optimized against it say nothing "
              "about its judgement, so judge them with the others only", file=sys.stderr)  # fmt: skip
    texts = list(args.unit) + ([f"@{args.units_file}"] if args.units_file else [])
    if not texts:
        print("dgnam: give at least one --unit (e.g. --unit logits:945)", file=sys.stderr)
        return 2
    units = _distinct_units(parse_units(texts, net.categories, layers=addressable_layers(net.model)))
    world = init_world(args.device)  # under torchrun: this rank's process and device (cuda -> cuda:LOCAL_RANK)
    device = world.device
    net.to(device)

    from .methods.choose import resolve

    overrides = {"steps": args.steps, "lr_start": args.lr_start, "lr_end": args.lr_end, "decay": args.decay, "transforms": args.transforms,
                 "evals": args.evals, "lr": args.lr}  # fmt: skip
    if args.optimizer == "cmaes":
        from .methods.blackbox import require_cma

        try:
            require_cma()
        except ImportError as exc:
            raise ValueError(str(exc)) from None
    choice = resolve(net, args.generator, pixel=args.pixel, optimizer=args.optimizer, preset=preset, overrides=overrides)
    generator_name, config, method = choice.generator, choice.config, choice.method
    generator = None
    if choice.uses_generator:
        if net.spec.channels not in (1, 3):
            raise ValueError(f"{args.net} takes {net.spec.channels}-channel images and a generator prior makes RGB ones: "
                             "use a pixel method (--pixel fourier)")  # fmt: skip
        generator = load_generator(generator_name, weights=args.generator_weights, download=args.download).to(device)
        if preset is not None and hasattr(generator, "clamp"):
            generator.clamp = preset.generator_clamp
    init = _init_start(args, net, generator, generator_name, config, device)

    jobs = make_jobs(units, args.seeds)
    settings = {
        "command": ["dgnam"] + args.argv,
        "net": args.net,
        "net_weights": args.net_weights,
        "net_input": dataclasses.asdict(net.spec),
        "net_overrides": {**spec_overrides(args).to_dict(), **({"categories_file": args.categories} if args.categories else {})},
        "generator": generator_name,
        "preset": args.preset,
        "generator_weights": args.generator_weights,
        "method": method,
        "config": dataclasses.asdict(config),
        "seeds": args.seeds,
        "units": [str(u) for u in units],
        "batch_size": args.batch_size,
        "device": str(torch.device(args.device)),
        "processes": world.size,
        "init_image": args.init_image,
        "runtime": runtime(device),  # threads, torch build, device: --resume refuses others (other bytes)
    }
    try:
        check_units(net, units)  # every rank checks every unit, before any work
        # then the folder, before anything is written (under torchrun every rank checks, rank 0 clears below)
        resuming = prepare_run_folder(args.out, resume=args.resume, overwrite=args.overwrite, apply=False)
        mine = shard_jobs(jobs, world.rank, world.size, args.batch_size)  # all jobs in a one-process run
        size = generator.output_size if generator is not None else net.spec.size
        hidden = dict.fromkeys(j.unit for j in mine if j.unit.location != "mean" and j.unit.layer not in class_layers(args.net))
        fields = {u: receptive_field_box(net, u, tuple(size)) for u in hidden}
        if world.rank == 0:  # under torchrun, before the barrier below: no rank has written yet
            prepare_run_folder(args.out, resume=args.resume, overwrite=args.overwrite)
        if world.distributed:
            clear_stale_parts(args.out, world)  # an earlier run's parts must not be merged with this run's
            writer = RunWriter(part_dir(args.out, world.rank), part_settings(settings, world, len(jobs)), net.categories, fields, requested=len(mine))
        else:
            writer = RunWriter(args.out, settings, net.categories, fields, requested=len(mine))
        left = mine
        if resuming:
            record = read_json_object(Path(args.out) / "results.json")
            check_same_settings(args.out, record, settings)
            finished = writer.resume(record)  # whole batches from the start: the rest batch as in an uninterrupted run
            left = [j for j in mine if (str(j.unit), j.seed) not in finished]
            print(f"resuming {args.out}: {len(mine) - len(left)} of {len(mine)} image(s) done", file=sys.stderr)
        else:
            writer.start()  # the settings record before any work: a run killed now can be resumed (or cleared by --overwrite)
        batches = iter_visualize(net, left, generator, config, args.batch_size, progress=not args.quiet and world.rank == 0, init=init,
                                 check=False) if left else ()  # checked above
        with stop_on_signals() as stop:  # Ctrl-C or SIGTERM: keep the finished batches, record interrupted: true
            with stop.interruptible():  # a signal stops the batches; after them a SIGTERM cannot cut the clean-up short
                try:
                    for result in batches:
                        writer.add(result)  # results.json is rewritten (atomically) after every batch
                except Exception:
                    writer.finish(interrupted=True)  # the finished images stay usable (`dgnam merge`, --resume)
                    raise
            interrupted, code = stop.interrupted, stop.exit_code
            if interrupted:
                print(f"\ndgnam: interrupted ({stop.signal}); keeping the finished images (--resume continues)", file=sys.stderr)
            path = writer.finish(interrupted=interrupted)
        if world.distributed:
            barrier(world)  # every part is written
            if world.rank != 0:
                return code
            path = merge_parts(args.out)  # started: the earliest rank's start
            record = read_json_object(path)
            if record["interrupted"] and not interrupted:
                interrupted, code = True, 130
            print(f"merged {world.size} parts: {len(record['items'])} image(s) and {path}")
        else:
            print(f"wrote {len(writer.items)} image(s) and {path}")
    finally:
        close_world(world)
    return code


def _distinct_units(units: list) -> list:
    """``units``, each once (a note says when one was given twice); two units whose images would share a file name
    (layers whose names differ only in punctuation) are refused."""
    distinct = list(dict.fromkeys(units))
    if len(distinct) < len(units):
        print(f"dgnam: note: {len(units) - len(distinct)} unit(s) given twice; each is made once", file=sys.stderr)
    by_slug: dict = {}
    for unit in distinct:
        other = by_slug.setdefault(unit.slug, unit)
        if other != unit:
            raise ValueError(f"units {short(other, 40)} and {short(unit, 40)} would write the same files ({short(unit.slug, 40)}_seed*.png): "
                             "make them into two --out folders")
    return distinct


def _init_start(args, net, generator, generator_name, config, device):
    """``--init-image``: the start every job shares, a code (DGN-AM) or an image (pixel methods); None without it."""
    if not args.init_image:
        return None
    from .methods.accentuate import load_photo, photo_codes, prior_encoder
    from .methods.dgn_am import DGNAMConfig

    if generator is None:
        return load_photo(args.init_image, max(net.spec.size)).to(device)
    if not isinstance(config, DGNAMConfig):
        raise ValueError("--init-image starts a gradient ascent from a photo's code: not with --optimizer cmaes or ga")
    photo = load_photo(args.init_image, max(generator.output_size)).to(device)
    return photo_codes(generator, prior_encoder(generator, net, generator_name, download=args.download), photo[None])[0]


def _cmd_sample(args) -> int:
    import math

    import torch

    from . import load_generator, parse_units
    from .core.hooks import addressable_layers
    from .infra.interrupts import stop_on_signals
    from .io.rundir import check_same_settings, prepare_run_folder, read_json_object
    from .io.write import SampleWriter, runtime
    from .run import make_jobs
    from .methods.ppgn import SampleConfig, sample

    net = net_from_args(args)
    units = _distinct_units(parse_units(args.unit, net.categories, layers=addressable_layers(net.model)))
    if args.samples < 1 or args.chains < 1:
        raise ValueError("--samples and --chains must be at least 1")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1 (chains run together), got {args.batch_size}")
    device = torch.device(args.device)
    net.to(device)
    from .methods.choose import default_generator

    name = args.generator or default_generator(args.net)  # the generator resolve() would take; PPGN-h has its own settings
    if name is None:
        raise ValueError(f"dgnam sample needs a generator prior for {args.net}: --generator NAME or FILE.safetensors (`dgnam generators`)")
    generator = load_generator(name, weights=args.generator_weights, download=args.download).to(device)
    chains = min(args.chains, args.samples)
    changes = {"burn_in": args.burn_in, "every": args.every, "eps1": args.eps1, "eps2": args.eps2, "eps3": args.eps3}
    config = SampleConfig.for_samples(args.samples, chains, **{k: v for k, v in changes.items() if v is not None})
    seeds = [args.seed + c for c in range(chains)]
    counts = {s: args.samples // chains + (c < args.samples % chains) for c, s in enumerate(seeds)}  # per chain, summing to --samples
    encoder, shared = _sample_encoder(args, name, generator, config)
    target = net.fast([u.layer for u in units] + ([encoder] if shared else []))
    settings = {
        "command": ["dgnam"] + args.argv, "net": args.net, "net_weights": args.net_weights, "generator": name,
        "generator_weights": args.generator_weights, "method": f"ppgn-h:{name}", "config": dataclasses.asdict(config),
        "encoder": encoder if isinstance(encoder, str) or encoder is None else "loaded", "samples_per_unit": args.samples,
        "chains_per_unit": chains, "seeds": seeds, "units": [str(u) for u in units], "batch_size": args.batch_size, "device": str(device),
        "runtime": runtime(device),
    }
    jobs = make_jobs(units, seeds)
    resuming = prepare_run_folder(args.out, resume=args.resume, overwrite=args.overwrite)  # refuse a folder in use
    writer = SampleWriter(args.out, settings, net.categories)
    if resuming:
        record = read_json_object(Path(args.out) / "results.json")
        check_same_settings(args.out, record, settings)
        finished = writer.resume(record)  # whole batches of chains; a chain does not depend on its batch
        print(f"resuming {args.out}: {len(finished)} of {len(jobs)} chain(s) done", file=sys.stderr)
        jobs = [j for j in jobs if (str(j.unit), j.seed) not in finished]
    requested = args.samples * len(units)
    if not resuming:
        writer.write_progress(requested)  # the settings record before any work: a run killed now can be resumed
    with stop_on_signals() as stop:  # Ctrl-C or SIGTERM: keep the finished chains, record interrupted: true
        with stop.interruptible():  # after the chains, a SIGTERM cannot cut the clean-up short
            for start in range(0, len(jobs), args.batch_size):
                chunk = jobs[start : start + args.batch_size]
                result = sample(target, generator, [j.unit for j in chunk], [j.seed for j in chunk], config, encoder, progress=not args.quiet)
                writer.add(result, counts=[counts[j.seed] for j in chunk])
                writer.write_progress(requested)  # atomically, after every batch of chains
        if stop.interrupted:
            print(f"\ndgnam: interrupted ({stop.signal}); keeping the finished samples", file=sys.stderr)
        path = writer.finish(interrupted=stop.interrupted, requested=requested)
    print(f"wrote {len(writer.items)} sample(s) of {len(units)} unit(s) and {path}; {math.ceil(args.samples / chains)} per chain, {config.steps} steps")
    return stop.exit_code


def _sample_encoder(args, name: str, generator, config):
    """E of the chain's R(h) = E(G(h)): the target's own layer when the prior inverts the target
    (one forward pass serves both), else the encoder net the prior names; None when eps1 = 0."""
    from .generators import get_generator_spec
    from .methods.ppgn import encoder_for, load_encoder

    if config.eps1 == 0:
        return None, False
    prior = getattr(generator, "config", None)
    if prior is not None and hasattr(prior, "encoder"):
        net_name, layer = prior.encoder, prior.layer
    else:
        spec_encoder = get_generator_spec(name).encoder if not name.endswith(".safetensors") else ""
        if ":" not in spec_encoder:
            return encoder_for(generator), False  # raises, naming the fix (--eps1 0)
        net_name, layer = spec_encoder.split(":", 1)
    if net_name == args.net:
        return layer, True
    return load_encoder(net_name, layer, device=args.device, download=args.download), False


def _cmd_atlas(args) -> int:
    from .atlas.cli import run_atlas

    return run_atlas(args)


def _cmd_merge(args) -> int:
    from .distributed import merge_parts

    path = merge_parts(args.out)
    print(f"merged the parts of {args.out} into {path}")
    return 0


def _cmd_layers(args) -> int:
    from .core.objectives import all_layer_shapes

    net = net_from_args(args)
    shapes = all_layer_shapes(net)
    width = max(len(n) for n in shapes)
    for name, shape in shapes.items():
        print(f"{name:<{width}}  {tuple(shape[1:])}")
    return 0


def _cmd_nets(_args) -> int:
    from .nets import get_net_spec, list_nets

    for name in list_nets():
        spec = get_net_spec(name)
        print(f"{name:<20} {spec.input.size[0]}x{spec.input.size[1]}  {spec.license:<12} {spec.description}")
    return 0


def _cmd_generators(_args) -> int:
    from .generators import get_generator_spec, list_generators

    names = list_generators()
    if not names:
        print("no generators registered")
    for name in names:
        spec = get_generator_spec(name)
        size = "x".join(map(str, spec.output_size)) if spec.output_size else "?"
        dgn_am = ", ".join(f"{k}={v}" for k, v in spec.dgn_am.items()) or "the paper's"
        default = " (default for its net)" if spec.default else ""
        print(f"{name:<26} encoder={spec.encoder or '-':<30} {size:>7} px  DGN-AM: {dgn_am}{default}\n{'':<26} {spec.license}: {spec.description}")
    return 0


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """``--threads N``: torch's CPU thread count for the command, as it was after (main() may be called in-process)."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def main(argv: list[str] | None = None) -> int:
    """Run the ``dgnam`` command; expected errors print one line (exit code 2), ``--debug`` or
    ``DGNAM_DEBUG=1`` shows their traceback."""
    from .infra.errors import debug_requested, error_line

    debug, argv = debug_requested(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    args.argv = list(argv)  # what the run records as its command (main(argv) need not be the process's argv)
    handlers = {
        "visualize": _cmd_visualize, "layers": _cmd_layers, "nets": _cmd_nets, "generators": _cmd_generators,
        "weights": _cmd_weights, "pool": _cmd_pool, "train-generator": _cmd_train, "bounds": _cmd_bounds,
        "evaluate": _cmd_evaluate, "neighbors": _cmd_neighbors, "exemplars": _cmd_exemplars, "report": _cmd_report,
        "sample": _cmd_sample, "merge": _cmd_merge, "repro": _cmd_repro, "atlas": _cmd_atlas,
    }
    try:
        with _torch_threads(getattr(args, "threads", None)):
            return handlers[args.command](args)
    except Exception as exc:
        message = error_line(exc)
        if message is None or debug:  # a bug (or --debug): the traceback
            raise
        print(f"dgnam: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
