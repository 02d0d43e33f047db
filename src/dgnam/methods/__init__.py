"""The activation-maximization methods: DGN-AM through a generator (:mod:`.dgn_am`), the pixel-space
baselines (:mod:`.pixel`) and MACO (:mod:`.maco`), gradient-free search in code space (:mod:`.blackbox`),
PPGN-h sampling (:mod:`.ppgn`), feature accentuation from a photo (:mod:`.accentuate`), named presets
(:mod:`.presets`); :mod:`.base` holds what they share and :mod:`.choose` decides which runs
(:func:`resolve`, called by the CLI, the API, the atlas and the benchmarks)."""

from .choose import Choice, resolve

__all__ = ["Choice", "resolve"]
