"""A deliberately tiny capture reader for the DNS/HTTP/SSH/SOCKS dissector tests.

Reads classic pcap and pcapng, decodes Ethernet (802.1Q), Linux SLL/SLL2, raw IP and BSD loopback, IPv4/IPv6
(with naive fragment reassembly) and TCP/UDP, and rebuilds each TCP connection's two byte streams in sequence
order. Test-only: the engine uses ``chokepoint.packet`` and ``chokepoint.flow``. Never copies capture bytes anywhere.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
NDPI_PCAPS = SHARED_DATA / "ndpi" / "pcap"


def capture(name: str) -> Path:
    """Path of a real nDPI capture, or skip the test with a clear message."""
    path = NDPI_PCAPS / name
    if not path.is_file():
        pytest.skip(f"../shared/data not found: {path} (real captures live beside the checkout)")
    return path


def _frames(path: Path):
    """Yield (linktype, frame bytes) from a pcap or pcapng file."""
    data = path.read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
        offset = 24
        while offset + 16 <= len(data):
            incl = struct.unpack_from(endian + "I", data, offset + 8)[0]
            yield linktype, data[offset + 16: offset + 16 + incl]
            offset += 16 + incl
        return
    if magic != b"\x0a\x0d\x0d\x0a":
        raise ValueError(f"{path}: not a capture file")
    offset, endian, linktypes = 0, "<", []
    while offset + 12 <= len(data):
        btype = struct.unpack_from(endian + "I", data, offset)[0]
        if btype == 0x0A0D0D0A:
            endian = "<" if data[offset + 8: offset + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            linktypes = []
        blen = struct.unpack_from(endian + "I", data, offset + 4)[0]
        if blen < 12:
            return
        body = data[offset + 8: offset + blen - 4]
        if btype == 1:
            linktypes.append(struct.unpack_from(endian + "H", body, 0)[0])
        elif btype == 6:
            iface, _, _, caplen, _ = struct.unpack_from(endian + "IIIII", body, 0)
            yield linktypes[iface], body[20: 20 + caplen]
        elif btype == 3:
            yield linktypes[0], body[4:]
        offset += blen


@dataclass(slots=True)
class Segment:
    src: str
    sport: int
    dst: str
    dport: int
    proto: int
    payload: bytes
    seq: int = 0
    flags: int = 0


def _network_layer(linktype: int, frame: bytes) -> bytes | None:
    if linktype == 1:
        ethertype, offset = struct.unpack_from("!H", frame, 12)[0], 14
        while ethertype in (0x8100, 0x88A8):
            ethertype, offset = struct.unpack_from("!H", frame, offset + 2)[0], offset + 4
        if ethertype == 0x8864 and struct.unpack_from("!H", frame, offset + 6)[0] in (0x0021, 0x0057):
            return frame[offset + 8:]  # PPPoE session carrying IPv4/IPv6
        return frame[offset:] if ethertype in (0x0800, 0x86DD) else None
    if linktype == 113:
        return frame[16:] if struct.unpack_from("!H", frame, 14)[0] in (0x0800, 0x86DD) else None
    if linktype == 276:
        return frame[20:] if struct.unpack_from("!H", frame, 0)[0] in (0x0800, 0x86DD) else None
    if linktype in (101, 12, 14):
        return frame
    if linktype in (0, 108):
        return frame[4:]
    raise ValueError(f"unsupported link type {linktype}")


class _Reassembler:
    """Naive IPv4/IPv6 fragment reassembly keyed by (src, dst, id): enough for dns_fragmented.pcap."""

    def __init__(self) -> None:
        self.pending: dict[tuple, dict[int, bytes]] = defaultdict(dict)
        self.total: dict[tuple, int] = {}

    def add(self, key: tuple, offset: int, more: bool, data: bytes) -> bytes | None:
        self.pending[key][offset] = data
        if not more:
            self.total[key] = offset + len(data)
        if key not in self.total:
            return None
        out, pos = bytearray(), 0
        for off in sorted(self.pending[key]):
            if off != pos:
                return None
            out += self.pending[key][off]
            pos += len(self.pending[key][off])
        if pos != self.total[key]:
            return None
        del self.pending[key], self.total[key]
        return bytes(out)


def _transport(ip: bytes, frags: _Reassembler) -> Segment | None:
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        total, ident, frag, _, proto = struct.unpack_from("!HHHBB", ip, 2)
        src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
        payload = ip[ihl:total]
        offset, more = (frag & 0x1FFF) * 8, bool(frag & 0x2000)
        if offset or more:
            payload = frags.add((src, dst, ident, proto), offset, more, payload)
            if payload is None:
                return None
    elif version == 6:
        plen, nxt = struct.unpack_from("!HB", ip, 4)
        src, dst = str(ipaddress.IPv6Address(ip[8:24])), str(ipaddress.IPv6Address(ip[24:40]))
        payload, proto = ip[40: 40 + plen], nxt
        while proto in (0, 43, 60, 44):
            if proto == 44:
                proto = payload[0]
                frag_off, ident = struct.unpack_from("!HI", payload, 2)
                whole = frags.add((src, dst, ident, proto), frag_off & 0xFFF8, bool(frag_off & 1), payload[8:])
                if whole is None:
                    return None
                payload = whole
            else:
                proto, payload = payload[0], payload[(payload[1] + 1) * 8:]
    else:
        return None
    if proto == 17:
        sport, dport = struct.unpack_from("!HH", payload, 0)
        return Segment(src, sport, dst, dport, 17, payload[8:])
    if proto == 6:
        sport, dport, seq, _, off_flags = struct.unpack_from("!HHIIH", payload, 0)
        return Segment(src, sport, dst, dport, 6, payload[(off_flags >> 12) * 4:], seq, off_flags & 0x3F)
    return None


def segments(name: str) -> list[Segment]:
    """Every TCP/UDP segment of a real capture, in capture order."""
    frags, out = _Reassembler(), []
    for linktype, frame in _frames(capture(name)):
        ip = _network_layer(linktype, frame)
        if ip:
            seg = _transport(ip, frags)
            if seg is not None:
                out.append(seg)
    return out


def udp_payloads(name: str, port: int | None = None) -> list[Segment]:
    """UDP datagrams with a payload (optionally only those to or from ``port``)."""
    return [s for s in segments(name) if s.proto == 17 and s.payload
            and (port is None or port in (s.sport, s.dport))]


@dataclass(slots=True)
class TcpConnection:
    client: tuple[str, int]
    server: tuple[str, int]
    c2s_segments: list[bytes] = field(default_factory=list)  # payload-carrying segments, first copy of each seq
    s2c_segments: list[bytes] = field(default_factory=list)
    c2s: bytes = b""
    s2c: bytes = b""


def _ordered(segs: list[Segment]) -> tuple[list[bytes], bytes]:
    syn = next((s for s in segs if s.flags & 0x02), None)
    data = [s for s in segs if s.payload]
    if not data:
        return [], b""
    base = (syn.seq + 1) % 2**32 if syn is not None else data[0].seq
    seen, ordered = set(), []
    for seg in data:
        if seg.seq not in seen:
            seen.add(seg.seq)
            ordered.append(seg)
    ordered.sort(key=lambda s: (s.seq - base) % 2**32)
    stream, expected = bytearray(), base
    for seg in ordered:
        start = (expected - seg.seq) % 2**32
        if start >= len(seg.payload):
            continue  # fully retransmitted (or a gap: the test helper keeps it simple)
        stream += seg.payload[start:]
        expected = (seg.seq + len(seg.payload)) % 2**32
    return [s.payload for s in ordered], bytes(stream)


def tcp_connections(name: str) -> list[TcpConnection]:
    """TCP connections of a capture with their client-to-server and server-to-client streams.

    The client is the sender of the SYN; without a SYN, the sender of the first segment.
    """
    by_key: dict[frozenset, list[Segment]] = defaultdict(list)
    for seg in segments(name):
        if seg.proto == 6:
            by_key[frozenset({(seg.src, seg.sport), (seg.dst, seg.dport)})].append(seg)
    out = []
    for segs in by_key.values():
        syn = next((s for s in segs if s.flags & 0x12 == 0x02), segs[0])
        client, server = (syn.src, syn.sport), (syn.dst, syn.dport)
        c2s_segs, c2s = _ordered([s for s in segs if (s.src, s.sport) == client])
        s2c_segs, s2c = _ordered([s for s in segs if (s.src, s.sport) == server])
        out.append(TcpConnection(client, server, c2s_segs, s2c_segs, c2s, s2c))
    return out


def mutate(data, seeds) -> bytes:
    """Draw a real seed message and damage it: truncate, flip/overwrite bytes, insert, delete or splice in
    bytes from another seed (1-4 edits). ``data`` is a hypothesis ``st.data()`` object."""
    from hypothesis import strategies as st

    blob = bytearray(data.draw(st.sampled_from(seeds), label="seed"))
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        op = data.draw(st.sampled_from(("truncate", "flip", "set", "insert", "delete", "splice")), label="op")
        at = data.draw(st.integers(0, len(blob)), label="at")
        if op == "truncate":
            del blob[at:]
        elif op == "flip" and at < len(blob):
            blob[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        elif op == "set" and at < len(blob):
            blob[at] = data.draw(st.sampled_from((0x00, 0xFF, 0xC0, 0x3F, 0x40, 0x0A, 0x0D, 0x20)), label="byte")
        elif op == "insert":
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=8), label="inserted")
        elif op == "delete":
            del blob[at: at + data.draw(st.integers(1, 8), label="n")]
        elif op == "splice":
            other = data.draw(st.sampled_from(seeds), label="other")
            start = data.draw(st.integers(0, len(other)), label="start")
            blob[at:] = other[start:]
    return bytes(blob)


@dataclass(frozen=True, slots=True)
class NdpiFlow:
    """One flow line of nDPI's own result file (``result/<pcap>.out``): a reference label, not ground truth."""

    transport: str
    ends: frozenset[tuple[str, int]]
    proto: str          # e.g. "DNS.Google", "HTTP_Connect", "SOCKS"
    confidence: str     # e.g. "DPI"
    hostname: str | None
    user_agent: str | None
    server: str | None = None    # "[Server: ...]": HTTP Server field or the SSH server banner


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return str(ipaddress.ip_address(host.strip("[]"))), int(port)


def ndpi_flows(name: str) -> list[NdpiFlow]:
    import re

    path = SHARED_DATA / "ndpi" / "result" / f"{name}.out"
    if not path.is_file():
        pytest.skip(f"../shared/data not found: {path}")
    flows = []
    line_re = re.compile(r"^\s+\d+\s+(TCP|UDP)\s+(\S+)\s+<->\s+(\S+)\s+(.*)$")
    for line in path.read_text().splitlines():
        m = line_re.match(line)
        if not m:
            continue
        rest = m.group(4)
        proto = re.search(r"\[proto: [\d.]+/([^\]]+)\]", rest)
        conf = re.search(r"\[Confidence: ([^\]]+)\]", rest)
        host = re.search(r"\[Hostname/SNI: ([^\]]*)\]", rest)
        agent = re.search(r"\[User-Agent: ([^\]]*)\]", rest)
        server = re.search(r"\[Server: ([^\]]*)\]", rest)
        flows.append(NdpiFlow(m.group(1), frozenset({_endpoint(m.group(2)), _endpoint(m.group(3))}),
                              proto.group(1) if proto else "", conf.group(1) if conf else "",
                              host.group(1) if host else None, agent.group(1) if agent else None,
                              server.group(1) if server else None))
    return flows
