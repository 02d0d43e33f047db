"""Reading a training checkpoint back, checked: tensors and plain values only, every field of the expected kind."""

from __future__ import annotations

from pathlib import Path

import torch

from ..infra.hub import WeightsError, read_torch_file
from ..infra.messages import short


def load_checkpoint(path: str | Path, map_location: torch.device | str = "cpu") -> dict:
    """A training checkpoint's state, read with ``torch.load(weights_only=True)``.

    A checkpoint holds only tensors and plain values (step, state dicts, Adam's state, the config as
    a dict), so the restricted unpickler reads it; a file that needs anything more (a pickled object
    whose ``__reduce__`` would run code) is refused before any of it runs.

    Args:
        path: ``checkpoint.pt`` written by :meth:`Trainer.save_checkpoint`.
        map_location: where the tensors go.

    Returns:
        The state dict (keys ``step``, ``gen``, ``disc``, ``opt_g``, ``opt_d``, ``config``).

    Example:
        >>> load_checkpoint("runs/prior/checkpoint.pt")["step"]  # doctest: +SKIP
        4000
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} is not a file: give the checkpoint.pt of a train-generator run")
    state = read_torch_file(path, "checkpoint", "use a checkpoint written by dgnam train-generator", map_location)
    missing = {"step", "gen", "disc", "opt_g", "opt_d", "config"} - set(state if isinstance(state, dict) else ())
    if missing:
        raise WeightsError(f"checkpoint {path} lacks {sorted(missing)}: use a checkpoint written by dgnam train-generator")
    tensors = lambda v: isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values())  # noqa: E731
    optimizer = lambda v: isinstance(v, dict) and {"state", "param_groups"} <= set(v)  # noqa: E731
    checks = {"step": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a step count"),
              "config": (lambda v: isinstance(v, dict), "an object"), "gen": (tensors, "a state dict of tensors"),
              "disc": (tensors, "a state dict of tensors"), "opt_g": (optimizer, "an optimizer state"), "opt_d": (optimizer, "an optimizer state")}
    for key, (ok, expected) in checks.items():
        if not ok(state[key]):
            raise WeightsError(f"checkpoint {path}: {key!r} is not {expected}: use a checkpoint written by dgnam train-generator")
    return state


def load_optimizer(opt: torch.optim.Optimizer, state: dict, what: str) -> None:
    """Load an optimizer's state, checked: its parameter groups and every moment's shape must fit.

    Raises:
        WeightsError: one line naming ``what`` (the checkpoint and field).
    """
    try:
        opt.load_state_dict(state)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RuntimeError) as exc:
        raise WeightsError(f"{what} does not fit the optimizer ({type(exc).__name__}: {short(str(exc).splitlines()[0] if str(exc) else '', 120)}): "
                           "use a checkpoint of this architecture written by dgnam train-generator") from None
    params = [p for group in opt.param_groups for p in group["params"]]
    for k, p in enumerate(params):
        for name, value in opt.state.get(p, {}).items():
            if not isinstance(value, torch.Tensor) or (value.dim() > 0 and value.shape != p.shape):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise WeightsError(f"{what}: state {k} {name!r} has shape {shape}, expected {tuple(p.shape)}: use a checkpoint "
                                   "of this architecture written by dgnam train-generator")


__all__ = ["load_checkpoint", "load_optimizer"]
