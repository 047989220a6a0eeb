"""Test-only helpers: read real captures from ../shared/data and rebuild TCP byte streams per direction.

Deliberately tiny and independent of the engine's decoder: Ethernet / 802.1Q / Linux SLL / raw IP,
IPv4 and IPv6 (no extension headers beyond the fixed header), TCP only.  Streams are rebuilt from
sequence numbers (retransmissions dropped, reordering fixed) and stop at the first hole.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chokepoint.packet.pcap import open_capture

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
NDPI_PCAP = SHARED / "ndpi" / "pcap"
NDPI_RESULT = SHARED / "ndpi" / "result"


def capture_path(name: str) -> Path:
    path = NDPI_PCAP / name
    if not path.is_file():
        pytest.skip(f"../shared/data not found: {path} is absent (nDPI captures live beside the checkout)")
    return path


@dataclass(slots=True)
class TcpSegment:
    seq: int
    flags: int
    payload: bytes
    index: int


@dataclass(slots=True)
class TcpFlow:
    """One TCP connection; endpoint ``a`` is the client when a SYN was seen, else the first sender."""

    a: tuple[str, int]
    b: tuple[str, int]
    segments: dict[bool, list[TcpSegment]] = field(default_factory=lambda: {True: [], False: []})
    order: list[tuple[bool, int, bytes]] = field(default_factory=list)  # (a_to_b, frame index, payload)

    def stream(self, a_to_b: bool) -> bytes:
        """Reassembled payload bytes of one direction, up to the first missing byte."""
        segs = self.segments[a_to_b]
        if not segs:
            return b""
        syn = [s for s in segs if s.flags & 0x02]
        base = (syn[0].seq + 1) if syn else min(
            (s.seq for s in segs if s.payload), key=lambda q: (q - segs[0].seq) & 0xFFFFFFFF, default=0)
        pieces: dict[int, bytes] = {}
        for s in segs:
            if not s.payload:
                continue
            off = (s.seq - base) & 0xFFFFFFFF
            if off > 0x7FFFFFFF:  # before the base: keep only the part after it
                cut = (base - s.seq) & 0xFFFFFFFF
                if cut >= len(s.payload):
                    continue
                off, payload = 0, s.payload[cut:]
            else:
                payload = s.payload
            if len(payload) > len(pieces.get(off, b"")):
                pieces[off] = payload
        out = bytearray()
        for off in sorted(pieces):
            data = pieces[off]
            if off > len(out):
                break  # hole
            out += data[len(out) - off:]
        return bytes(out)

    @property
    def client_stream(self) -> bytes:
        return self.stream(True)

    @property
    def server_stream(self) -> bytes:
        return self.stream(False)


def _ip_payload(linktype: int, data: bytes) -> bytes | None:
    if linktype == 1:  # Ethernet
        off = 12
        ethertype = struct.unpack_from("!H", data, off)[0]
        off += 2
        while ethertype in (0x8100, 0x88A8):
            ethertype = struct.unpack_from("!H", data, off + 2)[0]
            off += 4
        return data[off:] if ethertype in (0x0800, 0x86DD) else None
    if linktype == 113:  # Linux cooked
        return data[16:] if struct.unpack_from("!H", data, 14)[0] in (0x0800, 0x86DD) else None
    if linktype == 276:  # Linux cooked v2
        return data[20:] if struct.unpack_from("!H", data, 0)[0] in (0x0800, 0x86DD) else None
    if linktype in (101, 12, 14, 228, 229):  # raw IP
        return data
    if linktype == 0:  # BSD loopback
        return data[4:]
    return None


def _tcp(ip: bytes):
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        if ip[9] != 6 or struct.unpack_from("!H", ip, 6)[0] & 0x3FFF:  # not TCP, or a fragment
            return None
        src, dst = ipaddress.ip_address(ip[12:16]), ipaddress.ip_address(ip[16:20])
        seg = ip[ihl:total] if total else ip[ihl:]
    elif version == 6:
        if ip[6] != 6:
            return None
        plen = struct.unpack_from("!H", ip, 4)[0]
        src, dst = ipaddress.ip_address(ip[8:24]), ipaddress.ip_address(ip[24:40])
        seg = ip[40:40 + plen]
    else:
        return None
    sport, dport, seq = struct.unpack_from("!HHI", seg)
    doff = (seg[12] >> 4) * 4
    return (str(src), sport), (str(dst), dport), seq, seg[13], seg[doff:]


def tcp_flows(path: Path) -> list[TcpFlow]:
    """Every TCP connection in a capture, in order of first appearance."""
    flows: dict[frozenset, TcpFlow] = {}
    with open_capture(path) as reader:
        for frame in reader:
            ip = _ip_payload(frame.linktype, frame.data)
            if ip is None:
                continue
            try:
                parsed = _tcp(ip)
            except (struct.error, IndexError, ValueError):
                continue
            if parsed is None:
                continue
            src, dst, seq, flags, payload = parsed
            key = frozenset((src, dst))
            flow = flows.get(key)
            if flow is None:
                client_first = not (flags & 0x02 and flags & 0x10)  # a SYN-ACK means src is the server
                flow = flows[key] = TcpFlow(src, dst) if client_first else TcpFlow(dst, src)
            a_to_b = src == flow.a
            flow.segments[a_to_b].append(TcpSegment(seq, flags, payload, frame.index))
            if payload:
                flow.order.append((a_to_b, frame.index, payload))
    return list(flows.values())


_LINE = re.compile(r"^\s+\d+\s+TCP\s+(\S+)\s+(<->|->)\s+(\S+)\s+\[proto: [\d.]+/([^\]]+)\](.*)$")


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return str(ipaddress.ip_address(host.strip("[]"))), int(port)


@dataclass(frozen=True, slots=True)
class NdpiFlow:
    a: tuple[str, int]
    b: tuple[str, int]
    proto: str
    attrs: dict

    @property
    def key(self) -> frozenset:
        return frozenset((self.a, self.b))


def ndpi_tcp_labels(pcap_name: str) -> list[NdpiFlow]:
    """The TCP flow lines of nDPI's ``result/<pcap>.out`` with their ``[Key: value]`` attributes."""
    path = NDPI_RESULT / f"{pcap_name}.out"
    if not path.is_file():
        pytest.skip(f"../shared/data not found: {path} is absent")
    out = []
    for line in path.read_text().splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        attrs = dict(re.findall(r"\[([^:\]\[]+): ([^\]]*)\]", m.group(5)))
        out.append(NdpiFlow(_endpoint(m.group(1)), _endpoint(m.group(3)), m.group(4), attrs))
    return out
