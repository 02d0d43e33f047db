"""``python -m dgnam.cli ...`` (and ``torchrun ... -m dgnam.cli visualize ...``): the ``dgnam`` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
