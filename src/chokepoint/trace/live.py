"""Run a censorship traceroute: TTL-limited probes for a control domain, then a test domain, while a packet
socket records everything to and from the server (and every ICMP error).

A TCP probe is a real connection: the kernel's handshake at full TTL, then ``IP_TTL`` set to the probe's TTL
and the request sent (an HTTP GET with the domain in Host, or a TLS ClientHello with it in the SNI, made by
Python's ssl), then the TTL set back to 64 before the connection is reset, so only the request is TTL-limited.
``IP_RECVERR`` returns the first ICMP error at once; the probe then waits ``settle`` s for whatever else comes
(an on-path injector's packets beside the ICMP), or ``timeout`` s when nothing answers. A DNS probe is one UDP
query with the probe's TTL. The control runs first, so a censor's residual block after the test cannot touch
it. Each router gets about ``2 * repeats`` probes, within Linux's ICMP burst of 6 (lab/geometry.py).

Needs raw-socket rights (``AF_PACKET``, CAP_NET_RAW): :class:`TraceRefused` otherwise. The capture is analysed
by :func:`chokepoint.trace.analysis.analyze_packets`, exactly as ``trace analyze`` analyses pcaps, and can be
written in CenTrace's layout: ``<ip>_<test>_<test>.pcap`` and ``<ip>_<test>_<control>.pcap``.
"""

from __future__ import annotations

import errno
import random
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chokepoint.packet.pcap import CaptureWriter
from chokepoint.trace.analysis import Report, analyze_packets
from chokepoint.trace.packets import ICMP, parse_ipv4

PROTOCOLS = ("http", "tls", "dns")
DEFAULT_PORTS = {"http": 80, "tls": 443, "dns": 53}
ETH_P_ALL, ETH_P_IP = 0x0003, 0x0800
LINKTYPE_RAW = 101
FULL_TTL = 64
IP_RECVERR = 11  # linux/in.h (not exported by Python's socket module)


class TraceRefused(Exception):
    """The trace cannot run here (no raw-socket rights, a bad target)."""


@dataclass(frozen=True, slots=True)
class Options:
    target: str
    domain: str
    control: str = "example.com"
    protocol: str = "http"
    port: int | None = None
    max_ttl: int = 30
    repeats: int = 3
    timeout: float = 2.0
    settle: float = 0.1
    pace: float = 0.05

    def check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise TraceRefused(f"--protocol {self.protocol!r}: one of {', '.join(PROTOCOLS)}")
        if not 1 <= self.max_ttl <= 64:
            raise TraceRefused(f"--max-ttl {self.max_ttl}: 1 to 64")
        if not 1 <= self.repeats <= 10:
            raise TraceRefused(f"--repeats {self.repeats}: 1 to 10")
        if not 0 < self.timeout <= 30:
            raise TraceRefused(f"--timeout {self.timeout}: more than 0, at most 30 s")
        for name in (self.domain, self.control):
            if not name or len(name) > 253 or any(c.isspace() for c in name):
                raise TraceRefused(f"bad domain name {name!r}")


class Sniffer:
    """Every IPv4 packet to or from ``server``, and every ICMP packet, on any interface but loopback."""

    def __init__(self, server: str) -> None:
        try:
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise TraceRefused(
                "trace needs raw-socket rights (CAP_NET_RAW, e.g. run it as root): it records the probes' "
                "answers with a packet socket"
            ) from None
        self.server = socket.inet_aton(server)
        self.packets: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            data, addr = self.sock.recvfrom(65535)
            if addr[0] == "lo" or addr[1] != ETH_P_IP or len(data) < 20:
                continue
            if data[9] == ICMP or self.server in (data[12:16], data[16:20]):
                self.packets.append((time.time(), data))

    def mark(self) -> int:
        return len(self.packets)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def http_request(domain: str) -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: {domain}\r\nUser-Agent: chokepoint-trace\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ).encode()


def client_hello(domain: str) -> bytes:
    """A real ClientHello with ``domain`` in the SNI, from Python's ssl (nothing is verified: it never gets
    an answer back)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=domain)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def dns_query(domain: str) -> bytes:
    import dns.message

    return dns.message.make_query(domain, "A").to_wire()


def _wait(sock: socket.socket, timeout: float, settle: float) -> None:
    """Read until the first answer or error (then ``settle`` s more), or ``timeout`` s of silence."""
    deadline = time.monotonic() + timeout
    settled: float | None = None
    while True:
        now = time.monotonic()
        end = deadline if settled is None else min(deadline, settled)
        if now >= end:
            return
        ready, _, _ = select.select([sock], [], [], end - now)
        if not ready:
            continue
        try:
            data = sock.recv(65535)
            if not data and sock.type == socket.SOCK_STREAM:
                settled = settled or time.monotonic() + settle
                time.sleep(max(0.0, settled - time.monotonic()))
                return
        except OSError:
            pass  # an ICMP error (IP_RECVERR) or a reset
        settled = settled or time.monotonic() + settle


class Ports:
    """Source ports for the probes, one new port each (CenTrace's layout: increasing by one per probe), so no
    probe shares a port with an earlier connection whose late packets could be taken for its answers."""

    def __init__(self) -> None:
        self.next = random.randrange(20000, 50000)

    def bind(self, sock: socket.socket) -> None:
        for _ in range(1000):
            self.next = self.next + 1 if self.next < 60999 else 20000
            try:
                sock.bind(("0.0.0.0", self.next))
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, "no free source port for a probe")


PORTS = Ports()


def tcp_probe(server: str, port: int, ttl: int, payload: bytes, opts: Options) -> bool:
    """One TTL-limited request on a fresh connection; False when the handshake failed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        PORTS.bind(sock)
        sock.settimeout(opts.timeout)
        try:
            sock.connect((server, port))
        except OSError:
            return False
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        try:
            sock.sendall(payload)
        except OSError:
            return True
        sock.setblocking(False)
        _wait(sock, opts.timeout, opts.settle)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, FULL_TTL)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return True
    finally:
        sock.close()


def dns_probe(server: str, port: int, ttl: int, payload: bytes, opts: Options) -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        PORTS.bind(sock)
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.setblocking(False)
        try:
            sock.sendto(payload, (server, port))
        except OSError as exc:
            if exc.errno not in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                raise
        _wait(sock, opts.timeout, max(opts.settle, 0.3))  # several answers may race
        return True
    finally:
        sock.close()


def resolve(target: str) -> str:
    try:
        return socket.getaddrinfo(target, None, socket.AF_INET)[0][4][0]
    except (socket.gaierror, IndexError, UnicodeError) as exc:
        raise TraceRefused(f"cannot resolve {target!r} to an IPv4 address: {exc}") from None


def run(opts: Options, *, pcap_dir: str | Path | None = None, say: Callable[[str], None] = lambda _: None) -> Report:
    """Trace ``opts.target`` (control first, then test) and analyse what the packet socket saw."""
    opts.check()
    server = resolve(opts.target)
    port = opts.port or DEFAULT_PORTS[opts.protocol]
    sniffer = Sniffer(server)
    phases: dict[str, tuple[int, int]] = {}
    control_end: int | None = None
    try:
        for role, domain in (("control", opts.control), ("test", opts.domain)):
            start = sniffer.mark()
            payload = {"http": http_request, "tls": client_hello, "dns": dns_query}[opts.protocol](domain)
            probe = dns_probe if opts.protocol == "dns" else tcp_probe
            # the control stops at its first answer from beyond the path; the test goes one TTL past the
            # control's (a drop shows as silence there), or two past its own first answer
            stop_at = opts.max_ttl if control_end is None else min(opts.max_ttl, control_end + 1)
            ttl = 0
            for ttl in range(1, stop_at + 1):
                for _ in range(opts.repeats):
                    probe(server, port, ttl, payload, opts)
                    time.sleep(opts.pace)
                end = analyze_window(sniffer, start)
                if end is not None and ttl >= (end if role == "control" else min(stop_at, end + 2)):
                    break
            time.sleep(opts.settle)
            phases[role] = (start, sniffer.mark())
            if role == "control":
                control_end = analyze_window(sniffer, start)
            say(f"{role} ({domain}): TTL 1-{ttl}, {phases[role][1] - start} packets")
    finally:
        sniffer.close()
    windows = {role: sniffer.packets[a:b] for role, (a, b) in phases.items()}
    if pcap_dir is not None:
        write_pcaps(Path(pcap_dir), server, opts, windows)
    parsed = {role: [p for ts, data in raw if (p := parse_ipv4(data, ts)) is not None] for role, raw in windows.items()}
    return analyze_packets(parsed["test"], parsed["control"])


def analyze_window(sniffer: Sniffer, start: int) -> int | None:
    """The first TTL in the packets since ``start`` at which a probe got a terminating answer, or None."""
    from chokepoint.trace.analysis import Side, probes_from_packets

    packets = [p for ts, data in sniffer.packets[start:] if (p := parse_ipv4(data, ts)) is not None]
    probes, _, _ = probes_from_packets(packets)
    return Side(probes).terminating_ttl()


def write_pcaps(directory: Path, server: str, opts: Options, windows: dict[str, list[tuple[float, bytes]]]) -> None:
    """The two captures in CenTrace's layout: ``<ip>_<test>_<sent domain>.pcap`` (raw IP link type)."""
    directory.mkdir(parents=True, exist_ok=True)
    for role, domain in (("test", opts.domain), ("control", opts.control)):
        path = directory / f"{server}_{opts.domain}_{domain}.pcap"
        if role == "control" and opts.control == opts.domain:
            path = directory / f"{server}_{opts.domain}_{domain}_control.pcap"
        with CaptureWriter(path, linktype=LINKTYPE_RAW) as out:
            for ts, data in windows.get(role, []):
                out.write(ts, data)


def pcap_names(directory: str | Path, server: str, opts: Options) -> tuple[Path, Path]:
    d = Path(directory)
    return d / f"{server}_{opts.domain}_{opts.domain}.pcap", d / f"{server}_{opts.domain}_{opts.control}.pcap"


__all__ = ["PROTOCOLS", "Options", "TraceRefused", "pcap_names", "run"]
