"""QUIC Initial dissection: long headers, Initial decryption, CRYPTO reassembly, ClientHello / CHLO.

Formats:
- IETF QUIC v1: RFC 9000 §17.2 (long header), §16 (variable-length integers), §19 (frames), §12.2
  (coalesced packets), §12.4 (frames allowed in Initial packets); protection RFC 9001 (quic_crypto.py).
- QUIC v2: RFC 9369 §3.2 (long-header packet types: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00).
- Version-independent properties (Version Negotiation, connection-ID lengths): RFC 8999.
- IETF drafts >= 22 and Facebook mvfst (0xfaceb00x) share the v1 header layout.  Older drafts (4-bit
  connection-ID lengths in one byte, other salts) are refused with UnsupportedVersion; none is in the data.
- Google QUIC (Chromium "QUIC Wire Layout" and "QUIC Crypto" design docs, as read by Wireshark's
  packet-gquic.c and nDPI's protocols/quic.c): Q039..Q043 use the public header (flags, 8-byte connection
  ID, version, packet number) and Q046 a long header with 4-bit connection-ID lengths; both carry
  "null-encrypted" payloads behind a 12-byte FNV-1a-128 hash, Google frames, and the CHLO on stream 1.
  Q050 (CHLO) and T050/T051 (TLS 1.3) use the invariant long header, Initial keys with Google's salts,
  and Google frames with CRYPTO frames of type 0x08.

Version names follow nDPI's ``ndpi_quic_version2str`` ("V-1", "V-2", "Draft-29", "MVFST-27", "Q046", ...)
so results compare directly with nDPI's output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol
from chokepoint.dissect.quic_crypto import (
    AEAD_TAG_LEN,
    MVFST_22,
    MVFST_27,
    MVFST_EXP,
    OLDEST_DRAFT,
    PN_MAX_LEN,
    Q050,
    SAMPLE_LEN,
    T050,
    T051,
    VERSION_1,
    VERSION_2,
    InitialProtection,
    UnsupportedVersion,
    decode_packet_number,
    draft_number,
    has_initial_salt,
    unprotect_header,
)

if TYPE_CHECKING:
    from chokepoint.dissect.tls import ClientHello

__all__ = [
    "AckFrame",
    "ConnectionCloseFrame",
    "CryptoFrame",
    "GquicAckFrame",
    "GquicHandshakeMessage",
    "GquicStreamFrame",
    "HeaderFormat",
    "InitialAssembler",
    "PacketType",
    "PaddingFrame",
    "PingFrame",
    "QuicInfo",
    "QuicInitialPacket",
    "QuicLongHeader",
    "UnsupportedVersion",
    "decrypt_initial",
    "is_gquic_version",
    "is_known_version",
    "is_quic_initial_prefix",
    "parse_frames",
    "parse_gquic_handshake_message",
    "parse_long_header",
    "parse_transport_parameters",
    "version_name",
]

Q046 = 0x51303436
#: Oldest public-header gQUIC version handled (big-endian fields since Q039).
OLDEST_GQUIC_PUBLIC = 39

MAX_CID_LEN = 20  # RFC 9000 §17.2 (v1); RFC 8999 allows 255 for unknown versions
GQUIC_HASH_LEN = 12
GQUIC_CRYPTO_STREAM = 1

# gQUIC public-header flags (QUIC Wire Layout, "Public Header").
_PUB_VERSION = 0x01
_PUB_RESET = 0x02
_PUB_NONCE = 0x04
_PUB_CID = 0x08
_PUB_PN_LEN = {0x00: 1, 0x10: 2, 0x20: 4, 0x30: 6}


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


_V1_TYPES = (PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE, PacketType.RETRY)
_V2_TYPES = (PacketType.RETRY, PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE)

_NAMED_VERSIONS = {
    VERSION_1: "V-1",
    VERSION_2: "V-2",
    T050: "T050",
    T051: "T051",
    MVFST_22: "MVFST-22",
    MVFST_27: "MVFST-27",
    MVFST_EXP: "MVFST-EXP",
}


# ---------------------------------------------------------------------------------------------
# Versions


def is_gquic_version(version: int) -> bool:
    """A Google QUIC version tag: 'Q' or 'T' followed by three ASCII digits (Q043, Q046, Q050, T051)."""
    tag = version.to_bytes(4, "big")
    return tag[0] in b"QT" and all(0x30 <= b <= 0x39 for b in tag[1:])


def _gquic_number(version: int) -> int:
    return int(version.to_bytes(4, "big")[1:].decode("ascii"))


def _is_forcing_negotiation(version: int) -> bool:
    """Reserved 0x?a?a?a?a versions that force Version Negotiation (RFC 9000 §15)."""
    return version & 0x0F0F0F0F == 0x0A0A0A0A


def is_known_version(version: int) -> bool:
    """A version this module recognises as QUIC (it may still refuse to decrypt it)."""
    return (
        version in (VERSION_1, VERSION_2)
        or version >> 8 == 0xFF0000
        or version >> 12 == 0xFACEB
        or is_gquic_version(version)
        or _is_forcing_negotiation(version)
    )


def version_name(version: int) -> str:
    """nDPI's name for a version ("V-1", "Draft-29", "Q046", "MVFST-27", "Ver-Negotiation", ...)."""
    if version in _NAMED_VERSIONS:
        return _NAMED_VERSIONS[version]
    if is_gquic_version(version):
        return version.to_bytes(4, "big").decode("ascii")
    if _is_forcing_negotiation(version):
        return "Ver-Negotiation"
    if version >> 8 == 0xFF0000:
        return f"Draft-{version & 0xFF}"
    return f"Unknown ({version:04X})"


# ---------------------------------------------------------------------------------------------
# Variable-length integers


def _varint(buf: bytes | memoryview, pos: int, end: int, what: str) -> tuple[int, int]:
    """Decode an RFC 9000 §16 varint at ``pos``; return (value, next position)."""
    if pos >= end:
        raise Malformed(f"QUIC: {what}: varint past the end")
    first = buf[pos]
    size = 1 << (first >> 6)
    if pos + size > end:
        raise Malformed(f"QUIC: {what}: varint of {size} bytes truncated")
    value = first & 0x3F
    for i in range(1, size):
        value = (value << 8) | buf[pos + i]
    return value, pos + size


def _take(buf: bytes | memoryview, pos: int, length: int, end: int, what: str) -> tuple[bytes, int]:
    if length < 0 or pos + length > end:
        raise Malformed(f"QUIC: {what}: {length} bytes at {pos} exceed {end}")
    return bytes(buf[pos : pos + length]), pos + length


# ---------------------------------------------------------------------------------------------
# Long header


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
    if _is_forcing_negotiation(version):
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


def _parse_version_negotiation(buf, start: int, first: int) -> QuicLongHeader:
    end = len(buf)
    pos = start + 5
    dcil = buf[pos]
    dcid, pos = _take(buf, pos + 1, dcil, end, "VN DCID")
    if pos >= end:
        raise Malformed("QUIC: Version Negotiation without SCID length")
    scil = buf[pos]
    scid, pos = _take(buf, pos + 1, scil, end, "VN SCID")
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


def _parse_ietf_header(buf, start: int, first: int, version: int) -> QuicLongHeader:
    end = len(buf)
    pos = start + 5
    dcil = buf[pos]
    if dcil > MAX_CID_LEN:
        raise Malformed(f"QUIC: DCID length {dcil} > {MAX_CID_LEN}")
    dcid, pos = _take(buf, pos + 1, dcil, end, "DCID")
    if pos >= end:
        raise Malformed("QUIC: long header truncated before SCID length")
    scil = buf[pos]
    if scil > MAX_CID_LEN:
        raise Malformed(f"QUIC: SCID length {scil} > {MAX_CID_LEN}")
    scid, pos = _take(buf, pos + 1, scil, end, "SCID")
    types = _V2_TYPES if version == VERSION_2 else _V1_TYPES
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
        token_len, pos = _varint(buf, pos, end, "token length")
        token, pos = _take(buf, pos, token_len, end, "token")
    length, pos = _varint(buf, pos, end, "Length")
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


def _parse_q046_header(buf, start: int, first: int, version: int) -> QuicLongHeader:
    end = len(buf)
    lengths = buf[start + 5]
    dcil = (lengths >> 4) + 3 if lengths >> 4 else 0
    scil = (lengths & 0x0F) + 3 if lengths & 0x0F else 0
    pos = start + 6
    dcid, pos = _take(buf, pos, dcil, end, "Q046 DCID")
    scid, pos = _take(buf, pos, scil, end, "Q046 SCID")
    packet_type = _V1_TYPES[(first >> 4) & 0x03]
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


def _parse_gquic_public_header(buf, start: int) -> QuicLongHeader:
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
    number = _gquic_number(version)
    if number > 43:
        raise NotThisProtocol(f"QUIC: {version_name(version)} does not use the public header")
    if number < OLDEST_GQUIC_PUBLIC:
        raise UnsupportedVersion(f"QUIC: gQUIC {version_name(version)} (little-endian era) not supported")
    pos = start + 13
    if flags & _PUB_NONCE:  # diversification nonce: server to client only
        raise Malformed("QUIC: gQUIC client packet with a diversification nonce")
    pn_len = _PUB_PN_LEN[flags & 0x30]
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


# ---------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True, slots=True)
class PaddingFrame:
    length: int


@dataclass(frozen=True, slots=True)
class PingFrame:
    pass


@dataclass(frozen=True, slots=True)
class AckFrame:
    """ACK (RFC 9000 §19.3): ranges are (gap, length) pairs after the first range."""

    largest_acknowledged: int
    ack_delay: int
    first_range: int
    ranges: tuple[tuple[int, int], ...]
    ecn_counts: tuple[int, int, int] | None


@dataclass(frozen=True, slots=True)
class CryptoFrame:
    """CRYPTO (RFC 9000 §19.6); also Google's CRYPTO frame (type 0x08) in Q050/T050/T051."""

    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionCloseFrame:
    """CONNECTION_CLOSE of type 0x1c (RFC 9000 §19.19), the only variant allowed in Initials."""

    error_code: int
    frame_type: int
    reason: bytes


@dataclass(frozen=True, slots=True)
class GquicStreamFrame:
    """A Google QUIC STREAM frame (stream 1 carries the CHLO before Q050)."""

    stream_id: int
    offset: int
    data: bytes
    fin: bool


@dataclass(frozen=True, slots=True)
class GquicAckFrame:
    largest_acknowledged: int


Frame = PaddingFrame | PingFrame | AckFrame | CryptoFrame | ConnectionCloseFrame | GquicStreamFrame | GquicAckFrame


_NON_ZERO = re.compile(rb"[^\x00]")


def _end_of_zeros(buf: bytes | memoryview, pos: int, end: int) -> int:
    """Position of the first non-zero byte at or after ``pos`` (PADDING runs), or ``end``."""
    match = _NON_ZERO.search(buf, pos, end)
    return match.start() if match else end


def parse_frames(payload: bytes | memoryview) -> tuple[Frame, ...]:
    """Decode the frames of an IETF Initial packet's plaintext (RFC 9000 §19, §12.4).

    Only PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE (0x1c) may appear in an Initial packet; any
    other type, a truncated frame or an empty payload is Malformed.
    """
    buf = payload
    end = len(buf)
    if end == 0:
        raise Malformed("QUIC: Initial packet without frames (RFC 9000 §12.4)")
    frames: list[Frame] = []
    pos = 0
    while pos < end:
        frame_type, pos = _varint(buf, pos, end, "frame type")
        if frame_type == 0x00:
            run_start = pos - 1
            pos = _end_of_zeros(buf, pos, end)
            frames.append(PaddingFrame(pos - run_start))
        elif frame_type == 0x01:
            frames.append(PingFrame())
        elif frame_type in (0x02, 0x03):
            largest, pos = _varint(buf, pos, end, "ACK largest")
            delay, pos = _varint(buf, pos, end, "ACK delay")
            count, pos = _varint(buf, pos, end, "ACK range count")
            first_range, pos = _varint(buf, pos, end, "ACK first range")
            if count > (end - pos) // 2:
                raise Malformed(f"QUIC: ACK range count {count} exceeds the payload")
            ranges = []
            for _ in range(count):
                gap, pos = _varint(buf, pos, end, "ACK gap")
                length, pos = _varint(buf, pos, end, "ACK range")
                ranges.append((gap, length))
            ecn = None
            if frame_type == 0x03:
                ect0, pos = _varint(buf, pos, end, "ECT0")
                ect1, pos = _varint(buf, pos, end, "ECT1")
                ce, pos = _varint(buf, pos, end, "ECN-CE")
                ecn = (ect0, ect1, ce)
            frames.append(AckFrame(largest, delay, first_range, tuple(ranges), ecn))
        elif frame_type == 0x06:
            offset, pos = _varint(buf, pos, end, "CRYPTO offset")
            length, pos = _varint(buf, pos, end, "CRYPTO length")
            data, pos = _take(buf, pos, length, end, "CRYPTO data")
            frames.append(CryptoFrame(offset, data))
        elif frame_type == 0x1C:
            code, pos = _varint(buf, pos, end, "CONNECTION_CLOSE error")
            closed_type, pos = _varint(buf, pos, end, "CONNECTION_CLOSE frame type")
            reason_len, pos = _varint(buf, pos, end, "CONNECTION_CLOSE reason length")
            reason, pos = _take(buf, pos, reason_len, end, "CONNECTION_CLOSE reason")
            frames.append(ConnectionCloseFrame(code, closed_type, reason))
        else:
            raise Malformed(f"QUIC: frame type 0x{frame_type:x} not allowed in an Initial (RFC 9000 §12.4)")
    return tuple(frames)


_GQUIC_LEN_CODE = (1, 2, 4, 6)  # ACK length codes (QUIC Wire Layout, "ACK Frame")


def parse_gquic_frames(payload: bytes | memoryview, pn_len: int) -> tuple[Frame, ...]:
    """Decode Google QUIC frames (Q039+ big-endian layout): PADDING, PING, STOP_WAITING, CRYPTO (0x08),
    ACK (0b01ntllmm) and STREAM (0b1fdooossB).  Other types are Malformed here (not expected before
    the handshake completes)."""
    buf = payload
    end = len(buf)
    if end == 0:
        raise Malformed("gQUIC: packet without frames")
    frames: list[Frame] = []
    pos = 0
    while pos < end:
        frame_type = buf[pos]
        pos += 1
        if frame_type & 0x80:  # STREAM
            stream_id_len = (frame_type & 0x03) + 1
            offset_code = (frame_type >> 2) & 0x07
            offset_len = offset_code + 1 if offset_code else 0
            raw_id, pos = _take(buf, pos, stream_id_len, end, "gQUIC stream id")
            raw_offset, pos = _take(buf, pos, offset_len, end, "gQUIC stream offset")
            if frame_type & 0x20:
                raw_len, pos = _take(buf, pos, 2, end, "gQUIC stream data length")
                data_len = int.from_bytes(raw_len, "big")
            else:
                data_len = end - pos
            data, pos = _take(buf, pos, data_len, end, "gQUIC stream data")
            frames.append(
                GquicStreamFrame(
                    int.from_bytes(raw_id, "big"), int.from_bytes(raw_offset, "big"), data, bool(frame_type & 0x40)
                )
            )
        elif frame_type & 0x40:  # ACK
            largest_len = _GQUIC_LEN_CODE[(frame_type >> 2) & 0x03]
            block_len = _GQUIC_LEN_CODE[frame_type & 0x03]
            raw_largest, pos = _take(buf, pos, largest_len, end, "gQUIC ACK largest")
            _, pos = _take(buf, pos, 2, end, "gQUIC ACK delay")
            blocks = 0
            if frame_type & 0x20:
                raw_blocks, pos = _take(buf, pos, 1, end, "gQUIC ACK block count")
                blocks = raw_blocks[0]
            _, pos = _take(buf, pos, block_len + blocks * (1 + block_len), end, "gQUIC ACK blocks")
            raw_ts, pos = _take(buf, pos, 1, end, "gQUIC ACK timestamp count")
            if raw_ts[0]:
                _, pos = _take(buf, pos, 5 + (raw_ts[0] - 1) * 3, end, "gQUIC ACK timestamps")
            frames.append(GquicAckFrame(int.from_bytes(raw_largest, "big")))
        elif frame_type == 0x00:
            run_start = pos - 1
            pos = _end_of_zeros(buf, pos, end)
            frames.append(PaddingFrame(pos - run_start))
        elif frame_type == 0x07:
            frames.append(PingFrame())
        elif frame_type == 0x06:  # STOP_WAITING: least-unacked delta, packet-number sized
            _, pos = _take(buf, pos, pn_len, end, "gQUIC STOP_WAITING")
        elif frame_type == 0x08:
            offset, pos = _varint(buf, pos, end, "gQUIC CRYPTO offset")
            length, pos = _varint(buf, pos, end, "gQUIC CRYPTO length")
            data, pos = _take(buf, pos, length, end, "gQUIC CRYPTO data")
            frames.append(CryptoFrame(offset, data))
        else:
            raise Malformed(f"gQUIC: frame type 0x{frame_type:02x} not handled in a client's first packets")
    return tuple(frames)


# ---------------------------------------------------------------------------------------------
# Initial packets


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


def _open_gquic_null(packet: bytes | memoryview, header: QuicLongHeader, *, is_client: bool) -> QuicInitialPacket:
    """Check the 12-byte FNV-1a-128 hash of a "null-encrypted" gQUIC packet (Chromium NullDecrypter:
    hash over header || plaintext || "Client"/"Server", low 96 bits, little-endian)."""
    if header.header_format is HeaderFormat.GQUIC_PUBLIC:
        pn_len = _PUB_PN_LEN[header.first_byte & 0x30]
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


def _open_protected(
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


def _iter_long_headers(datagram: bytes | memoryview):
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
    for offset, header in _iter_long_headers(datagram):
        if header.packet_type is not PacketType.INITIAL:
            continue
        packet = memoryview(datagram)[offset : offset + header.packet_size]
        if header.header_format is not HeaderFormat.IETF:
            packets.append(_open_gquic_null(packet, header, is_client=is_client))
            continue
        if protection is None:
            key_cid = header.dcid if initial_dcid is None else initial_dcid
            protection = InitialProtection.for_initial(header.version, key_cid, is_client=is_client)
        opened = _open_protected(packet, header, protection, largest_pn)
        largest_pn = max(largest_pn, opened.packet_number)
        packets.append(opened)
    return packets


# ---------------------------------------------------------------------------------------------
# gQUIC handshake messages and QUIC transport parameters


@dataclass(frozen=True, slots=True)
class GquicHandshakeMessage:
    """A gQUIC crypto handshake message ("QUIC Crypto" design doc): a tag and tag/value entries.

    Values are raw bytes; ``sni`` (tag SNI), ``user_agent`` (UAID) and ``versions`` (VER) are decoded.
    """

    tag: bytes
    entries: tuple[tuple[bytes, bytes], ...]

    def get(self, tag: bytes) -> bytes | None:
        for entry_tag, value in self.entries:
            if entry_tag == tag:
                return value
        return None

    @property
    def sni(self) -> str | None:
        value = self.get(b"SNI\x00")
        return value.decode("ascii", "replace").lower() if value else None

    @property
    def user_agent(self) -> str | None:
        value = self.get(b"UAID")
        return value.decode("utf-8", "replace") if value else None

    @property
    def versions(self) -> tuple[str, ...]:
        value = self.get(b"VER\x00") or b""
        return tuple(value[i : i + 4].decode("ascii", "replace") for i in range(0, len(value) - 3, 4))


#: Refuse handshake messages with more entries than this (real CHLOs have ~20-30).
MAX_GQUIC_ENTRIES = 512


def gquic_message_length(prefix: bytes | memoryview) -> int:
    """Total length of the gQUIC handshake message starting ``prefix``; NeedMoreData until known."""
    if len(prefix) < 8:
        raise NeedMoreData("gQUIC CHLO: header incomplete")
    count = int.from_bytes(prefix[4:6], "little")
    if count > MAX_GQUIC_ENTRIES:
        raise Malformed(f"gQUIC CHLO: {count} entries")
    index_end = 8 + 8 * count
    if len(prefix) < index_end:
        raise NeedMoreData("gQUIC CHLO: tag index incomplete")
    last_end = int.from_bytes(prefix[index_end - 4 : index_end], "little") if count else 0
    return index_end + last_end


def parse_gquic_handshake_message(data: bytes | memoryview) -> GquicHandshakeMessage:
    """Parse a CHLO: tag(4) | entry count (u16 LE) | padding (2) | count x (tag(4), end offset (u32 LE))
    | values.  End offsets must not decrease; NeedMoreData while the message is incomplete."""
    if len(data) >= 4 and bytes(data[:4]) != b"CHLO":
        raise NotThisProtocol(f"gQUIC: handshake message {bytes(data[:4])!r} is not a CHLO")
    total = gquic_message_length(data)
    if len(data) < total:
        raise NeedMoreData(f"gQUIC CHLO: have {len(data)} of {total} bytes")
    count = int.from_bytes(data[4:6], "little")
    values_start = 8 + 8 * count
    entries = []
    previous_end = 0
    for i in range(count):
        index = 8 + 8 * i
        tag = bytes(data[index : index + 4])
        value_end = int.from_bytes(data[index + 4 : index + 8], "little")
        if value_end < previous_end:
            raise Malformed(f"gQUIC CHLO: tag {tag!r} ends at {value_end} before {previous_end}")
        entries.append((tag, bytes(data[values_start + previous_end : values_start + value_end])))
        previous_end = value_end
    return GquicHandshakeMessage(bytes(data[:4]), tuple(entries))


#: ClientHello extensions carrying QUIC transport parameters: 0x39 (RFC 9001 §8.2) and 0xffa5
#: (drafts and Google's T05x).
TRANSPORT_PARAMETER_EXTENSIONS = (0x39, 0xFFA5)
GOOGLE_USER_AGENT_PARAMETER = 0x3129  # Chromium's google_user_agent_id


def parse_transport_parameters(data: bytes, *, varint_ids: bool) -> tuple[tuple[int, bytes], ...]:
    """Decode QUIC transport parameters: varint id/length pairs (RFC 9000 §18; drafts >= 27, T051),
    or the older layout (drafts <= 26, T050): u16 total length, then u16 id / u16 length pairs."""
    params: list[tuple[int, bytes]] = []
    end = len(data)
    if varint_ids:
        pos = 0
        while pos < end:
            param_id, pos = _varint(data, pos, end, "transport parameter id")
            length, pos = _varint(data, pos, end, "transport parameter length")
            value, pos = _take(data, pos, length, end, "transport parameter value")
            params.append((param_id, value))
        return tuple(params)
    if end < 2 or int.from_bytes(data[:2], "big") != end - 2:
        raise Malformed("QUIC: transport parameters length prefix mismatch")
    pos = 2
    while pos < end:
        head, pos = _take(data, pos, 4, end, "transport parameter header")
        value, pos = _take(data, pos, int.from_bytes(head[2:], "big"), end, "transport parameter value")
        params.append((int.from_bytes(head[:2], "big"), value))
    return tuple(params)


def _uses_varint_transport_parameters(version: int) -> bool:
    draft = draft_number(version)
    return version == T051 or version == VERSION_2 or (draft is not None and draft >= 27)


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
            version >> 24 == 0x51 and is_gquic_version(version) and OLDEST_GQUIC_PUBLIC <= _gquic_number(version) <= 43
        )
    version = int.from_bytes(datagram[1:5], "big")
    if version == Q046:
        return first & 0x30 == 0
    if not has_initial_salt(version):
        return False
    types = _V2_TYPES if version == VERSION_2 else _V1_TYPES
    return types[(first >> 4) & 0x03] is PacketType.INITIAL and datagram[5] <= MAX_CID_LEN


# ---------------------------------------------------------------------------------------------
# Per-flow reassembly of the client's first flight


@dataclass(frozen=True, slots=True)
class QuicInfo:
    """What a censor learns from a client's Initial packets once its ClientHello/CHLO is complete.

    ``initial_size`` is the UDP payload length of the first datagram holding an Initial (policy knobs
    such as "inspect only Initials >= 1200 bytes" read it); ``datagrams``/``packets`` count what was
    needed to complete the hello.
    """

    version: int
    version_name: str
    dcid: bytes
    scid: bytes
    sni: str | None
    alpn: tuple[str, ...]
    ja4: str | None
    user_agent: str | None
    client_hello: ClientHello | GquicHandshakeMessage
    initial_size: int
    is_gquic: bool
    datagrams: int
    packets: int
    transport_parameters: tuple[tuple[int, bytes], ...] = ()
    transport_parameters_error: str | None = None


def _carries_tls(version: int) -> bool:
    """True when the crypto stream carries TLS 1.3 (IETF versions, T050, T051), False for a CHLO."""
    return not is_gquic_version(version) or version in (T050, T051)


_MAX_KEY_SETS = 4  # Initial key sets an assembler keeps (first DCID, post-Retry DCID, ...)


class InitialAssembler:
    """Reassemble a client's crypto stream across Initial packets and datagrams (one per flow,
    client-to-server direction).

    ``feed(datagram)`` returns a :class:`QuicInfo` once, on the datagram that completes the
    ClientHello (or gQUIC CHLO), and None before and after.  It raises the typed errors of the
    datagram it was given and keeps its state, so the caller can count and carry on.  CRYPTO data may
    arrive out of order; overlapping bytes keep their first value (differences are counted in
    ``conflicting_bytes``).  Memory is bounded by ``max_crypto_bytes`` and ``max_fragments``.
    """

    def __init__(self, *, max_crypto_bytes: int = (1 << 16) + 4, max_fragments: int = 64) -> None:
        self.max_crypto_bytes = max_crypto_bytes
        self.max_fragments = max_fragments
        self.version: int | None = None
        self.dcid: bytes | None = None
        self.scid: bytes | None = None
        self.initial_size: int | None = None
        self.datagrams = 0
        self.packets = 0
        self.conflicting_bytes = 0
        self.info: QuicInfo | None = None
        self.done = False
        self._contiguous = bytearray()
        self._pending: dict[int, bytes] = {}
        self._protections: dict[tuple[int, bytes], InitialProtection] = {}
        self._key_cids: list[tuple[int, bytes]] = []
        self._largest_pn = -1

    @property
    def buffered_bytes(self) -> int:
        return len(self._contiguous) + sum(len(chunk) for chunk in self._pending.values())

    def feed(self, datagram: bytes) -> QuicInfo | None:
        if self.done:
            return None
        self.datagrams += 1
        opened = self._open_datagram(datagram)
        if not opened:
            return None
        version = opened[0].header.version
        if self.version is not None and version != self.version:
            self._reset_stream()  # a new attempt after Version Negotiation
        if self.version is None or version != self.version:
            self.version = version
            self.dcid = opened[0].header.dcid
            self.scid = opened[0].header.scid
        if self.initial_size is None:
            self.initial_size = len(datagram)
        for packet in opened:
            self.packets += 1
            self._largest_pn = max(self._largest_pn, packet.packet_number)
            for frame in packet.frames:
                if isinstance(frame, CryptoFrame):
                    self._add(frame.offset, frame.data)
                elif isinstance(frame, GquicStreamFrame) and frame.stream_id == GQUIC_CRYPTO_STREAM:
                    self._add(frame.offset, frame.data)
        return self._complete()

    # -- decryption ------------------------------------------------------------------------

    def _protection(self, version: int, cid: bytes) -> InitialProtection:
        key = (version, cid)
        protection = self._protections.get(key)
        if protection is None:
            if len(self._protections) >= _MAX_KEY_SETS:
                self._protections.pop(next(iter(self._protections)))
            protection = InitialProtection.for_initial(version, cid, is_client=True)
            self._protections[key] = protection
        return protection

    def _open_datagram(self, datagram: bytes) -> list[QuicInitialPacket]:
        opened: list[QuicInitialPacket] = []
        for offset, header in _iter_long_headers(datagram):
            if header.packet_type is not PacketType.INITIAL:
                continue
            packet = memoryview(datagram)[offset : offset + header.packet_size]
            if header.header_format is not HeaderFormat.IETF:
                opened.append(_open_gquic_null(packet, header, is_client=True))
                continue
            # Keys come from the DCID of the client's first Initial, or of its first Initial after a
            # Retry (RFC 9001 §5.2); later Initials may carry the server's chosen CID instead.  Try the
            # CIDs that worked before (newest first), then the packet's own DCID.
            candidates = [cid for version, cid in self._key_cids if version == header.version]
            if header.dcid not in candidates:
                candidates.append(header.dcid)
            for index, cid in enumerate(candidates):
                try:
                    packet_opened = _open_protected(
                        packet, header, self._protection(header.version, cid), self._largest_pn
                    )
                except Malformed:
                    if index == len(candidates) - 1:
                        raise
                    continue
                self._remember_key_cid(header.version, cid)
                opened.append(packet_opened)
                break
        return opened

    def _remember_key_cid(self, version: int, cid: bytes) -> None:
        entry = (version, cid)
        if entry in self._key_cids:
            self._key_cids.remove(entry)
        self._key_cids.insert(0, entry)
        del self._key_cids[_MAX_KEY_SETS:]

    # -- reassembly ------------------------------------------------------------------------

    def _reset_stream(self) -> None:
        self._contiguous.clear()
        self._pending.clear()
        self._largest_pn = -1

    def _add(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        if end > self.max_crypto_bytes:
            raise Malformed(f"QUIC: crypto data up to offset {end} exceeds {self.max_crypto_bytes} bytes")
        if offset > len(self._contiguous):
            held = self._pending.get(offset)
            if held is None:
                if len(self._pending) >= self.max_fragments:
                    raise Malformed(f"QUIC: more than {self.max_fragments} out-of-order crypto fragments")
                if self.buffered_bytes + len(data) > self.max_crypto_bytes:
                    raise Malformed(f"QUIC: more than {self.max_crypto_bytes} crypto bytes buffered")
                self._pending[offset] = data
            else:  # same offset again: first copy wins, a longer copy only extends it
                self._count_conflicts(held, data)
                if len(data) > len(held):
                    self._pending[offset] = held + data[len(held) :]
            return
        if self.buffered_bytes + max(0, end - len(self._contiguous)) > self.max_crypto_bytes:
            raise Malformed(f"QUIC: more than {self.max_crypto_bytes} crypto bytes buffered")
        self._merge(offset, data)
        while self._pending:
            have = len(self._contiguous)
            ready = sorted(start for start in self._pending if start <= have)
            if not ready:
                break
            for start in ready:
                self._merge(start, self._pending.pop(start))

    def _count_conflicts(self, held: bytes | bytearray, data: bytes) -> None:
        self.conflicting_bytes += sum(1 for a, b in zip(held, data) if a != b)

    def _merge(self, offset: int, data: bytes) -> None:
        """Append ``data`` at ``offset`` <= len(contiguous); bytes already held win."""
        have = len(self._contiguous)
        overlap = min(have - offset, len(data))
        if overlap > 0:
            self._count_conflicts(self._contiguous[offset : offset + overlap], data[:overlap])
        if len(data) > overlap:
            self._contiguous += data[overlap:]

    def _complete(self) -> QuicInfo | None:
        """Build the QuicInfo when the hello is complete; a broken hello ends the assembler."""
        try:
            info = self._try_complete()
        except Malformed:
            self.done = True
            raise
        if info is not None:
            self.info = info
            self.done = True
        return info

    def _try_complete(self) -> QuicInfo | None:
        stream = self._contiguous
        if not stream or self.version is None:
            return None
        tls = _carries_tls(self.version)
        if tls:
            if stream[0] != 0x01:
                raise Malformed(f"QUIC: crypto stream starts with handshake type {stream[0]}, not ClientHello")
            if len(stream) < 4:
                return None
            total = 4 + int.from_bytes(stream[1:4], "big")
        else:
            if len(stream) >= 4 and bytes(stream[:4]) != b"CHLO":
                raise Malformed(f"gQUIC: crypto stream starts with {bytes(stream[:4])!r}, not CHLO")
            try:
                total = gquic_message_length(stream)
            except NeedMoreData:
                return None
        if total > self.max_crypto_bytes:
            raise Malformed(f"QUIC: hello of {total} bytes exceeds {self.max_crypto_bytes}")
        if len(stream) < total:
            return None
        return self._build_info(self.version, bytes(stream[:total]), tls)

    def _build_info(self, version: int, message: bytes, tls: bool) -> QuicInfo:
        dcid = self.dcid or b""
        scid = self.scid or b""
        initial_size = self.initial_size or 0
        if not tls:
            try:
                chlo = parse_gquic_handshake_message(message)
            except NeedMoreData as exc:
                raise Malformed(f"gQUIC CHLO inconsistent: {exc}") from None
            return QuicInfo(
                version=version,
                version_name=version_name(version),
                dcid=dcid,
                scid=scid,
                sni=chlo.sni,
                alpn=(),
                ja4=None,
                user_agent=chlo.user_agent,
                client_hello=chlo,
                initial_size=initial_size,
                is_gquic=True,
                datagrams=self.datagrams,
                packets=self.packets,
            )
        from chokepoint.dissect.fingerprint import ja4_for  # imported lazily: TLS lives in its own module
        from chokepoint.dissect.tls import parse_client_hello_message

        try:
            hello = parse_client_hello_message(message)
        except (NotThisProtocol, NeedMoreData) as exc:
            raise Malformed(f"QUIC: ClientHello unreadable: {exc}") from None
        params: tuple[tuple[int, bytes], ...] = ()
        params_error = None
        user_agent = None
        for ext_type, ext_data in hello.extensions:
            if ext_type in TRANSPORT_PARAMETER_EXTENSIONS:
                try:
                    params = parse_transport_parameters(ext_data, varint_ids=_uses_varint_transport_parameters(version))
                except Malformed as exc:  # kept apart: a quirky extension must not hide the SNI
                    params_error = str(exc)
                break
        for param_id, value in params:
            if param_id == GOOGLE_USER_AGENT_PARAMETER:
                user_agent = value.decode("utf-8", "replace")
        return QuicInfo(
            version=version,
            version_name=version_name(version),
            dcid=dcid,
            scid=scid,
            sni=hello.sni,
            alpn=hello.alpn,
            ja4=ja4_for(hello, transport="q"),
            user_agent=user_agent,
            client_hello=hello,
            initial_size=initial_size,
            is_gquic=is_gquic_version(version),
            datagrams=self.datagrams,
            packets=self.packets,
            transport_parameters=params,
            transport_parameters_error=params_error,
        )
