"""``python -m chokepoint.lab.services`` as a process: readiness, graceful shutdown, clear start-up errors."""

from __future__ import annotations

import signal
import socket
import subprocess

import pytest

from chokepoint.lab.ca import LabCA
from tests.lab.services import _harness
from tests.lab.services._harness import CLIENT_TIMEOUT, run_client


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_it_cleanly(tmp_path, sig):
    running = _harness.start(tmp_path)
    assert running.ready["pid"] == running.process.pid
    services = {(e["service"], e["transport"]) for e in running.ready["endpoints"]}
    assert services == {
        ("dns", "udp"),
        ("dns", "tcp"),
        ("http", "tcp"),
        ("https", "tcp"),
        ("h3", "udp"),
        ("echo", "tcp"),
        ("echo", "udp"),
    }
    assert _harness.stop(running, sig) == 0
    assert not running.ready_file.exists()
    assert "server services stopping" in running.log_text()
    assert "Traceback" not in running.log_text()


def test_no_http3_leaves_the_udp_port_to_others(tmp_path):
    """``--no-http3`` (the vps host's range hosts): everything but HTTP/3, and the UDP port stays free."""
    running = _harness.start(tmp_path, extra=("--no-http3",))
    try:
        services = {(e["service"], e["transport"]) for e in running.ready["endpoints"]}
        assert ("h3", "udp") not in services and {("https", "tcp"), ("echo", "udp")} <= services
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.bind(("127.0.0.1", running.ports["https"]))  # what wireguard-go does with UDP 443 on the vps
    finally:
        _harness.stop(running)


def test_an_existing_ca_is_reused(tmp_path):
    ca = LabCA.load_or_create(tmp_path)
    before = (tmp_path / "ca.pem").read_bytes()
    running = _harness.start(tmp_path)
    try:
        out = run_client(
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{running.ports['https']}",
                "-servername",
                "reuse.example",
                "-CAfile",
                str(tmp_path / "ca.pem"),
                "-verify_return_error",
            ]
        )
        assert b"Verify return code: 0 (ok)" in out.stdout
    finally:
        _harness.stop(running)
    assert (tmp_path / "ca.pem").read_bytes() == before == ca.cert_pem


def _fails(tmp_path, *, expect: str, **kwargs) -> None:
    kwargs.setdefault("ports", _harness.pick_ports())
    running = _harness.start(tmp_path, wait=False, **kwargs)
    try:
        assert running.process.wait(30) == 2
    finally:
        _harness.stop(running)
    assert expect in running.log_text(), running.log_text()
    assert not running.ready_file.exists()


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        ports = _harness.pick_ports()
        ports["https"] = port
        _fails(tmp_path, ports=ports, expect=f"cannot bind tcp 127.0.0.1 port {port}")


def test_address_not_here_is_a_clear_error(tmp_path):
    _fails(tmp_path, bind=("192.0.2.77",), expect="cannot bind tcp 192.0.2.77 port")


def test_bad_address_is_a_clear_error(tmp_path):
    _fails(tmp_path, bind=("not-an-ip",), expect="bind address 'not-an-ip' is not an IP address")


def test_bad_dns_map_is_a_clear_error(tmp_path):
    dns_map = tmp_path / "map.yaml"
    dns_map.write_text("names:\n  a.test: not-an-ip\n")
    _fails(tmp_path, extra=("--dns-map", str(dns_map)), expect="'not-an-ip' is not an IP address")


def test_control_role_refuses_web_addresses(tmp_path):
    out = subprocess.run(
        _harness.services_argv(tmp_path, role="control") + ["--bind", "127.0.0.1"],
        capture_output=True,
        timeout=CLIENT_TIMEOUT,
    )
    assert out.returncode == 2 and b"--bind is for role server" in out.stderr
