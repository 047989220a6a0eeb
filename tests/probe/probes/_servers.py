"""Real misbehaving servers on 127.0.0.1 for the probe tests: a tiny on-path censor in front of the lab
services, a lying DNS server, a DoH endpoint, a QUIC dropper. Every one is a real socket server; the
censor decides with the project's own dissectors (HTTP Host, TLS SNI, QUIC Initial SNI, the FET test).

Each server runs in daemon threads and is stopped by its `close()` (the fixtures call it).
"""

from __future__ import annotations

import http.server
import json
import select
import socket
import socketserver
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol
from chokepoint.dissect.fet import classify_first_packet
from chokepoint.dissect.http import parse_request
from chokepoint.dissect.quic import InitialAssembler
from chokepoint.dissect.tls import parse_client_hello_records
from chokepoint.lab.ca import LabCA
from tests.lab.services import _harness

LOOPBACK = "127.0.0.1"
HOLD_SECONDS = 30.0
_PARSE_ERRORS = (Malformed, NotThisProtocol)


def reset_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends a RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


# --------------------------------------------------------------------------------------------------
# The lab services (the real origin) on loopback
# --------------------------------------------------------------------------------------------------


@dataclass
class Lab:
    """`python -m chokepoint.lab.services` on 127.0.0.1 with every name resolving to 127.0.0.1
    (`gone.test` is NXDOMAIN)."""

    running: _harness.Running

    @property
    def ports(self) -> dict:
        return self.running.ports

    @property
    def dns(self) -> tuple[str, int]:
        return LOOPBACK, int(self.ports["dns"])

    @property
    def http_port(self) -> int:
        return int(self.ports["http"])

    @property
    def https_port(self) -> int:
        return int(self.ports["https"])

    @property
    def echo_port(self) -> int:
        return self.running.echo_ports[0]

    @property
    def ca_file(self) -> str:
        return str(self.running.ca_file)

    @property
    def state_dir(self) -> Path:
        return self.running.state_dir


def start_lab(state_dir: Path) -> Lab:
    state_dir.mkdir(parents=True, exist_ok=True)
    dns_map = state_dir / "dns-map.json"
    dns_map.write_text(json.dumps({"default": {"A": [LOOPBACK], "AAAA": []}, "names": {"gone.test": None}}))
    return Lab(_harness.start(state_dir, extra=("--dns-map", str(dns_map))))


# --------------------------------------------------------------------------------------------------
# A TCP server base with per-connection threads
# --------------------------------------------------------------------------------------------------


class _TcpServer:
    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.closed = threading.Event()
        self.connections = 0
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self.closed.is_set():
            try:
                readable, _, _ = select.select([self.listener], [], [], 0.1)
                if not readable:
                    continue
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def hold(self, client: socket.socket) -> None:
        """Read and discard until the client gives up (a dropping censor never answers)."""
        deadline = time.monotonic() + HOLD_SECONDS
        try:
            while not self.closed.is_set() and time.monotonic() < deadline:
                readable, _, _ = select.select([client], [], [], 0.1)
                if readable and not client.recv(65536):
                    break
        except OSError:
            pass
        client.close()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        self._thread.join(5)


def pump(
    client: socket.socket,
    upstream: socket.socket,
    stop: threading.Event,
    *,
    chunk: int | None = None,
    delay: float = 0.0,
) -> None:
    """Relay both ways until either side closes; server-to-client data in `chunk`-byte pieces with
    `delay` s between them when throttling."""
    sockets = [client, upstream]
    try:
        while not stop.is_set():
            readable, _, _ = select.select(sockets, [], [], 0.1)
            for sock in readable:
                other = upstream if sock is client else client
                data = sock.recv(65536 if chunk is None or sock is client else chunk)
                if not data:
                    return
                other.sendall(data)
                if sock is upstream and delay:
                    time.sleep(delay)
    except OSError:
        return
    finally:
        client.close()
        upstream.close()


def first_name(data: bytes) -> tuple[str | None, bool]:
    """(HTTP Host or TLS SNI, complete): what a name-keyed censor reads in the first client bytes."""
    if data[:1] == b"\x16":
        try:
            return parse_client_hello_records(data).sni, True
        except NeedMoreData:
            return None, False
        except _PARSE_ERRORS:
            return None, True
    if b"\r\n\r\n" not in data and len(data) < 16384:
        return None, False
    try:
        return parse_request(data).host, True
    except (NeedMoreData, *_PARSE_ERRORS):
        return None, True


BLOCKPAGE_STATUS = "403 Forbidden"


class CensorProxy(_TcpServer):
    """An on-path censor in front of `upstream_port`: per name (Host or SNI) one action:

    - ``reset``: RST (SO_LINGER 0) after reading the request/ClientHello;
    - ``drop``: swallow everything, never answer (the client times out);
    - ``close``: a FIN (the client sees EOF);
    - ``blockpage``: answer an HTTP 403 with `blockpage` as the body, then close;
    - ``throttle``: forward, server-to-client data in `throttle_chunk` bytes every `throttle_delay` s;
    - ``residual``: RST, then reset every new connection for `residual_seconds`.
    Other names pass through untouched. `triggers` counts the censored connections per name.
    """

    def __init__(
        self,
        upstream_port: int,
        rules: dict[str, str],
        *,
        blockpage: bytes = b"",
        throttle_chunk: int = 1024,
        throttle_delay: float = 0.05,
        residual_seconds: float = 0.0,
    ) -> None:
        self.upstream_port = upstream_port
        self.rules = rules
        self.blockpage = blockpage
        self.throttle_chunk = throttle_chunk
        self.throttle_delay = throttle_delay
        self.residual_seconds = residual_seconds
        self.residual_until = 0.0
        self.triggers: dict[str, int] = {}
        self.residual_resets = 0
        super().__init__()

    def _serve(self, client: socket.socket) -> None:
        if time.monotonic() < self.residual_until:
            self.residual_resets += 1
            return reset_close(client)
        data = b""
        client.settimeout(5)
        try:
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    return client.close()
                data += chunk
                name, complete = first_name(data)
                if complete:
                    break
        except OSError:
            return client.close()
        action = self.rules.get(name or "")
        if action is not None:
            self.triggers[name or ""] = self.triggers.get(name or "", 0) + 1
        if action in ("reset", "residual"):
            if action == "residual":
                self.residual_until = time.monotonic() + self.residual_seconds
            return reset_close(client)
        if action == "drop":
            return self.hold(client)
        if action == "close":
            client.shutdown(socket.SHUT_RDWR)
            return client.close()
        if action == "blockpage":
            head = (
                f"HTTP/1.1 {BLOCKPAGE_STATUS}\r\nContent-Type: text/html\r\nContent-Length: "
                f"{len(self.blockpage)}\r\nConnection: close\r\n\r\n"
            ).encode()
            client.sendall(head + self.blockpage)
            return client.close()
        try:
            upstream = socket.create_connection((LOOPBACK, self.upstream_port), timeout=5)
            upstream.sendall(data)
        except OSError:
            return reset_close(client)
        client.settimeout(None)
        upstream.settimeout(None)
        if action == "throttle":
            pump(client, upstream, self.closed, chunk=self.throttle_chunk, delay=self.throttle_delay)
        else:
            pump(client, upstream, self.closed)


class FetCensor(_TcpServer):
    """The GFW's fully-encrypted-traffic block in front of an echo port: a connection whose first data
    is fully encrypted (no Ex1-Ex5 exemption) is dropped; anything else is relayed."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.blocked = 0
        super().__init__()

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(5)
            first = client.recv(65536)
        except OSError:
            return client.close()
        if not first:
            return client.close()
        if classify_first_packet(first).fully_encrypted:
            self.blocked += 1
            return self.hold(client)
        try:
            upstream = socket.create_connection((LOOPBACK, self.upstream_port), timeout=5)
            upstream.sendall(first)
        except OSError:
            return reset_close(client)
        client.settimeout(None)
        pump(client, upstream, self.closed)


class Blackhole(_TcpServer):
    """Accepts and never answers (a server-side stall)."""

    def _serve(self, client: socket.socket) -> None:
        self.hold(client)


class StaticServer(_TcpServer):
    """Sends `payload` once the request head has arrived, then closes (FIN, or RST with `reset`)."""

    def __init__(self, payload: bytes, *, reset: bool = False) -> None:
        self.payload = payload
        self.reset = reset
        super().__init__()

    def _serve(self, client: socket.socket) -> None:
        data = b""
        try:
            client.settimeout(5)
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
            client.sendall(self.payload)
        except OSError:
            pass
        if self.reset:
            reset_close(client)
        else:
            client.close()


# --------------------------------------------------------------------------------------------------
# QUIC: drop the Initials whose SNI is blocked, relay the rest
# --------------------------------------------------------------------------------------------------


class QuicCensor:
    """A UDP relay in front of the lab's HTTP/3 port that reads each client's Initial SNI (with the
    project's QUIC dissector) and blackholes the clients whose SNI is in `blocked`."""

    def __init__(self, upstream_port: int, blocked: set[str]) -> None:
        self.upstream = (LOOPBACK, upstream_port)
        self.blocked = blocked
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.closed = threading.Event()
        self.flows: dict[tuple, dict] = {}
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self.closed.is_set():
            try:
                readable, _, _ = select.select([self.sock], [], [], 0.1)
                if not readable:
                    continue
                data, client = self.sock.recvfrom(65535)
            except OSError:
                return
            flow = self.flows.get(client)
            if flow is None:
                flow = {"assembler": InitialAssembler(), "verdict": None, "pending": []}
                self.flows[client] = flow
            if flow["verdict"] is None:
                flow["pending"].append(data)
                try:
                    info = flow["assembler"].feed(data)
                except (NeedMoreData, *_PARSE_ERRORS):
                    info = None
                if info is None:
                    continue
                flow["verdict"] = "drop" if info.sni in self.blocked else "pass"
                if flow["verdict"] == "pass":
                    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    upstream.connect(self.upstream)
                    flow["upstream"] = upstream
                    threading.Thread(target=self._back, args=(upstream, client), daemon=True).start()
                pending, flow["pending"] = flow["pending"], []
            else:
                pending = [data]
            if flow["verdict"] == "drop":
                self.dropped += len(pending)
                continue
            for datagram in pending:
                try:
                    flow["upstream"].send(datagram)
                except OSError:
                    pass

    def _back(self, upstream: socket.socket, client) -> None:
        while not self.closed.is_set():
            try:
                readable, _, _ = select.select([upstream], [], [], 0.1)
                if readable:
                    self.sock.sendto(upstream.recv(65535), client)
            except OSError:
                return

    def close(self) -> None:
        self.closed.set()
        self._thread.join(5)
        self.sock.close()
        for flow in self.flows.values():
            if "upstream" in flow:
                flow["upstream"].close()


# --------------------------------------------------------------------------------------------------
# DNS that lies (UDP and TCP), DoH
# --------------------------------------------------------------------------------------------------


@dataclass
class DnsBehaviour:
    """What the lying resolver answers for one name: an rcode, addresses, or a misbehaviour."""

    rcode: int = dns.rcode.NOERROR
    a: tuple[str, ...] = (LOOPBACK,)
    aaaa: tuple[str, ...] = ()
    mode: str = "answer"  # answer, drop, garbage, wrong-id, garbage-then-answer, truncate (UDP: TC, no answer)


def dns_reply(query: dns.message.Message, behaviour: DnsBehaviour) -> dns.message.Message:
    """A real dnspython response to `query` following `behaviour`."""
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    response.set_rcode(behaviour.rcode)
    if behaviour.rcode == dns.rcode.NOERROR:
        question = query.question[0]
        addresses = (
            behaviour.a
            if question.rdtype == dns.rdatatype.A
            else (behaviour.aaaa if question.rdtype == dns.rdatatype.AAAA else ())
        )
        if addresses:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name, 30, "IN", dns.rdatatype.to_text(question.rdtype), list(addresses)
                )
            )
    return response


class LyingDns:
    """A DNS server on 127.0.0.1 (UDP and TCP, same port): `names` maps a lowercase name to a
    `DnsBehaviour`; other names get `default`. `queries` counts what arrived."""

    def __init__(self, names: dict[str, DnsBehaviour] | None = None, default: DnsBehaviour | None = None) -> None:
        self.names = names or {}
        self.default = default or DnsBehaviour()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((LOOPBACK, 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket()
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((LOOPBACK, self.port))
        self.tcp.listen(16)
        self.closed = threading.Event()
        self.queries = 0
        self._threads = [
            threading.Thread(target=self._udp_loop, daemon=True),
            threading.Thread(target=self._tcp_loop, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return LOOPBACK, self.port

    def behaviour(self, query: dns.message.Message) -> DnsBehaviour:
        name = query.question[0].name.to_text(omit_final_dot=True).lower()
        return self.names.get(name, self.default)

    def wires(self, data: bytes, transport: str = "udp") -> list[bytes]:
        """The messages to send back for one query (possibly none)."""
        self.queries += 1
        try:
            query = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError):
            return []
        behaviour = self.behaviour(query)
        good = dns_reply(query, behaviour).to_wire()
        if behaviour.mode == "drop":
            return []
        if behaviour.mode == "garbage":
            return [b"\x00\x01not dns at all"]
        if behaviour.mode == "wrong-id":
            return [struct.pack("!H", (query.id + 1) & 0xFFFF) + good[2:]]
        if behaviour.mode == "garbage-then-answer":
            return [b"\xff" * 7, good]
        if behaviour.mode == "truncate" and transport == "udp":
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.TC
            return [truncated.to_wire()]
        return [good]

    def _udp_loop(self) -> None:
        while not self.closed.is_set():
            try:
                readable, _, _ = select.select([self.udp], [], [], 0.1)
                if not readable:
                    continue
                data, peer = self.udp.recvfrom(65535)
                for wire in self.wires(data):
                    self.udp.sendto(wire, peer)
            except OSError:
                return

    def _tcp_loop(self) -> None:
        while not self.closed.is_set():
            try:
                readable, _, _ = select.select([self.tcp], [], [], 0.1)
                if not readable:
                    continue
                client, _ = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._tcp_client, args=(client,), daemon=True).start()

    def _tcp_client(self, client: socket.socket) -> None:
        try:
            client.settimeout(5)
            head = client.recv(2)
            (length,) = struct.unpack("!H", head)
            data = b""
            while len(data) < length:
                chunk = client.recv(length - len(data))
                if not chunk:
                    return
                data += chunk
            wires = self.wires(data, "tcp")
            if not wires:
                return hold_open(client, self.closed)
            for wire in wires:
                client.sendall(struct.pack("!H", len(wire)) + wire)
        except (OSError, struct.error):
            pass
        finally:
            client.close()

    def close(self) -> None:
        self.closed.set()
        for thread in self._threads:
            thread.join(5)
        self.udp.close()
        self.tcp.close()


def hold_open(client: socket.socket, closed: threading.Event) -> None:
    """Keep a connection open without answering until the peer leaves."""
    deadline = time.monotonic() + HOLD_SECONDS
    while not closed.is_set() and time.monotonic() < deadline:
        try:
            readable, _, _ = select.select([client], [], [], 0.1)
            if readable and not client.recv(65536):
                return
        except OSError:
            return


class DohServer:
    """An RFC 8484 endpoint over HTTPS (a lab-CA certificate for 127.0.0.1) that forwards each query over
    UDP to `upstream` and returns the reply; `mode` "status" answers 500, "content-type" text/plain."""

    def __init__(self, upstream: tuple[str, int], ca: LabCA, cert_dir: Path, mode: str = "ok") -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.requests += 1
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(5)
                    sock.sendto(body, owner.upstream)
                    answer = sock.recv(65535)
                status = 500 if owner.mode == "status" else 200
                ctype = "text/plain" if owner.mode == "content-type" else "application/dns-message"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.upstream = upstream
        self.mode = mode
        self.requests = 0
        self.server = socketserver.ThreadingTCPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        cert, key = cert_dir / "doh-cert.pem", cert_dir / "doh-key.pem"
        cert_pem, key_pem = ca.issue(LOOPBACK)
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"https://{LOOPBACK}:{self.port}/dns-query"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def blockpage(fingerprint_name: str = "ooni.ir_1") -> tuple[bytes, object]:
    """A block page built around a real signature of ooni/blocking-fingerprints (default: Iran's
    10.10.34.34 iframe page, `ooni.ir_1`, whose pattern starts at `</title>`), and the signature row."""
    from tests.probe._shared import fingerprint_db

    db = fingerprint_db()
    row = next(fp for fp in db.http if fp.name == fingerprint_name)
    return (
        f'<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1256">'
        f"<title>M1-6{row.pattern}"
    ).encode(), row
