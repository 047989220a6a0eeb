"""Build of the compiled fast-path core: Cython compiles ``src/chokepoint/fast/core.py`` (typed by ``core.pxd``).

Everything else (metadata, dependencies) is in pyproject.toml. The extension is optional: without a C compiler
the package installs with the pure-Python core (same results, slower), and ``tests/fast/test_build.py`` fails
under CI when the compiled module is missing.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

CORE = Extension("chokepoint.fast.core", ["src/chokepoint/fast/core.py"], optional=True)

setup(
    ext_modules=cythonize(
        [CORE],
        compiler_directives={"language_level": 3, "wraparound": False, "boundscheck": False},
    )
)
