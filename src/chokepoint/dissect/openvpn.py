"""OpenVPN packets over UDP and TCP, and nDPI-style flow detection.

Wire format (OpenVPN ``doc/doxygen/network_protocol.txt``, ``ssl_pkt.h``; tls-crypt-v2: ``doc/tls-crypt-v2.txt``):

- byte 0: opcode (high 5 bits) and key id (low 3 bits). Opcodes 1..11 are defined (:class:`Opcode`).
- TCP adds a 2-byte big-endian length prefix before every packet.
- Data channel (P_DATA_V1; P_DATA_V2 adds a 3-byte peer id): the rest is ciphertext.
- Control channel (resets, P_CONTROL_V1, P_ACK_V1), by control-channel wrapping:

  ============  ==============================================================================================
  none          session id (8) | ack count (1) | acks (4 each) | remote session id (8, if acks) | msg id (4)*
  tls-auth      session id (8) | HMAC (16/20/28/32/48/64) | replay packet id (4) | time (4) | ack part ... *
  tls-crypt     session id (8) | replay packet id (4) | time (4) | HMAC-SHA256 tag (32) | encrypted ack part *
  tls-crypt-v2  as tls-crypt, plus the client's wrapped key WKc at the end of P_CONTROL_HARD_RESET_CLIENT_V3
                and P_CONTROL_WKC_V1; WKc ends with its own 16-bit length (>= 290: tag, Kc, length)
  ============  ==============================================================================================

  (*) P_ACK_V1 carries no message id and no payload; the other control packets carry the TLS payload after it.

Nothing in a control packet says which wrapping (or HMAC size) is in use, so :func:`parse_udp` tries them
in a fixed order and keeps the first whose fields are self-consistent. The checks are what the protocol
guarantees: session ids are random and non-zero; replay packet ids count from 1 (from 0x0f000001 in
OpenVPN 2.6 tls-crypt-v2 sessions) and the time is a plausible Unix time (:data:`PLAUSIBLE_TIME`); at most 8 acks (``RELIABLE_ACK_SIZE``) of small message ids; resets are
message 0, client resets ack nothing, P_ACK_V1 acks something and ends right after it; hard resets use key
id 0. This is a heuristic: ``hmac_len_guess`` is a guess, and one packet is weak evidence.

Flow detection (:func:`detect`) follows nDPI (``src/lib/protocols/openvpn.c``): a server hard reset whose
ack names the client's session id; or a client hard reset repeated with the same session id; plus, for
captures that hold one direction only or tls-crypt (whose acks are encrypted), a hard reset followed by two
more control packets with the same 64-bit session id.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from chokepoint.dissect.errors import NeedMoreData, NotThisProtocol

__all__ = [
    "Opcode",
    "Wrapping",
    "OpenVpnPacket",
    "parse_udp",
    "parse_tcp",
    "split_tcp",
    "detect",
    "TLS_AUTH_HMAC_SIZES",
    "PLAUSIBLE_TIME",
]


class Opcode(IntEnum):
    P_CONTROL_HARD_RESET_CLIENT_V1 = 1
    P_CONTROL_HARD_RESET_SERVER_V1 = 2
    P_CONTROL_SOFT_RESET_V1 = 3
    P_CONTROL_V1 = 4
    P_ACK_V1 = 5
    P_DATA_V1 = 6
    P_CONTROL_HARD_RESET_CLIENT_V2 = 7
    P_CONTROL_HARD_RESET_SERVER_V2 = 8
    P_DATA_V2 = 9
    P_CONTROL_HARD_RESET_CLIENT_V3 = 10
    P_CONTROL_WKC_V1 = 11


class Wrapping(StrEnum):
    """How the control channel is wrapped (``--tls-auth``, ``--tls-crypt``, ``--tls-crypt-v2``)."""

    NONE = "none"
    TLS_AUTH = "tls-auth"
    TLS_CRYPT = "tls-crypt"
    TLS_CRYPT_V2 = "tls-crypt-v2"
    DATA = "data"  # a data-channel packet: wrapping does not apply


CLIENT_RESETS = frozenset(
    {
        Opcode.P_CONTROL_HARD_RESET_CLIENT_V1,
        Opcode.P_CONTROL_HARD_RESET_CLIENT_V2,
        Opcode.P_CONTROL_HARD_RESET_CLIENT_V3,
    }
)
SERVER_RESETS = frozenset({Opcode.P_CONTROL_HARD_RESET_SERVER_V1, Opcode.P_CONTROL_HARD_RESET_SERVER_V2})
HARD_RESETS = CLIENT_RESETS | SERVER_RESETS
_DATA = frozenset({Opcode.P_DATA_V1, Opcode.P_DATA_V2})
_WKC_CARRIERS = frozenset({Opcode.P_CONTROL_HARD_RESET_CLIENT_V3, Opcode.P_CONTROL_WKC_V1})
_MESSAGE_ZERO = HARD_RESETS | {Opcode.P_CONTROL_SOFT_RESET_V1}

#: tls-auth HMAC sizes tried, most common first: SHA1 (OpenVPN's default), SHA256, SHA512, MD5, SHA224, SHA384.
TLS_AUTH_HMAC_SIZES = (20, 32, 64, 16, 28, 48)
#: Unix times accepted in the tls-auth/tls-crypt packet-id time field: 2005-01-01 (OpenVPN 2.0) .. 2038-01-19.
PLAUSIBLE_TIME = range(1_104_537_600, 0x8000_0000)
#: Upper bound (exclusive) for replay packet ids, acked message ids and message ids: they count up from 0/1.
SMALL_ID_LIMIT = 1 << 24
EARLY_NEG_TOP_BYTE = 0x0F
MAX_ACKS = 8  # RELIABLE_ACK_SIZE
TLS_CRYPT_TAG = 32
WKC_MIN_LENGTH = 290
_HEADER = 9  # opcode/key byte + session id
_DATA_MIN_LENGTH = {Opcode.P_DATA_V1: 5, Opcode.P_DATA_V2: 8}  # header + 4 bytes: a floor, not evidence

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U32X2 = struct.Struct(">II")
_NO_ACKS: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class OpenVpnPacket:
    """One OpenVPN packet (without the TCP length prefix). Fields a packet does not expose are ``None``.

    ``hmac_len_guess``: 0 without wrapping, the HMAC size for tls-auth, 32 (the tag) for tls-crypt(-v2),
    ``None`` for data packets. ``acks``/``remote_session_id``/``message_packet_id`` are ``None`` when
    encrypted (tls-crypt). ``payload_offset`` is where the TLS payload (or tls-crypt ciphertext) starts.
    """

    opcode: Opcode
    key_id: int
    session_id: bytes | None
    hmac_len_guess: int | None
    wrapping: Wrapping
    replay_packet_id: int | None
    net_time: int | None
    acks: tuple[int, ...] | None
    remote_session_id: bytes | None
    message_packet_id: int | None
    peer_id: int | None
    payload_offset: int
    length: int

    @property
    def is_control(self) -> bool:
        return self.opcode not in _DATA

    @property
    def is_client_reset(self) -> bool:
        return self.opcode in CLIENT_RESETS

    @property
    def is_server_reset(self) -> bool:
        return self.opcode in SERVER_RESETS


def _ack_part(body: bytes, off: int, opcode: Opcode) -> tuple[tuple[int, ...], bytes | None, int | None, int] | None:
    """Parse ack count, acks, remote session id and message id at ``off``; None if inconsistent."""
    n = len(body)
    if off >= n:
        return None
    count = body[off]
    off += 1
    if count > MAX_ACKS or (count and opcode in CLIENT_RESETS) or (not count and opcode is Opcode.P_ACK_V1):
        return None
    acks = _NO_ACKS
    remote = None
    if count:
        end = off + 4 * count + 8
        if end > n:
            return None
        acks = struct.unpack_from(f">{count}I", body, off)
        if max(acks) >= SMALL_ID_LIMIT:
            return None
        remote = body[end - 8 : end]
        if not any(remote):
            return None
        off = end
    if opcode is Opcode.P_ACK_V1:
        return (acks, remote, None, off) if off == n else None
    if off + 4 > n:
        return None
    message_id = _U32.unpack_from(body, off)[0]
    if message_id >= SMALL_ID_LIMIT or (message_id and opcode in _MESSAGE_ZERO):
        return None
    return acks, remote, message_id, off + 4


def _replay_fields_ok(packet_id: int, net_time: int) -> bool:
    # OpenVPN 2.6 starts the packet-id counter of tls-crypt-v2 sessions at 0x0f000000 (EARLY_NEG_START),
    # both directions (observed with openvpn 2.6.14); older sessions count from 1.
    if packet_id >> 24 == EARLY_NEG_TOP_BYTE:
        packet_id &= 0x00FF_FFFF
    return 1 <= packet_id < SMALL_ID_LIMIT and net_time in PLAUSIBLE_TIME


def _tls_auth(body: bytes, opcode: Opcode, key_id: int, hmac_len: int) -> OpenVpnPacket | None:
    off = _HEADER + hmac_len
    if off + 8 > len(body):
        return None
    packet_id, net_time = _U32X2.unpack_from(body, off)
    if not _replay_fields_ok(packet_id, net_time):
        return None
    parsed = _ack_part(body, off + 8, opcode)
    if parsed is None:
        return None
    acks, remote, message_id, payload_offset = parsed
    return OpenVpnPacket(
        opcode,
        key_id,
        body[1:9],
        hmac_len,
        Wrapping.TLS_AUTH,
        packet_id,
        net_time,
        acks,
        remote,
        message_id,
        None,
        payload_offset,
        len(body),
    )


def _tls_crypt(body: bytes, opcode: Opcode, key_id: int) -> OpenVpnPacket | None:
    n = len(body)
    end = n
    wrapping = Wrapping.TLS_CRYPT
    if opcode in _WKC_CARRIERS:
        if n < 2:
            return None
        wkc_len = _U16.unpack_from(body, n - 2)[0]
        if wkc_len < WKC_MIN_LENGTH:
            return None
        end = n - wkc_len
        wrapping = Wrapping.TLS_CRYPT_V2
    ciphertext = _HEADER + 8 + TLS_CRYPT_TAG
    # Smallest encrypted ack part: count + message id (5), or for P_ACK_V1 count + one ack + remote id (13).
    if end < ciphertext + (13 if opcode is Opcode.P_ACK_V1 else 5):
        return None
    packet_id, net_time = _U32X2.unpack_from(body, _HEADER)
    if not _replay_fields_ok(packet_id, net_time):
        return None
    return OpenVpnPacket(
        opcode, key_id, body[1:9], TLS_CRYPT_TAG, wrapping, packet_id, net_time, None, None, None, None, ciphertext, n
    )


def _unwrapped(body: bytes, opcode: Opcode, key_id: int) -> OpenVpnPacket | None:
    parsed = _ack_part(body, _HEADER, opcode)
    if parsed is None:
        return None
    acks, remote, message_id, payload_offset = parsed
    return OpenVpnPacket(
        opcode,
        key_id,
        body[1:9],
        0,
        Wrapping.NONE,
        None,
        None,
        acks,
        remote,
        message_id,
        None,
        payload_offset,
        len(body),
    )


def _opcode(first_byte: int) -> tuple[Opcode, int]:
    code, key_id = first_byte >> 3, first_byte & 0x07
    if not 1 <= code <= 11:
        raise NotThisProtocol(f"openvpn: opcode {code} is not defined")
    opcode = Opcode(code)
    if key_id and opcode in HARD_RESETS:
        raise NotThisProtocol(f"openvpn: hard reset with key id {key_id} (hard resets use key id 0)")
    return opcode, key_id


def _parse_packet(body: bytes) -> OpenVpnPacket:
    n = len(body)
    if not n:
        raise NotThisProtocol("openvpn: empty packet")
    opcode, key_id = _opcode(body[0])
    if opcode in _DATA:
        if n < _DATA_MIN_LENGTH[opcode]:
            raise NotThisProtocol(f"openvpn: {opcode.name} of {n} bytes is too short")
        if opcode is Opcode.P_DATA_V2:
            peer_id = int.from_bytes(body[1:4], "big")
            return OpenVpnPacket(opcode, key_id, None, None, Wrapping.DATA, None, None, None, None, None, peer_id, 4, n)
        return OpenVpnPacket(opcode, key_id, None, None, Wrapping.DATA, None, None, None, None, None, None, 1, n)
    if n < _HEADER + 5:
        raise NotThisProtocol(f"openvpn: control packet of {n} bytes is too short")
    if not any(body[1:9]):
        raise NotThisProtocol("openvpn: zero session id (session ids are random)")
    if opcode in _WKC_CARRIERS:
        packet = _tls_crypt(body, opcode, key_id)
    else:
        packet = None
        for hmac_len in TLS_AUTH_HMAC_SIZES:
            packet = _tls_auth(body, opcode, key_id, hmac_len)
            if packet is not None:
                break
        else:
            packet = _tls_crypt(body, opcode, key_id) or _unwrapped(body, opcode, key_id)
    if packet is None:
        raise NotThisProtocol(f"openvpn: {opcode.name} fields are consistent with no known wrapping")
    return packet


def parse_udp(datagram: bytes) -> OpenVpnPacket:
    """Parse one UDP payload as an OpenVPN packet. Raises ``NotThisProtocol`` (OpenVPN has no magic)."""
    return _parse_packet(bytes(datagram))


def parse_tcp(stream: bytes) -> OpenVpnPacket:
    """Parse the first length-prefixed OpenVPN packet of a TCP byte stream.

    Raises ``NeedMoreData`` while the length prefix or the packet it announces is incomplete (and the
    opcode, once visible, is defined), ``NotThisProtocol`` otherwise.
    """
    if len(stream) < 2:
        raise NeedMoreData("openvpn: TCP length prefix incomplete")
    length = _U16.unpack_from(stream, 0)[0]
    if length == 0:
        raise NotThisProtocol("openvpn: zero TCP packet length")
    if len(stream) > 2:
        opcode, _ = _opcode(stream[2])
        minimum = _DATA_MIN_LENGTH.get(opcode, _HEADER + 5)
        if length < minimum:
            raise NotThisProtocol(f"openvpn: TCP packet length {length} below the {opcode.name} minimum")
    if len(stream) < 2 + length:
        raise NeedMoreData(f"openvpn: TCP packet of {length} bytes, {len(stream) - 2} present")
    return _parse_packet(bytes(stream[2 : 2 + length]))


def split_tcp(stream: bytes) -> tuple[list[bytes], bytes]:
    """Split a TCP byte stream into its length-prefixed packets; returns (packet bodies, rest).

    Framing only: the bodies are not validated (use :func:`parse_udp` on each). The rest is an incomplete
    packet, or the bytes from a zero length prefix on (never valid OpenVPN framing).
    """
    packets: list[bytes] = []
    off, n = 0, len(stream)
    while off + 2 <= n:
        length = _U16.unpack_from(stream, off)[0]
        if length == 0 or off + 2 + length > n:
            break
        packets.append(bytes(stream[off + 2 : off + 2 + length]))
        off += 2 + length
    return packets, bytes(stream[off:])


def _parsed_prefix(items: Iterator[bytes | OpenVpnPacket], limit: int) -> list[OpenVpnPacket]:
    """Parse packets in order, stopping at the first that is not OpenVPN (as nDPI excludes on failure)."""
    out: list[OpenVpnPacket] = []
    for item in items:
        if len(out) >= limit:
            break
        if isinstance(item, OpenVpnPacket):
            out.append(item)
            continue
        try:
            out.append(_parse_packet(bytes(item)))
        except NotThisProtocol:
            break
    return out


def _direction(items: Sequence[bytes | OpenVpnPacket], transport: str, limit: int) -> list[OpenVpnPacket]:
    if transport == "udp" or all(isinstance(item, OpenVpnPacket) for item in items):
        return _parsed_prefix(iter(items), limit)
    if transport == "tcp":
        packets, _ = split_tcp(b"".join(items))  # type: ignore[arg-type]
        return _parsed_prefix(iter(packets), limit)
    raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")


def _server_ack_reason(clients: list[OpenVpnPacket], servers: list[OpenVpnPacket]) -> str | None:
    client_sessions = {p.session_id for p in clients if p.is_client_reset}
    for p in servers:
        if p.is_server_reset and p.remote_session_id in client_sessions:
            return (
                f"{p.opcode.name} acknowledges client session {p.remote_session_id.hex()}"  # type: ignore[union-attr]
                f" ({p.wrapping}, hmac {p.hmac_len_guess})"
            )
    return None


def _repeated_reset_reason(packets: list[OpenVpnPacket]) -> str | None:
    seen: set[tuple[bytes | None, Wrapping, int | None]] = set()
    for p in packets:
        if p.is_client_reset:
            key = (p.session_id, p.wrapping, p.hmac_len_guess)
            if key in seen:
                return f"repeated {p.opcode.name} with session {p.session_id.hex()} ({p.wrapping})"  # type: ignore[union-attr]
            seen.add(key)
    return None


def _consistent_session_reason(packets: list[OpenVpnPacket], min_followers: int) -> str | None:
    if not packets or packets[0].opcode not in HARD_RESETS:
        return None
    first = packets[0]
    followers = sum(1 for p in packets[1:] if p.is_control and p.session_id == first.session_id)
    if followers >= min_followers:
        return (
            f"{first.opcode.name} and {followers} later control packets share session "
            f"{first.session_id.hex()} ({first.wrapping})"  # type: ignore[union-attr]  # a hard reset has one
        )
    return None


def detect(
    c2s: Sequence[bytes | OpenVpnPacket],
    s2c: Sequence[bytes | OpenVpnPacket],
    *,
    transport: str = "udp",
    max_packets: int = 8,
) -> str | None:
    """Decide whether a flow is OpenVPN from its first packets; returns the reason, or ``None``.

    ``c2s``/``s2c``, per direction in order:
    - ``transport="udp"``: whole packets: UDP payloads, TCP packet bodies already split off by
      :func:`split_tcp` (without their length prefix), or :class:`OpenVpnPacket` values;
    - ``transport="tcp"``: chunks of the TCP byte stream, length prefixes included (joined, then split);
      :class:`OpenVpnPacket` values are also accepted (used as they are).
    Each direction is parsed up to its first
    non-OpenVPN packet (at most ``max_packets``). Either direction may hold the client (captures taken behind
    NAT or on one side can start with the server). Reasons, strongest first:

    1. a server hard reset whose ack names a client hard reset's session id (nDPI);
    2. a client hard reset repeated with the same session id and wrapping (nDPI);
    3. a hard reset followed by two control packets with the same session id (one-direction captures,
       tls-crypt whose acks are encrypted).
    """
    forward = _direction(c2s, transport, max_packets)
    backward = _direction(s2c, transport, max_packets)
    return (
        _server_ack_reason(forward, backward)
        or _server_ack_reason(backward, forward)
        or _repeated_reset_reason(forward)
        or _repeated_reset_reason(backward)
        or _consistent_session_reason(forward, 2)
        or _consistent_session_reason(backward, 2)
    )
