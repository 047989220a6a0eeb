"""QUIC long headers (and the gQUIC public header that carries a version): parse, walk coalesced packets,
and the engine's cheap "does this start like a client Initial?" test.

- IETF QUIC v1: RFC 9000 §17.2 (long header), §12.2 (coalesced packets); v2 packet types: RFC 9369 §3.2.
- Version-independent properties (Version Negotiation, connection-ID lengths): RFC 8999.
- IETF drafts >= 22 and Facebook mvfst (0xfaceb00x) share the v1 header layout.  Older drafts (4-bit
  connection-ID lengths in one byte, other salts) are refused with UnsupportedVersion; none is in the data.
- Google QUIC (Chromium "QUIC Wire Layout", as read by Wireshark's packet-gquic.c and nDPI's
  protocols/quic.c): Q039..Q043 use the public header (flags, 8-byte connection ID, version, packet
  number), Q046 a long header with 4-bit connection-ID lengths, Q050/T050/T051 the invariant long header.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from chokepoint.dissect.errors import Malformed, NotThisProtocol
from chokepoint.dissect.quic_crypto import (
    AEAD_TAG_LEN,
    OLDEST_DRAFT,
    PN_MAX_LEN,
    Q050,
    SAMPLE_LEN,
    T050,
    T051,
    VERSION_2,
    UnsupportedVersion,
    draft_number,
    has_initial_salt,
)
from chokepoint.dissect.quic_versions import (
    OLDEST_GQUIC_PUBLIC,
    Q046,
    gquic_number,
    is_forcing_negotiation,
    is_gquic_version,
    is_known_version,
    take,
    varint,
    version_name,
)

__all__ = [
    "GQUIC_HASH_LEN",
    "MAX_CID_LEN",
    "PUB_PN_LEN",
    "HeaderFormat",
    "PacketType",
    "QuicLongHeader",
    "is_quic_initial_prefix",
    "iter_long_headers",
    "parse_long_header",
]

MAX_CID_LEN = 20  # RFC 9000 §17.2 (v1); RFC 8999 allows 255 for unknown versions
GQUIC_HASH_LEN = 12

# gQUIC public-header flags (QUIC Wire Layout, "Public Header").
_PUB_VERSION = 0x01
_PUB_RESET = 0x02
_PUB_NONCE = 0x04
_PUB_CID = 0x08
PUB_PN_LEN = {0x00: 1, 0x10: 2, 0x20: 4, 0x30: 6}


class PacketType(StrEnum):
    INITIAL = "initial"
    ZERO_RTT = "0rtt"
    HANDSHAKE = "handshake"
    RETRY = "retry"
    VERSION_NEGOTIATION = "version_negotiation"


class HeaderFormat(StrEnum):
    IETF = "ietf"  # RFC 8999 long header: v1, v2, drafts >= 22, mvfst, Q050, T050, T051
    GQUIC_Q046 = "gquic-q046"  # Q046: one byte of 4-bit CID lengths, no token and no Length field
    GQUIC_PUBLIC = "gquic-public"  # Q039..Q043 public header with the version flag set


V1_TYPES = (PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE, PacketType.RETRY)
V2_TYPES = (PacketType.RETRY, PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE)


@dataclass(frozen=True, slots=True)
class QuicLongHeader:
    """The cleartext part of one long-header packet (or a gQUIC packet carrying a version).

    Offsets are relative to the start of the packet; ``packet_size`` is the packet's extent in the
    datagram (coalesced packets follow it).  ``length`` is the Length field (packet number + payload)
    or None for formats without one.  ``first_byte`` is as sent (still header-protected for IETF).
    """

    version: int
    packet_type: PacketType
    dcid: bytes
    scid: bytes
    token: bytes
    length: int | None
    pn_offset: int
    packet_size: int
    first_byte: int
    header_format: HeaderFormat
    supported_versions: tuple[int, ...] = ()

    @property
    def version_name(self) -> str:
        return version_name(self.version)

    @property
    def is_gquic(self) -> bool:
        return is_gquic_version(self.version)


def parse_long_header(datagram: bytes | memoryview, offset: int = 0) -> QuicLongHeader:
    """Parse the long header of the packet starting at ``offset`` in a UDP datagram.

    NotThisProtocol for short headers, unknown versions and non-QUIC bytes; UnsupportedVersion
    (a Malformed) for recognised versions with another layout; Malformed for broken fields.
    """
    buf = datagram
    end = len(buf)
    if offset >= end:
        raise NotThisProtocol("QUIC: empty")
    first = buf[offset]
    if not first & 0x80:
        return _parse_gquic_public_header(buf, offset)
    if end - offset < 7:
        raise NotThisProtocol("QUIC: too short for a long header")
    version = int.from_bytes(buf[offset + 1 : offset + 5], "big")
    if version == 0:
        return _parse_version_negotiation(buf, offset, first)
    if not is_known_version(version):
        raise NotThisProtocol(f"QUIC: unknown version 0x{version:08x}")
    if is_forcing_negotiation(version):
        raise UnsupportedVersion(f"QUIC: reserved version 0x{version:08x} (forces negotiation)")
    if is_gquic_version(version):
        if version == Q046:
            return _parse_q046_header(buf, offset, first, version)
        if version not in (Q050, T050, T051):
            raise UnsupportedVersion(f"QUIC: gQUIC {version_name(version)} long header not supported")
    else:
        draft = draft_number(version)
        if draft is not None and draft < OLDEST_DRAFT:
            raise UnsupportedVersion(f"QUIC: {version_name(version)} header layout not supported")
    return _parse_ietf_header(buf, offset, first, version)


def _parse_version_negotiation(buf: bytes | memoryview, start: int, first: int) -> QuicLongHeader:
    end = len(buf)
    pos = start + 5
    dcil = buf[pos]
    dcid, pos = take(buf, pos + 1, dcil, end, "VN DCID")
    if pos >= end:
        raise Malformed("QUIC: Version Negotiation without SCID length")
    scil = buf[pos]
    scid, pos = take(buf, pos + 1, scil, end, "VN SCID")
    rest = end - pos
    if rest == 0 or rest % 4:
        raise Malformed(f"QUIC: Version Negotiation version list of {rest} bytes (RFC 9000 §17.2.1)")
    versions = tuple(int.from_bytes(buf[i : i + 4], "big") for i in range(pos, end, 4))
    return QuicLongHeader(
        version=0,
        packet_type=PacketType.VERSION_NEGOTIATION,
        dcid=dcid,
        scid=scid,
        token=b"",
        length=None,
        pn_offset=end - start,
        packet_size=end - start,
        first_byte=first,
        header_format=HeaderFormat.IETF,
        supported_versions=versions,
    )


def _parse_ietf_header(buf: bytes | memoryview, start: int, first: int, version: int) -> QuicLongHeader:
    end = len(buf)
    pos = start + 5
    dcil = buf[pos]
    if dcil > MAX_CID_LEN:
        raise Malformed(f"QUIC: DCID length {dcil} > {MAX_CID_LEN}")
    dcid, pos = take(buf, pos + 1, dcil, end, "DCID")
    if pos >= end:
        raise Malformed("QUIC: long header truncated before SCID length")
    scil = buf[pos]
    if scil > MAX_CID_LEN:
        raise Malformed(f"QUIC: SCID length {scil} > {MAX_CID_LEN}")
    scid, pos = take(buf, pos + 1, scil, end, "SCID")
    types = V2_TYPES if version == VERSION_2 else V1_TYPES
    packet_type = types[(first >> 4) & 0x03]
    token = b""
    if packet_type is PacketType.RETRY:
        if end - pos < AEAD_TAG_LEN:
            raise Malformed("QUIC: Retry shorter than its integrity tag")
        token = bytes(buf[pos : end - AEAD_TAG_LEN])
        return QuicLongHeader(
            version=version,
            packet_type=packet_type,
            dcid=dcid,
            scid=scid,
            token=token,
            length=None,
            pn_offset=end - start,
            packet_size=end - start,
            first_byte=first,
            header_format=HeaderFormat.IETF,
        )
    if packet_type is PacketType.INITIAL:
        token_len, pos = varint(buf, pos, end, "token length")
        token, pos = take(buf, pos, token_len, end, "token")
    length, pos = varint(buf, pos, end, "Length")
    if pos + length > end:
        raise Malformed(f"QUIC: Length {length} exceeds the {end - pos} bytes left in the datagram")
    if length < PN_MAX_LEN + SAMPLE_LEN:  # RFC 9001 §5.4.2: room for the header-protection sample
        raise Malformed(f"QUIC: Length {length} too short for a protected packet")
    return QuicLongHeader(
        version=version,
        packet_type=packet_type,
        dcid=dcid,
        scid=scid,
        token=token,
        length=length,
        pn_offset=pos - start,
        packet_size=pos - start + length,
        first_byte=first,
        header_format=HeaderFormat.IETF,
    )


def _parse_q046_header(buf: bytes | memoryview, start: int, first: int, version: int) -> QuicLongHeader:
    end = len(buf)
    lengths = buf[start + 5]
    dcil = (lengths >> 4) + 3 if lengths >> 4 else 0
    scil = (lengths & 0x0F) + 3 if lengths & 0x0F else 0
    pos = start + 6
    dcid, pos = take(buf, pos, dcil, end, "Q046 DCID")
    scid, pos = take(buf, pos, scil, end, "Q046 SCID")
    packet_type = V1_TYPES[(first >> 4) & 0x03]
    pn_len = (first & 0x03) + 1
    if pos + pn_len + GQUIC_HASH_LEN > end:
        raise Malformed("QUIC: Q046 packet too short")
    return QuicLongHeader(
        version=version,
        packet_type=packet_type,
        dcid=dcid,
        scid=scid,
        token=b"",
        length=None,
        pn_offset=pos - start,
        packet_size=end - start,
        first_byte=first,
        header_format=HeaderFormat.GQUIC_Q046,
    )


def _parse_gquic_public_header(buf: bytes | memoryview, start: int) -> QuicLongHeader:
    """gQUIC public header with the version flag (a client's packets before version agreement)."""
    end = len(buf)
    flags = buf[start]
    if not flags & _PUB_VERSION or flags & _PUB_RESET or not flags & _PUB_CID:
        raise NotThisProtocol("QUIC: short header (no version)")
    if end - start < 1 + 8 + 4:
        raise NotThisProtocol("QUIC: too short for a gQUIC public header")
    version = int.from_bytes(buf[start + 9 : start + 13], "big")
    if not is_gquic_version(version) or version & 0xFF000000 != 0x51000000:
        raise NotThisProtocol(f"QUIC: short header (0x{version:08x} is not a gQUIC version)")
    number = gquic_number(version)
    if number > 43:
        raise NotThisProtocol(f"QUIC: {version_name(version)} does not use the public header")
    if number < OLDEST_GQUIC_PUBLIC:
        raise UnsupportedVersion(f"QUIC: gQUIC {version_name(version)} (little-endian era) not supported")
    pos = start + 13
    if flags & _PUB_NONCE:  # diversification nonce: server to client only
        raise Malformed("QUIC: gQUIC client packet with a diversification nonce")
    pn_len = PUB_PN_LEN[flags & 0x30]
    if pos + pn_len + GQUIC_HASH_LEN > end:
        raise Malformed("QUIC: gQUIC packet too short")
    return QuicLongHeader(
        version=version,
        packet_type=PacketType.INITIAL,
        dcid=bytes(buf[start + 1 : start + 9]),
        scid=b"",
        token=b"",
        length=None,
        pn_offset=pos - start,
        packet_size=end - start,
        first_byte=flags,
        header_format=HeaderFormat.GQUIC_PUBLIC,
    )


def iter_long_headers(datagram: bytes | memoryview) -> Iterator[tuple[int, QuicLongHeader]]:
    """Yield (offset, header) for the coalesced packets of a datagram (RFC 9000 §12.2).

    Stops at a short header, at trailing bytes that are not a packet, or at a packet whose DCID or
    version differs from the first one (receivers SHOULD ignore those).
    """
    first = parse_long_header(datagram, 0)
    yield 0, first
    offset = first.packet_size
    while offset < len(datagram) and first.length is not None:
        if not datagram[offset] & 0x80:
            return
        try:
            header = parse_long_header(datagram, offset)
        except (NotThisProtocol, Malformed):
            return
        if header.dcid != first.dcid or header.version != first.version:
            return
        yield offset, header
        offset += header.packet_size


# ---------------------------------------------------------------------------------------------
# Fast check for the engine


def is_quic_initial_prefix(datagram: bytes | memoryview) -> bool:
    """Cheap test: does this datagram start like a client Initial (or gQUIC CHLO packet) of a version
    we can read?  Looks at a few header bytes only; never raises."""
    if len(datagram) < 7:
        return False
    first = datagram[0]
    if not first & 0x80:
        if (first & 0x8B) != 0x09 or len(datagram) < 13:  # version + 8-byte CID, no reset, bit 7 clear
            return False
        version = int.from_bytes(datagram[9:13], "big")
        return (
            version >> 24 == 0x51 and is_gquic_version(version) and OLDEST_GQUIC_PUBLIC <= gquic_number(version) <= 43
        )
    version = int.from_bytes(datagram[1:5], "big")
    if version == Q046:
        return first & 0x30 == 0
    if not has_initial_salt(version):
        return False
    types = V2_TYPES if version == VERSION_2 else V1_TYPES
    return types[(first >> 4) & 0x03] is PacketType.INITIAL and datagram[5] <= MAX_CID_LEN
