"""``python -m moa_stability ...``, the same as the ``moa-stability`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
