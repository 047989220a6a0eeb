"""Helpers for the enforcement tests: an independent header reader with its own checksum arithmetic (so a crafted
packet is not checked by the code that built it), real trigger material (a ClientHello from Python's ssl module,
DNS queries from dnspython, packets of the real nDPI captures in ../shared/data, never copied in), and a decoder
round trip through ``chokepoint.packet.decode``."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from chokepoint.flow.flow import Flow
from chokepoint.flow.key import flow_key
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import Frame, open_capture
from chokepoint.packet.record import Packet

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
NDPI_PCAPS = SHARED_DATA / "ndpi" / "pcap"


def capture(name: str) -> Path:
    path = NDPI_PCAPS / name
    if not path.is_file():
        pytest.skip(f"../shared/data not found: {path} (the shared data folder beside the checkout)")
    return path


# ------------------------------------------------------------------------------- independent header reader


def fold(data: bytes) -> int:
    """One's-complement sum of 16-bit big-endian words, folded (RFC 1071), written independently of
    ``chokepoint.packet.build.checksum``: a correct packet's covered bytes sum to 0xFFFF."""
    if len(data) % 2:
        data = data + b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


@dataclass
class Wire:
    version: int
    src: str
    dst: str
    ttl: int
    ip_id: int
    df: bool
    proto: int
    l4: bytes  # the transport header and payload
    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 0
    payload: bytes = b""
    icmp_type: int = -1
    icmp_code: int = -1


def read(packet: bytes) -> Wire:
    """Parse an IPv4/IPv6 packet carrying TCP, UDP, ICMP or ICMPv6 and assert every checksum and length."""
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        total, ip_id, frag, ttl, proto = struct.unpack_from("!2xHHHBB", packet)
        assert total == len(packet), "IPv4 total length"
        assert fold(packet[:ihl]) == 0xFFFF, "IPv4 header checksum"
        src, dst = packet[12:16], packet[16:20]
        l4 = packet[ihl:]
        pseudo = src + dst + bytes((0, proto)) + struct.pack("!H", len(l4))
        wire = Wire(
            4,
            str(ipaddress.ip_address(src)),
            str(ipaddress.ip_address(dst)),
            ttl,
            ip_id,
            bool(frag & 0x4000),
            proto,
            l4,
        )
    elif version == 6:
        plen, proto, hlim = struct.unpack_from("!4xHBB", packet)
        assert plen + 40 == len(packet), "IPv6 payload length"
        src, dst = packet[8:24], packet[24:40]
        l4 = packet[40:]
        pseudo = src + dst + struct.pack("!I3xB", len(l4), proto)
        wire = Wire(6, str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), hlim, 0, False, proto, l4)
    else:
        raise AssertionError(f"IP version {version}")
    if proto == 6:
        assert fold(pseudo + l4) == 0xFFFF, "TCP checksum"
        (wire.sport, wire.dport, wire.seq, wire.ack, off, wire.flags, wire.window) = struct.unpack_from("!HHIIBBH", l4)
        wire.payload = l4[(off >> 4) * 4 :]
    elif proto == 17:
        assert fold(pseudo + l4) == 0xFFFF, "UDP checksum"
        wire.sport, wire.dport, length = struct.unpack_from("!HHH", l4)
        assert length == len(l4), "UDP length"
        wire.payload = l4[8:]
    elif proto == 1:
        assert fold(l4) == 0xFFFF, "ICMP checksum"
        wire.icmp_type, wire.icmp_code = l4[0], l4[1]
        wire.payload = l4[8:]
    elif proto == 58:
        assert fold(pseudo + l4) == 0xFFFF, "ICMPv6 checksum"
        wire.icmp_type, wire.icmp_code = l4[0], l4[1]
        wire.payload = l4[8:]
    else:
        raise AssertionError(f"protocol {proto}")
    return wire


def decode(packet: bytes) -> Packet:
    """The project's decoder on a raw IP packet (link type 101); it must accept it."""
    decoder = Decoder()
    pkt = decoder.decode(Frame(1.0, 101, packet, len(packet), 1))
    assert pkt is not None, f"the decoder refused a crafted packet: {dict(decoder.counters)}"
    return pkt


# ------------------------------------------------------------------------------------ real trigger material


def client_hello(server_name: str) -> bytes:
    """A real TLS ClientHello, written by Python's ssl module into a memory BIO."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


_LINK_OFFSET = {101: 0, 12: 0, 14: 0, 228: 0, 229: 0, 0: 4, 108: 4, 113: 16, 276: 20}


def _ip_start(frame: Frame) -> int | None:
    if frame.linktype == 1:
        pos = 12
        ethertype = struct.unpack_from("!H", frame.data, pos)[0]
        while ethertype in (0x8100, 0x88A8):
            pos += 4
            ethertype = struct.unpack_from("!H", frame.data, pos)[0]
        return pos + 2 if ethertype in (0x0800, 0x86DD) else None
    return _LINK_OFFSET.get(frame.linktype)


@cache
def real_packets(name: str) -> tuple[tuple[Packet, bytes], ...]:
    """(decoded packet, its whole IP packet) for every IP frame of a real capture."""
    out = []
    decoder = Decoder()
    with open_capture(capture(name)) as reader:
        for frame in reader:
            pkt = decoder.decode(frame)
            start = _ip_start(frame)
            if pkt is None or start is None:
                continue
            raw = frame.data[start:]
            if raw and raw[0] >> 4 == 4:
                raw = raw[: struct.unpack_from("!H", raw, 2)[0]]  # cut Ethernet padding
            out.append((pkt, bytes(raw)))
    return tuple(out)


def flows_of(items) -> dict:
    """Flows keyed like the engine (``chokepoint.flow``), each with its (packet, raw, direction) list."""
    flows: dict = {}
    for pkt, raw in items:
        key = flow_key(pkt)
        if key not in flows:
            flows[key] = (Flow.from_first_packet(len(flows) + 1, key, pkt), [])
        flow, seen = flows[key]
        seen.append((pkt, raw, flow.direction_of(pkt)))
    return flows


def addr(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
