"""PPTP control connection (TCP 1723), RFC 2637.

Control message header (RFC 2637 §2): Length (2, the whole message), PPTP Message Type (2: 1 = control;
2 = management, "currently not defined"), Magic Cookie (4, always 0x1A2B3C4D), Control Message Type (2,
1..15), Reserved0 (2, zero). Each control message type has a fixed length (§2.1-§2.15).

The data channel (enhanced GRE, IP protocol 47, §4.1) is labelled by the engine from the IP protocol; its
header is not parsed here (no real GRE capture is available to test a parser against).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from chokepoint.dissect.errors import DissectError, Malformed, NeedMoreData, NotThisProtocol

__all__ = [
    "ControlType",
    "PptpControl",
    "MAGIC_COOKIE",
    "parse_control",
    "split_control",
]

MAGIC_COOKIE = 0x1A2B3C4D
CONTROL_MESSAGE = 1
MANAGEMENT_MESSAGE = 2
HEADER_LENGTH = 12


class ControlType(IntEnum):
    START_CONTROL_CONNECTION_REQUEST = 1
    START_CONTROL_CONNECTION_REPLY = 2
    STOP_CONTROL_CONNECTION_REQUEST = 3
    STOP_CONTROL_CONNECTION_REPLY = 4
    ECHO_REQUEST = 5
    ECHO_REPLY = 6
    OUTGOING_CALL_REQUEST = 7
    OUTGOING_CALL_REPLY = 8
    INCOMING_CALL_REQUEST = 9
    INCOMING_CALL_REPLY = 10
    INCOMING_CALL_CONNECTED = 11
    CALL_CLEAR_REQUEST = 12
    CALL_DISCONNECT_NOTIFY = 13
    WAN_ERROR_NOTIFY = 14
    SET_LINK_INFO = 15


#: Fixed message lengths, header included (RFC 2637 §2.1-§2.15).
MESSAGE_LENGTHS = {
    ControlType.START_CONTROL_CONNECTION_REQUEST: 156,
    ControlType.START_CONTROL_CONNECTION_REPLY: 156,
    ControlType.STOP_CONTROL_CONNECTION_REQUEST: 16,
    ControlType.STOP_CONTROL_CONNECTION_REPLY: 16,
    ControlType.ECHO_REQUEST: 16,
    ControlType.ECHO_REPLY: 20,
    ControlType.OUTGOING_CALL_REQUEST: 168,
    ControlType.OUTGOING_CALL_REPLY: 32,
    ControlType.INCOMING_CALL_REQUEST: 220,
    ControlType.INCOMING_CALL_REPLY: 24,
    ControlType.INCOMING_CALL_CONNECTED: 28,
    ControlType.CALL_CLEAR_REQUEST: 16,
    ControlType.CALL_DISCONNECT_NOTIFY: 148,
    ControlType.WAN_ERROR_NOTIFY: 40,
    ControlType.SET_LINK_INFO: 24,
}

_HEADER = struct.Struct(">HHIHH")
_U16 = struct.Struct(">H")
_U16X2 = struct.Struct(">HH")
_MAGIC = MAGIC_COOKIE.to_bytes(4, "big")
_VALID_LENGTHS = frozenset(MESSAGE_LENGTHS.values())


@dataclass(frozen=True, slots=True)
class PptpControl:
    """One PPTP control message. Per-type fields are ``None`` where the type does not carry them.

    ``call_id``: the sender's Call ID (OCRQ, OCRP, ICRQ, ICRP, CCRQ, CDN); ``peer_call_id``: the peer's
    (OCRP, ICRP, ICCN, WEN, SLI). ``hostname``/``vendor``: SCCRQ/SCCRP strings (NUL-padded in the message).
    ``phone_number``: the number to dial (OCRQ) or the dialed number (ICRQ).
    ``body``: the bytes after the 12-byte header.
    """

    length: int
    control_type: ControlType
    protocol_version: int | None
    result_code: int | None
    call_id: int | None
    peer_call_id: int | None
    hostname: str | None
    vendor: str | None
    phone_number: str | None
    body: bytes


def _text(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("latin-1")


#: (protocol_version, result_code, call_id, peer_call_id, hostname, vendor, phone_number)
_Fields = tuple[int | None, int | None, int | None, int | None, str | None, str | None, str | None]


def _fields(ctype: ControlType, body: bytes) -> _Fields:
    """(protocol_version, result_code, call_id, peer_call_id, hostname, vendor, phone_number)."""
    T = ControlType
    if ctype is T.START_CONTROL_CONNECTION_REQUEST:
        return _U16.unpack_from(body, 0)[0], None, None, None, _text(body[16:80]), _text(body[80:144]), None
    if ctype is T.START_CONTROL_CONNECTION_REPLY:
        return _U16.unpack_from(body, 0)[0], body[2], None, None, _text(body[16:80]), _text(body[80:144]), None
    if ctype is T.STOP_CONTROL_CONNECTION_REPLY:
        return None, body[0], None, None, None, None, None
    if ctype is T.ECHO_REPLY:
        return None, body[4], None, None, None, None, None
    if ctype is T.OUTGOING_CALL_REQUEST:
        return None, None, _U16.unpack_from(body, 0)[0], None, None, None, _text(body[28:92])
    if ctype in (T.OUTGOING_CALL_REPLY, T.INCOMING_CALL_REPLY):
        call_id, peer = _U16X2.unpack_from(body, 0)
        return None, body[4], call_id, peer, None, None, None
    if ctype is T.INCOMING_CALL_REQUEST:
        return None, None, _U16.unpack_from(body, 0)[0], None, None, None, _text(body[16:80])
    if ctype is T.CALL_CLEAR_REQUEST:
        return None, None, _U16.unpack_from(body, 0)[0], None, None, None, None
    if ctype is T.CALL_DISCONNECT_NOTIFY:
        return None, body[2], _U16.unpack_from(body, 0)[0], None, None, None, None
    if ctype in (T.INCOMING_CALL_CONNECTED, T.WAN_ERROR_NOTIFY, T.SET_LINK_INFO):
        return None, None, None, _U16.unpack_from(body, 0)[0], None, None, None
    return None, None, None, None, None, None, None


def parse_control(stream: bytes) -> PptpControl:
    """Parse the first PPTP control message of a TCP byte stream.

    ``NotThisProtocol`` unless the bytes present agree with a header whose magic cookie is 0x1A2B3C4D;
    ``NeedMoreData`` for a consistent but incomplete message; ``Malformed`` for a message with the magic
    cookie whose type, reserved field or length breaks RFC 2637.
    """
    n = len(stream)
    head = bytes(stream[:HEADER_LENGTH])
    # Judge the bytes present before asking for more: magic cookie (4..8), message type (2..4), length.
    if head[4:8] != _MAGIC[: max(0, min(n, 8) - 4)]:
        raise NotThisProtocol("pptp: no magic cookie 0x1A2B3C4D")
    if (n >= 4 and _U16.unpack_from(head, 2)[0] not in (CONTROL_MESSAGE, MANAGEMENT_MESSAGE)) or (n == 3 and head[2]):
        raise NotThisProtocol("pptp: PPTP message type is neither 1 (control) nor 2 (management)")
    if 2 <= n < 8 and _U16.unpack_from(head, 0)[0] not in _VALID_LENGTHS:
        raise NotThisProtocol("pptp: length field is no control message length")
    if n < HEADER_LENGTH:
        raise NeedMoreData(f"pptp: {n} bytes of the 12-byte header")
    length, msg_type, _, ctype_value, reserved = _HEADER.unpack_from(head, 0)
    if msg_type != CONTROL_MESSAGE:
        raise Malformed(f"pptp: message type {msg_type} (only control messages, type 1, are defined)")
    if not 1 <= ctype_value <= 15:
        raise Malformed(f"pptp: control message type {ctype_value} is not 1..15")
    ctype = ControlType(ctype_value)
    if reserved:
        raise Malformed(f"pptp: Reserved0 is {reserved:#06x}, must be zero")
    expected = MESSAGE_LENGTHS[ctype]
    if length != expected:
        raise Malformed(f"pptp: {ctype.name} length {length}, RFC 2637 fixes {expected}")
    if n < length:
        raise NeedMoreData(f"pptp: {ctype.name} of {length} bytes, {n} present")
    body = bytes(stream[HEADER_LENGTH:length])
    return PptpControl(length, ctype, *_fields(ctype, body), body)


def split_control(stream: bytes) -> tuple[list[PptpControl], bytes]:
    """The complete control messages at the start of a stream, and the rest.

    Stops at the first bytes that are not a complete, valid message: the rest is then non-empty, and
    ``parse_control(rest)`` raises the typed reason (``NeedMoreData`` for an incomplete message).
    """
    messages: list[PptpControl] = []
    off = 0
    while off < len(stream):
        try:
            message = parse_control(stream[off:])
        except DissectError:
            break
        messages.append(message)
        off += message.length
    return messages, bytes(stream[off:])
