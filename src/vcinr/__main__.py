"""``python -m vcinr`` (and ``torchrun -m vcinr``) run the command line."""

import sys

from vcinr.cli import main

sys.exit(main())
