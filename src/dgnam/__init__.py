"""dgnam: synthesize the preferred inputs of neurons with deep generator networks (DGN-AM).

Public API::

    import dgnam
    net = dgnam.load_net("efficientnet_lite0")
    units = dgnam.parse_units(["logits:espresso"], net.categories)
    result = dgnam.visualize(net, units, seeds=[0])   # a generator prior, or the pixel-space default
    dgnam.show(result)                                 # in a notebook: the labelled grid
    dgnam.save_result(result, "runs/espresso")        # a run folder, as `dgnam visualize --out` writes

Importing the package does no work: registries fill on first use.
"""

from .methods.blackbox import CMAESConfig, GAConfig, blackbox_am, cmaes_am, ga_am
from .generators import Generator, GeneratorSpec, list_generators, load_generator, register_generator
from .infra.hub import WeightSource, WeightsError, download_weights
from .io.display import show
from .io.write import save_result
from .nets import InputSpec, NetSpec, Target, frozen_eval, list_nets, load_net, register_net, wrap_model
from .core.objectives import Objective, check_units, run_objective, units_objective
from .methods.base import AMResult
from .methods.dgn_am import DGNAMConfig, dgn_am, dgnam_config
from .methods.pixel import PixelConfig, pixel_am
from .run import visualize
from .core.units import Unit, UnitError, parse_unit, parse_units
from .infra.version import __version__

__all__ = [
    "AMResult", "DGNAMConfig", "CMAESConfig", "GAConfig", "blackbox_am", "cmaes_am", "ga_am", "PixelConfig", "pixel_am", "visualize", "Generator", "GeneratorSpec", "InputSpec", "NetSpec", "Objective", "Target",
    "Unit", "UnitError", "WeightSource", "WeightsError", "check_units", "dgn_am", "dgnam_config", "download_weights",
    "list_generators", "list_nets", "load_generator", "load_net", "parse_unit", "parse_units", "save_result", "show",
    "register_generator", "register_net", "run_objective", "units_objective", "wrap_model", "frozen_eval",
]
