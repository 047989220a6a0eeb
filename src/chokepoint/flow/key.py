"""Bidirectional flow keys and the stable hash used to shard flows across workers."""

from __future__ import annotations

import ipaddress
import zlib

from chokepoint.packet.record import Packet

FlowKey = tuple[int, bytes, int, bytes, int]
"""(ip proto, lower endpoint address, its port, higher endpoint address, its port): direction-free."""


def flow_key(pkt: Packet) -> FlowKey:
    a = (pkt.src, pkt.sport)
    b = (pkt.dst, pkt.dport)
    if a <= b:
        return (pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
    return (pkt.proto, pkt.dst, pkt.dport, pkt.src, pkt.sport)


def shard_of(key: FlowKey, shards: int) -> int:
    """Stable across processes and runs (unlike ``hash()``, which is salted)."""
    proto, a, pa, b, pb = key
    return zlib.crc32(a + b + pa.to_bytes(2, "big") + pb.to_bytes(2, "big") + bytes((proto,))) % shards


def ip_text(addr: bytes) -> str:
    """An address as text: dotted quad for IPv4 (what ``ipaddress`` writes, built directly: once per flow on
    the fast path), RFC 5952 form for IPv6."""
    if len(addr) == 4:
        return f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}"
    return str(ipaddress.ip_address(addr))
