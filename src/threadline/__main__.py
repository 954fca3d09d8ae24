"""``python -m threadline``: the ``threadline`` command."""

import sys

from .cli import main

sys.exit(main())
