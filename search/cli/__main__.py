"""``python -m posenas.search.cli``: the ``posenas`` command."""

import sys

from posenas.search.cli import main

sys.exit(main())
