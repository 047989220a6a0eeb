"""SSH banner dissector: the OpenSSH client's own banner over loopback, and the real ssh.pcap."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import threading

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chokepoint.dissect import ssh as cssh
from chokepoint.dissect.errors import DissectError, Malformed, NeedMoreData, NotThisProtocol
from tests._corpus import NDPI_PCAPS, mutations, ndpi_flows, tcp_flows

SERVER_HELLO = b"Welcome to the lab\r\nno SSH here yet\r\nSSH-2.0-Lab_1.0 test server\r\n"


def _openssh_client_bytes() -> bytes:
    """Run the system's OpenSSH client against a loopback listener and return what it sent."""
    if shutil.which("ssh") is None:
        pytest.skip("the OpenSSH client (ssh) is not installed")
    listener = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            conn.sendall(SERVER_HELLO)
            try:
                while len(received) < 4096:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    received.extend(chunk)
                    if b"\n" in received and len(received) > received.index(b"\n") + 64:
                        break  # banner plus the start of KEXINIT is enough
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=5",
            "-p",
            str(port),
            "probe@127.0.0.1",
            "true",
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    thread.join(10)
    listener.close()
    return bytes(received)


@pytest.fixture(scope="module")
def openssh_client_stream() -> bytes:
    return _openssh_client_bytes()


def test_openssh_client_banner(openssh_client_stream):
    banner = cssh.parse_banner(openssh_client_stream)
    version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr  # "OpenSSH_9.2p1 Debian-..."
    assert banner.proto_version == "2.0" and banner.supports_v2
    assert banner.software_version == version.split(",")[0].split(" ")[0]
    assert banner.raw == openssh_client_stream[: banner.end].decode().rstrip("\r\n")
    assert openssh_client_stream[banner.end - 2 : banner.end] == b"\r\n"
    if len(openssh_client_stream) > banner.end + 5:
        assert openssh_client_stream[banner.end + 5] == 20  # SSH_MSG_KEXINIT follows (RFC 4253 §7.1)


def test_openssh_client_banner_every_split(openssh_client_stream):
    banner = cssh.parse_banner(openssh_client_stream)
    for cut in range(banner.end):
        with pytest.raises(NeedMoreData):
            cssh.parse_banner(openssh_client_stream[:cut])
    assert cssh.parse_banner(openssh_client_stream[: banner.end]) == banner


def test_server_pre_banner_lines():
    banner = cssh.parse_banner(SERVER_HELLO, server=True)
    assert (banner.software_version, banner.comments, banner.end) == ("Lab_1.0", "test server", len(SERVER_HELLO))
    with pytest.raises(NotThisProtocol):  # a client may not send lines first (RFC 4253 §4.2)
        cssh.parse_banner(SERVER_HELLO)
    for cut in range(len(SERVER_HELLO)):
        with pytest.raises(NeedMoreData):
            cssh.parse_banner(SERVER_HELLO[:cut], server=True)


def test_versions_and_line_ends():
    assert cssh.parse_banner(b"SSH-1.99-OpenSSH_3.9p1\r\n").supports_v2
    old = cssh.parse_banner(b"SSH-1.5-1.2.27\n")  # SSH-1, bare LF
    assert (old.proto_version, old.software_version, old.supports_v2, old.end) == ("1.5", "1.2.27", False, 15)
    dashes = cssh.parse_banner(b"SSH-2.0-APACHE-SSHD-2.5.0\r\n")
    assert dashes.software_version == "APACHE-SSHD-2.5.0" and dashes.comments is None


@pytest.mark.parametrize(
    "data",
    [
        b"SSH-2.0\r\n",
        b"SSH-2.0-\r\n",
        b"SSH-x.0-OpenSSH\r\n",
        b"SSH-2-OpenSSH\r\n",
        b"SSH-2.0-Open\x00SSH\r\n",
        b"SSH-2.0-OpenSSH\rmore\r\n",
        b"SSH-2.0-" + b"A" * 250 + b"\r\n",
        b"SSH-2.0-" + b"A" * 300,
        b"SSH-2.x",
        b"SSH-2.0-OpenSSH\x01",
    ],
)
def test_malformed_banners(data):
    with pytest.raises(Malformed):
        cssh.parse_banner(data)


def test_longest_banner():
    line = b"SSH-2.0-" + b"A" * 245 + b"\r\n"  # 255 bytes including CR LF
    assert cssh.parse_banner(line).end == 255


@pytest.mark.parametrize(
    "data",
    [
        b"ssh-2.0-OpenSSH\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00",
        b"\x05\x01\x00",
        b"SSX",
    ],
)
def test_not_ssh(data):
    with pytest.raises(NotThisProtocol):
        cssh.parse_banner(data)


def test_server_side_binary_is_rejected_not_waited_on():
    with pytest.raises(NotThisProtocol):
        cssh.parse_banner(b"\x16\x03\x03\x00\x7a\x02\x00", server=True)
    with pytest.raises(NotThisProtocol):
        cssh.parse_banner(b"line\n" * (cssh.MAX_PRE_BANNER_LINES + 1), server=True)
    with pytest.raises(NeedMoreData):  # an HTTP-like text head could still be followed by a banner
        cssh.parse_banner(b"HTTP/1.1 200 OK\r\nServer: x\r\n", server=True)


def test_random_bytes_are_not_ssh():
    rng = random.Random(4253)
    for _ in range(20000):
        blob = rng.randbytes(rng.randint(1, 300))
        for server in (False, True):
            with pytest.raises((NotThisProtocol, NeedMoreData)):
                cssh.parse_banner(blob, server=server)


def test_real_ssh_capture_matches_ndpi():
    conns = tcp_flows("ssh.pcap")
    assert len(conns) == 2
    for conn in conns:
        client = cssh.parse_banner(conn.c2s)
        server = cssh.parse_banner(conn.s2c, server=True)
        assert conn.c2s[client.end + 5] == 20 and conn.s2c[server.end + 5] == 20  # both continue with KEXINIT
        flow = next(f for f in ndpi_flows("ssh.pcap") if f.key == conn.key)
        # nDPI names the first banner it sees "Hostname" even when the server spoke first (flow 1)
        assert {client.raw, server.raw} == {flow.hostname, flow.server}
    by_port = {c.server[1]: c for c in conns}
    assert cssh.parse_banner(by_port[22].c2s).software_version == "OpenSSH_5.6"
    apache = cssh.parse_banner(by_port[8000].s2c, server=True)
    assert apache.software_version == "APACHE-SSHD-2.5.0"
    ubuntu = cssh.parse_banner(by_port[8000].c2s)
    assert (ubuntu.software_version, ubuntu.comments) == ("OpenSSH_8.2p1", "Ubuntu-4ubuntu0.11")


def test_real_non_ssh_streams():
    checked = 0
    for name in ("http.pcapng", "socks.pcap", "tls_heur__vmess-tcp-tls.pcapng", "websocket.pcap"):
        for conn in tcp_flows(name):
            if conn.c2s:
                checked += 1
                with pytest.raises(NotThisProtocol):
                    cssh.parse_banner(conn.c2s)
    assert checked >= 6


@pytest.fixture(scope="module")
def banner_seeds(openssh_client_stream) -> list[bytes]:
    seeds = [openssh_client_stream, SERVER_HELLO, b"SSH-1.99-Cisco-1.25\r\n"]
    if NDPI_PCAPS.is_dir():
        for conn in tcp_flows("ssh.pcap"):
            seeds += [conn.c2s[:200], conn.s2c[:200]]
    return seeds


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), server=st.booleans())
def test_property_mutated_banners_raise_only_typed_errors(banner_seeds, data, server):
    blob = data.draw(mutations(banner_seeds))
    try:
        banner = cssh.parse_banner(blob, server=server)
    except DissectError as exc:
        event(type(exc).__name__)
        return
    event("parsed")
    assert banner.raw.startswith("SSH-") and banner.end <= len(blob) and blob[banner.end - 1] == 0x0A
    assert len(banner.raw) <= cssh.MAX_BANNER - 1
