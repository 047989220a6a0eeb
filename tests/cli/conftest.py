"""The manager command groups run through their real entry point (``python -m chokepoint.cli``) against a real
manager process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.manager.conftest import RunningManager, start_manager


@pytest.fixture(scope="module")
def manager(tmp_path_factory) -> Iterator[RunningManager]:
    """One manager per test module (each test uses deployments of its own)."""
    tmp_path: Path = tmp_path_factory.mktemp("manager")
    running = start_manager(f"sqlite:///{tmp_path / 'manager.db'}", tmp_path / "manager.log")
    try:
        yield running
    finally:
        running.stop()


def run(manager: RunningManager | None, *args: str, token: str | None = None, url: str | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("CHOKEPOINT_MANAGER", "CHOKEPOINT_TOKEN")}
    if manager is not None:
        env["CHOKEPOINT_MANAGER"] = url or manager.url
        env["CHOKEPOINT_TOKEN"] = token if token is not None else manager.admin
    return subprocess.run(
        [sys.executable, "-m", "chokepoint.cli", *args], capture_output=True, text=True, timeout=60, env=env
    )
