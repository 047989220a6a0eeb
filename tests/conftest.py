"""Fixtures shared by every test package. Helpers over the real corpus live in ``tests/_corpus.py``."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder beside the checkout (``../shared/data``); skips the test when it is absent."""
    from tests._corpus import SHARED_DATA, not_found  # here, so that a broken import fails only its users

    if not SHARED_DATA.is_dir():
        pytest.skip(not_found(SHARED_DATA))
    return SHARED_DATA


#: Test folders whose tests build network namespaces or use the one lab (fixed `cpk-` names): they run on
#: one xdist worker (`--dist loadgroup`), one after another, instead of waiting on each other's lab lock.
NETNS_DIRS = ("lab", "backends", "validate", "matrix")
NETNS_FIXTURES = frozenset({"lab_guard", "netpath"})


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks into the node ids (--dist loadgroup)
def pytest_collection_modifyitems(config, items):
    root = Path(__file__).resolve().parent
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(root).parts
        if parts[0] in NETNS_DIRS or NETNS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("netns"))
