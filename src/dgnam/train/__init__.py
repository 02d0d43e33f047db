"""Training a generator prior (a DeePSiM-style inverter of a frozen net's layer): :mod:`.trainer`."""
