"""The one place that decides which method and settings a run uses.

What the user said (a net, maybe a generator or a pixel method or an optimizer, maybe a preset, maybe
some settings) goes through :func:`resolve`, which returns a :class:`Choice`: the method, the
generator (if any) and the fully resolved config. ``dgnam visualize``, ``dgnam sample``,
``dgnam atlas``, :func:`dgnam.run.visualize` and the benchmarks all call it, so the command line and
the API run the same thing for the same request (``tests/test_choose.py`` checks it for every
registered net).

The rules, in order:

1. A **preset** (``--preset``) names the net, the generator and the DGN-AM settings (the paper's
   reproduction); flags still override single settings.
2. A **generator** given by name, file or object is used; else, unless a **pixel method** is asked
   for, the net's registered default prior (:func:`default_generator`, the ``default`` flag of a
   :class:`~dgnam.generators.GeneratorSpec` whose encoder is that net).
3. With a generator: ``optimizer`` ``cmaes``/``ga`` searches its code space without gradients
   (:mod:`dgnam.methods.blackbox`); otherwise DGN-AM with the paper's settings, then the generator's
   measured ones (its registry entry's ``dgn_am``, or a prior file's header), then the overrides.
4. Without one: the pixel method asked for, else :func:`default_pixel_method` (DeepInversion where
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

from ..core.regularizers import has_batchnorm

DEFAULT_PIXEL_METHOD = "deepinversion"  # a net with BatchNorm statistics: DeepInversion matches them
FALLBACK_PIXEL_METHOD = "fourier"  # ... a net without them: the Fourier baseline
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
    """

    method: str
    generator: str | None
    config: Any
    preset: str | None = None
    why: str = ""

    @property
    def uses_generator(self) -> bool:
        return not self.method.startswith("pixel:")


def default_pixel_method(net) -> str:
    """The pixel-space default for a net (a :class:`~dgnam.nets.Target` or an ``nn.Module``):
    DeepInversion where it has BatchNorm statistics to match, else the Fourier baseline.

    Also the default of nets without a prior of their own (foreign nets): by ``FOREIGN_RULE`` of
    ``benchmarks/generalization.py`` DGN-AM through the Lite0 prior would need to match it on every foreign
    layer, and it tied Fourier on SqueezeNet's logits (BENCHMARKS.md, "Which method a foreign net gets by default").
    """
    model = getattr(net, "model", net)
    return DEFAULT_PIXEL_METHOD if has_batchnorm(model) else FALLBACK_PIXEL_METHOD


def default_generator(net: str) -> str | None:
    """The registered prior marked default for ``net`` (a registry name; the prior's encoder), if any."""
    from ..generators import get_generator_spec, list_generators

    for name in list_generators():
        spec = get_generator_spec(name)
        if spec.default and spec.encoder.split(":")[0] == net:
            return name
    return None


def generator_dgn_am(generator) -> dict:
    """The DGN-AM settings measured for a generator: a registered name (its entry's ``dgn_am``), a
    ``.safetensors`` prior file (its header; read without loading the weights) or a
    :class:`~dgnam.generators.Generator` (its ``dgn_am_defaults``)."""
    if generator is None:
        return {}
    if not isinstance(generator, (str, Path)):
        return dict(getattr(generator, "dgn_am_defaults", None) or {})
    from ..generators import get_generator_spec, is_generator_file

    if is_generator_file(str(generator)):
        from ..generators.prior import prior_metadata
        from ..infra.hub import WeightsError

        if not Path(generator).is_file():
            return {}  # load_generator names the missing file
        try:
            return dict(prior_metadata(generator).get("dgn_am") or {})
        except Exception as exc:  # not a safetensors prior: load_generator says so in full
            raise WeightsError(f"cannot read the DGN-AM settings of {generator} ({str(exc)[:120]}): give a .safetensors prior") from exc
    return dict(get_generator_spec(str(generator)).dgn_am)


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
        return _generator_choice(generator, name, optimizer, preset, given)
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
        return Choice(f"{optimizer}{label}", name, config, getattr(preset, "name", None), f"gradient-free search ({optimizer}) in the code space of {name or 'the generator'}")
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
    config = dgn_am_config(generator, preset, given)
    if preset is not None:
        why = f"preset {preset.name}"
    else:
        measured = generator_dgn_am(generator)
        why = f"DGN-AM through {name or 'the generator'}" + (f" with its measured settings {measured}" if measured else " with the paper's settings")
    return Choice(f"dgn-am{label}", name, config, getattr(preset, "name", None), why)


def dgn_am_config(generator=None, preset=None, overrides: Mapping[str, Any] | None = None):
    """The :class:`~dgnam.methods.dgn_am.DGNAMConfig` of a run through ``generator``: the paper's settings,
    then the generator's measured ones (:func:`generator_dgn_am`) or a preset's, then ``overrides``
    (None values ignored).

    Raises:
        ValueError: a setting DGNAMConfig does not have (named, with the known ones).
    """
    from .dgn_am import DGNAMConfig

    known = {f.name for f in dataclasses.fields(DGNAMConfig)}
    base = dict(preset.config) if preset is not None else generator_dgn_am(generator)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for what, keys in (("the generator's DGN-AM defaults", base), ("the DGN-AM settings", given)):
        unknown = sorted(set(keys) - known)
        if unknown:
            raise ValueError(f"{what} name unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return DGNAMConfig(**{**base, **given})


def _pixel_choice(net, pixel: str | None, given: dict) -> Choice:
    from .pixel import PixelConfig

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
        why = f"{_net_name(net)} has no prior of its own: " + ("DeepInversion (it has BatchNorm statistics)" if pixel == DEFAULT_PIXEL_METHOD
                                                              else "the Fourier baseline (no BatchNorm statistics)")
    else:
        why = f"pixel method {pixel}"
    return Choice(f"pixel:{pixel}", None, PixelConfig(method=pixel, **given).resolved(), None, why)


__all__ = ["Choice", "resolve", "default_generator", "default_pixel_method", "generator_dgn_am", "dgn_am_config"]
