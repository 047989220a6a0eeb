"""The lab's Web Connectivity test helper (chokepoint.lab.testhelper): OONI's request/response JSON shape,
bad requests answered 400 with a reason, and a real measurement against a local server (no root)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chokepoint.lab import testhelper
from chokepoint.probe.measurement import ControlRequest, ControlResponse

#: The request OONI's probe sends (ooni/probe-cli internal/model/th.go THRequest).
OONI_REQUEST = {
    "http_request": "https://www.example.org/",
    "http_request_headers": {"Accept": ["*/*"], "User-Agent": ["Mozilla/5.0"]},
    "tcp_connect": ["198.19.0.10:443", "[2001:db8:0:2::10]:443"],
}


def test_parse_request_takes_oonis_request():
    request = testhelper.parse_request(json.dumps(OONI_REQUEST).encode())
    assert request.http_request == "https://www.example.org/"
    assert request.tcp_connect == ("198.19.0.10:443", "[2001:db8:0:2::10]:443")
    assert request.http_request_headers["User-Agent"] == ("Mozilla/5.0",)
    assert request.to_json() == OONI_REQUEST


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"{}", "http_request: missing"),
        (json.dumps({"http_request": "ftp://x.example/"}).encode(), "http_request"),
        (json.dumps({"http_request": "example.org"}).encode(), "http:// or https://"),
        (json.dumps({"http_request": "http://a.example/", "tcp_connect": ["a.example:80"]}).encode(), "tcp_connect"),
        (json.dumps({"http_request": "http://a.example/", "tcp_connect": ["198.19.0.10"]}).encode(), "tcp_connect"),
        (json.dumps({"http_request": "http://a.example/", "tcp_connect": "198.19.0.10:80"}).encode(), "tcp_connect"),
        (json.dumps({"http_request": "http://a.example/", "http_request_headers": {"A": "b"}}).encode(), "headers"),
    ],
)
def test_bad_requests_are_400_with_a_reason(body, reason):
    with pytest.raises(testhelper.BadRequest, match=reason.replace("/", ".")):
        testhelper.parse_request(body)
    status, reply = testhelper.handle("POST", "/", body, testhelper.HelperConfig())
    assert status == 400 and reason.split(":")[0] in reply["error"]


def test_other_methods_and_paths():
    assert testhelper.handle("GET", "/", b"", testhelper.HelperConfig())[0] == 405
    assert testhelper.handle("POST", "/elsewhere", b"{}", testhelper.HelperConfig())[0] == 404


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"<html><head><title>lab page</title></head><body>hello</body></html>"
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_measure_builds_oonis_response(origin):
    request = ControlRequest(f"http://127.0.0.1:{origin}/moved", (f"127.0.0.1:{origin}", "127.0.0.1:1"))
    response = testhelper.measure(request, testhelper.HelperConfig(timeout=3))
    doc = response.to_json()
    assert set(doc) == {"tcp_connect", "http_request", "dns", "ip_info"}  # no TLS for an http:// URL on a port
    assert doc["dns"] == {"failure": None, "addrs": ["127.0.0.1"]}  # an IP literal: no lookup
    assert doc["tcp_connect"][f"127.0.0.1:{origin}"] == {"status": True, "failure": None}
    assert doc["tcp_connect"]["127.0.0.1:1"] == {"status": False, "failure": "connection_refused"}
    page = doc["http_request"]
    assert set(page) == {"body_length", "failure", "title", "headers", "status_code"}
    assert (page["status_code"], page["title"], page["failure"]) == (200, "lab page", None)  # redirect followed
    assert page["body_length"] == len(b"<html><head><title>lab page</title></head><body>hello</body></html>")
    assert page["headers"]["Content-Type"] == "text/html"
    assert doc["ip_info"]["127.0.0.1"]["flags"] & 3 == 3  # resolved by the probe and by the helper
    assert ControlResponse.from_json(doc, "control") == response  # what the probe reads back


def test_the_probe_asks_the_helper_over_http(origin):
    from chokepoint.probe.runner import _ask_test_helper

    server = ThreadingHTTPServer(("127.0.0.1", 0), testhelper._handler(testhelper.HelperConfig(timeout=3)))
    server_port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        request = ControlRequest(f"http://127.0.0.1:{origin}/", (f"127.0.0.1:{origin}",))
        response, failure = _ask_test_helper(f"http://127.0.0.1:{server_port}/", request, 3)
        assert failure is None and response is not None and response.http_request.status_code == 200
        bad, failure = _ask_test_helper(f"http://127.0.0.1:{server_port}/nowhere", request, 3)
        assert bad is None and failure == "unknown_failure: test helper answered 404"
    finally:
        server.shutdown()
        server.server_close()
    gone, failure = _ask_test_helper(f"http://127.0.0.1:{server_port}/", request, 3)
    assert gone is None and failure == "connection_refused"


def test_quic_handshakes_only_when_the_probe_asks_for_them():
    """oohelperd's ``x_quic_enabled``: QUIC handshakes to every address on 443 (none listens here)."""
    plain = testhelper.measure(ControlRequest("http://127.0.0.1:1/", ("127.0.0.1:1",)), testhelper.HelperConfig(0.5))
    assert "quic_handshake" not in plain.to_json()
    request = ControlRequest("https://127.0.0.1:1/", ("127.0.0.1:1",), extra={"x_quic_enabled": True})
    doc = testhelper.measure(request, testhelper.HelperConfig(timeout=0.5)).to_json()
    (entry,) = doc["quic_handshake"].values()
    assert list(doc["quic_handshake"]) == ["127.0.0.1:443"]
    assert entry["server_name"] == "127.0.0.1" and entry["status"] is False and entry["failure"]


def _quic_result(failure):
    from chokepoint.probe.measurement import TLSHandshake
    from chokepoint.probe.probes.quic import QuicResult

    return QuicResult(TLSHandshake("198.19.0.10:443", "www.example.org", failure, network="udp"), None)


@pytest.mark.parametrize("helper_ok, technique", [(True, "quic-dropped"), (False, None)])
def test_the_probe_takes_its_quic_control_from_the_helper(monkeypatch, helper_ok, technique):
    from chokepoint.probe import runner
    from chokepoint.probe.probes.common import ProbeContext, parse_target

    calls = []
    monkeypatch.setattr(
        runner.quic, "get_h3", lambda *a, **k: calls.append((a, k)) or _quic_result("generic_timeout_error")
    )
    entry = {"server_name": "www.example.org", "status": helper_ok, "failure": None if helper_ok else "eof_error"}
    helper = ControlResponse(extra={"quic_handshake": {"198.19.0.10:443": entry}})
    config = runner.ProbeConfig(tests=frozenset({"quic"}), test_helper="http://198.18.9.1:8080/")
    assert runner._helper_request(parse_target("https://www.example.org/"), [], config).extra["x_quic_enabled"] is True
    techniques: list = []
    handshakes, control = runner._run_quic(
        ProbeContext(1.0), parse_target("https://www.example.org/"), "198.19.0.10", config, {}, techniques, helper
    )
    assert len(calls) == 1 and calls[0][0][3] == "www.example.org"  # the probe's own GET only, no in-path control
    assert control == {"198.19.0.10:443": entry}
    assert [t["technique"] for t in techniques] == ([technique] if technique else [])
    assert not technique or "test helper" in techniques[0]["evidence"]
