"""Build of the compiled fast-path core: Cython compiles ``src/chokepoint/fast/core.py`` (typed by ``core.pxd``).

Everything else (metadata, dependencies) is in pyproject.toml. The extension is optional: without a C compiler
the package installs with the pure-Python core (same results, slower), and ``tests/fast/test_fast.py`` fails
under CI when the compiled module is missing. The digest of the compiled source is recorded in
``core.build`` so that ``chokepoint.fast.load`` can tell a stale build from a current one.
"""

import hashlib
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

FAST = Path(__file__).resolve().parent / "src" / "chokepoint" / "fast"
# the same digest as chokepoint.fast.source_digest (not imported: the build does not import the package)
digest = hashlib.sha256(b"".join((FAST / name).read_bytes() for name in ("core.py", "core.pxd")))
(FAST / "core.build").write_text(digest.hexdigest() + "\n")

CORE = Extension("chokepoint.fast.core", ["src/chokepoint/fast/core.py"], optional=True)

setup(
    ext_modules=cythonize(
        [CORE],
        compiler_directives={"language_level": 3, "wraparound": False, "boundscheck": False},
    )
)
