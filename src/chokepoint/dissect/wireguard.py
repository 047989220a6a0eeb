"""WireGuard messages over UDP (Donenfeld, "WireGuard: Next Generation Kernel Network Tunnel", NDSS 2017, §5.4).

Every message starts with a one-byte type and three reserved bytes that MUST be zero (§5.4.2-§5.4.7):

=====  ======================  ==========  =========================================================
type   message                 length      fields used here (little-endian, as the reference code)
=====  ======================  ==========  =========================================================
1      handshake initiation    148         sender index (4..8)
2      handshake response      92          sender index (4..8), receiver index (8..12)
3      cookie reply            64          receiver index (4..8)
4      transport data          >= 32       receiver index (4..8), counter (8..16, u64), then the
                                           encrypted packet and its 16-byte Poly1305 tag
=====  ======================  ==========  =========================================================

Transport plaintext is zero-padded to a multiple of 16 (§5.4.6), but implementations cap the padding at the
tunnel MTU (Linux ``calculate_skb_padding``): a full-MTU packet (e.g. 1452 bytes for MTU 1420, seen in
nDPI's wireguard.pcap) is not a multiple of 16, so that rule is reported (``padded``), not enforced.

One datagram alone is weak evidence (a type byte and three zero bytes), so :func:`confirm_flow` asks for
index agreement across directions, as nDPI's ``wireguard.c`` does: a response or cookie reply whose
receiver index is the initiation's sender index, or transport messages whose receiver indices stay constant
per direction (and differ between the two directions).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from chokepoint.dissect.errors import Malformed, NotThisProtocol

__all__ = ["MessageType", "WireGuardMessage", "parse_message", "confirm_flow"]


class MessageType(IntEnum):
    HANDSHAKE_INITIATION = 1
    HANDSHAKE_RESPONSE = 2
    COOKIE_REPLY = 3
    TRANSPORT_DATA = 4


#: Exact length of the fixed-size messages (whitepaper §5.4.2, §5.4.3, §5.4.7).
FIXED_LENGTHS = {
    MessageType.HANDSHAKE_INITIATION: 148,
    MessageType.HANDSHAKE_RESPONSE: 92,
    MessageType.COOKIE_REPLY: 64,
}
#: Header (type, reserved, receiver, counter) plus the 16-byte Poly1305 tag of an empty keepalive (§6.5).
TRANSPORT_MIN_LENGTH = 32

_U32 = struct.Struct("<I")
_U32_U32 = struct.Struct("<II")
_U32_U64 = struct.Struct("<IQ")


@dataclass(frozen=True, slots=True)
class WireGuardMessage:
    """One WireGuard message; fields a message type does not carry are ``None``."""

    msg_type: MessageType
    sender_index: int | None
    receiver_index: int | None
    counter: int | None
    length: int

    @property
    def padded(self) -> bool | None:
        """Transport data only: whether the encrypted plaintext is a multiple of 16 (False at a capped MTU)."""
        if self.msg_type is not MessageType.TRANSPORT_DATA:
            return None
        return (self.length - TRANSPORT_MIN_LENGTH) % 16 == 0


def parse_message(datagram: bytes) -> WireGuardMessage:
    """Parse one UDP payload as a WireGuard message.

    Raises ``NotThisProtocol`` unless the first four bytes are a known type and three zero bytes, and
    ``Malformed`` when they are but the length breaks §5.4 (fixed sizes, transport length rule).
    """
    n = len(datagram)
    if n < 4:
        raise NotThisProtocol("wireguard: shorter than the 4-byte message header")
    type_byte = datagram[0]
    if not 1 <= type_byte <= 4 or datagram[1] | datagram[2] | datagram[3]:
        raise NotThisProtocol("wireguard: first bytes are not a message type followed by three zero bytes")
    msg_type = MessageType(type_byte)
    if msg_type is MessageType.TRANSPORT_DATA:
        if n < TRANSPORT_MIN_LENGTH:
            raise Malformed(f"wireguard: transport data of {n} bytes, minimum is {TRANSPORT_MIN_LENGTH}")
        receiver, counter = _U32_U64.unpack_from(datagram, 4)
        return WireGuardMessage(msg_type, None, receiver, counter, n)
    expected = FIXED_LENGTHS[msg_type]
    if n != expected:
        raise Malformed(f"wireguard: {msg_type.name.lower()} of {n} bytes, must be exactly {expected}")
    if msg_type is MessageType.HANDSHAKE_INITIATION:
        return WireGuardMessage(msg_type, _U32.unpack_from(datagram, 4)[0], None, None, n)
    if msg_type is MessageType.HANDSHAKE_RESPONSE:
        sender, receiver = _U32_U32.unpack_from(datagram, 4)
        return WireGuardMessage(msg_type, sender, receiver, None, n)
    return WireGuardMessage(msg_type, None, _U32.unpack_from(datagram, 4)[0], None, n)


def _handshake_answered(initiator: Sequence[WireGuardMessage], responder: Sequence[WireGuardMessage]) -> bool:
    senders = {m.sender_index for m in initiator if m.msg_type is MessageType.HANDSHAKE_INITIATION}
    return any(
        m.receiver_index in senders
        for m in responder
        if m.msg_type in (MessageType.HANDSHAKE_RESPONSE, MessageType.COOKIE_REPLY)
    )


def _transport_receivers(messages: Sequence[WireGuardMessage]) -> list[int]:
    return [m.receiver_index for m in messages if m.msg_type is MessageType.TRANSPORT_DATA]  # type: ignore[misc]


def confirm_flow(messages_c2s: Sequence[WireGuardMessage], messages_s2c: Sequence[WireGuardMessage]) -> bool:
    """True when the two directions of a UDP flow agree on WireGuard session indices.

    Either direction may have initiated (rekeys start from either peer). Confirmed by:
    - a handshake response or cookie reply whose receiver index equals an initiation's sender index in the
      other direction; or
    - transport data in both directions, the receiver index of each direction's first transport message
      repeated by a later one in that direction, and the two directions' receiver indices different
      (each peer addresses the other's random index; equal ones would be a constant header, not WireGuard).
    """
    if _handshake_answered(messages_c2s, messages_s2c) or _handshake_answered(messages_s2c, messages_c2s):
        return True
    c2s = _transport_receivers(messages_c2s)
    s2c = _transport_receivers(messages_s2c)
    if not c2s or not s2c or c2s[0] == s2c[0]:
        return False
    return c2s[0] in c2s[1:] or s2c[0] in s2c[1:]
