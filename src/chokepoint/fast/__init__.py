"""The offline fast path: a compiled per-packet core (``core.py``, compiled by Cython from the same file that is
the pure-Python fallback) that reads captures in large blocks and hands only the packets that can change a
flow's verdict to the engine's Python inspection (``chokepoint.engine.Engine.examine``).

``load()`` gives the compiled core when it was built (``make setup`` does) from the source as it is now, and the
pure-Python one otherwise (with a warning when a build exists but is stale: an edited ``core.py`` runs as
written until ``make setup`` rebuilds it); ``load(compiled=False)`` always gives the pure-Python one (tests
and benchmarks compare the two).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType

_PURE_NAME = "chokepoint.fast._core_pure"


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` is the Cython-compiled core (an extension module, not the .py source)."""
    return not str(getattr(module, "__file__", "")).endswith(".py")


#: Written by setup.py when it compiles the core: the digest of the source it compiled.
BUILD_RECORD = "core.build"
SOURCES = ("core.py", "core.pxd")


def source_digest(folder: Path) -> str:
    """SHA-256 of the core's source files (setup.py records the same digest for what it built)."""
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def stale(module: ModuleType) -> bool:
    """Whether a compiled core was built from another source than ``core.py``/``core.pxd`` as they are now."""
    if not is_compiled(module):
        return False
    folder = Path(__file__).parent
    try:
        built = (folder / BUILD_RECORD).read_text().strip()
    except OSError:
        return True
    return built != source_digest(folder)


def load(compiled: bool | None = None) -> ModuleType:
    """The core module: the compiled one if built and current, else the pure-Python one (``compiled=None``);
    the pure-Python one (``compiled=False``); the compiled one or ``ImportError`` (``compiled=True``)."""
    module = importlib.import_module("chokepoint.fast.core")
    if compiled:
        if not is_compiled(module):
            raise ImportError("the compiled core (chokepoint.fast.core extension) was not built: run make setup")
        if stale(module):
            raise ImportError("the compiled core was built from another core.py/core.pxd: run make setup")
        return module
    if not is_compiled(module):
        return module
    if compiled is None:
        if not stale(module):
            return module
        warnings.warn(
            "chokepoint.fast: the compiled core was built from another core.py/core.pxd, running the pure-Python "
            "core (make setup rebuilds it)",
            stacklevel=2,
        )
    pure = sys.modules.get(_PURE_NAME)
    if pure is None:
        path = Path(__file__).with_name("core.py")
        spec = importlib.util.spec_from_file_location(_PURE_NAME, path)
        assert spec is not None and spec.loader is not None
        pure = importlib.util.module_from_spec(spec)
        sys.modules[_PURE_NAME] = pure
        spec.loader.exec_module(pure)
    return pure
