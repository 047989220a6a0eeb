"""QUIC Initial packets opened: IETF Initials decrypted with keys from the client's DCID (RFC 9001 §5, via
quic_crypto.py), gQUIC Q043/Q046 "null-encrypted" packets checked against their FNV-1a-128 hash."""

from __future__ import annotations

from dataclasses import dataclass

from chokepoint.dissect.errors import Malformed
from chokepoint.dissect.quic_crypto import AEAD_TAG_LEN, InitialProtection, decode_packet_number, unprotect_header
from chokepoint.dissect.quic_frames import CryptoFrame, Frame, parse_frames, parse_gquic_frames
from chokepoint.dissect.quic_header import (
    GQUIC_HASH_LEN,
    PUB_PN_LEN,
    HeaderFormat,
    PacketType,
    QuicLongHeader,
    iter_long_headers,
)

__all__ = ["QuicInitialPacket", "decrypt_initial", "open_gquic_null", "open_protected"]


@dataclass(frozen=True, slots=True)
class QuicInitialPacket:
    """One Initial packet with its plaintext payload and decoded frames."""

    header: QuicLongHeader
    packet_number: int
    payload: bytes
    frames: tuple[Frame, ...]

    @property
    def crypto_frames(self) -> tuple[CryptoFrame, ...]:
        return tuple(f for f in self.frames if isinstance(f, CryptoFrame))


_FNV128_OFFSET = 144066263297769815596495629667062367629
_FNV128_PRIME = 309485009821345068724781371
_U128 = (1 << 128) - 1


def _fnv1a_128(*parts: bytes | memoryview) -> int:
    value = _FNV128_OFFSET
    for part in parts:
        for byte in bytes(part):
            value = ((value ^ byte) * _FNV128_PRIME) & _U128
    return value


def open_gquic_null(packet: bytes | memoryview, header: QuicLongHeader, *, is_client: bool) -> QuicInitialPacket:
    """Check the 12-byte FNV-1a-128 hash of a "null-encrypted" gQUIC packet (Chromium NullDecrypter:
    hash over header || plaintext || "Client"/"Server", low 96 bits, little-endian)."""
    if header.header_format is HeaderFormat.GQUIC_PUBLIC:
        pn_len = PUB_PN_LEN[header.first_byte & 0x30]
    else:
        pn_len = (header.first_byte & 0x03) + 1
    body = header.pn_offset + pn_len
    end = header.packet_size
    if body + GQUIC_HASH_LEN > end:
        raise Malformed("gQUIC: packet too short for its hash")
    sent = int.from_bytes(packet[body : body + 8], "little") | (
        int.from_bytes(packet[body + 8 : body + 12], "little") << 64
    )
    plaintext = bytes(packet[body + GQUIC_HASH_LEN : end])
    expected = _fnv1a_128(packet[:body], plaintext, b"Client" if is_client else b"Server") & ((1 << 96) - 1)
    if sent != expected:
        raise Malformed("gQUIC: null-encryption hash mismatch")
    packet_number = int.from_bytes(packet[header.pn_offset : body], "big")
    return QuicInitialPacket(header, packet_number, plaintext, parse_gquic_frames(plaintext, pn_len))


def open_protected(
    packet: bytes | memoryview, header: QuicLongHeader, protection: InitialProtection, largest_pn: int
) -> QuicInitialPacket:
    first_byte, pn_len, truncated = unprotect_header(packet, header.pn_offset, protection)
    payload_start = header.pn_offset + pn_len
    if header.packet_size - payload_start < AEAD_TAG_LEN:
        raise Malformed("QUIC: Initial payload shorter than the AEAD tag")
    packet_number = decode_packet_number(truncated, pn_len, largest_pn)
    aad = bytes((first_byte,)) + bytes(packet[1 : header.pn_offset]) + truncated.to_bytes(pn_len, "big")
    plaintext = protection.open(packet_number, aad, bytes(packet[payload_start : header.packet_size]))
    if header.is_gquic:
        frames = parse_gquic_frames(plaintext, pn_len)
    else:
        if first_byte & 0x0C:  # RFC 9000 §17.2: reserved bits, checked after removing protection
            raise Malformed(f"QUIC: reserved bits set in first byte 0x{first_byte:02x}")
        frames = parse_frames(plaintext)
    return QuicInitialPacket(header, packet_number, plaintext, frames)


def decrypt_initial(
    datagram: bytes, *, is_client: bool = True, initial_dcid: bytes | None = None
) -> list[QuicInitialPacket]:
    """Remove protection from every Initial packet of a datagram and decode its frames.

    Keys come from ``initial_dcid`` (the client's first DCID) or, by default, from the packet's own
    DCID, which is right for a client's first flight.  ``is_client=False`` reads a server's Initials,
    and then needs ``initial_dcid``.  Coalesced Handshake/0-RTT packets are skipped (no keys); a
    datagram that is QUIC but holds no Initial yields [].  gQUIC Q043/Q046 packets are checked against
    their null-encryption hash.  Failures are NotThisProtocol / UnsupportedVersion / Malformed.
    """
    packets: list[QuicInitialPacket] = []
    protection = None  # coalesced packets share the version and DCID, hence the keys
    largest_pn = -1
    for offset, header in iter_long_headers(datagram):
        if header.packet_type is not PacketType.INITIAL:
            continue
        packet = memoryview(datagram)[offset : offset + header.packet_size]
        if header.header_format is not HeaderFormat.IETF:
            packets.append(open_gquic_null(packet, header, is_client=is_client))
            continue
        if protection is None:
            key_cid = header.dcid if initial_dcid is None else initial_dcid
            protection = InitialProtection.for_initial(header.version, key_cid, is_client=is_client)
        opened = open_protected(packet, header, protection, largest_pn)
        largest_pn = max(largest_pn, opened.packet_number)
        packets.append(opened)
    return packets
