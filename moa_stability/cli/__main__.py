"""``python -m moa_stability.cli ...``, the same as the ``moa-stability`` script."""

import sys

from . import main

sys.exit(main())
