"""``dgnam visualize``, ``dgnam sample`` and ``dgnam merge``: preferred inputs of units into a run folder, which ``--resume``
continues and torchrun splits over processes (one part each, merged by rank 0 or ``dgnam merge``)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from ..infra.messages import short
from ..methods.choose import OPTIMIZERS
from ..methods.presets import PRESETS
from .common import (NET_HELP, add_device_flag, add_method_flags, add_net_flags, add_quiet_flag, add_run_folder_flags, add_unit_flags, net_from_args,
                     spec_overrides, unit_texts)
from .values import finite_float, seed_list, step_count

OUT_HELP = "output folder (new or empty; see --resume, --overwrite)"
#: Recorded settings that --resume does not compare: the command as typed, and the sentence saying why the method runs.
RESUME_IGNORES = ("command", "method_reason")


def add_visualize_parser(sub) -> None:
    """``dgnam visualize``."""
    v = sub.add_parser("visualize", help="synthesize preferred inputs of units")
    add_net_flags(v, help=NET_HELP + "; default efficientnet_lite0, or the preset's", spec=True)
    add_unit_flags(v)
    add_method_flags(v, "registered generator prior (`dgnam generators`); default: the net's default prior",
                     pixel_help="pixel-space baseline instead of a generator")
    presets = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()).replace("%", "%%")
    v.add_argument("--preset", choices=list(PRESETS), help=f"a bundle of settings ({presets})")
    v.add_argument("--steps", type=step_count, help="optimization steps (default 200)")
    v.add_argument("--seeds", type=seed_list, default=[0], help="seeds: 0, 0-4 or 1,5 (one image per unit and seed)")
    v.add_argument("--lr-start", type=finite_float, help="DGN-AM step size at the first step, in code stds (default: the prior's measured step, else the paper's 8)")
    v.add_argument("--lr-end", type=finite_float, help="DGN-AM step size at the last step (default: the prior's, else the paper's 1e-10)")
    v.add_argument("--decay", type=finite_float, help="DGN-AM code decay per step (default: the prior's, else the paper's 0.99)")
    v.add_argument("--transforms", choices=["none", "standard", "harsh"],
                   help="DGN-AM: ascend through random pad/jitter/scale/rotation of the generated image (standard; "
                   "larger, more object-like shapes, lower activation, ~1.45x the time), through larger ones with flips (harsh) "
                   "or not (none; default: the prior's, else the paper's none)")
    v.add_argument("--eot", type=int, help="DGN-AM: average the gain over K random views per step (expectation over transformations; "
                   "each view costs a forward and backward pass; default 1)")
    v.add_argument("--schedule", choices=["linear", "cosine"], help="DGN-AM: step size from --lr-start to --lr-end, linearly (the paper's) or along half a cosine")
    v.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="DGN-AM: run the nets under bfloat16 autocast during the ascent (bf16; faster on CPUs with AVX-512 BF16 or AMX, "
                   "other bytes), fp32 (default) or auto (bf16 where the CPU or GPU has it); the saved images are rendered in fp32")
    v.add_argument("--track-every", type=int, help="DGN-AM with transforms: score the plain image for the activation curve and the best "
                   "image every K steps (each an extra forward pass; default 1: every step); the last image is always scored")
    v.add_argument("--early-stop", type=int, metavar="STEPS", help="DGN-AM: stop a batch once no image's activation rose by 1%% over "
                   "STEPS steps (default: off, every step runs)")
    v.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="search in the generator's code space: paper (default; 'gradient' is the same), adam, or gradient-free cmaes / ga")
    v.add_argument("--evals", type=int, help="image evaluations per unit and seed: the budget of cmaes/ga (default 1000); "
                   "with a gradient optimizer it sets --steps to N - 1 (one forward+backward per step, plus the final image; "
                   "with --transforms standard each step adds a forward pass without transforms)")
    v.add_argument("--init-image", help="feature accentuation (Hamblin et al. 2024): start from this photo instead of noise: DGN-AM "
                   "from its code E(photo) under the prior's encoder, pixel methods from the photo itself")
    v.add_argument("--lr", type=finite_float, help="pixel methods: learning rate")
    v.add_argument("--batch-size", type=int, default=8, help="images optimized together (default 8)")
    add_device_flag(v)
    v.add_argument("--out", required=True, help=OUT_HELP)
    add_run_folder_flags(v)
    add_quiet_flag(v)
    v.set_defaults(handler=run_visualize)


def add_sample_parser(sub) -> None:
    """``dgnam sample``."""
    sm = sub.add_parser("sample", help="sample many diverse preferred inputs per unit (PPGN-h chain in a generator's code space)")
    add_net_flags(sm, positional=True)
    sm.add_argument("unit", nargs="+", help="LAYER:UNIT[@LOC], e.g. logits:945 or 'logits:bell pepper'")
    add_method_flags(sm, "generator prior (registered name or FILE.safetensors); default: the net's default prior")
    sm.add_argument("--samples", type=int, default=8, help="samples per unit (default 8)")
    sm.add_argument("--chains", type=int, default=4, help="chains per unit, the samples split between them (default 4)")
    sm.add_argument("--burn-in", type=int, help="steps before the first sample (default 40)")
    sm.add_argument("--every", type=int, help="steps between kept samples (default 10)")
    sm.add_argument("--eps1", type=finite_float, help="weight of the prior term R(h) - h, R(h) = E(G(h)) (default 0.01; 0: no encoder)")
    sm.add_argument("--eps2", type=finite_float, help="step along d log p(y|G(h))/dh (default 1)")
    sm.add_argument("--eps3", type=finite_float, help="noise std per (whitened) code unit (default 0.05)")
    sm.add_argument("--seed", type=int, default=0, help="chain c of each unit starts from seed + c (default 0)")
    sm.add_argument("--batch-size", type=int, default=8, help="chains run together (default 8)")
    add_device_flag(sm)
    sm.add_argument("--out", required=True, help=OUT_HELP)
    add_run_folder_flags(sm)
    add_quiet_flag(sm)
    sm.set_defaults(handler=run_sample)


def add_merge_parser(sub) -> None:
    """``dgnam merge``."""
    mg = sub.add_parser("merge", help="merge the per-rank parts of a torchrun `dgnam visualize` run that did not merge")
    mg.add_argument("out", help="the run folder (holds parts/rankNNN)")
    mg.set_defaults(handler=run_merge)


def run_visualize(args: argparse.Namespace) -> int:
    """``dgnam visualize``: the images of every unit and seed into ``--out``; returns the exit code."""
    from ..core.hooks import addressable_layers
    from ..core.units import parse_units
    from ..distributed import close_world, init_world
    from ..nets import list_judges
    from ..run import make_jobs

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if torchrun and args.resume:
        raise ValueError("--resume continues a one-process run; under torchrun, merge the finished parts with `dgnam merge OUT` "
                         "and run the rest into another --out")
    preset = None
    if args.preset:
        from ..methods.presets import get_preset

        preset = get_preset(args.preset)
    args.net = args.net or (preset.net if preset else "efficientnet_lite0")
    net = net_from_args(args)  # a preset's input fit: set by _method, as resolve's choice says
    if args.net in list_judges():  # allowed, but its images then fool that judge: say so once
        print(f"dgnam: note: {args.net} is one of the judges (dgnam evaluate); images optimized against it say nothing "
              "about its judgement, so judge them with the others only", file=sys.stderr)  # fmt: skip
    texts = unit_texts(args)
    if not texts:
        print("dgnam: give at least one --unit (e.g. --unit logits:945)", file=sys.stderr)
        return 2
    units = distinct_units(parse_units(texts, net.categories, layers=addressable_layers(net.model)))
    world = init_world(args.device)  # under torchrun: this rank's process and device (cuda -> cuda:LOCAL_RANK)
    net.to(world.device)
    choice, net, generator = _method(args, net, preset, world.device)
    init = _init_start(args, net, generator, choice.generator, choice.config, world.device)
    jobs = make_jobs(units, args.seeds)
    settings = _visualize_settings(args, net, units, choice, world)
    try:
        return _write_run(args, net, units, jobs, generator, choice.config, init, settings, world)
    finally:
        close_world(world)


def _precision(args) -> str | None:
    """--precision with auto resolved for --device (what the record says is what ran)."""
    from ..infra.hardware import resolve_precision

    return None if args.precision is None else resolve_precision(args.precision, args.device or "cpu")


def _method(args, net, preset, device):
    """The method ``resolve`` picks for the flags (a :class:`~dgnam.methods.choose.Choice`), the net and its generator,
    loaded on ``device`` (None for a pixel method), as the choice runs them (a preset's fit and clamp: ``prepare``)."""
    from ..generators import load_generator
    from ..methods.choose import prepare, resolve

    overrides = {"steps": args.steps, "lr_start": args.lr_start, "lr_end": args.lr_end, "decay": args.decay, "transforms": args.transforms,
                 "eot": args.eot, "schedule": args.schedule, "precision": _precision(args), "track_every": args.track_every,
                 "early_stop": args.early_stop, "evals": args.evals, "lr": args.lr}  # fmt: skip
    if args.optimizer == "cmaes":
        from ..methods.blackbox import require_cma

        try:
            require_cma()
        except ImportError as exc:
            raise ValueError(str(exc)) from None
    choice = resolve(net, args.generator, pixel=args.pixel, optimizer=args.optimizer, preset=preset, overrides=overrides)
    generator = None
    if choice.uses_generator:
        if net.spec.channels not in (1, 3):
            raise ValueError(f"{args.net} takes {net.spec.channels}-channel images and a generator prior makes RGB ones: "
                             "use a pixel method (--pixel fourier)")  # fmt: skip
        generator = load_generator(choice.generator, weights=args.generator_weights, download=args.download).to(device)
    net, generator = prepare(choice, net, generator)
    return choice, net, generator


def _visualize_settings(args, net, units, choice, world) -> dict:
    """What results.json records of the run (``--resume`` refuses a run recorded with other settings)."""
    import torch

    from ..io.write import runtime

    return {
        "command": ["dgnam"] + args.argv,
        "net": args.net,
        "net_weights": args.net_weights,
        "net_input": dataclasses.asdict(net.spec),
        "net_overrides": {**spec_overrides(args).to_dict(), **({"categories_file": args.categories} if args.categories else {})},
        "generator": choice.generator,
        "preset": args.preset,
        "generator_weights": args.generator_weights,
        "method": choice.method,
        "method_reason": choice.why,  # shown, not compared on --resume (RESUME_IGNORES)
        "config": dataclasses.asdict(choice.config),
        "seeds": args.seeds,
        "units": [str(u) for u in units],
        "batch_size": args.batch_size,
        "device": str(torch.device(args.device)),
        "processes": world.size,
        "init_image": args.init_image,
        "runtime": runtime(world.device),  # threads, torch build, device: --resume refuses others (other bytes)
    }


def _write_run(args, net, units, jobs, generator, config, init, settings, world) -> int:
    """Check the units and ``--out``, then write this process's share of ``jobs`` there; returns the exit code."""
    from ..core.objectives import check_units, receptive_field_box
    from ..distributed import shard_jobs
    from ..io.rundir import prepare_run_folder
    from ..nets import class_layers

    check_units(net, units)  # every rank checks every unit, before any work
    # then the folder, before anything is written (under torchrun every rank checks, rank 0 clears below)
    resuming = prepare_run_folder(args.out, resume=args.resume, overwrite=args.overwrite, apply=False)
    if world.rank == 0 and not args.quiet:  # the run starts: which method runs, and why (the user may not have picked it)
        print(f"dgnam: method {settings['method']}: {settings['method_reason']}", file=sys.stderr)
    mine = shard_jobs(jobs, world.rank, world.size, args.batch_size)  # all jobs in a one-process run
    size = generator.output_size if generator is not None else net.spec.size
    hidden = dict.fromkeys(j.unit for j in mine if j.unit.location != "mean" and j.unit.layer not in class_layers(args.net))
    fields = {u: receptive_field_box(net, u, tuple(size)) for u in hidden}
    if world.rank == 0:  # under torchrun, before the barrier below: no rank has written yet
        prepare_run_folder(args.out, resume=args.resume, overwrite=args.overwrite)
    writer, left = _open_writer(args, net, settings, fields, len(jobs), mine, resuming, world)
    path, interrupted, code = _write_batches(args, net, writer, left, generator, config, init, world)
    if not world.distributed:
        print(f"wrote {len(writer.items)} image(s) and {path}")
        return code
    return _merge_ranks(args, interrupted, code, world)


def _open_writer(args, net, settings, fields, total: int, mine, resuming, world):
    """The run's writer (under torchrun: this rank's part of ``total`` jobs) and the jobs left to do (``--resume``: those not finished)."""
    from ..distributed import clear_stale_parts, part_dir, part_settings
    from ..io.rundir import check_same_settings, read_json_object
    from ..io.write import RunWriter

    if world.distributed:
        clear_stale_parts(args.out, world)  # an earlier run's parts must not be merged with this run's
        writer = RunWriter(part_dir(args.out, world.rank), part_settings(settings, world, total), net.categories, fields, requested=len(mine))
    else:
        writer = RunWriter(args.out, settings, net.categories, fields, requested=len(mine))
    left = mine
    if resuming:
        record = read_json_object(Path(args.out) / "results.json")
        check_same_settings(args.out, record, settings, ignore=RESUME_IGNORES)
        finished = writer.resume(record)  # whole batches from the start: the rest batch as in an uninterrupted run
        left = [j for j in mine if (str(j.unit), j.seed) not in finished]
        print(f"resuming {args.out}: {len(mine) - len(left)} of {len(mine)} image(s) done", file=sys.stderr)
    else:
        writer.start()  # the settings record before any work: a run killed now can be resumed (or cleared by --overwrite)
    return writer, left


def _write_batches(args, net, writer, left, generator, config, init, world):
    """Synthesize ``left`` batch by batch into ``writer``; returns (results.json, interrupted, exit code)."""
    from ..infra.interrupts import stop_on_signals
    from ..run import iter_visualize

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
    return path, interrupted, code


def _merge_ranks(args, interrupted: bool, code: int, world) -> int:
    """Under torchrun, after every rank wrote its part: rank 0 merges the parts into ``--out``; returns the exit code."""
    from ..distributed import barrier
    from ..io.merge import merge_parts
    from ..io.rundir import read_json_object

    barrier(world)  # every part is written
    if world.rank != 0:
        return code
    path = merge_parts(args.out)  # started: the earliest rank's start
    record = read_json_object(path)
    if record["interrupted"] and not interrupted:
        code = 130
    print(f"merged {world.size} parts: {len(record['items'])} image(s) and {path}")
    return code


def distinct_units(units: list) -> list:
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
    from ..methods.accentuate import load_photo, photo_codes, prior_encoder
    from ..methods.dgn_am import DGNAMConfig

    if generator is None:
        return load_photo(args.init_image, max(net.spec.size)).to(device)
    if not isinstance(config, DGNAMConfig):
        raise ValueError("--init-image starts a gradient ascent from a photo's code: not with --optimizer cmaes or ga")
    photo = load_photo(args.init_image, max(generator.output_size)).to(device)
    return photo_codes(generator, prior_encoder(generator, net, generator_name, download=args.download), photo[None])[0]


def run_sample(args: argparse.Namespace) -> int:
    """``dgnam sample``: PPGN-h chains per unit into ``--out``; returns the exit code."""
    import math

    import torch

    from ..core.hooks import addressable_layers
    from ..core.units import parse_units
    from ..generators import load_generator
    from ..infra.interrupts import stop_on_signals
    from ..io.rundir import check_same_settings, prepare_run_folder, read_json_object
    from ..io.write import SampleWriter, runtime
    from ..methods.choose import resolve
    from ..methods.ppgn import SampleConfig, sample
    from ..run import make_jobs

    net = net_from_args(args)
    units = distinct_units(parse_units(args.unit, net.categories, layers=addressable_layers(net.model)))
    if args.samples < 1 or args.chains < 1:
        raise ValueError("--samples and --chains must be at least 1")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1 (chains run together), got {args.batch_size}")
    device = torch.device(args.device)
    net.to(device)
    choice = resolve(net, args.generator)  # the generator `dgnam visualize` would take; PPGN-h has its own settings
    if not choice.uses_generator:
        raise ValueError(f"dgnam sample needs a generator prior for {args.net}: --generator NAME or FILE.safetensors (`dgnam generators`)")
    name = choice.generator
    reason = f"PPGN-h chains in the code space of {name}" + ("" if args.generator else f", the default prior of {args.net}")
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
        "generator_weights": args.generator_weights, "method": f"ppgn-h:{name}", "method_reason": reason, "config": dataclasses.asdict(config),
        "encoder": encoder if isinstance(encoder, str) or encoder is None else "loaded", "samples_per_unit": args.samples,
        "chains_per_unit": chains, "seeds": seeds, "units": [str(u) for u in units], "batch_size": args.batch_size, "device": str(device),
        "runtime": runtime(device),
    }
    jobs = make_jobs(units, seeds)
    resuming = prepare_run_folder(args.out, resume=args.resume, overwrite=args.overwrite)  # refuse a folder in use
    if not args.quiet:
        print(f"dgnam: method ppgn-h:{name}: {reason}", file=sys.stderr)
    writer = SampleWriter(args.out, settings, net.categories)
    if resuming:
        record = read_json_object(Path(args.out) / "results.json")
        check_same_settings(args.out, record, settings, ignore=RESUME_IGNORES)
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
    from ..generators import get_generator_spec
    from ..methods.ppgn import encoder_for, load_encoder

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


def run_merge(args: argparse.Namespace) -> int:
    """``dgnam merge OUT``: the parts of a torchrun run that did not merge, into one run folder."""
    from ..io.merge import merge_parts

    path = merge_parts(args.out)
    print(f"merged the parts of {args.out} into {path}")
    return 0
