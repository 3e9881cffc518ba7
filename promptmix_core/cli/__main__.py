"""``python -m promptmix_core.cli``: the same as ``promptmix``."""

import sys

from . import main

sys.exit(main())
