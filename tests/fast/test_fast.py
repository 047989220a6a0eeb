"""Which core runs: the compiled one when it was built from the source as it is, else the pure-Python one.
``make setup`` builds it (Cython, from setup.py); in CI (``CI=true``) a missing or stale build fails here."""

from __future__ import annotations

import os
import shutil

import pytest

from chokepoint import fast


def test_the_compiled_core_is_built_and_current():
    module = fast.load()
    if os.environ.get("CI") == "true":
        assert fast.is_compiled(module) and not fast.stale(module), "make setup did not build the compiled core"
    elif not fast.is_compiled(module):
        pytest.skip("the compiled core is not built (make setup builds it); the pure-Python core runs")
    assert fast.load(compiled=True) is module


def test_pure_python_core_is_the_source():
    pure = fast.load(compiled=False)
    assert not fast.is_compiled(pure) and pure.__file__.endswith("core.py")
    assert fast.load(compiled=False) is pure


def test_a_stale_build_is_not_used(tmp_path, monkeypatch):
    """A compiled core built from another source runs as the pure-Python source instead, with a warning."""
    module = fast.load()
    if not fast.is_compiled(module):
        pytest.skip("no compiled core to make stale")
    record = tmp_path / "core.build"
    shutil.copy(os.path.join(os.path.dirname(fast.__file__), fast.BUILD_RECORD), record)
    monkeypatch.setattr(fast, "BUILD_RECORD", str(record))  # an absolute path wins in Path / name
    record.write_text("0" * 64 + "\n")
    assert fast.stale(module)
    with pytest.warns(UserWarning, match="pure-Python"):
        assert not fast.is_compiled(fast.load())
    with pytest.raises(ImportError, match="make setup"):
        fast.load(compiled=True)
