"""The compact packet record: decoded once at the edge, read by everything after."""

from __future__ import annotations

from dataclasses import dataclass

# IP protocol numbers used across the engine.
TCP = 6
UDP = 17
ICMP = 1
ICMPV6 = 58
GRE = 47
ESP = 50
AH = 51

# TCP flag bits.
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80
#: The four bits above the classic flags (byte 12's low nibble, ``Packet.tcp_flags`` bits 8-11): AE, "Accurate
#: ECN" (RFC 9768, formerly NS), and the three still-reserved bits (RFC 9293 §3.1), which Wireshark shows
#: together as "Reserved". Pakistan's injected RSTs carry both (geedge.report fingerprints: RST+AE+RE).
AE = 0x100
RESERVED = 0xE00

_FLAG_LETTERS = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "A"), (URG, "U"))


def tcp_flags_text(flags: int) -> str:
    """TCP flags as letters in Suricata/tcpdump order of bits, F S R P A U (RST+ACK is ``RA``), then ``+AE``
    and ``+RE`` when the AE or any reserved bit is set (the names geedge.report and Wireshark use)."""
    text = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    return text + ("+AE" if flags & AE else "") + ("+RE" if flags & RESERVED else "")


@dataclass(slots=True)
class Packet:
    """One decoded IP packet. Addresses are packed bytes (4 or 16); ports are 0 where absent."""

    ts: float
    ip_version: int
    src: bytes
    dst: bytes
    proto: int
    sport: int = 0
    dport: int = 0
    payload: bytes = b""
    ttl: int = 0
    ip_id: int = 0
    df: bool = False
    ip_len: int = 0
    tcp_flags: int = 0
    seq: int = 0
    ack: int = 0
    window: int = 0
    tcp_header_len: int = 0
    icmp_type: int = -1
    icmp_code: int = -1
    frame_len: int = 0
    reassembled_from: int = 1  # >1 when built from IPv4/IPv6 fragments
    index: int = 0  # 1-based position in the capture
    encap: tuple[str, ...] = ()  # what the decoder unwrapped, outermost first (packet/decap.py): "vlan:100", ...
