"""``python -m asyncray``: the ``asyncray`` command."""

import sys

from .scripts import main

sys.exit(main())
