"""What the machine offers that changes how fast a run can go (read-only probes, no side effects)."""

from __future__ import annotations

import torch

#: The numeric precisions of the optimization loops: ``fp32`` everywhere, or the nets under ``bf16`` autocast.
PRECISIONS = ("fp32", "bf16")


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX-512 BF16 or AMX tiles): bf16 autocast is faster there."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``auto`` -> ``bf16`` on a CPU with native bf16 (or a CUDA device that supports it), else ``fp32``; others as given.

    Raises:
        ValueError: not ``auto`` nor one of :data:`PRECISIONS`.
    """
    if precision == "auto":
        kind = torch.device(device).type
        if kind == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if kind == "cpu" and cpu_has_fast_bf16() else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto or one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


__all__ = ["PRECISIONS", "cpu_has_fast_bf16", "resolve_precision"]
