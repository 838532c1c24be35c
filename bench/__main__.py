"""``python -m bench``: same as ``python bench/run.py``."""

import sys

from bench.cli import main

sys.exit(main())
