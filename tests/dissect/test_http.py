"""HTTP/1.x dissector: requests sent by Python's http.client over loopback, and the real nDPI captures."""

from __future__ import annotations

import http.client
import random
import socket
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chokepoint.dissect import http as chttp
from chokepoint.dissect.errors import DissectError, Malformed, NeedMoreData, NotThisProtocol
from tests._corpus import NDPI_PCAPS, mutations, ndpi_flows, tcp_flows

# ------------------------------------------------------------------------ real client bytes over loopback


class _Recorder:
    """A loopback TCP server that records what each client sends and answers like a permissive proxy."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while True:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                        if data.startswith(b"CONNECT") and data.count(b"\r\n\r\n") == 1:
                            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        elif data.endswith(b"\r\n\r\n"):
                            conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                            break
                except OSError:
                    pass
                self.received.append(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def recorder():
    rec = _Recorder()
    yield rec
    rec.close()


def _send(
    recorder: _Recorder,
    method: str,
    url: str,
    headers: dict | None = None,
    tunnel: str | None = None,
    host: str = "127.0.0.1",
) -> bytes:
    before = len(recorder.received)
    conn = http.client.HTTPConnection(host, recorder.port, timeout=5)
    if tunnel:
        conn.set_tunnel(tunnel)
    conn.request(method, url, headers=headers or {})
    conn.getresponse().read()
    conn.close()
    for _ in range(500):
        if len(recorder.received) > before:
            break
        threading.Event().wait(0.01)
    return recorder.received[-1]


def test_http_client_get_with_utf8_keyword(recorder):
    path = "/search/" + urllib.parse.quote("法轮功")
    query = urllib.parse.urlencode({"q": "自由 门", "lang": "zh"})
    sent = _send(recorder, "GET", f"{path}?{query}", {"Host": "WWW.Example.COM:8080", "User-Agent": "probe/1"})
    req = chttp.parse_request(sent)
    assert (req.method, req.version, req.complete, req.is_connect) == ("GET", "HTTP/1.1", True, False)
    assert req.path == path and req.query == query
    assert req.path_decoded == "/search/法轮功"
    assert req.query_decoded == "q=自由 门&lang=zh"  # '+' is a space in the query
    assert (req.host, req.port, req.user_agent) == ("www.example.com", 8080, "probe/1")
    assert req.header_length == len(sent) and req.header("accept-encoding") == "identity"


def test_gb18030_percent_encoded_path(recorder):
    raw = "/新闻/法轮功".encode("gb18030")
    sent = _send(recorder, "GET", urllib.parse.quote(raw) + "?kw=" + urllib.parse.quote("六四".encode("gb18030")))
    req = chttp.parse_request(sent)
    assert req.path_decoded == "/新闻/法轮功" and req.query_decoded == "kw=六四"
    # bytes that are neither UTF-8 nor GB18030 fall back to ISO-8859-1, nothing is lost
    odd = chttp.parse_request(b"GET /%ff%fe%zz+ HTTP/1.1\r\nHost: a\r\n\r\n")
    assert odd.path_decoded == "/\xff\xfe%zz+"


def test_absolute_form_proxy_request(recorder):
    sent = _send(recorder, "GET", "http://User:pw@Blocked.Example:8081/p/a%20th?x=1#frag", {"Host": "decoy.example"})
    req = chttp.parse_request(sent)
    assert req.target.startswith("http://User:pw@Blocked.Example:8081/")
    assert (req.host, req.port) == ("blocked.example", 8081)  # from the URL, not the Host field
    assert req.header("host") == "decoy.example"  # RFC 9112 §3.2.2: the target's authority wins
    assert (req.path, req.path_decoded, req.query) == ("/p/a%20th", "/p/a th", "x=1#frag")


def test_connect_tunnel(recorder):
    sent = _send(recorder, "GET", "/inside", tunnel="Blocked.Example:8443")
    req = chttp.parse_request(sent)
    assert req.is_connect and req.method == "CONNECT" and req.target == "Blocked.Example:8443"
    assert (req.host, req.port, req.path, req.query) == ("blocked.example", 8443, "", None)
    inner = chttp.parse_request(sent[req.header_length :])  # the request sent through the tunnel
    assert (inner.method, inner.path, inner.host) == ("GET", "/inside", "blocked.example")
    v6 = chttp.parse_request(b"CONNECT [2001:DB8::1]:443 HTTP/1.1\r\n\r\n")
    assert (v6.host, v6.port) == ("2001:db8::1", 443)


def test_webdav_and_patch_methods(recorder):
    for method in ("PROPFIND", "MKCOL", "PATCH", "REPORT", "OPTIONS"):
        req = chttp.parse_request(_send(recorder, method, "/dav/x"))
        assert req.method == method and chttp.looks_like_request(req.method.encode() + b" /")
    star = chttp.parse_request(b"OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n")
    assert (star.path, star.host) == ("*", "a.example")


def test_http_server_response_head():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302, "Found")
            self.send_header("Location", "http://warning.rt.ru/?id=1")
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"block")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(server.server_address, timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
    finally:
        server.shutdown()
        server.server_close()
    resp = chttp.parse_response(raw)
    assert (resp.version, resp.status, resp.reason) == ("HTTP/1.0", 302, "Found")
    assert resp.header("location") == "http://warning.rt.ru/?id=1" and resp.body_prefix == b"block"
    assert resp.header("Server").startswith("BaseHTTP/")
    for cut in range(len(raw) - 5):
        with pytest.raises(NeedMoreData):
            chttp.parse_response(raw[:cut])


# ----------------------------------------------------------------------------------- split and partial


def test_every_split_of_a_request():
    full = b"GET /watch?v=%E6%B3%95 HTTP/1.1\r\nHost: www.youtube.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n"
    whole = chttp.parse_request(full)
    for cut in range(len(full)):
        prefix = full[:cut]
        with pytest.raises(NeedMoreData):
            chttp.parse_request(prefix)
        if cut < 4:
            continue  # "GET " not complete yet: nothing to report
        seen = chttp.parse_request(prefix, partial=True)
        assert not seen.complete and seen.method == "GET"
        assert whole.target.startswith(seen.target)
        assert seen.host is None or whole.host.startswith(seen.host)
        assert seen.user_agent is None or whole.user_agent.startswith(seen.user_agent)
        assert set(seen.headers[:-1]) <= set(whole.headers)
    assert chttp.parse_request(full, partial=True) == whole


def test_bare_lf_line_ends_and_folding():
    data = b"GET /a HTTP/1.0\nHost : Example.org.\nX-Long: one\n\t two\n\nbody"
    req = chttp.parse_request(data)
    assert req.host == "example.org." and req.header("x-long") == "one two"
    assert req.header_length == len(data) - len(b"body")


# --------------------------------------------------------------------------------- strictness and errors


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"G",
        b"GE",
        b"GET",
        b"CONNEC",
        b"MKCALENDA",
    ],
)
def test_method_prefix_needs_more(data):
    with pytest.raises(NeedMoreData):
        chttp.parse_request(data)
    assert not chttp.looks_like_request(data)


@pytest.mark.parametrize(
    "data",
    [
        b"get / HTTP/1.1\r\n\r\n",  # methods are case-sensitive (RFC 9110 §9.1)
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the HTTP/2 preface is not HTTP/1.x
        b"GETS / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x05\x01\x00",
        b"HTTP/1.1 200 OK\r\n\r\n",
    ],
)
def test_not_a_request(data):
    with pytest.raises(NotThisProtocol):
        chttp.parse_request(data, partial=True)
    assert not chttp.looks_like_request(data)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/9\r\n\r\n",
        b"GET / HTTX/1.1\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        b"GET  HTTP/1.1\r\n\r\n",
        b"GET example.com HTTP/1.1\r\n\r\n",
        b"CONNECT example.com HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nNoColonHere\r\n\r\n",
        b"GET / HTTP/1.1\r\n folded-first\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTQ",  # already wrong before the line ends
    ],
)
def test_malformed_requests(data):
    with pytest.raises(Malformed):
        chttp.parse_request(data)


def test_looks_like_request_cases():
    assert chttp.looks_like_request(b"GET ")
    assert chttp.looks_like_request(b"POST /upload HTTP/1.1\r\n")
    assert chttp.looks_like_request(b"GET      /x")
    assert chttp.looks_like_request(b"CONNECT example.com:443 HTTP/1.1")
    assert not chttp.looks_like_request(b"GET \x00\x01")
    assert not chttp.looks_like_request(b"GETX / HTTP/1.1")


def test_random_bytes_are_not_requests_or_responses():
    rng = random.Random(7)
    for _ in range(20000):
        blob = rng.randbytes(rng.randint(1, 400))
        assert not chttp.looks_like_request(blob)
        with pytest.raises((NotThisProtocol, NeedMoreData)):
            chttp.parse_request(blob, partial=True)
        with pytest.raises((NotThisProtocol, NeedMoreData)):
            chttp.parse_response(blob)


def test_real_tls_client_hello_is_not_http():
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="www.example.com")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16" and len(hello) > 200
    assert not chttp.looks_like_request(hello)
    with pytest.raises(NotThisProtocol):
        chttp.parse_request(hello, partial=True)
    with pytest.raises(NotThisProtocol):
        chttp.parse_response(hello)


def test_bad_status_lines():
    for bad in (b"HTTP/1.1 2000 OK\r\n\r\n", b"HTTP/1.1 OK\r\n\r\n", b"HTTP/x.1 200 OK\r\n"):
        with pytest.raises(Malformed):
            chttp.parse_response(bad)
    with pytest.raises(NeedMoreData):
        chttp.parse_response(b"HTT")


# ------------------------------------------------------------------------------------------ real captures


def _flow(name: str, conn):
    return next(f for f in ndpi_flows(name) if f.key == conn.key)


def test_real_plain_get_and_301():
    (conn,) = tcp_flows("http.pcapng")
    req = chttp.parse_request(conn.c2s)
    flow = _flow("http.pcapng", conn)
    assert req.host == flow.hostname == "google.com" and req.user_agent == "curl/7.68.0"
    resp = chttp.parse_response(conn.s2c)
    assert resp.status == 301 and resp.header("Location") == "http://www.google.com/"
    assert resp.body_prefix.startswith(b"<HTML>")


def test_real_connect_proxy():
    conn = next(c for c in tcp_flows("http_connect.pcap") if c.server[1] == 8080)
    flow = _flow("http_connect.pcap", conn)
    assert flow.label == "HTTP_Connect"
    req = chttp.parse_request(conn.c2s)
    assert req.is_connect and (req.host, req.port) == (flow.hostname, 443) == ("apache.org", 443)
    assert req.user_agent == flow.user_agent
    assert conn.c2s[req.header_length :].startswith(b"\x16\x03\x01")  # the tunnelled TLS ClientHello
    resp = chttp.parse_response(conn.s2c)
    assert (resp.status, resp.reason) == (200, "Connection Established")
    assert resp.body_prefix.startswith(b"\x16\x03\x03")


def test_real_user_agent_split_across_two_packets():
    (conn,) = tcp_flows("http_ua_splitted_in_two_pkts.pcapng")
    flow = _flow("http_ua_splitted_in_two_pkts.pcapng", conn)
    first = chttp.parse_request(conn.segments(True)[0], partial=True)
    assert not first.complete and first.user_agent == flow.user_agent == "Mozil"  # what nDPI reports
    assert first.host is None  # the Host field only comes in the second packet
    with pytest.raises(NeedMoreData):
        chttp.parse_request(conn.segments(True)[0])
    whole = chttp.parse_request(conn.c2s)
    assert whole.complete and whole.host == flow.hostname
    assert whole.user_agent.startswith("Mozilla/5.0 (Linux; Android 6.0.1; SM-T805")


def test_real_keep_alive_pipeline():
    (conn,) = tcp_flows("http_ua_splitted_in_two_pkts.pcapng")
    stream, count = conn.c2s, 0
    while stream:
        req = chttp.parse_request(stream)
        assert req.method == "GET" and req.host == "va.origin.startappservice.com"
        assert req.path.startswith("/tracking/ad") and req.query_decoded.startswith("d=")
        stream, count = stream[req.header_length :], count + 1
    assert count == conn.c2s.count(b"GET /tracking/ad") == 37
    responses, stream = 0, conn.s2c
    while stream:
        resp = chttp.parse_response(stream)
        assert resp.status == 200 and resp.header("content-length") == "0"
        stream, responses = resp.body_prefix, responses + 1
    assert responses == count


def test_real_manipulated_requests():
    conns = tcp_flows("http-manipulated.pcap")
    by_port = {c.client[1]: c for c in conns}
    spaced = chttp.parse_request(by_port[33684].c2s)  # "GET" followed by 18 spaces
    assert spaced.path == "/aaaaaaaaaaaaaaaaaaaaaaaa_very_long_uri"
    assert (spaced.host, spaced.port) == ("www.lan", 8080)
    assert chttp.looks_like_request(by_port[33684].c2s)
    mixed = chttp.parse_request(by_port[33632].c2s)  # "hOsT:wwww.lan:8080", no space after the colon
    flow = _flow("http-manipulated.pcap", by_port[33632])
    assert (mixed.host, mixed.port) == (flow.hostname, 8080) == ("wwww.lan", 8080)
    for conn in conns:
        assert chttp.parse_response(conn.s2c).header("server") == "gamma_httpd"


def test_real_non_http_streams():
    checked = 0
    for name in ("websocket.pcap", "socks.pcap", "ssh.pcap", "tls_heur__vmess-tcp-tls.pcapng"):
        for conn in tcp_flows(name):
            for stream in (conn.c2s, conn.s2c):
                if stream:
                    checked += 1
                    assert not chttp.looks_like_request(stream)
                    with pytest.raises(NotThisProtocol):
                        chttp.parse_request(stream, partial=True)
                    with pytest.raises(NotThisProtocol):
                        chttp.parse_response(stream)
    assert checked >= 15


# ------------------------------------------------------------------------------------------ properties


@pytest.fixture(scope="module")
def request_seeds(recorder) -> list[bytes]:
    seeds = [
        _send(recorder, "GET", "/a/b?c=d&e=%E4%B8%AD", {"User-Agent": "x/1"}),
        _send(recorder, "POST", "http://proxy.example/p?q", {"Content-Length": "0"}),
        _send(recorder, "GET", "/t", tunnel="example.com:443"),
    ]
    if NDPI_PCAPS.is_dir():
        for name in ("http.pcapng", "http_connect.pcap", "http-manipulated.pcap"):
            seeds += [c.c2s[:600] for c in tcp_flows(name) if chttp.looks_like_request(c.c2s)]
        seeds.append(tcp_flows("http_ua_splitted_in_two_pkts.pcapng")[0].segments(True)[0])
    return seeds


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), partial=st.booleans())
def test_property_mutated_requests_raise_only_typed_errors(request_seeds, data, partial):
    blob = data.draw(mutations(request_seeds))
    try:
        req = chttp.parse_request(blob, partial=partial)
    except DissectError as exc:
        event(type(exc).__name__)
        return
    event("parsed")
    assert req.method in chttp.METHODS and chttp.looks_like_request(blob)
    assert req.complete or partial
    assert req.host is None or req.host == req.host.lower()


@pytest.fixture(scope="module")
def response_seeds() -> list[bytes]:
    seeds = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nServer: x\r\n\r\nabc",
        b"HTTP/1.0 302 Found\r\nLocation: http://10.10.34.34/?type=Invalidsite\r\n\r\n",
    ]
    if NDPI_PCAPS.is_dir():
        for name in ("http.pcapng", "http_connect.pcap", "http-manipulated.pcap"):
            seeds += [c.s2c[:600] for c in tcp_flows(name) if c.s2c.startswith(b"HTTP/")]
    return seeds


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_mutated_responses_raise_only_typed_errors(response_seeds, data):
    blob = data.draw(mutations(response_seeds))
    try:
        resp = chttp.parse_response(blob)
    except DissectError as exc:
        event(type(exc).__name__)
        return
    event("parsed")
    assert 100 <= resp.status <= 999 and blob.startswith(resp.version.encode())


@pytest.mark.parametrize("line", [b"HTTP/1.1 000 OK\r\n\r\n", b"HTTP/1.1 099 X\r\n\r\n", b"HTTP/1.1 600 X\r\n\r\n"])
def test_response_status_must_be_a_real_status_code(line):
    with pytest.raises((NotThisProtocol, Malformed)):
        chttp.parse_response(line)
