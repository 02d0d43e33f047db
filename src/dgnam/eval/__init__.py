"""Measuring synthesized images: pure metrics (:mod:`.metrics`: judges, spectra, Fréchet distance,
diversity), scoring a run folder with them (:mod:`.score`: ``evaluate_run``, nearest neighbours), and
each unit's dataset exemplars (:mod:`.exemplars`)."""
