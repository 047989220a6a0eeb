"""The offline fast path: a compiled per-packet core (``core.py``, compiled by Cython from the same file that is
the pure-Python fallback) that reads captures in large blocks and hands only the packets that can change a
flow's verdict to the engine's Python inspection (``chokepoint.engine.Engine.examine``).

``load()`` gives the compiled core when it was built (``make setup`` does) and the pure-Python one otherwise;
``load(compiled=False)`` always gives the pure-Python one (tests and benchmarks compare the two).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_PURE_NAME = "chokepoint.fast._core_pure"


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` is the Cython-compiled core (an extension module, not the .py source)."""
    return not str(getattr(module, "__file__", "")).endswith(".py")


def load(compiled: bool | None = None) -> ModuleType:
    """The core module: the compiled one if present (``compiled=None``), the pure-Python one
    (``compiled=False``), or the compiled one or ``ImportError`` (``compiled=True``)."""
    module = importlib.import_module("chokepoint.fast.core")
    if compiled is None:
        return module
    if compiled:
        if not is_compiled(module):
            raise ImportError("the compiled core (chokepoint.fast.core extension) was not built")
        return module
    if not is_compiled(module):
        return module
    pure = sys.modules.get(_PURE_NAME)
    if pure is None:
        path = Path(__file__).with_name("core.py")
        spec = importlib.util.spec_from_file_location(_PURE_NAME, path)
        assert spec is not None and spec.loader is not None
        pure = importlib.util.module_from_spec(spec)
        sys.modules[_PURE_NAME] = pure
        spec.loader.exec_module(pure)
    return pure
