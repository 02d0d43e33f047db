"""Code-space math shared by the generators and the loops that search their codes."""

from __future__ import annotations

import torch


def clip_to(code: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """``code`` clipped to ``bounds = (lower, upper)`` (unchanged when None)."""
    return code if bounds is None else torch.maximum(torch.minimum(code, bounds[1]), bounds[0])
