"""HTTP GET with the real and a control Host, against the lab origin and through a Host-keyed censor."""

from __future__ import annotations

import socket
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.lab.services import app
from chokepoint.probe.measurement import Failure
from chokepoint.probe.probes import http
from chokepoint.probe.probes.common import ProbeContext, parse_target
from tests._corpus import mutations
from tests.probe.probes._servers import LOOPBACK, CensorProxy, StaticServer, blockpage


def test_get_over_https(ctx, lab):
    target = parse_target(f"https://site.test:{lab.https_port}/page?x=1")
    result = http.fetch(ctx, target, LOOPBACK, tags=("depth=0", "fetch_body=true"))
    assert result.failure is None
    fetched = result.fetched
    transaction = fetched.transaction
    assert fetched.status == 200 and fetched.body == app.page_body(f"site.test:{lab.https_port}", "/page?x=1")
    assert fetched.title == "chokepoint lab origin" and fetched.headers["X-Chokepoint-Lab"] == "origin"
    assert transaction.request.url == target.url and transaction.request.method == "GET"
    assert transaction.request.headers["Host"] == f"site.test:{lab.https_port}"
    assert transaction.alpn == "http/1.1" and transaction.address == f"127.0.0.1:{lab.https_port}"
    assert result.connect.transaction_id == result.handshake.transaction_id == transaction.transaction_id
    assert transaction.tags == ("depth=0", "fetch_body=true")
    assert result.connect.extra["t0"] <= result.handshake.extra["t0"] <= transaction.extra["t0"] <= transaction.t
    body_json = transaction.to_json()["response"]
    assert body_json["code"] == 200 and body_json["body"] == fetched.body.decode()


def test_control_host_over_the_same_path(ctx, lab):
    target = parse_target(f"http://site.test:{lab.http_port}/")
    result = http.fetch(ctx, target, LOOPBACK, host="control.test")
    assert result.handshake is None
    assert result.fetched.body == app.page_body(f"control.test:{lab.http_port}", "/")
    assert result.fetched.transaction.request.url == f"http://control.test:{lab.http_port}/"


def test_redirect_location_and_body_limit(ctx, lab):
    redirect = http.fetch(ctx, parse_target(f"http://site.test:{lab.http_port}/redirect?to=/next"), LOOPBACK)
    assert redirect.fetched.status == 302 and redirect.fetched.location == "/next"
    large = http.fetch(
        ctx, parse_target(f"http://site.test:{lab.http_port}/large?bytes=100000"), LOOPBACK, body_limit=1000
    )
    response = large.fetched.transaction.response
    assert large.failure is None and response.body_is_truncated and large.fetched.body == app.large_body(1000)


def test_blockpage_from_real_fingerprint(ctx, lab, servers):
    page, row = blockpage()
    censor = servers(CensorProxy(lab.http_port, {"blocked.test": "blockpage"}, blockpage=page))
    blocked = http.fetch(ctx, parse_target(f"http://blocked.test:{censor.port}/"), LOOPBACK)
    assert blocked.failure is None and blocked.fetched.status == 403 and blocked.fetched.body == page
    assert row.pattern.encode() in blocked.fetched.body
    allowed = http.fetch(ctx, parse_target(f"http://blocked.test:{censor.port}/"), LOOPBACK, host="control.test")
    assert allowed.fetched.status == 200 and app.MARKER.encode() in allowed.fetched.body


@pytest.mark.parametrize(
    "action, failure",
    [("reset", Failure.CONNECTION_RESET), ("close", Failure.EOF_ERROR), ("drop", Failure.GENERIC_TIMEOUT_ERROR)],
)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_censor_outcomes(short_ctx, lab, servers, action, failure, scheme):
    upstream = lab.http_port if scheme == "http" else lab.https_port
    censor = servers(CensorProxy(upstream, {"blocked.test": action}))
    result = http.fetch(short_ctx, parse_target(f"{scheme}://blocked.test:{censor.port}/"), LOOPBACK)
    assert result.connect.failure is None
    if scheme == "http":
        transaction = result.fetched.transaction
        assert transaction.failure == failure and transaction.response.code == 0
    else:  # the SNI triggered it: the handshake fails, no request is made
        assert result.handshake.failure == failure and result.fetched is None
    assert result.failure == failure


def test_stalled_body_keeps_the_response(short_ctx, lab, servers):
    """A throttled body that does not finish in time: the status line and part of the body are kept."""
    censor = servers(CensorProxy(lab.http_port, {"slow.test": "throttle"}, throttle_chunk=512, throttle_delay=0.05))
    result = http.fetch(
        short_ctx, parse_target(f"http://slow.test:{censor.port}/large?bytes=1000000"), LOOPBACK, total_timeout=0.5
    )
    transaction = result.fetched.transaction
    assert transaction.failure == Failure.GENERIC_TIMEOUT_ERROR
    assert transaction.response.code == 200 and 0 < len(result.fetched.body) < 1_000_000
    assert result.fetched.body == app.large_body(len(result.fetched.body))


def test_reset_after_a_partial_response(short_ctx, servers):
    server = servers(StaticServer(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial", reset=True))
    result = http.fetch(short_ctx, parse_target(f"http://x.test:{server.port}/"), LOOPBACK)
    assert result.fetched.failure in (Failure.CONNECTION_RESET, Failure.EOF_ERROR)
    assert result.fetched.status == 200


def test_garbage_is_a_failure_not_an_exception(short_ctx, servers):
    server = servers(StaticServer(b"SSH-2.0-OpenSSH_9.6\r\n"))
    result = http.fetch(short_ctx, parse_target(f"http://x.test:{server.port}/"), LOOPBACK)
    assert result.fetched.failure.startswith("unknown_failure") and result.fetched.status == 0


# -- property: any bytes a server sends back give a record, never an exception --


def _raw_responses(lab) -> list[bytes]:
    """Real responses of the lab origin (200 page, 302, 404, a chunk of /large), read off the socket now."""
    out = []
    for path in ("/", "/redirect?to=/x", "/status/404", "/large?bytes=3000"):
        with socket.create_connection((LOOPBACK, lab.http_port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        out.append(data)
    return out


@pytest.fixture(scope="module")
def raw_responses(lab):
    return _raw_responses(lab)


def _serve_once(payload: bytes) -> tuple[socket.socket, threading.Thread]:
    client, server = socket.socketpair()

    def run() -> None:
        try:
            server.recv(65536)
            server.sendall(payload)
        except OSError:
            pass
        finally:
            server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return client, thread


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_get_never_raises_on_damaged_responses(raw_responses, data):
    payload = data.draw(mutations(raw_responses))
    sock, thread = _serve_once(payload)
    fetched = http.get(ProbeContext(timeout=2), sock, "http://site.test/", "/", "site.test", body_limit=4096)
    thread.join(5)
    transaction = fetched.transaction
    assert transaction.failure is None or isinstance(transaction.failure, str)
    assert 0 <= fetched.status <= 999 and len(fetched.body) <= 4096
    assert isinstance(transaction.to_json(), dict)
