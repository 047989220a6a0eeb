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
