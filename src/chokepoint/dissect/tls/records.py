"""The framing around the hello messages: TLS records (RFC 8446 §5.1, RFC 5246 §6.2.1) reassembled into one
handshake message, the SSL 2.0-compatible CLIENT-HELLO (RFC 5246 Appendix E.2), the ``parse_*_records`` entry
points for a reassembled TCP stream, and tolerant record statistics that never raise."""

from __future__ import annotations

from dataclasses import dataclass

from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol
from chokepoint.dissect.tls.handshake import _Reader, parse_client_hello_message, parse_server_hello_message
from chokepoint.dissect.tls.messages import (
    HANDSHAKE_CLIENT_HELLO,
    HANDSHAKE_SERVER_HELLO,
    MAX_HELLO_MESSAGE,
    ClientHello,
    ServerHello,
)

# Record content types (RFC 8446 §5.1).
CONTENT_CHANGE_CIPHER_SPEC = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23
CONTENT_HEARTBEAT = 24  # RFC 6520

#: RFC 8446 §5.1: TLSPlaintext.length MUST NOT exceed 2^14; RFC 5246 §6.2.3 allows 2^14 + 2048 for
#: ciphertext.  We accept up to the ciphertext bound so that tolerant record statistics stay usable.
MAX_PLAINTEXT_RECORD = 1 << 14
MAX_RECORD = (1 << 14) + 2048


# --- SSL 2.0-compatible ClientHello (RFC 5246 Appendix E.2; RFC 6101 Appendix E) -----------------------


def _looks_like_sslv2_client_hello(prefix: bytes | memoryview) -> bool:
    """Consistent prefix of a 2-byte-header SSLv2 CLIENT-HELLO (msg_type 1, version 0x0002 or 0x03xx)."""
    if not prefix or not prefix[0] & 0x80:
        return False
    if len(prefix) > 2 and prefix[2] != 1:
        return False
    if len(prefix) > 3 and prefix[3] not in (0x00, 0x03):
        return False
    if len(prefix) > 4:
        major, minor = prefix[3], prefix[4]
        if not ((major == 0x00 and minor == 0x02) or (major == 0x03 and minor <= 0x04)):
            return False
    return True


def _parse_sslv2_client_hello(stream: bytes | memoryview) -> ClientHello:
    """An SSLv2 CLIENT-HELLO, as sent by old clients offering SSL 3.0/TLS in a V2 header.

    It has no extensions (so no SNI); cipher specs are 3-byte values (TLS suites are 0x00XXYY); the
    challenge becomes the right-aligned 32-byte random (RFC 5246 Appendix E.2).
    """
    if not _looks_like_sslv2_client_hello(stream):
        raise NotThisProtocol("not an SSLv2 CLIENT-HELLO")
    if len(stream) < 2:
        raise NeedMoreData("SSLv2 record header incomplete")
    length = ((stream[0] & 0x7F) << 8) | stream[1]
    if length < 9:
        raise NotThisProtocol(f"SSLv2 record of {length} bytes is too short for a CLIENT-HELLO")
    if len(stream) < 2 + length:
        raise NeedMoreData(f"SSLv2 CLIENT-HELLO: have {len(stream) - 2} of {length} bytes")
    reader = _Reader(memoryview(stream), 3, 2 + length, "SSLv2 CLIENT-HELLO")
    version = reader.u16()
    spec_len, sid_len, challenge_len = reader.u16(), reader.u16(), reader.u16()
    if spec_len == 0 or spec_len % 3:
        raise Malformed(f"SSLv2 CLIENT-HELLO: cipher_specs length {spec_len}")
    if sid_len not in (0, 16) and version == 0x0002:
        raise Malformed(f"SSLv2 CLIENT-HELLO: session_id length {sid_len}")
    if not 16 <= challenge_len <= 32:
        raise Malformed(f"SSLv2 CLIENT-HELLO: challenge length {challenge_len}")
    specs = reader.take(spec_len)
    session_id = bytes(reader.take(sid_len))
    challenge = bytes(reader.take(challenge_len))
    reader.expect_end()
    cipher_suites = tuple((specs[i] << 16) | (specs[i + 1] << 8) | specs[i + 2] for i in range(0, spec_len, 3))
    return ClientHello(
        legacy_version=version,
        random=challenge.rjust(32, b"\x00"),
        session_id=session_id,
        cipher_suites=cipher_suites,
        compression_methods=b"\x00",
        extensions=(),
        sni=None,
        alpn=(),
        supported_versions=(),
        supported_groups=(),
        ec_point_formats=(),
        signature_algorithms=(),
        key_share_groups=(),
        has_ech=False,
        ech_type=None,
        has_esni=False,
        record_count=1,
        is_sslv2=True,
    )


# --- record layer (RFC 8446 §5.1, RFC 5246 §6.2.1) ------------------------------------------------------

_KNOWN_CONTENT_TYPES = frozenset(
    (
        CONTENT_CHANGE_CIPHER_SPEC,
        CONTENT_ALERT,
        CONTENT_HANDSHAKE,
        CONTENT_APPLICATION_DATA,
        CONTENT_HEARTBEAT,
    )
)


def _plausible_header(prefix: bytes | memoryview, content_types: frozenset[int] | tuple[int, ...]) -> bool:
    """Whether up to 5 bytes can start a TLS record: known type, version 3.0-3.4, length 1..2^14+2048."""
    n = len(prefix)
    if n == 0 or prefix[0] not in content_types:
        return False
    if n > 1 and prefix[1] != 3:
        return False
    if n > 2 and prefix[2] > 4:
        return False
    if n > 4:
        length = (prefix[3] << 8) | prefix[4]
        if length == 0 or length > MAX_RECORD:
            return False
    return True


def looks_like_tls_record(prefix: bytes) -> bool:
    """True when the first bytes (up to 5 are read) can begin a TLS record.

    Content type 20-24, ``ProtocolVersion`` major 3 with minor 0-4 (SSL 3.0 .. "TLS 1.3", the range nDPI
    accepts), record length 1..2^14+2048 (RFC 5246 §6.2.3).  A shorter prefix is judged on what it has;
    an empty one is False.  SSLv2-compatible hellos are not records and are not matched here.
    """
    return _plausible_header(prefix[:5], _KNOWN_CONTENT_TYPES)


def _handshake_from_records(stream: bytes | memoryview, what: str) -> tuple[bytearray, int, int]:
    """Concatenate handshake records from the start of ``stream`` until one full handshake message is in.

    Returns ``(handshake_bytes, message_length, record_count)``.  NotThisProtocol if the stream does not
    start with a handshake record, NeedMoreData while the first message is incomplete, Malformed for an
    empty/oversized record or a record of another type before the message is complete (RFC 8446 §5.1:
    handshake messages MUST NOT be interleaved with other record types).
    """
    head = stream[:5]
    if not _plausible_header(head, (CONTENT_HANDSHAKE,)):
        raise NotThisProtocol(f"{what}: does not start with a TLS handshake record")
    buf = bytearray()
    pos = 0
    records = 0
    end = len(stream)
    while True:
        if end - pos < 5:
            if records and end > pos and not _plausible_header(stream[pos:end], _KNOWN_CONTENT_TYPES):
                raise Malformed(f"{what}: bytes after record {records} are not a TLS record header")
            raise NeedMoreData(f"{what}: record header incomplete")
        ctype, major, minor = stream[pos], stream[pos + 1], stream[pos + 2]
        length = (stream[pos + 3] << 8) | stream[pos + 4]
        if ctype != CONTENT_HANDSHAKE:
            raise Malformed(f"{what}: record of content type {ctype} inside an unfinished handshake message")
        if major != 3 or minor > 4:
            raise Malformed(f"{what}: record {records + 1} has version {major}.{minor}")
        if length == 0:
            raise Malformed(f"{what}: zero-length handshake record")
        if length > MAX_PLAINTEXT_RECORD:
            raise Malformed(f"{what}: record length {length} exceeds 2^14")
        # A message may complete before its record does (e.g. a ServerHello sharing a record with the
        # certificate chain): like a DPI box, parse it as soon as its own bytes are in.
        complete_record = end - pos - 5 >= length
        buf += stream[pos + 5 : pos + 5 + length]
        pos += 5 + length
        records += 1
        if len(buf) >= 4:
            msg_len = (buf[1] << 16) | (buf[2] << 8) | buf[3]
            if msg_len > MAX_HELLO_MESSAGE:
                raise Malformed(f"{what}: handshake message length {msg_len} exceeds {MAX_HELLO_MESSAGE}")
            if len(buf) >= 4 + msg_len:
                return buf, msg_len, records
        if not complete_record:
            raise NeedMoreData(f"{what}: record {records} is incomplete ({length} bytes announced)")


def parse_client_hello_records(stream: bytes) -> ClientHello:
    """Parse the ClientHello at the start of a reassembled client-to-server TCP stream.

    The handshake message is reassembled across as many TLS records as it spans (``record_count``).
    An SSLv2-compatible CLIENT-HELLO is recognised too (``is_sslv2``; it carries no SNI).
    NotThisProtocol if the stream does not start like a TLS handshake record (or the first handshake
    message is not a ClientHello), NeedMoreData while incomplete, Malformed for broken lengths.
    """
    if not stream:
        raise NeedMoreData("ClientHello: no bytes yet")
    if stream[0] != CONTENT_HANDSHAKE:
        if stream[0] & 0x80:
            return _parse_sslv2_client_hello(stream)
        raise NotThisProtocol(f"first byte 0x{stream[0]:02x} is not a TLS handshake record")
    if len(stream) >= 6 and stream[5] != HANDSHAKE_CLIENT_HELLO and _plausible_header(stream[:5], (22,)):
        raise NotThisProtocol(f"first handshake message has type {stream[5]}, not ClientHello")
    buf, _, records = _handshake_from_records(memoryview(stream), "ClientHello")
    return parse_client_hello_message(bytes(buf), record_count=records)


def parse_server_hello_records(stream: bytes) -> ServerHello:
    """Parse the ServerHello at the start of a reassembled server-to-client TCP stream.

    Works without the client side (asymmetric captures).  Same error contract as
    :func:`parse_client_hello_records`.
    """
    if not stream:
        raise NeedMoreData("ServerHello: no bytes yet")
    if len(stream) >= 6 and stream[5] != HANDSHAKE_SERVER_HELLO and _plausible_header(stream[:5], (22,)):
        raise NotThisProtocol(f"first handshake message has type {stream[5]}, not ServerHello")
    buf, _, records = _handshake_from_records(memoryview(stream), "ServerHello")
    return parse_server_hello_message(bytes(buf), record_count=records)


# --- tolerant record statistics ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordStats:
    """The complete TLS records found from the start of a stream.

    ``records``: ``(content_type, length)`` of each complete record in order; ``pending``: bytes of a
    trailing incomplete record; ``garbage_at``: offset of the first bytes that cannot start a record
    (None when everything parsed).
    """

    records: tuple[tuple[int, int], ...]
    pending: int
    garbage_at: int | None


def tls_record_stats(stream: bytes, max_records: int = 64) -> RecordStats:
    """Walk the record headers of ``stream`` (at most ``max_records``) without ever raising.

    Useful for traffic-shape heuristics on a flow that is already known to be TLS.
    """
    records: list[tuple[int, int]] = []
    pos, end = 0, len(stream)
    while pos < end and len(records) < max_records:
        head = stream[pos : pos + 5]
        if not _plausible_header(head, _KNOWN_CONTENT_TYPES):
            return RecordStats(tuple(records), 0, pos)
        if len(head) < 5:
            return RecordStats(tuple(records), end - pos, None)
        length = (head[3] << 8) | head[4]
        if end - pos - 5 < length:
            return RecordStats(tuple(records), end - pos, None)
        records.append((head[0], length))
        pos += 5 + length
    return RecordStats(tuple(records), 0, None)
