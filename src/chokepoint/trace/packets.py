"""IPv4 packets as a censorship traceroute needs them: addresses, TTL, IP ID, TCP/UDP ports, flags, payload, and
the packet an ICMP error quotes. Reads captures of any link type the lab and CenTrace write (Ethernet with
VLAN tags, raw IP, Linux cooked v1/v2, BSD loopback). Not a hot path; no scapy."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from chokepoint.packet.pcap import CaptureFormatError, open_capture

TCP, UDP, ICMP = 6, 17, 1
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
ICMP_TIME_EXCEEDED = 11


class TraceInputError(ValueError):
    """A capture cannot be read or holds no probe."""


@dataclass(frozen=True, slots=True)
class Pkt:
    """One IPv4 packet (or the part of one an ICMP error quotes: ``partial``)."""

    ts: float
    src: str
    dst: str
    ttl: int
    ip_id: int
    proto: int
    sport: int = 0
    dport: int = 0
    flags: int = 0  # TCP flags
    seq: int = 0
    ack: int = 0
    window: int = 0
    payload: bytes = b""
    icmp_type: int = -1
    icmp_code: int = -1
    quoted: Pkt | None = None  # the packet an ICMP error quotes
    partial: bool = False

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


def parse_ipv4(data: bytes, ts: float = 0.0, *, quoted: bool = False) -> Pkt | None:
    """The packet in ``data`` (an IPv4 header first), or None when it is not IPv4 or too short."""
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 15) * 4
    if ihl < 20 or len(data) < ihl:
        return None
    total = struct.unpack("!H", data[2:4])[0]
    end = min(len(data), total) if total >= ihl and not quoted else len(data)
    ip_id, ttl, proto = struct.unpack("!H", data[4:6])[0], data[8], data[9]
    src, dst = str(IPv4Address(data[12:16])), str(IPv4Address(data[16:20]))
    body = data[ihl:end]
    base = {"ts": ts, "src": src, "dst": dst, "ttl": ttl, "ip_id": ip_id, "proto": proto, "partial": quoted}
    if proto == TCP and len(body) >= 8:
        sport, dport, seq = struct.unpack("!HHI", body[:8])
        if len(body) < 20:
            return Pkt(**base, sport=sport, dport=dport, seq=seq)
        ack, off, flags, window = struct.unpack("!IBBH", body[8:16])
        return Pkt(
            **base,
            sport=sport,
            dport=dport,
            seq=seq,
            ack=ack,
            flags=flags,
            window=window,
            payload=body[(off >> 4) * 4 :],
        )
    if proto == UDP and len(body) >= 8:
        sport, dport = struct.unpack("!HH", body[:4])
        return Pkt(**base, sport=sport, dport=dport, payload=body[8:])
    if proto == ICMP and len(body) >= 8 and not quoted:
        inner = parse_ipv4(body[8:], ts, quoted=True) if body[0] in (3, 11, 12) else None
        return Pkt(**base, icmp_type=body[0], icmp_code=body[1], quoted=inner, payload=body[8:])
    return Pkt(**base)


def _strip_link(linktype: int, data: bytes) -> bytes | None:
    """The IP packet inside a frame of ``linktype``, or None."""
    if linktype == 1:  # Ethernet, skipping 802.1Q / QinQ tags
        off, ethertype = 12, None
        while off + 2 <= len(data):
            ethertype = struct.unpack("!H", data[off : off + 2])[0]
            if ethertype in (0x8100, 0x88A8):
                off += 4
                continue
            break
        return data[off + 2 :] if ethertype == 0x0800 else None
    if linktype in (12, 14, 101, 228):
        return data
    if linktype == 113:  # Linux cooked v1
        return data[16:] if data[14:16] == b"\x08\x00" else None
    if linktype == 276:  # Linux cooked v2
        return data[20:] if data[0:2] == b"\x08\x00" else None
    if linktype == 0:  # BSD loopback
        return data[4:]
    return None


def read_capture(path: str | Path) -> list[Pkt]:
    """Every IPv4 packet of a pcap/pcapng file, in order; ``TraceInputError`` if it cannot be read."""
    packets = []
    try:
        with open_capture(path) as reader:
            for frame in reader:
                ip = _strip_link(frame.linktype, frame.data)
                pkt = parse_ipv4(ip, frame.ts) if ip is not None else None
                if pkt is not None:
                    packets.append(pkt)
    except FileNotFoundError:
        raise TraceInputError(f"{path}: no such file") from None
    except (OSError, CaptureFormatError, ValueError, struct.error) as exc:
        raise TraceInputError(f"{path}: not a readable capture ({exc})") from None
    return packets


__all__ = ["Pkt", "TraceInputError", "parse_ipv4", "read_capture"]
