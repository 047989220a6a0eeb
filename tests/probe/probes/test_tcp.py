"""TCP connect: success, refused, dropped SYN (a full accept queue), and bad input."""

from __future__ import annotations

import socket

import pytest

from chokepoint.probe.measurement import Failure
from chokepoint.probe.probes import tcp
from chokepoint.probe.probes.common import ProbeError
from tests.probe.probes._servers import LOOPBACK


def test_connect_succeeds(ctx, lab):
    connection = tcp.connect(ctx, LOOPBACK, lab.http_port, tags=("depth=0", "x"))
    try:
        record = connection.record
        assert (record.ip, record.port, record.failure, record.success) == (LOOPBACK, lab.http_port, None, True)
        assert record.tags == ("depth=0", "x") and record.endpoint == f"127.0.0.1:{lab.http_port}"
        assert 0 <= record.extra["t0"] <= record.t
        connection.sock.sendall(b"GET / HTTP/1.0\r\nHost: site.test\r\n\r\n")
        assert connection.sock.recv(12).startswith(b"HTTP/1.")
    finally:
        connection.close()
    json_form = record.to_json()
    assert json_form["status"] == {"failure": None, "success": True}


def test_closed_port_is_refused(short_ctx):
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
    connection = tcp.connect(short_ctx, LOOPBACK, port)
    assert connection.sock is None
    assert (connection.record.failure, connection.record.success) == (Failure.CONNECTION_REFUSED, False)


def test_dropped_syn_times_out(short_ctx):
    """Linux drops SYNs while a listener's accept queue is full (tcp_abort_on_overflow=0): the client's
    SYN goes unanswered, exactly as when a censor drops it."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(3):  # fill the queue (backlog 0 admits one)
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex((LOOPBACK, port))
                fillers.append(filler)
            connection = tcp.connect(short_ctx, LOOPBACK, port)
        finally:
            for filler in fillers:
                filler.close()
    assert connection.record.failure == Failure.GENERIC_TIMEOUT_ERROR
    assert connection.record.t - connection.record.extra["t0"] >= short_ctx.timeout


@pytest.mark.parametrize("ip, port", [("site.test", 80), ("127.0.0.1", 0), ("127.0.0.1", 70000), ("", 80)])
def test_bad_endpoint_cannot_run(ctx, ip, port):
    with pytest.raises(ProbeError):
        tcp.connect(ctx, ip, port)
