"""Named settings bundles, as data: what ``--preset`` (and ``resolve(..., preset=NAME)``) applies to a run.

A preset is applied in one place, :func:`dgnam.methods.choose.resolve` (its DGN-AM settings; the
:class:`~dgnam.methods.choose.Choice` carries its fit and clamp, which :func:`~dgnam.methods.choose.prepare`
sets on the net and the generator), for the command line and the API alike.

:data:`PAPER_PRESET` is Nguyen et al. 2016 as their released code ran it (``act_max.py`` with the
``1_activate_output.sh`` / ``2_activate_hidden.sh`` settings of Evolving-AI-Lab/synthesizing):

- target CaffeNet, prior the DeePSiM fc6 generator, code clipped to ``[0, 3 sigma]`` per unit;
- 200 steps of ``code += lr * g / mean|g|`` with ``lr`` falling linearly from 8 to 1e-10;
- after each step the code is clipped, then multiplied by 0.99 (the L2 prior);
- initial code ~ N(0, 1);
- the generator's 256 px image is centre-cropped to CaffeNet's 227 px input;
- hidden conv units are read at the centre of the map (``xy = 6`` of conv5's 13x13).

The paper fed the generator's *unclamped* output to CaffeNet, hence ``generator_clamp=False``
(:func:`~dgnam.methods.choose.prepare` sets it; images then need clamping before they are saved). One
difference remains: the paper did not clip the *initial* code, ``dgn_am`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Mapping

from .dgn_am import DGNAMConfig


@dataclass(frozen=True)
class Preset:
    """A named bundle of run settings.

    Attributes:
        name: What the CLI calls it.
        config: Field values for :class:`dgnam.methods.dgn_am.DGNAMConfig`, in place of a prior's measured ones.
        net: Registry name of the target net.
        generator: Registry name of the generator (the prior).
        fit: How the generator's image is brought to the net's input size (``InputSpec.fit``).
        generator_clamp: Whether decoded images are clamped to [0, 1] before the net sees them.
        description: One line for ``--help``.
    """

    name: str
    config: Mapping[str, Any]
    net: str
    generator: str
    fit: str = "center-crop"
    generator_clamp: bool = True
    description: str = ""

    def __post_init__(self):
        known = {f.name for f in fields(DGNAMConfig)}
        unknown = sorted(set(self.config) - known)
        if unknown:
            raise ValueError(f"preset {self.name!r} sets unknown DGNAMConfig fields {unknown}; known: {sorted(known)}")


PAPER_PRESET = Preset(
    name="paper",
    # DGNAMConfig's defaults are the paper's (act_max.py: iters 200, rates 8.0, end_lr 1e-10, L2 0.99, steps of
    # lr * g / mean|g|, np.random.normal(0, 1) start, --bound act_range/3x/fc6.txt): stated there, not restated here
    config=MappingProxyType({}),
    net="caffenet",
    generator="deepsim_fc6",
    fit="center-crop",
    generator_clamp=False,  # act_max.py fed the raw, unclamped output to CaffeNet; clamp before saving
    description="Nguyen et al. 2016: CaffeNet + DeePSiM fc6, 200 steps, lr 8 -> 1e-10, L2 0.99, 227 crop of 256.",
)

PRESETS: Mapping[str, Preset] = MappingProxyType({PAPER_PRESET.name: PAPER_PRESET})


def get_preset(name: str) -> Preset:
    """A preset by name; the error lists the known ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}. Known presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
