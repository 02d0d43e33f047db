"""Complete small-scale reproductions of the paper's comparison, trained from scratch on a CPU.

- :mod:`dgnam.repro.fashion`: Fashion-MNIST (Debian's ``dataset-fashion-mnist``): a classifier as
  encoder and target, two judge nets, a DeePSiM-style generator, DGN-AM against the pixel-space
  baselines, judged and checked for near-copies of the training set (``dgnam repro fashion-mnist``).
"""
