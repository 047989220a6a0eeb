"""Flows picked up mid-connection or seen from one side only: TLS records and HTTP responses without the
client's opening message.

A capture that begins after the handshake, or a mirror port that sees only the server's half of a connection
(asymmetric routing), never shows a ClientHello or an HTTP request. nDPI still labels such flows TLS/HTTP
(its TLS dissector accepts application-data records, its HTTP dissector server responses); so does this module,
and the dispatcher marks them ``partial``.

TLS records (RFC 8446 §5.1, RFC 5246 §6.2): a record header is a content type (20 change_cipher_spec, 21 alert,
22 handshake, 23 application_data), the record-layer version 3.0-3.3 (TLS 1.3 keeps 3.3 in the record layer,
RFC 8446 §5.1) and a length of 1..2^14+2048. A capture can begin anywhere inside a record, so the first header
may be up to one maximal record into the stream; from there on the headers must chain (each record ends where
the next header starts) to the end of the bytes seen. One header alone is weak evidence (3 fixed bytes of 5), so:

- at offset 0, the chain must hold two headers, or one record that ends exactly where the bytes end;
- at a later offset (the capture began inside a record), the chain must hold at least two headers.

When the bytes a dissector may keep (the reassembly cap) end inside the first found record, the second header's
offset is known (:func:`next_header_offset`) and is checked on the segment that carries it.

For random bytes a candidate header has probability about 2^-22 (4 types x 1 x 4 versions of 2^24, times the
length bound), a chained pair about 2^-44, so scanning one maximal record of offsets stays below 2^-29 per flow.

HTTP responses (RFC 9112 §4): a status line ``HTTP/1.x NNN`` and a complete header section, at the start of the
server's bytes or, when the capture began inside a body, at a later status line of a persistent connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chokepoint.dissect import http
from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol
from chokepoint.dissect.tls import MAX_RECORD

__all__ = [
    "MAX_RESYNC",
    "RecordChain",
    "find_http_response",
    "find_record_chain",
    "next_header_offset",
    "plausible_header",
]

#: The first whole record header is at most one maximal record (plus its header) into the stream.
MAX_RESYNC = MAX_RECORD + 5
#: Content types that can follow a handshake mid-connection (RFC 8446 §5.1; heartbeat, 24, is left out).
_MID_TYPES = frozenset((20, 21, 22, 23))
#: Candidate record headers: a known content type, major version 3, minor 0..3.
_HEADER = re.compile(rb"[\x14-\x17]\x03[\x00-\x03]")
#: A status line of HTTP/1.0 or 1.1 (RFC 9112 §4), searched when the server's bytes began inside a body.
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] [1-5][0-9][0-9][ \r\n]")


@dataclass(frozen=True, slots=True)
class RecordChain:
    """TLS record headers chained from ``offset`` to the end of the bytes seen.

    ``headers``: whole 5-byte headers found (the last record may be incomplete); ``pending``: bytes of that
    incomplete last record (0 when the bytes end exactly at a record boundary); ``content_types`` in order.
    """

    offset: int
    headers: int
    pending: int
    content_types: tuple[int, ...]


def _walk(data: bytes, start: int) -> RecordChain | None:
    """Headers chained from ``start`` to the end of ``data``, or None when a header is not plausible."""
    pos, end = start, len(data)
    types: list[int] = []
    while pos < end:
        head = data[pos : pos + 5]
        if not plausible_header(head):
            return None
        if len(head) < 5:  # a header cut by the end of the bytes: judged on what is there
            return RecordChain(start, len(types), end - pos, tuple(types))
        length = (head[3] << 8) | head[4]
        types.append(head[0])
        if pos + 5 + length > end:
            return RecordChain(start, len(types), end - pos, tuple(types))
        pos += 5 + length
    return RecordChain(start, len(types), 0, tuple(types))


def find_record_chain(data: bytes) -> RecordChain | None:
    """The first offset from which TLS records chain to the end of ``data`` under the rules of the module
    docstring, or None. Never raises."""
    if len(data) < 5:
        return None
    chain = _walk(data, 0)
    if chain is not None and (chain.headers >= 2 or (chain.headers == 1 and chain.pending == 0)):
        return chain
    for match in _HEADER.finditer(data, 1, min(len(data), MAX_RESYNC)):
        chain = _walk(data, match.start())
        if chain is not None and chain.headers >= 2:
            return chain
    return None


def next_header_offset(data: bytes) -> int | None:
    """Where the second header must start when ``data`` holds a single plausible header whose record runs past
    its end (a 16 kB record caught mid-way, with the reassembled bytes capped below two records): the caller
    checks those bytes when they arrive (:func:`plausible_header`). None when there is no such header."""
    if len(data) < 5:
        return None
    starts = [0] + [m.start() for m in _HEADER.finditer(data, 1, min(len(data), MAX_RESYNC))]
    for start in starts:
        chain = _walk(data, start)
        if chain is not None and chain.headers == 1 and chain.pending > 5:
            return start + 5 + ((data[start + 3] << 8) | data[start + 4])
    return None


def plausible_header(head: bytes) -> bool:
    """Whether ``head`` (up to 5 bytes) can start a record under this module's rules."""
    if not head or head[0] not in _MID_TYPES or (len(head) > 1 and head[1] != 3) or (len(head) > 2 and head[2] > 3):
        return False
    return len(head) < 5 or 0 < ((head[3] << 8) | head[4]) <= MAX_RECORD


def find_http_response(data: bytes) -> http.HttpResponse | None:
    """An HTTP/1.x response head at the start of the server's bytes, else at the first later status line that
    starts a complete head (a persistent connection picked up inside a body); None when there is none yet."""
    starts = [0] if data.startswith(b"HTTP/") else []
    if not starts:
        starts = [m.start() for m in _STATUS_LINE.finditer(data, 1)][:4]
    for start in starts:
        try:
            return http.parse_response(data[start:])
        except (NeedMoreData, NotThisProtocol, Malformed):
            continue
    return None
