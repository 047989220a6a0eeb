"""QUIC versions and variable-length integers.

- Version numbers: RFC 9000 §15 (v1, reserved 0x?a?a?a?a versions that force Version Negotiation), RFC 9369
  (v2), IETF drafts 0xff0000xx, Facebook mvfst 0xfaceb00x, Google QUIC tags "Qddd"/"Tddd" (Chromium).
- Variable-length integers: RFC 9000 §16.

Version names follow nDPI's ``ndpi_quic_version2str`` ("V-1", "V-2", "Draft-29", "MVFST-27", "Q046", ...)
so results compare directly with nDPI's output.
"""

from __future__ import annotations

from chokepoint.dissect.errors import Malformed
from chokepoint.dissect.quic_crypto import (
    MVFST_22,
    MVFST_27,
    MVFST_EXP,
    T050,
    T051,
    VERSION_1,
    VERSION_2,
    draft_number,
)

__all__ = [
    "REGISTERED_RANGES",
    "OLDEST_GQUIC_PUBLIC",
    "Q046",
    "carries_tls",
    "gquic_number",
    "is_forcing_negotiation",
    "is_gquic_version",
    "is_known_version",
    "is_registered_version",
    "take",
    "uses_varint_transport_parameters",
    "varint",
    "version_name",
]

Q046 = 0x51303436
#: Oldest public-header gQUIC version handled (big-endian fields since Q039).
OLDEST_GQUIC_PUBLIC = 39

_NAMED_VERSIONS = {
    VERSION_1: "V-1",
    VERSION_2: "V-2",
    T050: "T050",
    T051: "T051",
    MVFST_22: "MVFST-22",
    MVFST_27: "MVFST-27",
    MVFST_EXP: "MVFST-EXP",
}


def is_gquic_version(version: int) -> bool:
    """A Google QUIC version tag: 'Q' or 'T' followed by three ASCII digits (Q043, Q046, Q050, T051)."""
    tag = version.to_bytes(4, "big")
    return tag[0] in b"QT" and all(0x30 <= b <= 0x39 for b in tag[1:])


def gquic_number(version: int) -> int:
    return int(version.to_bytes(4, "big")[1:].decode("ascii"))


def is_forcing_negotiation(version: int) -> bool:
    """Reserved 0x?a?a?a?a versions that force Version Negotiation (RFC 9000 §15)."""
    return version & 0x0F0F0F0F == 0x0A0A0A0A


def is_known_version(version: int) -> bool:
    """A version this module recognises as QUIC (it may still refuse to decrypt it)."""
    return (
        version in (VERSION_1, VERSION_2)
        or version >> 8 == 0xFF0000
        or version >> 12 == 0xFACEB
        or is_gquic_version(version)
        or is_forcing_negotiation(version)
    )


#: Registered QUIC version ranges beyond the ones this package parses (IANA "QUIC Versions" registry, RFC 9000
#: §22.2, and the quicwg base-drafts wiki "QUIC Versions" it was seeded from): (mask, value, owner).
REGISTERED_RANGES = (
    (0xFFFFFFFF, 0x709A50C4, "QUIC v2 draft codepoint (RFC 9369)"),
    (0xFFFFFF00, 0x45474700, "quant (NetApp)"),
    (0xFFFFFFFF, 0x50435130, "picoquic test version"),
    (0xFFFFFF00, 0x51474F00, "quic-go (QGO)"),
    (0xFFFFFF00, 0x91C17000, "quicly"),
    (0xFFFFFFF0, 0xABCD0000, "WinQuic (Microsoft)"),
    (0xFFFFFF00, 0xF1000000, "QUIC-LB"),
    (0xFFFFFFF0, 0xF123F0C0, "MozQuic"),
    (0xFFFFFF00, 0xFACEB000, "mvfst (Facebook)"),
)


def is_registered_version(version: int) -> bool:
    """Any QUIC version a real deployment uses: the ones :func:`is_known_version` reads and the other registered
    ranges (:data:`REGISTERED_RANGES`). Version 0 (Version Negotiation) is not a version."""
    return is_known_version(version) or any(version & mask == value for mask, value, _ in REGISTERED_RANGES)


def version_name(version: int) -> str:
    """nDPI's name for a version ("V-1", "Draft-29", "Q046", "MVFST-27", "Ver-Negotiation", ...)."""
    if version in _NAMED_VERSIONS:
        return _NAMED_VERSIONS[version]
    if is_gquic_version(version):
        return version.to_bytes(4, "big").decode("ascii")
    if is_forcing_negotiation(version):
        return "Ver-Negotiation"
    if version >> 8 == 0xFF0000:
        return f"Draft-{version & 0xFF}"
    return f"Unknown ({version:04X})"


def carries_tls(version: int) -> bool:
    """True when the crypto stream carries TLS 1.3 (IETF versions, T050, T051), False for a CHLO."""
    return not is_gquic_version(version) or version in (T050, T051)


def uses_varint_transport_parameters(version: int) -> bool:
    """Transport parameters as varint id/length pairs (drafts >= 27, v1, v2, T051) rather than u16 pairs."""
    draft = draft_number(version)
    return version == T051 or version == VERSION_2 or (draft is not None and draft >= 27)


# ---------------------------------------------------------------------------------------------
# Variable-length integers and bounded slices


def varint(buf: bytes | memoryview, pos: int, end: int, what: str) -> tuple[int, int]:
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


def take(buf: bytes | memoryview, pos: int, length: int, end: int, what: str) -> tuple[bytes, int]:
    """``length`` bytes at ``pos`` (not past ``end``) and the next position; Malformed when they do not fit."""
    if length < 0 or pos + length > end:
        raise Malformed(f"QUIC: {what}: {length} bytes at {pos} exceed {end}")
    return bytes(buf[pos : pos + length]), pos + length
