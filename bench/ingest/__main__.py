"""`python -m bench.ingest [--quick]`: see README.md."""

from __future__ import annotations

import sys

from bench.ingest.run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
