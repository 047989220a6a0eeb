"""QUIC seen mid-connection: flows whose client Initial was not captured (or cannot be read).

nDPI labels such flows QUIC from their other packets; so does this module, and the dispatcher marks them
``partial`` (no SNI is claimed: only a decrypted Initial gives one). Three kinds of evidence, strongest first:

1. **A long header of a registered version**, in either direction: any packet type (Handshake, 0-RTT, Retry, a
   server's Initial) of a version this package parses (v1, v2, drafts, mvfst, Google QUIC Q043/Q046/Q050/T05x)
   whose header and Length fields fit the datagram (``quic_header.parse_long_header``); or, for the other
   registered versions (IANA "QUIC Versions" registry and the quicwg wiki it was seeded from: quic-go, quicly,
   picoquic, WinQuic, MozQuic, quant, QUIC-LB, the v2 draft codepoint) and the reserved 0x?a?a?a?a versions that
   force negotiation (RFC 9000 §15), the version-independent invariants (RFC 8999 §5.1: connection-ID lengths
   that fit, here at most 20 bytes as every registered version has). Random bytes carry one of these ~2,000
   versions with probability about 2^-21.
2. **Version Negotiation** (RFC 8999 §6, RFC 9000 §17.2.1): version 0, connection IDs, and a list of 4-byte
   versions of which at least one is registered.
3. **Short headers on UDP/443** (RFC 9000 §17.3; gQUIC Q046 short header). A short header does not carry the
   length of its Destination Connection ID, so a single packet says little (two fixed bits). The decision uses
   what stays constant across a connection instead: the DCID. Among the first datagrams of one direction
   (:data:`MIN_SHORT_HEADERS` of them, all with the header form bit 0 and the fixed bit 1), the bytes after the
   first one must share a common prefix of at least :data:`MIN_CID_LEN` bytes and at most 20 (the estimated DCID
   length; random datagrams share 4 bytes with probability 2^-32 per pair), and

   - IETF QUIC: the first byte's five low bits must differ between datagrams, as header protection (RFC 9001
     §5.4) masks them with per-packet noise. This keeps out protocols with a constant first byte and a
     constant session ID that also start with the bits 01: OpenVPN's P_DATA_V2 (0x48, then a 3-byte peer ID)
     and hard-reset V3 (0x50, then an 8-byte session ID);
   - Google QUIC Q046: no header protection: the first byte is 0x40-0x43 (packet-number length, reserved bits
     zero) and the client's packets carry its 8-byte connection ID (so the common prefix is at least 8).

   Only the server's port 443 is accepted (QUIC's and gQUIC's port; RFC 9308 §8). A direction whose DCID is
   empty (Chrome and mvfst clients choose zero-length connection IDs, so the server's packets have none) cannot
   decide; the client's direction usually can. ``bench/quic_short_header_fp.py`` measures the false positives
   on the other UDP flows of ../shared/data (see docs/architecture.md for the numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chokepoint.dissect.errors import Malformed, NotThisProtocol
from chokepoint.dissect.quic_header import MAX_CID_LEN, HeaderFormat, parse_long_header
from chokepoint.dissect.quic_versions import (
    is_forcing_negotiation,
    is_gquic_version,
    is_known_version,
    is_registered_version,
    version_name,
)

__all__ = [
    "MIN_CID_LEN",
    "MIN_SHORT_HEADERS",
    "SHORT_HEADER_BYTES",
    "SHORT_HEADER_PORTS",
    "QuicSighting",
    "long_header_sighting",
    "short_header_sighting",
]

#: Datagrams of one direction needed before short headers decide.
MIN_SHORT_HEADERS = 3
#: Shortest DCID a short header can be recognised by (quic-go's default connection IDs are 4 bytes).
MIN_CID_LEN = 4
#: Server ports on which short headers are accepted.
SHORT_HEADER_PORTS = frozenset({443})
#: Bytes of each datagram the dispatcher keeps for the short-header test (first byte + longest DCID + 1).
SHORT_HEADER_BYTES = 2 + MAX_CID_LEN
#: A protected short-header packet holds at least a packet number and a 16-byte sample/tag (RFC 9001 §5.4.2).
_MIN_SHORT_PACKET = 1 + MIN_CID_LEN + 1 + 16


@dataclass(frozen=True, slots=True)
class QuicSighting:
    """Evidence that a flow is QUIC without a decrypted client Initial.

    ``evidence``: ``long-header``, ``version-negotiation`` or ``short-header``; ``version``: the long header's
    version, the first registered version a Version Negotiation packet offers, or None (short headers);
    ``packet_type``: the long header's type (``handshake``, ``0rtt``, ...) when known; ``dcid_length``: the
    estimated DCID length of short headers; ``gquic``: Google QUIC.
    """

    evidence: str
    version: int | None
    packet_type: str | None = None
    dcid_length: int | None = None
    gquic: bool = False

    @property
    def version_name(self) -> str | None:
        return None if self.version is None else version_name(self.version)


def long_header_sighting(datagram: bytes) -> QuicSighting | None:
    """Evidence 1 or 2 of the module docstring from one datagram (either direction), or None. Never raises."""
    if len(datagram) < 7:
        return None
    first = datagram[0]
    version = int.from_bytes(datagram[1:5], "big") if first & 0x80 else None
    if version is None or version == 0 or (is_known_version(version) and not is_forcing_negotiation(version)):
        try:  # versions with a layout this package reads; also the gQUIC public header and Version Negotiation
            header = parse_long_header(datagram)
        except (NotThisProtocol, Malformed):
            return None
        if header.version == 0:
            offered = [v for v in header.supported_versions if is_registered_version(v)]
            if not offered:
                return None
            real = [v for v in offered if not is_forcing_negotiation(v)]  # greased entries (RFC 9000 §6.3) last
            return QuicSighting("version-negotiation", (real or offered)[0], header.packet_type.value)
        gquic = header.header_format is not HeaderFormat.IETF or is_gquic_version(header.version)
        return QuicSighting("long-header", header.version, header.packet_type.value, gquic=gquic)
    if not is_registered_version(version):
        return None
    return _invariant_sighting(datagram, version)


def _invariant_sighting(datagram: bytes, version: int) -> QuicSighting | None:
    """RFC 8999 §5.1: first bit 1, version, DCID length + DCID, SCID length + SCID, then version-specific bytes."""
    end = len(datagram)
    dcil = datagram[5]
    pos = 6 + dcil
    if dcil > MAX_CID_LEN or pos >= end:
        return None
    scil = datagram[pos]
    pos += 1 + scil
    if scil > MAX_CID_LEN or pos + 16 > end:  # room for at least a packet number and an AEAD tag
        return None
    return QuicSighting("long-header", version)


def short_header_sighting(heads: Sequence[bytes], lengths: Sequence[int]) -> QuicSighting | None:
    """Evidence 3 of the module docstring from the first datagrams of one direction (``heads``: their first
    :data:`SHORT_HEADER_BYTES` bytes, ``lengths``: their whole lengths), or None. The caller checks the port."""
    if len(heads) < MIN_SHORT_HEADERS:
        return None
    if any(h[0] & 0xC0 != 0x40 for h in heads) or min(lengths) < _MIN_SHORT_PACKET:
        return None
    prefix = _common_prefix([h[1:] for h in heads])
    firsts = {h[0] for h in heads}
    if all(0x40 <= b <= 0x43 for b in firsts) and 8 <= prefix <= 8 + 4:  # the CID, then packet-number bytes
        return QuicSighting("short-header", None, dcid_length=8, gquic=True)
    if MIN_CID_LEN <= prefix <= MAX_CID_LEN and len({b & 0x1F for b in firsts}) > 1:
        return QuicSighting("short-header", None, dcid_length=prefix)
    return None


def _common_prefix(chunks: Sequence[bytes]) -> int:
    shortest = min(len(c) for c in chunks)
    first = chunks[0]
    for i in range(shortest):
        byte = first[i]
        if any(c[i] != byte for c in chunks[1:]):
            return i
    return shortest
