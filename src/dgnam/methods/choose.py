"""The one place that decides which method and settings a run uses.

What the user said (a net, maybe a generator or a pixel method or an optimizer, maybe a preset, maybe
some settings) goes through :func:`resolve`, which returns a :class:`Choice`: the method, the
generator (if any) and the fully resolved config. ``dgnam visualize``, ``dgnam sample``,
``dgnam atlas``, :func:`dgnam.run.visualize` and the benchmarks all call it, and the loops given no
config (:func:`~dgnam.methods.dgn_am.dgn_am`, :func:`~dgnam.methods.pixel.pixel_am`, feature accentuation)
run what it gives, by the same functions (:func:`~dgnam.methods.dgn_am.dgnam_config`,
:func:`~dgnam.methods.pixel.default_pixel_method`), so every entry point runs the same thing for the same
request (``tests/test_choose.py`` checks it for every registered net and generator).

The rules, in order:

1. A **preset** (``--preset``) names the net, the generator, the DGN-AM settings, the net's input fit and
   the generator's clamp (the paper's reproduction): the :class:`Choice` carries them all, and
   :func:`prepare` applies the fit and the clamp; flags still override single settings.
2. A **generator** given by name, file or object is used; else, unless a **pixel method** is asked
   for, the net's registered default prior (:func:`default_generator`, the ``default`` flag of a
   :class:`~dgnam.generators.GeneratorSpec` whose encoder is that net).
3. With a generator: ``optimizer`` ``cmaes``/``ga`` searches its code space without gradients
   (:mod:`dgnam.methods.blackbox`); otherwise DGN-AM with the paper's settings, then the prior's
   measured ``dgn_am`` settings (stored once, in its file's header), then the overrides
   (:func:`~dgnam.methods.dgn_am.dgnam_config`).
4. Without one: the pixel method asked for, else :func:`~dgnam.methods.pixel.default_pixel_method` (DeepInversion where
   the net has BatchNorm statistics to match, else the Fourier baseline), with its own per-method
   defaults (:class:`~dgnam.methods.pixel.PixelConfig`). This is also what a net without a prior of its
   own (``torchvision:``, ``hf:``, ``my_model.py:build`` ...) gets: by ``FOREIGN_RULE`` in
   ``benchmarks/generalization.py``, fixed before measuring, DGN-AM through the Lite0 prior would have
   to match the pixel default on every foreign layer, and it tied Fourier on SqueezeNet's class logits
   (0.97x; BENCHMARKS.md, "Which method a foreign net gets by default").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..nets import Target
from .dgn_am import dgn_am_settings, dgnam_config
from .pixel import DEFAULT_PIXEL_METHOD, PixelConfig, default_pixel_method

OPTIMIZERS = ("gradient", "paper", "adam", "cmaes", "ga")  # "gradient" = "paper", the paper's normalized steps

_BLACKBOX_KEYS = ("evals",)  # the one setting of a gradient-free search a caller may give


@dataclass(frozen=True)
class Choice:
    """A resolved request: what runs, through which generator, with which settings.

    Attributes:
        method: The label recorded with the run: ``"dgn-am"``, ``"cmaes"``, ``"ga"`` (each followed by
            ``:GENERATOR``) or ``"pixel:METHOD"``.
        generator: The generator's registered name or file; None for a pixel method, or for a
            :class:`~dgnam.generators.Generator` object passed in without a name.
        config: :class:`~dgnam.methods.dgn_am.DGNAMConfig`, :class:`~dgnam.methods.blackbox.CMAESConfig`,
            :class:`~dgnam.methods.blackbox.GAConfig` or :class:`~dgnam.methods.pixel.PixelConfig`.
        preset: The preset's name, if one was used.
        why: One line saying where the method came from (printed by ``dgnam visualize``).
        fit: How the net's input is fitted (``InputSpec.fit``), where a preset says; None: the net's own.
        generator_clamp: Whether the generator clamps its images, where a preset says; None: the generator's own.
    """

    method: str
    generator: str | None
    config: Any
    preset: str | None = None
    why: str = ""
    fit: str | None = None
    generator_clamp: bool | None = None

    @property
    def uses_generator(self) -> bool:
        return not self.method.startswith("pixel:")


def default_generator(net: str) -> str | None:
    """The registered prior marked default for ``net`` (a registry name; the prior's encoder), if any."""
    from ..generators import get_generator_spec, list_generators

    for name in list_generators():
        spec = get_generator_spec(name)
        if spec.default and spec.encoder.split(":")[0] == net:
            return name
    return None


def _net_name(net) -> str | None:
    return net if isinstance(net, str) else getattr(net, "name", None)


def resolve(
    net,
    generator=None,
    *,
    pixel: str | None = None,
    optimizer: str | None = None,
    preset=None,
    overrides: Mapping[str, Any] | None = None,
) -> Choice:
    """Decide the method and its settings for a request; see the module's rules.

    Args:
        net: The target (a :class:`~dgnam.nets.Target`, or its registry name when no pixel default
            is needed).
        generator: A registered name, a ``.safetensors`` prior file or a loaded
            :class:`~dgnam.generators.Generator`; None: the net's default prior, unless ``pixel``.
        pixel: A pixel-space method (``"pixel"``, ``"yosinski"``, ``"fourier"``, ``"deepinversion"``, ``"maco"``)
            instead of a generator.
        optimizer: ``"gradient"``/``"paper"`` (default), ``"adam"``, or the gradient-free ``"cmaes"``/``"ga"``.
        preset: A :class:`~dgnam.methods.presets.Preset` or its name.
        overrides: Settings that win over every default: DGN-AM fields (``steps``, ``lr_start``,
            ``lr_end``, ``decay``, ``transforms`` ...), ``evals`` (the budget of cmaes/ga; with a gradient
            optimizer it means ``steps = evals - 1``), for pixel methods ``steps`` and ``lr``. None values
            are ignored.

    Returns:
        The :class:`Choice`.

    Raises:
        ValueError: settings that do not apply to the method chosen, or an unknown optimizer or pixel method.

    Example:
        >>> net = dgnam.load_net("efficientnet_lite0")
        >>> resolve(net).method                               # the net's default prior
        'dgn-am:lite0_blocks7_conv_resize'
        >>> resolve(net, pixel="fourier", overrides={"steps": 50}).config.steps
        50
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    if preset is not None and isinstance(preset, str):
        from .presets import get_preset

        preset = get_preset(preset)
    if pixel is not None and (generator is not None or (preset is not None and preset.generator)):
        raise ValueError(f"pixel method {pixel!r} and a generator were both given: choose one (a pixel method runs without a generator)")
    name = generator if isinstance(generator, (str, Path)) else None
    if generator is None and pixel is None:
        name = preset.generator if preset is not None else default_generator(_net_name(net))
        generator = name
    name = str(name) if name is not None else None
    if generator is not None:
        choice = _generator_choice(generator, name, optimizer, preset, given)
        if preset is None and name is not None and name == default_generator(_net_name(net) or ""):
            choice = dataclasses.replace(choice, why=f"{choice.why} (the default prior of {_net_name(net)})")
        return choice
    if optimizer in ("cmaes", "ga") or "evals" in given:
        raise ValueError("--optimizer cmaes/ga and --evals search a generator's code space: give --generator NAME or FILE.safetensors")
    return _pixel_choice(net, pixel, given)


def _generator_choice(generator, name: str | None, optimizer: str | None, preset, given: dict) -> Choice:
    label = f":{name}" if name else ""
    if optimizer in ("cmaes", "ga"):
        from .blackbox import CMAESConfig, GAConfig

        wrong = sorted(set(given) - set(_BLACKBOX_KEYS))
        if wrong:
            raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in wrong)} set the gradient path; "
                             f"--optimizer {optimizer} takes its budget from --evals")
        config = CMAESConfig() if optimizer == "cmaes" else GAConfig()
        if "evals" in given:
            config = dataclasses.replace(config, evals=given["evals"])
        return Choice(f"{optimizer}{label}", name, config, why=f"gradient-free search ({optimizer}) in the code space of {name or 'the generator'}",
                      **_preset_fields(preset))  # fmt: skip
    if "lr" in given:
        raise ValueError("--lr is the pixel methods' learning rate: DGN-AM's step is --lr-start (and --lr-end)")
    if "evals" in given:
        if "steps" in given:
            raise ValueError("give --steps or --evals, not both")
        if given["evals"] < 2:
            raise ValueError(f"--evals must be at least 2 with a gradient optimizer (one step and the final image), got {given['evals']}")
        given["steps"] = given.pop("evals") - 1
    if optimizer in ("paper", "adam", "gradient"):
        given["optimizer"] = "paper" if optimizer == "gradient" else optimizer
    if preset is not None:  # the preset's settings in place of the prior's (the paper's: DGNAMConfig's defaults)
        config, why = dgnam_config(None, **{**preset.config, **given}), f"preset {preset.name}"
    else:
        config, measured = dgnam_config(generator, **given), dgn_am_settings(generator)
        why = f"DGN-AM through {name or 'the generator'}" + (f" with its measured settings {measured}" if measured else " with the paper's settings")
    return Choice(f"dgn-am{label}", name, config, why=why, **_preset_fields(preset))


def _preset_fields(preset) -> dict:
    """What a preset says beyond the settings: its name, the net's input fit and the generator's clamp."""
    if preset is None:
        return {}
    return {"preset": preset.name, "fit": preset.fit, "generator_clamp": preset.generator_clamp}


def prepare(choice: Choice, target: Target, generator=None) -> tuple[Target, Any]:
    """The target and generator as ``choice`` runs them, for the command line and the API alike: a preset's
    input fit on the target (a new :class:`~dgnam.nets.Target` around the same model, on its device) and its
    clamp set on the generator (in place). Without a preset both come back as they were.

    Example:
        >>> choice = resolve(net, preset="paper")  # CaffeNet + DeePSiM fc6: centre crop, unclamped images
        >>> net, gen = prepare(choice, net, load_generator(choice.generator))
    """
    if choice.fit is not None and target.spec.fit != choice.fit:
        spec = dataclasses.replace(target.spec, fit=choice.fit)
        target = Target(target.model, spec, target.categories, name=target.name).to(target.mean.device)
    if generator is not None and choice.generator_clamp is not None and hasattr(generator, "clamp"):
        generator.clamp = choice.generator_clamp
    return target, generator


def _pixel_choice(net, pixel: str | None, given: dict) -> Choice:
    if "transforms" in given:
        raise ValueError("--transforms applies only to DGN-AM through a generator prior (give --generator); "
                         "the pixel methods use their own transforms")
    wrong = sorted(set(given) - {"steps", "lr"})
    if wrong:
        raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in wrong)} set DGN-AM; a pixel method takes --steps and --lr")
    if pixel is None:
        if isinstance(net, str):
            raise ValueError(f"{net} has no default prior: the pixel default depends on its layers, so pass the loaded net")
        pixel = default_pixel_method(net)
        why = f"no prior for {_net_name(net)} -> " + ("DeepInversion (the net has BatchNorm statistics to match)" if pixel == DEFAULT_PIXEL_METHOD
                                                     else "the Fourier baseline (the net has no BatchNorm statistics)")
        lite0 = default_generator("efficientnet_lite0")
        if lite0 is not None:
            why += f"; --generator {lite0} for DGN-AM through the Lite0 prior"
    else:
        why = f"pixel method {pixel} (--pixel)"
    return Choice(f"pixel:{pixel}", None, PixelConfig(method=pixel, **given).resolved(), None, why)


__all__ = ["Choice", "resolve", "prepare", "default_generator"]
