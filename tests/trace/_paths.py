"""Synthetic traces for the analysis tests: the packets a client sees for TTL-limited probes along a made-up path,
written as CenTrace's captures are (one per domain, Ethernet frames)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chokepoint.packet import build
from chokepoint.packet.pcap import CaptureWriter
from chokepoint.trace.packets import ACK, FIN, PSH, RST, SYN

CLIENT, SERVER = "192.0.2.2", "203.0.113.10"
ROUTERS = [f"198.51.100.{i}" for i in range(1, 40)]
#: what answers one probe: ("icmp", hop) | ("rst", ttl, ip_id) | ("fin",) | ("http", status) | ("dns", address)
Answer = tuple
Path_ = Callable[[int], list[Answer]]


def path(
    server_hop: int,
    *,
    censor_hop: int | None = None,
    censor: str = "rst",  # rst | drop | blockpage | dns
    on_path: bool = True,
    silent: frozenset[int] = frozenset(),
    injected_ttl: Callable[[int], int] = lambda probe_ttl: 250,
    real: Answer = ("http", "200 OK"),
) -> Path_:
    """The answers to a probe of TTL t: ICMP from hop t below the server, the server's answer at or past it; a
    censor at ``censor_hop`` sees every probe of TTL >= censor_hop (on-path: the probe goes on; in-path: it is
    consumed); ``silent`` hops never answer."""

    def answers(t: int) -> list[Answer]:
        out: list[Answer] = []
        triggered = censor_hop is not None and t >= censor_hop
        if triggered:
            if censor == "rst":
                out.append(("rst", injected_ttl(t), 13330))
            elif censor == "blockpage":
                out.append(("http", "403 Forbidden"))
            elif censor == "dns":
                out.append(("dns", "10.10.34.34"))
            if censor == "drop" or not on_path:
                return out
        if t < server_hop:
            if t not in silent:
                out.append(("icmp", t))
        else:
            out.append(real)
        return out

    return answers


def packets(answers: Path_, ttls: range, *, dns: bool = False, first_port: int = 40000) -> list[tuple[float, bytes]]:
    """(timestamp, IPv4 packet) of one domain's trace."""
    out: list[tuple[float, bytes]] = []
    clock = [1000.0]

    def emit(packet: bytes) -> None:
        clock[0] += 0.001
        out.append((clock[0], packet))

    for i, ttl in enumerate(ttls):
        port = first_port + i
        if dns:
            query = build.ipv4_udp(CLIENT, SERVER, port, 53, b"\x12\x34\x01\x00\x00\x01" + b"\0" * 6, ttl=ttl)
            emit(query)
            probe = query
        else:
            emit(build.ipv4_tcp(CLIENT, SERVER, port, 80, 100, 0, SYN))
            emit(build.ipv4_tcp(SERVER, CLIENT, 80, port, 500, 101, SYN | ACK))
            emit(build.ipv4_tcp(CLIENT, SERVER, port, 80, 101, 501, ACK))
            probe = build.ipv4_tcp(CLIENT, SERVER, port, 80, 101, 501, PSH | ACK, b"GET / HTTP/1.1\r\n\r\n", ttl=ttl)
            emit(probe)
        for answer in answers(ttl):
            kind = answer[0]
            if kind == "icmp":
                quoted = probe[:8] + bytes([1]) + probe[9:48]
                emit(build.ipv4(ROUTERS[answer[1] - 1], CLIENT, 1, build.icmp(11, 0, body=quoted)))
            elif kind == "rst":
                emit(build.ipv4_tcp(SERVER, CLIENT, 80, port, 501, 0, RST, ttl=answer[1], ip_id=answer[2]))
            elif kind == "fin":
                emit(build.ipv4_tcp(SERVER, CLIENT, 80, port, 501, 119, FIN | ACK))
            elif kind == "http":
                body = f"HTTP/1.1 {answer[1]}\r\nContent-Length: 0\r\n\r\n".encode()
                emit(build.ipv4_tcp(SERVER, CLIENT, 80, port, 501, 119, PSH | ACK, body, ttl=52))
            elif kind == "dns":
                import dns.message
                import dns.rrset

                q = dns.message.make_query("blocked.example", "A")
                q.id = 0x1234  # the query's ID (packets() sends 0x1234)
                r = dns.message.make_response(q)
                r.answer.append(dns.rrset.from_text("blocked.example.", 60, "IN", "A", answer[1]))
                emit(build.ipv4_udp(SERVER, CLIENT, 53, port, r.to_wire(), ttl=60))
    return out


def write(path_: Path, captured: list[tuple[float, bytes]]) -> Path:
    with CaptureWriter(path_) as out:
        for ts, ip in captured:
            out.write(ts, build.ethernet(ip))
    return path_
