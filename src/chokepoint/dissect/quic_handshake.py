"""Handshake payloads carried in QUIC Initials: Google QUIC handshake messages (CHLO, "QUIC Crypto" design
doc) and QUIC transport parameters (RFC 9000 §18, and the older u16 layout of drafts <= 26 / T050)."""

from __future__ import annotations

from dataclasses import dataclass

from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol
from chokepoint.dissect.quic_versions import take, varint

__all__ = [
    "GOOGLE_USER_AGENT_PARAMETER",
    "MAX_GQUIC_ENTRIES",
    "TRANSPORT_PARAMETER_EXTENSIONS",
    "GquicHandshakeMessage",
    "gquic_message_length",
    "parse_gquic_handshake_message",
    "parse_transport_parameters",
]


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


def gquic_message_length(prefix: bytes | bytearray | memoryview) -> int:
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
            param_id, pos = varint(data, pos, end, "transport parameter id")
            length, pos = varint(data, pos, end, "transport parameter length")
            value, pos = take(data, pos, length, end, "transport parameter value")
            params.append((param_id, value))
        return tuple(params)
    if end < 2 or int.from_bytes(data[:2], "big") != end - 2:
        raise Malformed("QUIC: transport parameters length prefix mismatch")
    pos = 2
    while pos < end:
        head, pos = take(data, pos, 4, end, "transport parameter header")
        value, pos = take(data, pos, int.from_bytes(head[2:], "big"), end, "transport parameter value")
        params.append((int.from_bytes(head[:2], "big"), value))
    return tuple(params)
