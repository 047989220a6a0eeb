"""Real bytes from real client programs on loopback: the first flight a Debian-packaged client sends to its
server (a TLS ClientHello for trojan and v2ray's TLS transports), captured by a listener that closes after it.

Nothing leaves loopback: the client is configured with the listener as its server, and a local request through
its SOCKS port makes it connect. A missing program skips the test with the package to install (it fails under
``CI=true``, where ``scripts/install-system-deps.sh`` must have installed it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

#: How long a client may take to start and send its first flight.
WAIT = 8.0


def require(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        message = f"`{program}` is not installed (Debian package {package}; scripts/install-system-deps.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FirstFlight:
    """A one-connection listener on 127.0.0.1 that keeps the first TLS record (or what arrives in time)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(WAIT)
        self.port = self.sock.getsockname()[1]
        self.data = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(WAIT)
            try:
                while len(self.data) < 5 or len(self.data) < 5 + int.from_bytes(self.data[3:5], "big"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    self.data += chunk
            except OSError:
                pass

    def wait(self) -> bytes:
        self.thread.join(WAIT + 2)
        self.sock.close()
        return self.data


def _through_socks(port: int) -> None:
    """A SOCKS5 CONNECT to the client's local port, so it dials its server (the listener)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"\x05\x01\x00")
                if s.recv(2) != b"\x05\x00":
                    return
                s.sendall(b"\x05\x01\x00\x03" + bytes([11]) + b"example.org" + (80).to_bytes(2, "big"))
                s.settimeout(3)
                try:
                    s.recv(16)  # the SOCKS reply; some clients (trojan) dial only when data follows
                    s.sendall(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
                    s.recv(16)
                except OSError:
                    pass
                return
        except OSError:
            time.sleep(0.1)


def _capture(argv_for, config_for, env: dict[str, str] | None = None) -> bytes:
    listener = _FirstFlight()
    socks = _free_port()
    with tempfile.TemporaryDirectory(prefix="cpl-client-") as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(config_for(listener.port, socks)))
        proc = subprocess.Popen(
            argv_for(str(config)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        try:
            _through_socks(socks)
            data = listener.wait()
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert data[:1] == b"\x16", f"no TLS ClientHello from {argv_for('')[0]}: {data[:16]!r}"
    return data


def trojan_hello(sni: str = "proxy.example.com") -> bytes:
    """The ClientHello of Debian's ``trojan`` client (OpenSSL) dialling its server."""
    program = require("trojan", "trojan")
    return _capture(
        lambda config: [program, "-c", config],
        lambda port, socks: {
            "run_type": "client",
            "local_addr": "127.0.0.1",
            "local_port": socks,
            "remote_addr": "127.0.0.1",
            "remote_port": port,
            "password": ["chokepoint"],
            "ssl": {"verify": True, "verify_hostname": True, "sni": sni, "alpn": ["h2", "http/1.1"]},
        },
    )


def v2ray_hello(sni: str = "proxy.example.com", *, aes: bool = True) -> bytes:
    """The ClientHello of Debian's ``v2ray`` (Go crypto/tls) dialling a VLESS-over-TLS server. ``aes=False`` runs
    it with ``GODEBUG=cpu.aes=off``: Go then orders its suites as on a platform without AES acceleration
    (ChaCha20 first), as on most phones."""
    program = require("v2ray", "v2ray")
    return _capture(
        lambda config: [program, "-config", config],
        lambda port, socks: {
            "inbounds": [{"port": socks, "listen": "127.0.0.1", "protocol": "socks", "settings": {"udp": False}}],
            "outbounds": [
                {
                    "protocol": "vless",
                    "settings": {
                        "vnext": [
                            {
                                "address": "127.0.0.1",
                                "port": port,
                                "users": [{"id": "b831381d-6324-4d53-ad4f-8cda48b30811", "encryption": "none"}],
                            }
                        ]
                    },
                    "streamSettings": {"network": "tcp", "security": "tls", "tlsSettings": {"serverName": sni}},
                }
            ],
        },
        env=None if aes else {"GODEBUG": "cpu.aes=off"},
    )


class _ProxyServer:
    """A one-connection SOCKS5 or HTTP CONNECT proxy on 127.0.0.1 that answers the handshake, then records what
    the client sends into the tunnel (and never connects anywhere): the client's chunks, in order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(WAIT)
        self.port = self.sock.getsockname()[1]
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _recv(self, conn: socket.socket) -> bytes:
        data = conn.recv(65536)
        if data:
            self.chunks.append(data)
        return data

    def _run(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(WAIT)
            try:
                if self.kind == "socks5":
                    self._recv(conn)  # greeting
                    conn.sendall(b"\x05\x00")
                    self._recv(conn)  # request
                    conn.sendall(b"\x05\x00\x00\x01" + bytes(6))
                else:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = self._recv(conn)
                        if not chunk:
                            return
                        head += chunk
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._recv(conn)  # the first tunnelled flight (a ClientHello)
            except OSError:
                pass

    def wait(self) -> list[bytes]:
        self.thread.join(WAIT + 2)
        self.sock.close()
        return self.chunks


def curl_through_proxy(kind: str, url: str, *, resolve: str | None = None) -> list[bytes]:
    """What Debian's curl sends to a ``kind`` (``socks5`` or ``http-connect``) proxy when fetching ``url``: the
    handshake chunks, then its first tunnelled flight (nothing leaves loopback: the proxy does not connect).
    ``resolve`` (``host:port:address``, SOCKS only): curl resolves the name itself and asks the proxy for the
    address, so only the tunnelled ClientHello names the host."""
    program = require("curl", "curl")
    server = _ProxyServer(kind)
    scheme = "socks5" if resolve else "socks5h"
    proxy = f"{scheme}://127.0.0.1:{server.port}" if kind == "socks5" else f"http://127.0.0.1:{server.port}"
    extra = ["--resolve", resolve] if resolve else []
    subprocess.run(
        [program, "-sk", "-m", "4", "-p", "-x", proxy, *extra, url], capture_output=True, timeout=WAIT + 5, check=False
    )
    return server.wait()


__all__ = ["curl_through_proxy", "require", "trojan_hello", "v2ray_hello"]
