"""SOCKS dissector: curl's SOCKS4/4a/5 handshakes over loopback, and the real captures."""

from __future__ import annotations

import random
import shutil
import socket
import struct
import subprocess
import threading

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chokepoint.dissect import socks as csocks
from chokepoint.dissect.errors import DissectError, NeedMoreData, NotThisProtocol
from tests._corpus import NDPI_PCAPS, mutations, ndpi_flows, tcp_flows

# ------------------------------------------------------------ a minimal, independent SOCKS server for curl


def _read(conn: socket.socket, n: int, log: bytearray) -> bytes:
    out = b""
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            raise ConnectionError("client closed")
        out += chunk
    log += out
    return out


def _read_until_nul(conn: socket.socket, log: bytearray) -> bytes:
    out = b""
    while not out.endswith(b"\0"):
        out += _read(conn, 1, log)
    return out


def _serve_socks(conn: socket.socket, log: bytearray) -> None:
    version = _read(conn, 1, log)[0]
    if version == 4:
        _, _, address = struct.unpack("!BH4s", _read(conn, 7, log))
        _read_until_nul(conn, log)
        if address[:3] == b"\0\0\0":
            _read_until_nul(conn, log)
        conn.sendall(b"\x00\x5a" + b"\0" * 6)
    else:
        methods = _read(conn, _read(conn, 1, log)[0], log)
        chosen = 2 if 2 in methods else 0
        conn.sendall(bytes([5, chosen]))
        if chosen == 2:
            _read(conn, 1, log)
            _read(conn, _read(conn, 1, log)[0], log)
            _read(conn, _read(conn, 1, log)[0], log)
            conn.sendall(b"\x01\x00")
        _, _, _, atyp = _read(conn, 4, log)
        size = {1: 4, 4: 16}.get(atyp) or _read(conn, 1, log)[0]
        _read(conn, size + 2, log)
        conn.sendall(b"\x05\x00\x00\x01" + b"\0" * 6)
    while not log.endswith(b"\r\n\r\n"):
        log += conn.recv(65536) or b"\r\n\r\n"
    conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def curl_through_socks(option: str, url: str, *extra: str) -> bytes:
    """What curl sends to a SOCKS proxy (``--socks4``, ``--socks4a``, ``--socks5``, ``--socks5-hostname``)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    listener = socket.create_server(("127.0.0.1", 0))
    log = bytearray()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            try:
                _serve_socks(conn, log)
            except (OSError, ConnectionError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "--noproxy",
            "",
            option,
            f"127.0.0.1:{listener.getsockname()[1]}",
            *extra,
            url,
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    thread.join(10)
    listener.close()
    return bytes(log)


# ------------------------------------------------------------------------------------------- curl bytes


def test_curl_socks5_hostname():
    stream = curl_through_socks("--socks5-hostname", "http://Blocked.Example:8080/x")
    req = csocks.parse_client(stream)
    assert (req.version, req.command, req.dst_host, req.dst_port) == (5, csocks.CONNECT, "Blocked.Example", 8080)
    assert 0 in req.methods and req.user_id is None
    assert stream[req.header_length :].startswith(b"GET /x HTTP/1.1\r\n")
    greeting = 2 + stream[1]
    only = csocks.parse_client(stream[:greeting])  # the greeting alone: methods, no destination yet
    assert (only.version, only.methods, only.command, only.dst_host, only.header_length) == (
        5,
        req.methods,
        None,
        None,
        greeting,
    )


def test_curl_socks5_ipv4_and_ipv6():
    v4 = csocks.parse_client(curl_through_socks("--socks5", "http://192.0.2.7:81/"))
    assert (v4.dst_host, v4.dst_port) == ("192.0.2.7", 81)
    v6 = csocks.parse_client(curl_through_socks("--socks5", "http://[2001:db8::7]:82/"))
    assert (v6.dst_host, v6.dst_port) == ("2001:db8::7", 82)


def test_curl_socks5_username_password():
    stream = curl_through_socks("--socks5-hostname", "http://a.example/", "--proxy-user", "alice:s3cret")
    req = csocks.parse_client(stream)
    assert 2 in req.methods and req.user_id == "alice" and req.dst_host == "a.example"
    assert "s3cret" not in repr(req)  # the password is skipped, not stored


def test_curl_socks4_and_socks4a():
    v4 = csocks.parse_client(curl_through_socks("--socks4", "http://192.0.2.9:8000/"))
    assert (v4.version, v4.socks4a, v4.command, v4.dst_host, v4.dst_port) == (4, False, 1, "192.0.2.9", 8000)
    v4a = csocks.parse_client(curl_through_socks("--socks4a", "http://Hidden.Example/"))
    assert (v4a.version, v4a.socks4a, v4a.dst_host, v4a.dst_port) == (4, True, "Hidden.Example", 80)


def test_every_split_of_curl_streams():
    for option, url in (("--socks5-hostname", "http://b.example/"), ("--socks4a", "http://c.example/")):
        stream = curl_through_socks(option, url)
        full = csocks.parse_client(stream)
        for cut in range(full.header_length):
            try:
                seen = csocks.parse_client(stream[:cut])
            except NeedMoreData:
                continue
            assert full.version == seen.version == 5 and seen.dst_host is None and seen.methods == full.methods
        assert csocks.parse_client(stream[: full.header_length]) == full


# ----------------------------------------------------------------------------- strictness, false positives


@pytest.mark.parametrize(
    "data",
    [
        b"\x05\x01\x00\x00",  # one byte after the greeting that cannot start a request
        b"\x05\x00",  # no method offered
        b"\x05\x01\xff",  # 0xff is the server's "no acceptable method"
        b"\x05\x02\x00\x00",  # the same method twice
        b"\x05\x01\x0a",  # unassigned method
        b"\x05\x01\x00\x05\x04",  # unknown command
        b"\x05\x01\x00\x05\x01\x01",  # reserved byte not zero
        b"\x05\x01\x00\x05\x01\x00\x02",  # unknown address type
        b"\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50",  # empty domain name
        b"\x05\x01\x00\x05\x01\x00\x03\x03a b\x00\x50",
        b"\x04\x03\x00\x50\x01\x02\x03\x04\x00",  # SOCKS4 command 3 does not exist
        b"\x04\x01\x00\x00\x01\x02\x03\x04\x00",  # port 0
        b"\x04\x01\x00\x50\x00\x00\x00\x00\x00",  # address 0.0.0.0
        b"\x04\x01\x00\x50\x01\x02\x03\x04us\x01er\x00",
        b"\x04\x01\x00\x50\x01\x02\x03\x04" + b"u" * 300,
        b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00",  # SOCKS4a without a host name
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01",
    ],
)
def test_not_socks(data):
    with pytest.raises(NotThisProtocol):
        csocks.parse_client(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x05",
        b"\x05\x02\x00",
        b"\x04",
        b"\x04\x01\x00\x50\x01",
        b"\x04\x01\x00\x50\x01\x02\x03\x04user",
        b"\x04\x01\x00\x50\x00\x00\x00\x07\x00ex",
    ],
)
def test_prefixes_need_more(data):
    with pytest.raises(NeedMoreData):
        csocks.parse_client(data)


def test_exact_length_greeting():
    assert csocks.parse_client(b"\x05\x01\x00").methods == (0,)
    assert csocks.parse_client(b"\x05\x01\x00\x05").command is None  # a request has begun
    gssapi = csocks.parse_client(b"\x05\x01\x01\x01\x01\x00\x04abcd")  # RFC 1961 token: not parsed
    assert gssapi.methods == (1,) and gssapi.dst_host is None


def test_random_bytes_are_rarely_socks():
    rng = random.Random(1928)
    accepted = 0
    trials = 50000
    for _ in range(trials):
        blob = bytes([rng.choice((4, 5))]) + rng.randbytes(rng.randint(1, 200))
        try:
            csocks.parse_client(blob)
            accepted += 1
        except (NotThisProtocol, NeedMoreData):
            pass
    # even with the version byte given away, random streams almost never pass the length and field rules
    assert accepted / trials < 0.001


# ------------------------------------------------------------------------------------------ real captures


def _expected(name: str) -> dict[int, tuple]:
    return {c.client[1]: c for c in tcp_flows(name)}


def test_real_socks_capture():
    conns = _expected("socks.pcap")
    labels = {f.key: f.label for f in ndpi_flows("socks.pcap")}
    cases = {
        1637: (5, (0,), "www.google.com", 80, False),
        53533: (4, (), "93.184.216.119", 80, False),
        53534: (4, (), "www.example.com", 80, True),
        53535: (5, (0, 1), "93.184.216.119", 80, False),
    }
    for port, (version, methods, host, dst_port, socks4a) in cases.items():
        conn = conns[port]
        assert labels[conn.key] == "SOCKS"
        req = csocks.parse_client(conn.c2s)
        assert (req.version, req.methods, req.dst_host, req.dst_port, req.socks4a, req.command) == (
            version,
            methods,
            host,
            dst_port,
            socks4a,
            1,
        )
        assert conn.c2s[req.header_length :].startswith(b"GET / HTTP/1.1\r\n")  # the tunnelled request
        first = csocks.parse_client(conn.segments(True)[0])  # what the first packet alone shows
        assert first.version == version and first.methods == methods


def test_real_socks_legs_of_proxy_chains():
    shadow = _expected("shadowsocks.pcap")[37904]  # ss-local's SOCKS5 front door
    req = csocks.parse_client(shadow.c2s)
    assert (req.dst_host, req.dst_port) == ("128.95.155.198", 80)
    assert shadow.c2s[req.header_length :].startswith(b"GET / HTTP/1.1\r\nHost: www.washington.edu")
    vmess = _expected("tls_heur__vmess-tcp-tls.pcapng")[40136]
    req = csocks.parse_client(vmess.c2s)
    assert (req.dst_host, req.dst_port) == ("216.58.204.142", 443)
    inner = vmess.c2s[req.header_length :]
    assert inner.startswith(b"\x16\x03\x01") and b"www.youtube.com" in inner  # TLS ClientHello inside


def test_real_non_socks_streams():
    checked = 0
    for name in ("http.pcapng", "ssh.pcap", "http_connect.pcap", "websocket.pcap", "shadowsocks.pcap"):
        for conn in tcp_flows(name):
            if conn.server[1] == 1080:
                continue
            checked += 1
            with pytest.raises(NotThisProtocol):
                csocks.parse_client(conn.c2s)
    assert checked >= 7


@pytest.fixture(scope="module")
def socks_seeds() -> list[bytes]:
    seeds = [
        curl_through_socks("--socks5-hostname", "http://seed.example/"),
        curl_through_socks("--socks4a", "http://seed4.example/"),
        curl_through_socks("--socks5-hostname", "http://u.example/", "--proxy-user", "u:p"),
    ]
    if NDPI_PCAPS.is_dir():
        for name in ("socks.pcap", "shadowsocks.pcap", "tls_heur__vmess-tcp-tls.pcapng"):
            seeds += [c.c2s[:120] for c in tcp_flows(name) if c.server[1] in (1080, 21477)]
    return seeds


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_mutated_handshakes_raise_only_typed_errors(socks_seeds, data):
    blob = data.draw(mutations(socks_seeds))
    try:
        req = csocks.parse_client(blob)
    except DissectError as exc:
        event(type(exc).__name__)
        return
    event("parsed")
    assert req.version in (4, 5) and req.header_length <= len(blob)
    assert (req.dst_host is None) == (req.command is None)
