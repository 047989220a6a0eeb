"""``python -m chokepoint.backends.intercept``: the proxy process (see ``process.main``)."""

import sys

from chokepoint.backends.intercept.process import main

sys.exit(main())
