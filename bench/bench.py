#!/usr/bin/env python3
"""notesuite's benchmark harness: `scripts/bench --help` (it installs what this needs first)."""

import sys

from notesuite_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
