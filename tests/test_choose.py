"""One resolver (dgnam.methods.choose.resolve): the CLI and the API run the same method and config.

For every registered net (random weights: no file is read) and for every request kind (nothing said,
an explicit prior, a pixel method), the command line and ``dgnam.run.visualize`` are run up to the
point where the work starts, and what reaches the loop (generator and config) is compared. Then, for
every registered net and every registered generator, every entry point (``dgnam visualize``,
``dgnam sample``, ``dgnam atlas``, ``dgnam.run.visualize``, the loops called without a config and feature
accentuation) is run until its loop takes up its config, which must be ``resolve``'s.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image
from torch import nn

import dgnam
import dgnam.cli as cli
import dgnam.cli.visualize as cli_visualize
import dgnam.run as run
from dgnam.methods.choose import Choice, default_generator, resolve
from dgnam.methods.dgn_am import DGNAMConfig, dgn_am_settings
from dgnam.methods.pixel import PixelConfig, default_pixel_method
from dgnam.nets import Target, get_net_spec

PRIOR = "lite0_blocks7_conv_resize"  # the shipped default prior (package data: loads offline)


class Reached(Exception):
    """Raised where the optimization would start: the test has what it came for."""


def random_target(name: str) -> Target:
    spec = get_net_spec(name)
    return Target(spec.builder().eval(), spec.input, spec.categories, name=name)


def unit_of(name: str) -> str:
    return f"{get_net_spec(name).output_layer}:0"


def capture(monkeypatch) -> list:
    """Record (generator, config) where the loop would start, then stop."""
    seen = []

    def batches(target, jobs, generator, config, *args, **kwargs):
        seen.append((generator, config))
        raise Reached

    monkeypatch.setattr(run, "_batches", batches)
    return seen


def via_cli(name, target, flags, tmp_path, monkeypatch):
    seen = capture(monkeypatch)
    monkeypatch.setattr(cli_visualize, "net_from_args", lambda args, fit=None: target)
    try:
        cli.main(["visualize", "--net", name, "--unit", unit_of(name), "--out", str(tmp_path / "cli"), "--quiet", *flags])
    except Reached:
        pass
    assert seen, "the CLI never reached the loop"
    return seen[0]


def via_api(name, target, generator, config, monkeypatch):
    seen = capture(monkeypatch)
    units = dgnam.parse_units([unit_of(name)], target.categories)
    with pytest.raises(Reached):
        run.visualize(target, units, seeds=[0], generator=generator, config=config, progress=False)
    return seen[0]


def same(cli_seen, api_seen):
    (g1, c1), (g2, c2) = cli_seen, api_seen
    assert (g1 is None) == (g2 is None)
    if g1 is not None:
        assert type(g1) is type(g2) and g1.output_size == g2.output_size and g1.dgn_am == g2.dgn_am
    assert type(c1) is type(c2) and dataclasses.asdict(c1) == dataclasses.asdict(c2)


@pytest.mark.parametrize("name", dgnam.list_nets())
def test_cli_and_api_agree_without_a_prior_given(name, tmp_path, monkeypatch):
    target = random_target(name)
    cli_seen, api_seen = via_cli(name, target, [], tmp_path, monkeypatch), via_api(name, target, None, None, monkeypatch)
    same(cli_seen, api_seen)
    prior = default_generator(name)
    if prior is None:  # the pixel default: DeepInversion with BatchNorm statistics, else Fourier
        assert cli_seen[0] is None and cli_seen[1].method == default_pixel_method(target)
        has_bn = any(isinstance(m, nn.BatchNorm2d) for m in target.model.modules())
        assert cli_seen[1].method == ("deepinversion" if has_bn else "fourier")
    else:  # the net's shipped prior with its measured settings
        assert cli_seen[1] == DGNAMConfig(**dgn_am_settings(prior))


@pytest.mark.parametrize("name", dgnam.list_nets())
def test_cli_and_api_agree_with_a_prior_given(name, tmp_path, monkeypatch):
    target = random_target(name)
    cli_seen = via_cli(name, target, ["--generator", PRIOR, "--steps", "7"], tmp_path, monkeypatch)
    gen = dgnam.load_generator(PRIOR)
    api_seen = via_api(name, target, gen, dgnam.dgnam_config(gen, steps=7), monkeypatch)
    same(cli_seen, api_seen)
    assert cli_seen[1] == DGNAMConfig(steps=7, lr_start=0.05, transforms="standard")  # the prior's measured step, the flag on top


@pytest.mark.parametrize("name", ["efficientnet_lite0", "caffenet"])
def test_cli_and_api_agree_on_an_explicit_pixel_method(name, tmp_path, monkeypatch):
    target = random_target(name)
    cli_seen = via_cli(name, target, ["--pixel", "yosinski", "--steps", "9", "--lr", "0.02"], tmp_path, monkeypatch)
    api_seen = via_api(name, target, None, PixelConfig(method="yosinski", steps=9, lr=0.02), monkeypatch)
    same(cli_seen, api_seen)


def test_resolve_names_where_each_choice_came_from():
    lite0 = random_target("efficientnet_lite0")
    choice = resolve(lite0)
    assert isinstance(choice, Choice) and choice.method == f"dgn-am:{PRIOR}" and choice.generator == PRIOR and "measured" in choice.why
    assert resolve(lite0, pixel="fourier").config == PixelConfig(method="fourier").resolved()  # fully resolved
    squeeze = random_target("squeezenet1_1")  # no BatchNorm, no prior
    assert resolve(squeeze).method == "pixel:fourier" and "no BatchNorm" in resolve(squeeze).why
    paper = resolve("caffenet", preset="paper", overrides={"steps": 3})
    assert paper.generator == "deepsim_fc6" and paper.config.steps == 3 and paper.preset == "paper"
    assert resolve(lite0, optimizer="cmaes", overrides={"evals": 40}).config.evals == 40
    assert resolve(lite0, overrides={"evals": 40}).config.steps == 39  # a gradient step per evaluation, plus the final image


@pytest.mark.parametrize("kwargs, message", [
    (dict(pixel="fourier", overrides={"transforms": "standard"}), "--transforms applies only to DGN-AM"),
    (dict(overrides={"lr": 0.1}), "--lr-start"),
    (dict(optimizer="cmaes", overrides={"steps": 5}), "takes its budget from --evals"),
    (dict(overrides={"steps": 5, "evals": 9}), "not both"),
    (dict(pixel="fourier", generator=PRIOR), "choose one"),
    (dict(optimizer="sgd"), "unknown optimizer"),
    (dict(overrides={"lr_star": 1.0}), "unknown setting(s) lr_star"),
])  # fmt: skip
def test_resolve_refuses_settings_that_do_not_apply(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(random_target("efficientnet_lite0"), **kwargs)


def test_the_api_asks_for_a_generator_for_a_code_space_config_on_a_net_without_a_prior(monkeypatch):
    target = random_target("squeezenet1_1")
    units = dgnam.parse_units(["logits:0"], target.categories)
    with pytest.raises(ValueError, match="needs a generator"):
        run.visualize(target, units, config=DGNAMConfig(steps=1), progress=False)
    assert torch.is_tensor(target.mean)


# --------------------------------------------------------------------------------------------------
# Every entry point runs resolve's config (issue 27): spies where each loop takes up its config
# --------------------------------------------------------------------------------------------------

_BUILT: dict = {}
_DGN_AM_TRANSFORMS = dgnam.methods.dgn_am._dgn_am_transforms  # the real one, before any spy


class TinyNet(nn.Module):
    """A registered net's stand-in: one convolution, BatchNorm where the registered net has it, ten logits."""

    def __init__(self, batchnorm: bool):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.norm = nn.BatchNorm2d(4) if batchnorm else nn.Identity()
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        return self.head(self.norm(self.conv(x)).relu().mean((2, 3)))


class TinyGenerator(dgnam.Generator):
    """A DeePSiM generator's stand-in: built by code as DeePSiM is, so it carries no dgn_am settings either."""

    def __init__(self):
        super().__init__((8,), (64, 64))
        self.fc = nn.Linear(8, 3 * 64 * 64)

    def decode(self, code):
        return torch.sigmoid(self.fc(code)).view(-1, 3, 64, 64)


def built(kind: str, name: str):
    """What the entry points load for a registered name, without weight files and fast: a net's stand-in with what
    resolve reads of the net (its name, input spec and whether it has BatchNorm statistics) on a tiny model; a
    shipped prior itself (small, from the package), a code-built DeePSiM generator's stand-in. Built once."""
    from dgnam.core.regularizers import has_batchnorm

    if (kind, name) not in _BUILT:
        if kind == "net":
            spec = get_net_spec(name)
            _BUILT[kind, name] = Target(TinyNet(has_batchnorm(spec.builder())).eval(), spec.input, name=name)
        else:
            spec = dgnam.generators.get_generator_spec(name)
            _BUILT[kind, name] = dgnam.load_generator(name) if spec.builder is None else TinyGenerator().eval().requires_grad_(False)
    return _BUILT[kind, name]


class LoopSpy:
    """Records the config each loop takes up (DGN-AM: its transforms; a pixel method: its transforms; PPGN-h: its
    call) and the generators the entry point loads, then stops the run. ``through``: DGN-AM goes on (the atlas
    computes its pixel baseline after it)."""

    def __init__(self, monkeypatch, through: bool = False):
        import dgnam.methods.dgn_am as dgn_am_module
        import dgnam.methods.ppgn as ppgn
        import dgnam.nets.adapters as adapters

        self.seen, self.loaded = [], []

        def dgn_am_transforms(config, size):
            self.seen.append(("dgn-am", config))
            if not through:
                raise Reached
            return _DGN_AM_TRANSFORMS(config, size)

        def pixel_transforms(config, side=None):
            self.seen.append(("pixel", config))
            raise Reached

        def sample(target, generator, units, seeds, config, *args, **kwargs):
            self.seen.append(("ppgn-h", generator))
            raise Reached

        def load_generator(name, weights=None, download=False):
            self.loaded.append(str(name))
            return built("generator", str(name))

        monkeypatch.setattr(dgn_am_module, "_dgn_am_transforms", dgn_am_transforms)
        monkeypatch.setattr(PixelConfig, "transforms", pixel_transforms)
        monkeypatch.setattr(ppgn, "sample", sample)
        monkeypatch.setattr(dgnam.generators, "load_generator", load_generator)
        monkeypatch.setattr(adapters, "load_target", lambda ref, **kwargs: built("net", ref))  # the CLI's --net


def as_run(choice: Choice, target: Target):
    """``choice.config`` as the loop holds it (a pixel method fills in the image size: the net's)."""
    from dgnam.core.transforms import image_size

    if isinstance(choice.config, PixelConfig):
        return dataclasses.replace(choice.config, size=image_size(choice.config.size, target.spec.size))
    return choice.config


def until_loop(call) -> int | None:
    """Run an entry point until a spy stops it; its exit code if it ends (the CLI's one-line errors)."""
    try:
        return call()
    except Reached:
        return None


def check_entry_points(name: str, generator: str | None, tmp_path, monkeypatch) -> None:
    target = built("net", name)
    unit = "logits:0"
    units = dgnam.parse_units([unit], target.categories)
    choice = resolve(target, generator)
    loop, want = ("dgn-am" if choice.uses_generator else "pixel"), as_run(choice, target)
    gen = built("generator", choice.generator) if choice.uses_generator else None
    flags = ["--generator", generator] if generator else []
    photo = torch.rand(1, 3, *target.spec.size)
    stub_encoder = None if gen is None else (lambda x: torch.zeros(len(x), *gen.code_shape))  # a photo's code, no second net

    from dgnam.methods.accentuate import accentuate
    from dgnam.methods.pixel import pixel_am

    entry_points = {
        "dgnam visualize": lambda: cli.main(["visualize", "--net", name, "--unit", unit, "--out", str(tmp_path / "v"), "--quiet", *flags]),
        "dgnam.run.visualize": lambda: run.visualize(target, units, generator=None if generator is None else gen, progress=False),
        "the loop without a config": (lambda: dgnam.dgn_am(target, gen, units, [0], progress=False)) if gen is not None
        else (lambda: pixel_am(target, units, [0], progress=False)),
        "accentuate": lambda: accentuate(target, units, [0], gen, None, photo, encoder=stub_encoder),
    }  # fmt: skip
    for what, call in entry_points.items():
        spy = LoopSpy(monkeypatch)
        assert until_loop(call) is None, f"{what} never reached its loop"
        assert spy.seen == [(loop, want)], f"{what} runs {spy.seen}, resolve says {want}"
        assert spy.loaded in ([], [choice.generator]), what

    spy = LoopSpy(monkeypatch)  # `dgnam sample`: PPGN-h through the generator resolve picks, else a one-line error
    code = until_loop(lambda: cli.main(["sample", name, unit, "--out", str(tmp_path / "s"), "--quiet", "--eps1", "0", *flags]))
    if choice.uses_generator:
        assert spy.loaded == [choice.generator] and spy.seen == [("ppgn-h", gen)]
    else:
        assert code == 2 and spy.seen == [] and spy.loaded == []

    photos = tmp_path / "photos"  # `dgnam atlas --steps 1`: facets and pixel baseline, each as resolve gives it with the flag
    photos.mkdir(exist_ok=True)
    for i, rgb in enumerate([(200, 30, 30), (30, 30, 200)]):
        Image.new("RGB", (32, 32), rgb).save(photos / f"p{i}.png")
    spy = LoopSpy(monkeypatch, through=True)
    atlas = ["atlas", name, "--out", str(tmp_path / "site"), "--data", str(photos), "--units", unit, "--seeds", "0", "--steps", "1", "-k", "1",
             "--no-accentuate", "--quiet", *flags]  # fmt: skip
    assert until_loop(lambda: cli.main(atlas)) is None
    stepped = resolve(target, generator, overrides={"steps": 1})
    expected = [(loop, as_run(stepped, target))]
    if choice.uses_generator:  # the baseline beside DGN-AM: the net's pixel default, resolved
        expected.append(("pixel", as_run(resolve(target, pixel=default_pixel_method(target), overrides={"steps": 1}), target)))
    assert spy.seen == expected and spy.loaded == ([choice.generator] if choice.uses_generator else [])


@pytest.mark.parametrize("name", dgnam.list_nets())
def test_every_entry_point_runs_what_resolve_gives_for_a_net(name, tmp_path, monkeypatch):
    check_entry_points(name, None, tmp_path, monkeypatch)


@pytest.mark.parametrize("generator", dgnam.list_generators())
def test_every_entry_point_runs_what_resolve_gives_for_a_generator(generator, tmp_path, monkeypatch):
    net = dgnam.generators.get_generator_spec(generator).encoder.split(":")[0]  # the net whose features it inverts
    check_entry_points(net, generator, tmp_path, monkeypatch)


def test_the_loops_without_a_config_run_the_prior_s_measured_settings(tmp_path, monkeypatch):
    """dgn_am(net, gen, units, seeds) ran the paper's lr 8 through the shipped prior, whose measured step is 0.05."""
    target, gen = built("net", "efficientnet_lite0"), built("generator", PRIOR)
    spy = LoopSpy(monkeypatch)
    until_loop(lambda: dgnam.dgn_am(target, gen, [dgnam.Unit("logits", 1)], [0], progress=False))
    assert spy.seen == [("dgn-am", DGNAMConfig(lr_start=0.05, transforms="standard"))]
    assert spy.seen[0][1].steps == 200 and DGNAMConfig().lr_start == 8.0  # DGNAMConfig's own defaults stay the paper's


def test_a_preset_is_applied_in_one_place_for_the_cli_and_the_api(tmp_path, monkeypatch):
    """The paper preset's fit (centre crop) and clamp (off) come with resolve's choice, and prepare sets them."""
    from dgnam.methods.choose import prepare

    caffenet, gen = built("net", "caffenet"), built("generator", "deepsim_fc6")
    choice = resolve(caffenet, preset="paper")
    assert (choice.fit, choice.generator_clamp, choice.config) == ("center-crop", False, DGNAMConfig())
    gen.clamp = True
    fitted, same_gen = prepare(choice, caffenet, gen)
    assert fitted.spec.fit == "center-crop" and fitted.model is caffenet.model and same_gen is gen and gen.clamp is False
    assert prepare(resolve(caffenet, "deepsim_fc6"), caffenet, gen)[0] is caffenet  # no preset: the net as it was
    seen = []  # what `dgnam visualize --preset paper` hands the loop

    def batches(target, jobs, generator, config, *args, **kwargs):
        seen.append((target.spec.fit, generator, config))
        raise Reached

    monkeypatch.setattr(run, "_batches", batches)
    LoopSpy(monkeypatch)
    gen.clamp = True
    until_loop(lambda: cli.main(["visualize", "--preset", "paper", "--unit", "logits:1", "--out", str(tmp_path / "v"), "--quiet"]))
    assert seen == [("center-crop", gen, DGNAMConfig())] and gen.clamp is False


@pytest.mark.parametrize("settings, message", [
    ({"steps": "many"}, "steps = 'many', which is not of type int"),
    ({"clip": 1}, "clip = 1, which is not of type bool"),
    ({"lr_start": True}, "lr_start = True, which is not of type float"),
])  # fmt: skip
def test_a_prior_s_settings_are_checked_as_data(settings, message, monkeypatch):
    """A prior's header is read from a file: a wrong type is a one-line error naming it, not a traceback deep in the loop."""
    from dgnam.infra.errors import error_line

    gen = built("generator", PRIOR)
    monkeypatch.setattr(gen, "dgn_am", settings)
    with pytest.raises(ValueError, match=message) as caught:
        resolve(built("net", "efficientnet_lite0"), gen)
    assert error_line(caught.value).count("\n") == 0
    monkeypatch.setattr(gen, "dgn_am", {"lr_start": 1, "clip": False})  # an int where a float goes is a number all the same
    assert resolve(built("net", "efficientnet_lite0"), gen).config.lr_start == 1
