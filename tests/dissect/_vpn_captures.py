"""Test-only capture reader for the VPN/tunnel and FET dissector tests.

A deliberately tiny pcap/pcapng + Ethernet/SLL/raw + IPv4/IPv6 + TCP/UDP decoder, so these tests do not
depend on `chokepoint.packet` (written concurrently). It groups packets into bidirectional flows and
reassembles each TCP direction by sequence number (first copy wins; enough for clean captures).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
NDPI_PCAPS = SHARED_DATA / "ndpi" / "pcap"

TCP, UDP, GRE, ESP, AH = 6, 17, 47, 50, 51


def capture_path(name: str) -> Path:
    """Path of an nDPI test capture; skips the test when ../shared/data is absent."""
    path = NDPI_PCAPS / name
    if not path.is_file():
        pytest.skip(f"../shared/data not found: {path} (the shared data folder beside the checkout)")
    return path


@dataclass(slots=True)
class Pkt:
    index: int
    src: bytes
    dst: bytes
    proto: int
    sport: int
    dport: int
    payload: bytes
    tcp_flags: int = 0
    seq: int = 0


@dataclass(slots=True)
class Flow:
    """One bidirectional flow; side A is the first sender (the TCP SYN sender where seen)."""

    proto: int
    a: tuple[bytes, int]
    b: tuple[bytes, int]
    packets: list[tuple[bool, Pkt]] = field(default_factory=list)  # (from_a, pkt)

    def payloads(self, from_a: bool) -> list[bytes]:
        return [p.payload for d, p in self.packets if d == from_a and p.payload]

    def ports(self) -> set[int]:
        return {self.a[1], self.b[1]}

    def stream(self, from_a: bool) -> bytes:
        """The reassembled TCP byte stream of one direction (first copy of each byte wins)."""
        segs = [p for d, p in self.packets if d == from_a and p.payload]
        if not segs:
            return b""
        base = min(p.seq for p in segs)
        buf: dict[int, int] = {}
        for p in segs:
            off = (p.seq - base) & 0xFFFFFFFF
            for i, byte in enumerate(p.payload):
                buf.setdefault(off + i, byte)
        out = bytearray()
        i = 0
        while i in buf:
            out.append(buf[i])
            i += 1
        return bytes(out)


def _frames(path: Path):
    data = path.read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = "<" if magic[0] in (0xD4, 0x4D) else ">"
        linktype = struct.unpack_from(endian + "I", data, 20)[0]
        off = 24
        while off + 16 <= len(data):
            incl = struct.unpack_from(endian + "I", data, off + 8)[0]
            yield linktype, data[off + 16 : off + 16 + incl]
            off += 16 + incl
        return
    if magic != b"\x0a\x0d\x0d\x0a":
        raise ValueError(f"{path}: not a capture")
    endian = "<"
    linktypes: list[int] = []
    off = 0
    while off + 12 <= len(data):
        if data[off : off + 4] == b"\x0a\x0d\x0d\x0a":
            endian = "<" if data[off + 8 : off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            linktypes = []
        btype, blen = struct.unpack_from(endian + "II", data, off)
        if blen < 12:
            return
        body = data[off + 8 : off + blen - 4]
        if btype == 1:
            linktypes.append(struct.unpack_from(endian + "H", body, 0)[0])
        elif btype == 6:
            iface, _, _, caplen, _ = struct.unpack_from(endian + "IIIII", body, 0)
            yield linktypes[iface], body[20 : 20 + caplen]
        elif btype == 3:
            yield linktypes[0], body[4:]
        off += blen


def _ip_packet(linktype: int, frame: bytes) -> bytes | None:
    if linktype == 1:  # Ethernet (+ 802.1Q)
        off, ethertype = 14, struct.unpack_from(">H", frame, 12)[0]
        while ethertype in (0x8100, 0x88A8):
            ethertype = struct.unpack_from(">H", frame, off + 2)[0]
            off += 4
        return frame[off:] if ethertype in (0x0800, 0x86DD) else None
    if linktype == 113:  # Linux SLL
        return frame[16:] if struct.unpack_from(">H", frame, 14)[0] in (0x0800, 0x86DD) else None
    if linktype == 276:  # Linux SLL2
        return frame[20:] if struct.unpack_from(">H", frame, 0)[0] in (0x0800, 0x86DD) else None
    if linktype in (101, 12, 14):
        return frame
    if linktype in (0, 108):
        return frame[4:]
    raise ValueError(f"linktype {linktype} not handled by the test reader")


def read_packets(path: Path) -> list[Pkt]:
    """Every IPv4/IPv6 TCP/UDP/ESP/AH packet of a capture, in order (fragments other than first skipped)."""
    out: list[Pkt] = []
    for index, (linktype, frame) in enumerate(_frames(path), 1):
        ip = _ip_packet(linktype, frame)
        if not ip:
            continue
        version = ip[0] >> 4
        if version == 4:
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack_from(">H", ip, 2)[0]
            if struct.unpack_from(">H", ip, 6)[0] & 0x1FFF:
                continue
            proto, src, dst = ip[9], ip[12:16], ip[16:20]
            l4 = ip[ihl:total]
        elif version == 6:
            proto, src, dst = ip[6], ip[8:24], ip[24:40]
            l4 = ip[40 : 40 + struct.unpack_from(">H", ip, 4)[0]]
        else:
            continue
        if proto == UDP:
            sport, dport = struct.unpack_from(">HH", l4, 0)
            out.append(Pkt(index, src, dst, proto, sport, dport, l4[8:]))
        elif proto == TCP:
            sport, dport, seq = struct.unpack_from(">HHI", l4, 0)
            hlen = (l4[12] >> 4) * 4
            out.append(Pkt(index, src, dst, proto, sport, dport, l4[hlen:], l4[13], seq))
        elif proto in (GRE, ESP, AH):
            out.append(Pkt(index, src, dst, proto, 0, 0, l4))
    return out


@functools.lru_cache(maxsize=None)
def read_flows(path: Path) -> list[Flow]:
    """Bidirectional flows in order of first appearance (cached per path: do not mutate)."""
    flows: dict[tuple, Flow] = {}
    for p in read_packets(path):
        key = (p.proto, frozenset({(p.src, p.sport), (p.dst, p.dport)}))
        flow = flows.get(key)
        if flow is None:
            a, b = (p.src, p.sport), (p.dst, p.dport)
            if p.proto == TCP and p.tcp_flags & 0x12 == 0x12:  # first seen is a SYN/ACK: the other side is A
                a, b = b, a
            flow = flows[key] = Flow(p.proto, a, b)
        flow.packets.append(((p.src, p.sport) == flow.a, p))
    return list(flows.values())


def mutations(seeds: list[bytes]):
    """Hypothesis strategy: real messages truncated, byte-flipped, spliced with each other, or extended."""
    from hypothesis import strategies as st

    seed = st.sampled_from(seeds)

    @st.composite
    def truncated(draw):
        data = draw(seed)
        return data[: draw(st.integers(0, len(data)))]

    @st.composite
    def flipped(draw):
        data = bytearray(draw(seed))
        for _ in range(draw(st.integers(1, 4))):
            if data:
                i = draw(st.integers(0, len(data) - 1))
                data[i] = draw(st.integers(0, 255))
        return bytes(data)

    @st.composite
    def spliced(draw):
        a, b = draw(seed), draw(seed)
        return a[: draw(st.integers(0, len(a)))] + b[draw(st.integers(0, len(b))) :]

    @st.composite
    def extended(draw):
        return draw(seed) + draw(st.binary(min_size=1, max_size=64))

    return st.one_of(seed, truncated(), flipped(), spliced(), extended())


_NDPI_FLOW = re.compile(
    r"^\s+\d+\s+(TCP|UDP)\s+\[?([0-9a-fA-F.:]+?)\]?:(\d+)\s+<?->\s+\[?([0-9a-fA-F.:]+?)\]?:(\d+)\s+"
    r"\[proto:\s*[\d.]+/([^\]]+)\]"
)


def ndpi_labels(name: str) -> dict[tuple[int, frozenset], str]:
    """nDPI's label per flow of a capture: {(l4 proto, {(ip, port), (ip, port)}): "Master[.App]"}."""
    path = SHARED_DATA / "ndpi" / "result" / f"{name}.out"
    if not path.is_file():
        pytest.skip(f"../shared/data not found: {path}")
    labels = {}
    for line in path.read_text().splitlines():
        m = _NDPI_FLOW.match(line)
        if m:
            l4 = TCP if m[1] == "TCP" else UDP
            a = (ipaddress.ip_address(m[2]).packed, int(m[3]))
            b = (ipaddress.ip_address(m[4]).packed, int(m[5]))
            labels[(l4, frozenset({a, b}))] = m[6]
    return labels


def flow_key(flow: Flow) -> tuple[int, frozenset]:
    return flow.proto, frozenset({flow.a, flow.b})


def all_captures() -> list[Path]:
    if not NDPI_PCAPS.is_dir():
        pytest.skip(f"../shared/data not found: {NDPI_PCAPS}")
    return sorted(p for p in NDPI_PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng"))
