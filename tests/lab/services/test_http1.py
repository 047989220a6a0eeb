"""HTTP/1.1 service, driven by curl and raw sockets, plus property tests of the request parser."""

from __future__ import annotations

import asyncio
import socket
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings

from chokepoint.lab.services import app, http1
from tests._corpus import mutations
from tests.lab.services._harness import CLIENT_TIMEOUT, run_client


def curl(*args: str) -> subprocess.CompletedProcess:
    return run_client(["curl", "-sS", "--max-time", str(CLIENT_TIMEOUT), *args])


def _url(services, path: str, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{services.ports['http']}{path}"


@pytest.mark.parametrize("host", ["example.com", "blocked.example", "xn--bcher-kva.example", "a" * 63 + ".test"])
def test_any_host_gets_the_origin_page(services, host):
    out = curl("-D", "-", "-H", f"Host: {host}", _url(services, "/some/path?q=1"))
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"\r\nX-Chokepoint-Lab: origin" in head
    assert f"\r\nContent-Length: {len(body)}".encode() in head
    assert body == app.page_body(host, "/some/path?q=1")
    assert f'<p id="host">{host}</p>'.encode() in body and app.MARKER.encode() in body


def test_curl_resolve_keeps_the_name_and_port(services):
    port = services.ports["http"]
    out = curl("--resolve", f"www.lab.test:{port}:127.0.0.1", f"http://www.lab.test:{port}/index.html")
    assert out.returncode == 0, out.stderr
    assert out.stdout == app.page_body(f"www.lab.test:{port}", "/index.html")


def test_html_in_host_and_path_is_escaped(services):
    out = curl("-H", "Host: <b>x</b>", _url(services, "/%3Cscript%3E?a=<i>"))
    assert out.returncode == 0, out.stderr
    assert b"<b>" not in out.stdout and b"&lt;b&gt;x&lt;/b&gt;" in out.stdout
    assert b"<i>" not in out.stdout


@pytest.mark.parametrize("size", [0, 1, 63, 65536, 65537, 3_000_001])
def test_large_streams_exactly_n_bytes(services, size, tmp_path):
    target = tmp_path / "body"
    out = curl("-o", str(target), "-w", "%{http_code} %{size_download}", _url(services, f"/large?bytes={size}"))
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"200 {size}".encode()
    assert target.read_bytes() == app.large_body(size)


@pytest.mark.parametrize("query", ["bytes=-1", "bytes=abc", "bytes=99999999999999", "bytes=%D9%A3"])
def test_large_rejects_bad_sizes(services, query):
    out = curl("-w", "%{http_code}", "-o", "/dev/null", _url(services, f"/large?{query}"))
    assert out.stdout == b"400"


def test_slow_answers_only_after_the_delay(services):
    with socket.create_connection(("127.0.0.1", services.ports["http"]), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET /slow?delay=2 HTTP/1.1\r\nHost: slow.test\r\nConnection: close\r\n\r\n")
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(1)  # the server sleeps 2 s before writing anything
        sock.settimeout(CLIENT_TIMEOUT)
        data = _read_all(sock)
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert data.endswith(app.page_body("slow.test", "/slow?delay=2"))


def test_slow_rejects_bad_delays(services):
    for query in ("delay=-1", "delay=1000", "delay=nan", "delay=x"):
        out = curl("-w", "%{http_code}", "-o", "/dev/null", _url(services, f"/slow?{query}"))
        assert out.stdout == b"400", query


def test_redirect(services):
    out = curl(
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        _url(services, "/redirect?to=https://example.org/x%3Fy"),
    )
    assert out.stdout == b"302 https://example.org/x?y"
    follow = curl("-L", "-w", " %{http_code}", _url(services, "/redirect?to=/landed"))
    assert follow.stdout.endswith(b" 200") and b'<p id="path">/landed</p>' in follow.stdout
    for bad in ("/redirect", "/redirect?to=", "/redirect?to=a%0D%0ASet-Cookie:x", "/redirect?to=a%20b"):
        assert curl("-o", "/dev/null", "-w", "%{http_code}", _url(services, bad)).stdout == b"400", bad


@pytest.mark.parametrize("code", [200, 201, 301, 403, 404, 451, 500, 503, 599])
def test_status_codes(services, code):
    out = curl("-w", "\n%{http_code}", _url(services, f"/status/{code}"))
    body, _, status = out.stdout.rpartition(b"\n")
    assert status == str(code).encode()
    assert body == app.page_body(f"127.0.0.1:{services.ports['http']}", f"/status/{code}", status=code)


@pytest.mark.parametrize("code", [204, 304])
def test_status_without_body(services, code):
    with socket.create_connection(("127.0.0.1", services.ports["http"]), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(f"GET /status/{code} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = _read_all(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {code} ".encode()) and body == b""
    assert b"Content-Length" not in head


@pytest.mark.parametrize("path", ["/status/99", "/status/600", "/status/20", "/status/abc", "/status/2000"])
def test_status_out_of_range(services, path):
    assert curl("-o", "/dev/null", "-w", "%{http_code}", _url(services, path)).stdout == b"400"


def test_head_has_length_but_no_body(services):
    out = curl("-I", _url(services, "/abc"))
    expected = len(app.page_body(f"127.0.0.1:{services.ports['http']}", "/abc"))
    assert out.stdout.startswith(b"HTTP/1.1 200 OK")
    assert f"Content-Length: {expected}\r\n".encode() in out.stdout
    assert out.stdout.endswith(b"\r\n\r\n")


def test_request_bodies_are_read_and_discarded(services, tmp_path):
    upload = tmp_path / "upload"
    upload.write_bytes(b"x" * 300_000)
    plain = curl("--data-binary", f"@{upload}", "-H", "Host: post.test", _url(services, "/form"))
    chunked = curl(
        "--data-binary",
        f"@{upload}",
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Host: post.test",
        _url(services, "/form"),
    )
    for out in (plain, chunked):
        assert out.returncode == 0, out.stderr
        assert out.stdout == app.page_body("post.test", "/form")


def test_keep_alive_reuses_the_connection(services):
    out = curl("-v", "-o", "/dev/null", "-o", "/dev/null", _url(services, "/one"), _url(services, "/two"))
    assert out.returncode == 0
    assert b"Re-using existing connection" in out.stderr or b"Reusing existing connection" in out.stderr


def test_pipelined_requests_are_answered_in_order(services):
    with socket.create_connection(("127.0.0.1", services.ports["http"]), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: p\r\n\r\nGET /b HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
        data = _read_all(sock)
    first = app.page_body("p", "/a")
    second = app.page_body("p", "/b")
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.index(first) < data.index(second) and data.endswith(second)


def test_http10(services):
    out = curl("--http1.0", "-D", "-", _url(services, "/old"))
    assert out.returncode == 0
    assert b"Connection: close" in out.stdout
    assert out.stdout.endswith(app.page_body(f"127.0.0.1:{services.ports['http']}", "/old"))


def test_ipv6(services, ipv6):
    if not ipv6:
        pytest.skip("no IPv6 loopback here")
    out = curl("-g", f"http://[::1]:{services.ports['http']}/six")
    assert out.returncode == 0, out.stderr
    assert out.stdout == app.page_body(f"[::1]:{services.ports['http']}", "/six")


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40) + b"\r\n\r\n",  # a TLS record on port 80
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
)
def test_garbage_gets_400_and_the_service_survives(services, garbage):
    with socket.create_connection(("127.0.0.1", services.ports["http"]), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(garbage)
        data = _read_all(sock)
    assert data.startswith(b"HTTP/1.1 400 Bad Request"), data[:200]
    assert curl(_url(services, "/after")).returncode == 0


def test_abrupt_disconnects_do_not_hurt(services):
    for payload in (b"", b"GET / HT", b"GET /large?bytes=10000000 HTTP/1.1\r\nHost: x\r\n\r\n"):
        sock = socket.create_connection(("127.0.0.1", services.ports["http"]), timeout=CLIENT_TIMEOUT)
        sock.sendall(payload)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        sock.close()
    assert curl(_url(services, "/still-alive")).stdout == app.page_body(
        f"127.0.0.1:{services.ports['http']}", "/still-alive"
    )


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------ the parser on damaged real requests


@pytest.fixture(scope="module")
def real_requests() -> list[bytes]:
    """Requests exactly as curl writes them, captured by a one-shot listener (plain, POST, chunked, HTTP/1.0)."""
    variants = [
        [],
        ["-X", "POST", "--data-binary", "hello=world"],
        ["-H", "Transfer-Encoding: chunked", "--data-binary", "chunked body"],
        ["--http1.0", "-H", "Connection: keep-alive"],
        ["-I", "-H", "Expect: 100-continue"],
    ]
    captured = []
    for extra in variants:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            proc = subprocess.Popen(
                ["curl", "-sS", "--max-time", "3", *extra, f"http://127.0.0.1:{port}/p?q=1"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            listener.settimeout(CLIENT_TIMEOUT)
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(0.5)
                data = b""
                try:
                    while chunk := conn.recv(65536):
                        data += chunk
                except TimeoutError:
                    pass
            proc.kill()
            proc.wait()
        assert data.startswith((b"GET ", b"POST ", b"HEAD ")), data
        captured.append(data)
    return captured


def _parse(data: bytes):
    async def go():
        reader = asyncio.StreamReader(limit=http1.STREAM_LIMIT)
        reader.feed_data(data)
        reader.feed_eof()
        head = await http1._read_head(reader)
        if head is not None:
            await http1._discard_body(reader, head[1])
        return head

    return asyncio.run(go())


def test_real_requests_parse(real_requests):
    for data in real_requests:
        request, headers = _parse(data)
        assert request.target == "/p?q=1" and request.host.startswith("127.0.0.1:")
        assert "user-agent" in headers


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutations([b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"], max_edits=6))
def test_parser_raises_only_typed_errors_on_damaged_seed(data):
    try:
        _parse(data)
    except (http1.BadRequest, asyncio.IncompleteReadError):
        pass


def test_parser_raises_only_typed_errors_on_damaged_curl_requests(real_requests):
    @settings(max_examples=400, deadline=None)
    @given(data=mutations(real_requests, max_edits=6))
    def check(data):
        try:
            _parse(data)
        except (http1.BadRequest, asyncio.IncompleteReadError):
            pass

    check()
