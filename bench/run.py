"""Run the benchmarks: ``python bench/run.py [--quick] [--only NAME] [--systems ...]``.

A thin launcher so the harness runs from a checkout without installing
anything: it puts the repository root on ``sys.path`` and calls
:func:`bench.cli.main`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
