"""``python -m pyv86.cpu DIR`` is the same as ``python -m pyv86.cpu.conformance DIR``."""

import sys

from .conformance import main

sys.exit(main())
