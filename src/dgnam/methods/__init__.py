"""The activation-maximization methods: DGN-AM through a generator (:mod:`.dgn_am`), the pixel-space
baselines (:mod:`.pixel`) and MACO (:mod:`.maco`), gradient-free search in code space (:mod:`.blackbox`),
PPGN-h sampling (:mod:`.ppgn`), feature accentuation from a photo (:mod:`.accentuate`), named presets
(:mod:`.presets`); :mod:`.base` holds what they share."""
