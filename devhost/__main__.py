"""Entry point: ``python -m devhost``."""

import sys

from devhost.cli import main

if __name__ == "__main__":
    sys.exit(main())
