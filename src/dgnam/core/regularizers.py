"""Image priors written as losses: DeepInversion's BatchNorm-statistics loss, total variation, L2.

The BatchNorm loss (Yin et al. 2020, "Dreaming to Distill", eq. 4) asks the synthesized batch to
have, at the input of every ``BatchNorm2d``, the mean and variance that the layer saw on its
training data (its running statistics):

    R_feature(x) = sum_l  ||mu_l(x) - running_mean_l||_2 + ||var_l(x) - running_var_l||_2

where ``mu_l`` and ``var_l`` are taken over the batch and the spatial positions, per channel (the
biased variance, as in the paper's code). The statistics are of the *batch*, so the loss couples
the images of a batch: a batch of one image of one class cannot match statistics gathered over all
of ImageNet as well as a varied batch can, and changing the batch changes every image.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn


def batchnorm_layers(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """The ``BatchNorm2d`` layers of ``model`` (name, module): the running statistics DeepInversion matches."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has ``BatchNorm2d`` statistics to match (DeepInversion's prior applies)."""
    return bool(batchnorm_layers(model))


class BatchNormStatsLoss:
    """Hooks every ``BatchNorm2d`` of ``model`` and measures the last forward pass's statistics gap.

    Use as a context manager; the hooks are removed on exit, also after an error::

        with BatchNormStatsLoss(target.model) as bn:
            logits = target(images)
            loss = -logits[:, 945].sum() + 0.01 * bn.loss()

    Args:
        model: The module to hook (for a :class:`~dgnam.nets.Target`, pass ``target.model``).
        first_weight: Multiplier of the first BatchNorm layer's term. DeepInversion's code uses 10
            (``--first_bn_multiplier``): the first layer's statistics are those of colour and edges.

    Raises:
        ValueError: ``model`` has no ``BatchNorm2d`` layer (the loss needs running statistics; it does
            not apply to nets with LayerNorm or folded BatchNorm).
    """

    def __init__(self, model: nn.Module, first_weight: float = 1.0):
        self.layers = batchnorm_layers(model)
        if not self.layers:
            raise ValueError(
                f"{type(model).__name__} has no BatchNorm2d layers, so it has no running statistics to match; "
                "pass the unfused target (not target.fast()), or use a method without the BatchNorm loss (e.g. 'fourier')"
            )
        self.first_weight = first_weight
        self.enabled = True
        self._terms: dict[int, torch.Tensor] = {}
        self._handles: list = []

    def _hook(self, index: int):
        def hook(module: nn.BatchNorm2d, inputs, _output):
            if not self.enabled:
                return
            var, mean = torch.var_mean(inputs[0], dim=(0, 2, 3), correction=0)
            self._terms[index] = torch.linalg.vector_norm(mean - module.running_mean) + torch.linalg.vector_norm(var - module.running_var)

        return hook

    def __enter__(self) -> "BatchNormStatsLoss":
        try:
            for i, (_, m) in enumerate(self.layers):
                self._handles.append(m.register_forward_hook(self._hook(i)))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Forward passes inside this block are not recorded (e.g. an evaluation pass)."""
        enabled, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = enabled

    def close(self) -> None:
        """Remove the hooks (idempotent)."""
        try:
            for h in self._handles:
                h.remove()
        finally:
            self._handles.clear()
            self._terms.clear()

    def per_layer(self) -> torch.Tensor:
        """Unweighted gap of each BatchNorm layer the last forward pass reached, in model order, shape (L,).

        A pass stopped after a hidden unit's layer (:func:`~dgnam.core.objectives.run_objective`) reaches
        only the BatchNorm layers up to there: the term covers those (the first is still the first).
        """
        if not self._terms:
            raise RuntimeError("no forward pass recorded: run the model inside the `with` block before calling loss()")
        return torch.stack([self._terms[i] for i in sorted(self._terms)])

    def loss(self) -> torch.Tensor:
        """The weighted sum over layers (a scalar) for the last forward pass."""
        terms = self.per_layer()
        weights = torch.ones_like(terms)
        weights[0] = self.first_weight
        return (weights * terms).sum()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (4 directions, as DeepInversion), per image (N,)."""
    d = [
        x[..., :, 1:] - x[..., :, :-1],
        x[..., 1:, :] - x[..., :-1, :],
        x[..., 1:, 1:] - x[..., :-1, :-1],
        x[..., 1:, :-1] - x[..., :-1, 1:],
    ]
    return sum(t.pow(2).flatten(1).mean(1) for t in d)


def l2(x: torch.Tensor, center: float | Sequence[float] = 0.5) -> torch.Tensor:
    """Root-mean-square distance of each image from ``center`` (a value or an RGB colour), per image (N,)."""
    c = torch.as_tensor(center, dtype=x.dtype, device=x.device)
    if c.dim() == 1:
        c = c.view(1, -1, 1, 1)
    return (x - c).pow(2).flatten(1).mean(1).sqrt()


__all__ = ["BatchNormStatsLoss", "total_variation", "l2"]
