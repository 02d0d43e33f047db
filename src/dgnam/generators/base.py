"""The generator interface: a learned image prior G mapping a code y to an RGB image in [0, 1].

A :class:`Generator` is an ``nn.Module`` with a code shape, per-unit code bounds (the paper clips
the code to each unit's natural range, [0, 3 sigma] of the encoder's activations) and a native
output size; :func:`code_center_scale` gives the centre and scale of its codes.
"""

from __future__ import annotations

import torch
from torch import nn


class Generator(nn.Module):
    """Base class: subclasses define ``decode(code) -> image in [0, 1]``.

    Attributes:
        code_shape: Shape of one code, e.g. ``(4096,)`` or ``(256, 6, 6)``.
        output_size: Native (height, width) of the images.
        lower, upper: Buffers of shape ``code_shape`` with the per-unit clipping bounds
            (``-inf``/``inf`` where unknown).
        dgn_am: The prior's ``dgn_am`` settings, :class:`~dgnam.methods.dgn_am.DGNAMConfig` fields measured to
            suit it (e.g. ``{"lr_start": 0.5}`` for a prior whose codes saturate under the paper's step of 8), read
            from its file's header when loaded; :func:`~dgnam.methods.dgn_am.dgnam_config` applies them under the
            caller's own settings. Empty: the paper's settings.
    """

    def __init__(self, code_shape: tuple[int, ...], output_size: tuple[int, int]):
        super().__init__()
        self.code_shape = tuple(code_shape)
        self.output_size = tuple(output_size)
        self.dgn_am: dict = {}
        self.register_buffer("lower", torch.full(self.code_shape, float("-inf")), persistent=False)
        self.register_buffer("upper", torch.full(self.code_shape, float("inf")), persistent=False)

    def set_bounds(self, lower: torch.Tensor | float | None = None, upper: torch.Tensor | float | None = None) -> "Generator":
        """Set the clipping range of the code (broadcast to ``code_shape``)."""
        if lower is not None:
            self.lower = torch.as_tensor(lower, dtype=torch.float32, device=self.lower.device).expand(self.code_shape).clone()
        if upper is not None:
            self.upper = torch.as_tensor(upper, dtype=torch.float32, device=self.upper.device).expand(self.code_shape).clone()
        if bool((self.lower > self.upper).any()):
            raise ValueError("lower bound above upper bound for some code units")
        return self

    def clip(self, code: torch.Tensor) -> torch.Tensor:
        """``code`` clipped to this generator's ``[lower, upper]`` (:func:`~dgnam.core.codes.clip_to`)."""
        from ..core.codes import clip_to

        return clip_to(code, (self.lower, self.upper))

    def random_code(self, seeds: list[int] | int, std: float = 1.0) -> torch.Tensor:
        """Initial codes drawn from N(0, std^2), one per seed (each from its own RNG, so a code
        depends only on its seed and not on the batch it runs in)."""
        seeds = [seeds] if isinstance(seeds, int) else list(seeds)
        codes = [torch.randn(self.code_shape, generator=torch.Generator().manual_seed(int(s))) * std for s in seeds]
        return torch.stack(codes).to(self.lower.device)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        if tuple(code.shape[1:]) != self.code_shape:
            raise ValueError(f"expected codes of shape (N, {', '.join(map(str, self.code_shape))}), got {tuple(code.shape)}")
        return self.decode(code)


def code_center_scale(generator: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and per-unit scale of a generator's codes, both of ``code_shape`` on its device:
    ``code_mean``/``code_std`` where the generator has them (priors trained by dgnam), else 0 and 1
    (N(0, 1) codes, as DeePSiM's fc6). Gradient-free searches step in units of the scale
    (:mod:`dgnam.methods.blackbox`); PPGN-h sampling whitens the code with it (:mod:`dgnam.methods.ppgn`).

    Args:
        generator: Any :class:`Generator`.

    Returns:
        ``(center, scale)``.

    Example:
        >>> center, scale = code_center_scale(load_generator("deepsim_fc6"))  # zeros and ones: no statistics
    """
    like = generator.lower
    center = getattr(generator, "code_mean", None)
    scale = getattr(generator, "code_std", None)
    center = torch.zeros_like(like) if not isinstance(center, torch.Tensor) else center.to(like).reshape(like.shape)
    scale = torch.ones_like(like) if not isinstance(scale, torch.Tensor) else scale.to(like).reshape(like.shape)
    return center, scale
