"""IPsec key exchange and data headers: ISAKMP/IKEv1 and IKEv2, UDP-encapsulated ESP, ESP and AH.

- ISAKMP header (28 bytes, RFC 2408 §3.1; IKEv2 RFC 7296 §3.1): initiator SPI (8), responder SPI (8), next
  payload (1), version (1: major.minor nibbles, 0x10 or 0x20), exchange type (1), flags (1), message id (4),
  length (4, the whole message). Payloads follow as a chain of generic headers (next payload, reserved/
  critical, 16-bit length; RFC 2408 §3.2, RFC 7296 §3.2).
- UDP port 4500 (RFC 3948 §2): a single 0xFF byte is a NAT-keepalive; four zero bytes (the non-ESP marker)
  precede an IKE message; anything else is an ESP packet.
- ESP header (RFC 4303 §2): SPI (4), sequence number (4); SPI 0 is never sent and 1..255 are reserved.
- AH header (RFC 4302 §2): next header (1), payload length (1: AH length in 32-bit words minus 2),
  reserved (2, zero), SPI (4), sequence number (4), ICV.

Field ranges come from the IANA "Internet Key Exchange (IKE) Attributes"/"IKEv2 Parameters" registries.
As nDPI's ``ipsec.c`` does, a message only *claims* to be ISAKMP when its version byte is 0x10/0x20 and its
length field is the datagram length; field values outside the registries then make it ``Malformed``
(``strict=True``) or are listed in ``anomalies`` (``strict=False``; nDPI labels such flows IPSec with a
"malformed packet" risk on ports 500/4500).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum

from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol

__all__ = [
    "IsakmpHeader",
    "EspHeader",
    "AhHeader",
    "Udp4500Kind",
    "Udp4500Message",
    "parse_isakmp",
    "parse_udp_4500",
    "parse_esp",
    "parse_ah",
]

ISAKMP_HEADER_LENGTH = 28
NON_ESP_MARKER = b"\x00\x00\x00\x00"
NAT_KEEPALIVE = b"\xff"
MAX_UDP_PAYLOAD = 65535 - 8

# IKEv1 (RFC 2408 §3.1, RFC 2409, RFC 3947, RFC 6407); 128..255 / 240..255 are private use.
V1_PAYLOADS = frozenset(range(0, 22)) | frozenset(range(128, 256))
V1_EXCHANGES = frozenset({1, 2, 3, 4, 5, 6, 32, 33}) | frozenset(range(240, 256))
V1_FLAGS = 0x07  # Encryption, Commit, Authentication only
V1_ENCRYPTED = 0x01
# IKEv2 (RFC 7296 §3.2-3.3, RFC 5723, RFC 6467, RFC 7383, RFC 8019, RFC 9242, RFC 9370, G-IKEv2).
V2_PAYLOADS = frozenset({0}) | frozenset(range(33, 55)) | frozenset(range(128, 256))
V2_EXCHANGES = frozenset(range(34, 45)) | frozenset(range(240, 256))
V2_FLAGS = 0x38  # Initiator, Version, Response
V2_ENCRYPTED_PAYLOADS = frozenset({46, 53})  # SK, SKF: enclose the rest of the message
V2_IKE_SA_INIT = 34

_HEADER = struct.Struct(">8s8sBBBBII")
_GENERIC = struct.Struct(">BBH")
_SPI_SEQ = struct.Struct(">II")
_AH = struct.Struct(">BBHII")


@dataclass(frozen=True, slots=True)
class IsakmpHeader:
    """An ISAKMP (IKEv1) or IKEv2 message header and its payload chain.

    ``payloads``: the payload types in order, as far as they are in clear (IKEv1 with the Encryption flag
    hides all; IKEv2 stops at SK/SKF). ``anomalies``: field values outside the registries (only filled
    with ``strict=False``).
    """

    initiator_spi: bytes
    responder_spi: bytes
    next_payload: int
    major_version: int
    minor_version: int
    exchange_type: int
    flags: int
    message_id: int
    length: int
    payloads: tuple[int, ...]
    anomalies: tuple[str, ...]

    @property
    def ike_version(self) -> int:
        return self.major_version

    @property
    def is_response(self) -> bool:
        """IKEv2 R flag (RFC 7296 §3.1); IKEv1 has no such flag (always False)."""
        return self.major_version == 2 and bool(self.flags & 0x20)


@dataclass(frozen=True, slots=True)
class EspHeader:
    spi: int
    sequence: int
    length: int


@dataclass(frozen=True, slots=True)
class AhHeader:
    next_header: int
    header_length: int
    spi: int
    sequence: int
    icv: bytes


class Udp4500Kind(StrEnum):
    NAT_KEEPALIVE = "nat-keepalive"
    IKE = "ike"
    ESP = "esp"


@dataclass(frozen=True, slots=True)
class Udp4500Message:
    kind: Udp4500Kind
    ike: IsakmpHeader | None = None
    esp: EspHeader | None = None

    @property
    def is_esp(self) -> bool:
        return self.kind is Udp4500Kind.ESP


def _payload_chain(data: bytes, first: int, length: int, major: int, flags: int) -> tuple[tuple[int, ...], str | None]:
    """Walk the generic payload headers; returns (types, problem or None)."""
    if major == 1 and flags & V1_ENCRYPTED:
        return (), None
    types: list[int] = []
    kind, off = first, ISAKMP_HEADER_LENGTH
    while kind:
        if off + 4 > length:
            return tuple(types), f"payload {kind} header runs past the message at offset {off}"
        next_kind, _, plen = _GENERIC.unpack_from(data, off)
        if plen < 4 or off + plen > length:
            return tuple(types), f"payload {kind} length {plen} at offset {off} is inconsistent"
        types.append(kind)
        off += plen
        if major == 2 and kind in V2_ENCRYPTED_PAYLOADS:
            break  # its next-payload field names the first *encrypted* payload
        kind = next_kind
    if off != length:
        return tuple(types), f"payloads end at {off}, message length is {length}"
    return tuple(types), None


def parse_isakmp(data: bytes, *, strict: bool = True) -> IsakmpHeader:
    """Parse an ISAKMP/IKE message (a UDP 500 payload, or a UDP 4500 payload after the non-ESP marker).

    Raises ``NotThisProtocol`` unless the version byte is 0x10/0x20 and the length field is sane;
    ``NeedMoreData`` when the header is valid and the length field exceeds the bytes given (e.g. the first
    IP fragment of a large IKE_AUTH); ``Malformed`` for field values outside the registries (``strict``).
    """
    data = bytes(data)
    n = len(data)
    if n < ISAKMP_HEADER_LENGTH:
        raise NotThisProtocol(f"isakmp: {n} bytes, the header is {ISAKMP_HEADER_LENGTH}")
    ispi, rspi, next_payload, version, exchange, flags, message_id, length = _HEADER.unpack_from(data, 0)
    if version not in (0x10, 0x20):
        raise NotThisProtocol(f"isakmp: version byte {version:#04x} is neither 1.0 nor 2.0")
    if length < ISAKMP_HEADER_LENGTH or length > MAX_UDP_PAYLOAD or length < n:
        raise NotThisProtocol(f"isakmp: length field {length} does not match {n} bytes")
    major = version >> 4
    anomalies: list[str] = []
    if not any(ispi):
        anomalies.append("initiator SPI is zero")
    if major == 1:
        if next_payload not in V1_PAYLOADS:
            anomalies.append(f"IKEv1 next payload {next_payload} unassigned")
        if exchange not in V1_EXCHANGES:
            anomalies.append(f"IKEv1 exchange type {exchange} unassigned")
        if flags & ~V1_FLAGS:
            anomalies.append(f"IKEv1 reserved flag bits set in {flags:#04x}")
    else:
        if next_payload not in V2_PAYLOADS:
            anomalies.append(f"IKEv2 next payload {next_payload} unassigned")
        if exchange not in V2_EXCHANGES:
            anomalies.append(f"IKEv2 exchange type {exchange} unassigned")
        if flags & ~V2_FLAGS:
            anomalies.append(f"IKEv2 reserved flag bits set in {flags:#04x}")
        if exchange == V2_IKE_SA_INIT and message_id != 0:
            anomalies.append(f"IKE_SA_INIT with message id {message_id}")
    if strict and anomalies:
        raise Malformed("isakmp: " + "; ".join(anomalies))
    if length > n:
        raise NeedMoreData(f"isakmp: message of {length} bytes, {n} present")
    payloads, problem = _payload_chain(data, next_payload, length, major, flags)
    if problem:
        if strict:
            raise Malformed("isakmp: " + problem)
        anomalies.append(problem)
    return IsakmpHeader(
        ispi, rspi, next_payload, major, version & 0x0F, exchange, flags, message_id, length, payloads, tuple(anomalies)
    )


def parse_esp(data: bytes) -> EspHeader:
    """Parse an ESP header (IP protocol 50, or UDP 4500 without the non-ESP marker).

    ``Malformed`` below 12 bytes (header plus the 4-byte aligned pad length/next header, RFC 4303 §2.4)
    or with an SPI that is never sent (0) or reserved (1..255).
    """
    n = len(data)
    if n < 12:
        raise Malformed(f"esp: {n} bytes, at least 12 expected")
    spi, sequence = _SPI_SEQ.unpack_from(data, 0)
    if spi < 256:
        raise Malformed(f"esp: SPI {spi} is reserved (RFC 4303 §2.1)")
    return EspHeader(spi, sequence, n)


def parse_udp_4500(data: bytes, *, strict: bool = True) -> Udp4500Message:
    """Classify and parse a UDP port 4500 payload (RFC 3948 §2.1-2.3)."""
    data = bytes(data)
    if data == NAT_KEEPALIVE:
        return Udp4500Message(Udp4500Kind.NAT_KEEPALIVE)
    if len(data) < 4:
        raise NotThisProtocol(f"udp-4500: {len(data)} bytes is neither a keepalive nor a marker or ESP header")
    if data[:4] == NON_ESP_MARKER:
        return Udp4500Message(Udp4500Kind.IKE, ike=parse_isakmp(data[4:], strict=strict))
    return Udp4500Message(Udp4500Kind.ESP, esp=parse_esp(data))


def parse_ah(data: bytes, *, ipv6: bool = False) -> AhHeader:
    """Parse an AH header (IP protocol 51). ``Malformed`` when the length, reserved bits or SPI break RFC 4302.

    The header length must be a multiple of 8 bytes over IPv6 and of 4 over IPv4 (RFC 4302 §2.2).
    """
    n = len(data)
    if n < 12:
        raise Malformed(f"ah: {n} bytes, the fixed header is 12")
    next_header, payload_len, reserved, spi, sequence = _AH.unpack_from(data, 0)
    header_length = (payload_len + 2) * 4
    if header_length < 12 or header_length > n:
        raise Malformed(f"ah: payload length {payload_len} gives {header_length} bytes, {n} present")
    if ipv6 and header_length % 8:
        raise Malformed(f"ah: {header_length}-byte header is not 64-bit aligned for IPv6")
    if reserved:
        raise Malformed(f"ah: reserved field is {reserved:#06x}, must be zero")
    if spi < 256:
        raise Malformed(f"ah: SPI {spi} is reserved (RFC 4302 §2.4)")
    return AhHeader(next_header, header_length, spi, sequence, data[12:header_length])
