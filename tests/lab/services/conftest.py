"""One services process per test session (per xdist worker), on loopback with free high ports."""

from __future__ import annotations

import pytest

from tests.lab.services import _harness


@pytest.fixture(scope="session")
def services(tmp_path_factory):
    """The server role on 127.0.0.1 (and ::1 when available): HTTP, HTTPS, HTTP/3, DNS, echo."""
    hosts = ("127.0.0.1", "::1") if _harness.ipv6_loopback() else ("127.0.0.1",)
    running = _harness.start(tmp_path_factory.mktemp("lab-services"), bind=hosts, dns_bind=hosts)
    yield running
    _harness.stop(running)


@pytest.fixture(scope="session")
def ipv6(services) -> bool:
    return any(":" in address for address, _ in services.endpoints("http", "tcp"))
