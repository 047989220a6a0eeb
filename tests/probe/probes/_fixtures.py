"""Fixtures for the probe tests (imported by `conftest.py` here and by `tests/probe/test_runner.py`)."""

from __future__ import annotations

import pytest

from chokepoint.probe.probes.common import ProbeContext
from tests.lab.services import _harness
from tests.probe.probes import _servers

#: Per-operation timeout for outcomes that succeed (generous: the machine is shared).
OK_TIMEOUT = 10.0
#: Per-operation timeout where the expected outcome IS a timeout (kept short so the suite stays fast).
DROP_TIMEOUT = 1.0


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """The lab services on 127.0.0.1 (HTTP, HTTPS, HTTP/3, DNS, echo); every name is 127.0.0.1."""
    running = _servers.start_lab(tmp_path_factory.mktemp("probe-lab"))
    yield running
    _harness.stop(running.running)


@pytest.fixture
def ctx(lab):
    """A probe context trusting the lab CA."""
    return ProbeContext(timeout=OK_TIMEOUT, cafile=lab.ca_file)


@pytest.fixture
def short_ctx(lab):
    """A probe context for outcomes that are timeouts."""
    return ProbeContext(timeout=DROP_TIMEOUT, cafile=lab.ca_file)


@pytest.fixture
def servers():
    """Collects test servers and closes them all at teardown: `servers(server)` returns it."""
    started = []

    def add(server):
        started.append(server)
        return server

    yield add
    for server in reversed(started):
        server.close()
