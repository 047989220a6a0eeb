"""The circumvention matrix: real transports against the bundled censors in the lab, expected vs observed.

``model`` (the values and their JSON), ``classify`` (runs to outcomes, I/O-free), ``session`` (the lab and its
censor per profile and mode), ``run`` (cells in a fixed order, ``matrix.json`` cell by cell), ``report``
(``matrix.html``, ``matrix.png``, ``matrix.md``), ``timeline`` (a matrix at several days: per profile its
transport x time chart and change points). ``chokepoint matrix`` (``cli/matrix.py``) is the front end;
docs/matrix.md explains how to read it and how to add a transport.
"""

from chokepoint.matrix.model import BASELINE, OUTCOMES, Cell, MatrixConfig, RunResult

__all__ = ["BASELINE", "OUTCOMES", "Cell", "MatrixConfig", "RunResult"]
