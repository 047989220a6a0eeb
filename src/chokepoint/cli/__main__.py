"""``python -m chokepoint.cli``: the same as the ``chokepoint`` command."""

from chokepoint.cli import main

main()
