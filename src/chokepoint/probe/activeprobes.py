"""Active probes in a capture taken at a server: what the GFW's prober looks like from the receiving end.

Alice et al., IMC 2020, sections 3.2-3.4, describe the probes a suspected Shadowsocks server receives and how to
recognise them; :func:`find_active_probes` applies that description to a capture:

- a connection whose first client payload is a payload seen earlier on another connection to the same server
  port, from another address, is a replay: ``R1`` identical, or ``R2`` (byte 0 changed), ``R3`` (bytes 0-7 and
  62-63), ``R4`` (byte 16), ``R5`` (bytes 6 and 16) by the positions that differ;
- a connection with no earlier match whose first payload has one of the NR1 lengths (7-9, 11-13, 15-17, 21-23,
  32-34, 40-42, 48-50) or 221 bytes (NR2) from an address that never sent anything else is a random probe;
- their packet fingerprint is reported beside: TTLs as received (46-50 in the paper), source ports (about 90%
  in 32768-60999), and whether the SYNs' TCP timestamps from different addresses fall on one clock (the paper's
  Figure 5: thousands of addresses, a handful of TSval sequences), with its rate in Hz.

Reactions (what the server did next: data, FIN, RST, nothing) are reported per probe.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import open_capture
from chokepoint.packet.record import FIN, RST, SYN, TCP, Packet

NR1_LENGTHS = frozenset((7, 8, 9, 11, 12, 13, 15, 16, 17, 21, 22, 23, 32, 33, 34, 40, 41, 42, 48, 49, 50))
NR2_LENGTH = 221
#: byte positions each replay type changes (Alice et al., section 3.2)
REPLAY_TYPES = (
    ("R2", frozenset({0})),
    ("R3", frozenset({*range(8), 62, 63})),
    ("R4", frozenset({16})),
    ("R5", frozenset({6, 16})),
)
_IP_OFFSET = {1: 14, 101: 0, 113: 16, 276: 20, 228: 0}


@dataclass(slots=True)
class _Conn:
    client: str
    cport: int
    server: str
    sport: int
    syn_ts: float
    ttl: int
    tsval: int | None
    payload: bytes = b""
    reaction: str = "none"
    bytes_back: int = 0


@dataclass(slots=True)
class ProbeFinding:
    type: str
    client: str
    client_port: int
    server: str
    server_port: int
    time: float
    length: int
    ttl: int
    tsval: int | None
    reaction: str
    bytes_back: int
    origin: str = ""  # the earlier connection a replay copies

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass
class ProbeReport:
    probes: list[ProbeFinding] = field(default_factory=list)
    connections: int = 0

    def summary(self) -> dict[str, Any]:
        if not self.probes:
            return {"probes": 0}
        ttls = [p.ttl for p in self.probes]
        ports = [p.client_port for p in self.probes]
        return {
            "probes": len(self.probes),
            "by_type": dict(Counter(p.type for p in self.probes)),
            "reactions": dict(Counter(p.reaction for p in self.probes)),
            "sources": len({p.client for p in self.probes}),
            "ttl_range": [min(ttls), max(ttls)],
            "ports_in_32768_60999": round(sum(32768 <= p <= 60999 for p in ports) / len(ports), 3),
            "tsval_clock": shared_clock(self.probes),
        }

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "probes": [p.to_json() for p in self.probes]}


def _tsval(frame: bytes, linktype: int, pkt: Packet) -> int | None:
    off = _IP_OFFSET.get(linktype)
    if off is None or pkt.ip_version != 4 or len(frame) < off + 20:
        return None
    ihl = (frame[off] & 0x0F) * 4
    tcp = off + ihl
    opts = frame[tcp + 20 : tcp + pkt.tcp_header_len]
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2:
            break
        if kind == 8 and opts[i + 1] == 10 and i + 10 <= len(opts):
            return struct.unpack("!I", opts[i + 2 : i + 6])[0]
        i += opts[i + 1]
    return None


def shared_clock(probes: list[ProbeFinding]) -> dict[str, Any]:
    """Whether the probes' SYN TSvals from different addresses fit one clock: the rate (Hz) between the
    first and last, and the share of probes within 50 ms of that line."""
    points = sorted((p.time, p.tsval, p.client) for p in probes if p.tsval is not None)
    if len(points) < 3 or len({c for _, _, c in points}) < 2 or points[-1][0] - points[0][0] < 0.5:
        return {"shared": None, "points": len(points)}
    (t0, v0, _), (t1, v1, _) = points[0], points[-1]
    rate = (v1 - v0) / (t1 - t0)
    if rate <= 0:
        return {"shared": False, "points": len(points)}
    fits = sum(abs((v - v0) / rate - (t - t0)) < 0.05 for t, v, _ in points)
    return {
        "shared": fits / len(points) >= 0.9,
        "rate_hz": round(rate, 1),
        "fit": round(fits / len(points), 3),
        "sources": len({c for _, _, c in points}),
        "points": len(points),
    }


def _classify(conn: _Conn, earlier: list[_Conn]) -> tuple[str, str] | None:
    n = len(conn.payload)
    for old in earlier:
        if old.client == conn.client or len(old.payload) != n:
            continue
        diff = {i for i, (a, b) in enumerate(zip(old.payload, conn.payload)) if a != b}
        origin = f"{old.client}:{old.cport}"
        if not diff:
            return "R1", origin
        for name, positions in REPLAY_TYPES:
            # a replay changes those bytes of a longer payload: two short random probes that differ in all
            # their bytes (e.g. two 8-byte NR1 probes) are not an R3 of each other
            if diff <= positions and n > max(positions):
                return name, origin
    if n == NR2_LENGTH:
        return "NR2", ""
    if n in NR1_LENGTHS:
        return "NR1", ""
    return None


def find_active_probes(captures: Iterable[str | Path], *, servers: Iterable[str] = ()) -> ProbeReport:
    """Active probes in ``captures`` (to ``servers`` only, when given)."""
    wanted = {str(ipaddress.ip_address(s)) for s in servers}
    conns: dict[tuple[str, int, str, int], _Conn] = {}
    order: list[_Conn] = []
    decoder = Decoder()
    for path in captures:
        with open_capture(path) as reader:
            for frame in reader:
                pkt = decoder.decode(frame)
                if pkt is None or pkt.proto != TCP:
                    continue
                src, dst = str(ipaddress.ip_address(pkt.src)), str(ipaddress.ip_address(pkt.dst))
                if pkt.tcp_flags & SYN and not pkt.tcp_flags & 0x10:
                    if wanted and dst not in wanted:
                        continue
                    conn = _Conn(
                        src, pkt.sport, dst, pkt.dport, pkt.ts, pkt.ttl, _tsval(frame.data, frame.linktype, pkt)
                    )
                    conns[(src, pkt.sport, dst, pkt.dport)] = conn
                    order.append(conn)
                    continue
                c2s = conns.get((src, pkt.sport, dst, pkt.dport))
                if c2s is not None:
                    if pkt.payload and not c2s.payload:
                        c2s.payload = pkt.payload
                    continue
                s2c = conns.get((dst, pkt.dport, src, pkt.sport))
                if s2c is not None and s2c.payload and s2c.reaction == "none":
                    if pkt.payload:
                        s2c.reaction, s2c.bytes_back = "data", len(pkt.payload)
                    elif pkt.tcp_flags & RST:
                        s2c.reaction = "rst"
                    elif pkt.tcp_flags & FIN:
                        s2c.reaction = "fin"
    report = ProbeReport(connections=len(order))
    by_server: dict[tuple[str, int], list[_Conn]] = defaultdict(list)
    found_for: list[tuple[_Conn, tuple[str, str]]] = []
    ordinary: set[str] = set()  # clients with at least one connection that is no probe
    for conn in order:
        if not conn.payload:
            continue
        key = (conn.server, conn.sport)
        found = _classify(conn, by_server[key])
        by_server[key].append(conn)
        if found is None:
            ordinary.add(conn.client)
        else:
            found_for.append((conn, found))
    for conn, (kind, origin) in found_for:
        if kind.startswith("NR") and conn.client in ordinary:
            continue  # a short payload from an ordinary client is not a random probe
        report.probes.append(
            ProbeFinding(
                kind,
                conn.client,
                conn.cport,
                conn.server,
                conn.sport,
                conn.syn_ts,
                len(conn.payload),
                conn.ttl,
                conn.tsval,
                conn.reaction,
                conn.bytes_back,
                origin,
            )
        )
    return report


__all__ = ["ProbeFinding", "ProbeReport", "find_active_probes", "shared_clock"]
