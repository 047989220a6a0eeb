"""TLS handshake dissection: ClientHello / ServerHello over TCP records or QUIC CRYPTO frames.

Grammar: RFC 8446 §4 (TLS 1.3) and RFC 5246 §7.4 (TLS 1.2); record layer RFC 8446 §5.1 / RFC 5246 §6.2.1.
Extensions: server_name RFC 6066 §3, ALPN RFC 7301, supported_groups RFC 8422 §5.1.1 / RFC 8446 §4.2.7,
ec_point_formats RFC 8422 §5.1.2, signature_algorithms RFC 8446 §4.2.3, key_share RFC 8446 §4.2.8,
supported_versions RFC 8446 §4.2.1, encrypted_client_hello draft-ietf-tls-esni-13+ (0xfe0d, ECHClientHello
type outer(0)/inner(1)), ESNI draft-ietf-tls-esni-01..03 (0xffce).  GREASE values: RFC 8701.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol
from chokepoint.dissect.fingerprint import (
    is_grease,
    ja3_for,
    ja3_hash_for,
    ja3s_for,
    ja3s_hash_for,
    ja4_for,
)

__all__ = [
    "ClientHello",
    "ServerHello",
    "RecordStats",
    "is_grease",
    "looks_like_tls_record",
    "parse_client_hello_message",
    "parse_client_hello_records",
    "parse_server_hello_message",
    "parse_server_hello_records",
    "tls_record_stats",
]

# Record content types (RFC 8446 §5.1).
CONTENT_CHANGE_CIPHER_SPEC = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23
CONTENT_HEARTBEAT = 24  # RFC 6520

# Handshake message types (RFC 8446 §4).
HANDSHAKE_CLIENT_HELLO = 1
HANDSHAKE_SERVER_HELLO = 2

# Extension types.
EXT_SERVER_NAME = 0x0000
EXT_SUPPORTED_GROUPS = 0x000A
EXT_EC_POINT_FORMATS = 0x000B
EXT_SIGNATURE_ALGORITHMS = 0x000D
EXT_ALPN = 0x0010
EXT_SUPPORTED_VERSIONS = 0x002B
EXT_KEY_SHARE = 0x0033
EXT_ECH = 0xFE0D
EXT_ESNI = 0xFFCE

#: RFC 8446 §5.1: TLSPlaintext.length MUST NOT exceed 2^14; RFC 5246 §6.2.3 allows 2^14 + 2048 for
#: ciphertext.  We accept up to the ciphertext bound so that tolerant record statistics stay usable.
MAX_PLAINTEXT_RECORD = 1 << 14
MAX_RECORD = (1 << 14) + 2048
#: A hello message bigger than this is refused (real ClientHellos are < 2 KiB, < 8 KiB with post-quantum keys).
MAX_HELLO_MESSAGE = 1 << 16

ECH_TYPE_NAMES = {0: "outer", 1: "inner"}


@dataclass(frozen=True, slots=True)
class ClientHello:
    """A parsed ClientHello.  Lists keep wire order and GREASE values (the fingerprints drop them).

    ``sni``: the first host_name entry, lowercased (None without one); ``alpn``: protocol names decoded as
    latin-1; ``key_share_groups``: the groups of the offered key shares; ``ech_type``: "outer"/"inner"
    when 0xfe0d is present; ``record_count``: TLS records the message spanned (0 when it came from QUIC
    CRYPTO frames); ``is_sslv2``: an SSLv2-compatible CLIENT-HELLO, whose ``cipher_suites`` are its
    3-byte cipher specs and which has no extensions.
    """

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: bytes
    extensions: tuple[tuple[int, bytes], ...]
    sni: str | None
    alpn: tuple[str, ...]
    supported_versions: tuple[int, ...]
    supported_groups: tuple[int, ...]
    ec_point_formats: tuple[int, ...]
    signature_algorithms: tuple[int, ...]
    key_share_groups: tuple[int, ...]
    has_ech: bool
    ech_type: str | None
    has_esni: bool
    record_count: int = 0
    is_sslv2: bool = False
    # Memoised fingerprints (the engine reads them after every packet); not part of equality.
    _ja3: str | None = field(default=None, init=False, repr=False, compare=False)
    _ja3_hash: str | None = field(default=None, init=False, repr=False, compare=False)
    _ja4: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def extension_types(self) -> tuple[int, ...]:
        """Extension type codes in wire order."""
        return tuple(ext_type for ext_type, _ in self.extensions)

    @property
    def ja3(self) -> str:
        """The JA3 string (salesforce/ja3)."""
        value = self._ja3
        if value is None:
            value = ja3_for(self)
            object.__setattr__(self, "_ja3", value)
        return value

    @property
    def ja3_hash(self) -> str:
        """MD5 hex of :attr:`ja3`."""
        value = self._ja3_hash
        if value is None:
            value = ja3_hash_for(self)
            object.__setattr__(self, "_ja3_hash", value)
        return value

    @property
    def ja4(self) -> str:
        """JA4 for TLS over TCP; use ``fingerprint.ja4_for(ch, transport="q")`` for QUIC."""
        value = self._ja4
        if value is None:
            value = ja4_for(self, transport="t")
            object.__setattr__(self, "_ja4", value)
        return value


@dataclass(frozen=True, slots=True)
class ServerHello:
    """A parsed ServerHello (RFC 8446 §4.1.3); ``selected_version`` is its supported_versions value, if any."""

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[tuple[int, bytes], ...]
    selected_version: int | None
    alpn: str | None
    record_count: int = 0
    is_hello_retry_request: bool = False

    @property
    def version(self) -> int:
        """The negotiated version: ``selected_version`` if present, else ``legacy_version``."""
        return self.selected_version if self.selected_version is not None else self.legacy_version

    @property
    def ja3s(self) -> str:
        """The JA3S string (salesforce/ja3: ``SSLVersion,Cipher,Extensions``)."""
        return ja3s_for(self)

    @property
    def ja3s_hash(self) -> str:
        """MD5 hex of :attr:`ja3s`."""
        return ja3s_hash_for(self)


# RFC 8446 §4.1.3: a HelloRetryRequest is a ServerHello with this fixed random.
HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")


class _Reader:
    """Bounds-checked big-endian cursor over a memoryview; every short read raises ``Malformed``."""

    __slots__ = ("buf", "pos", "end", "what")

    def __init__(self, buf: memoryview, pos: int, end: int, what: str) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end
        self.what = what

    def remaining(self) -> int:
        return self.end - self.pos

    def u8(self) -> int:
        if self.pos + 1 > self.end:
            raise Malformed(f"{self.what}: truncated at offset {self.pos}")
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        if self.pos + 2 > self.end:
            raise Malformed(f"{self.what}: truncated at offset {self.pos}")
        value = (self.buf[self.pos] << 8) | self.buf[self.pos + 1]
        self.pos += 2
        return value

    def take(self, n: int) -> memoryview:
        if self.pos + n > self.end:
            raise Malformed(f"{self.what}: field of {n} bytes overruns its container at offset {self.pos}")
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def vec8(self) -> memoryview:
        return self.take(self.u8())

    def vec16(self) -> memoryview:
        return self.take(self.u16())

    def sub16(self, what: str) -> _Reader:
        """A reader over a 2-byte-length-prefixed vector, advancing past it."""
        length = self.u16()
        if self.pos + length > self.end:
            raise Malformed(f"{what}: length {length} overruns its container")
        sub = _Reader(self.buf, self.pos, self.pos + length, what)
        self.pos += length
        return sub

    def expect_end(self) -> None:
        if self.pos != self.end:
            raise Malformed(f"{self.what}: {self.end - self.pos} trailing bytes")


def _u16_list(data: memoryview | bytes, what: str) -> tuple[int, ...]:
    if len(data) % 2:
        raise Malformed(f"{what}: odd length {len(data)}")
    return struct.unpack(f"!{len(data) // 2}H", data)


def _parse_extensions(reader: _Reader) -> tuple[tuple[int, bytes], ...]:
    """Extension list (RFC 8446 §4.2).  Absent list (pre-RFC 3546 hellos) -> ()."""
    if reader.remaining() == 0:
        return ()
    block = reader.sub16("extensions")
    reader.expect_end()
    out = []
    while block.remaining():
        ext_type = block.u16()
        out.append((ext_type, bytes(block.vec16())))
    return tuple(out)


def _parse_server_name(data: bytes) -> str | None:
    """First host_name entry of a server_name extension (RFC 6066 §3), lowercased; None if none."""
    outer = _Reader(memoryview(data), 0, len(data), "server_name")
    if not data:  # the empty form servers echo; it names nothing
        return None
    names = outer.sub16("server_name list")
    outer.expect_end()
    while names.remaining():
        name_type = names.u8()
        name = names.vec16()
        if name_type == 0:
            try:
                return bytes(name).decode("ascii").lower()
            except UnicodeDecodeError:
                raise Malformed("server_name: host_name is not ASCII") from None
    return None


def _parse_alpn(data: bytes) -> tuple[str, ...]:
    """ProtocolNameList (RFC 7301 §3.1); names decoded as latin-1 so every byte string round-trips."""
    outer = _Reader(memoryview(data), 0, len(data), "alpn")
    names = outer.sub16("alpn list")
    outer.expect_end()
    out = []
    while names.remaining():
        # RFC 7301 §3.1 forbids empty names; kept as "" (JA4 defines "00" for them) rather than refused.
        out.append(bytes(names.vec8()).decode("latin-1"))
    return tuple(out)


def _parse_u16_vector16(data: bytes, what: str) -> tuple[int, ...]:
    outer = _Reader(memoryview(data), 0, len(data), what)
    values = outer.vec16()
    outer.expect_end()
    return _u16_list(values, what)


def _parse_u8_vector8(data: bytes, what: str) -> tuple[int, ...]:
    outer = _Reader(memoryview(data), 0, len(data), what)
    values = outer.vec8()
    outer.expect_end()
    return tuple(values)


def _parse_client_supported_versions(data: bytes) -> tuple[int, ...]:
    outer = _Reader(memoryview(data), 0, len(data), "supported_versions")
    values = outer.vec8()
    outer.expect_end()
    return _u16_list(values, "supported_versions")


def _parse_key_share_groups(data: bytes) -> tuple[int, ...]:
    """Groups of the KeyShareClientHello entries (RFC 8446 §4.2.8), key bytes skipped."""
    outer = _Reader(memoryview(data), 0, len(data), "key_share")
    shares = outer.sub16("key_share list")
    outer.expect_end()
    out = []
    while shares.remaining():
        out.append(shares.u16())
        shares.vec16()
    return tuple(out)


def _parse_ech_type(data: bytes) -> str:
    """ECHClientHello.type (draft-ietf-tls-esni-13+ §5): outer(0) or inner(1)."""
    if not data:
        raise Malformed("encrypted_client_hello: empty extension")
    name = ECH_TYPE_NAMES.get(data[0])
    if name is None:
        raise Malformed(f"encrypted_client_hello: unknown type {data[0]}")
    return name


def _handshake_bounds(msg: bytes | memoryview, expected_type: int, what: str) -> int:
    """Check the 4-byte handshake header; return the body length.

    NotThisProtocol for another message type, NeedMoreData while the message is incomplete.
    """
    if not msg:
        raise NeedMoreData(f"{what}: empty")
    if msg[0] != expected_type:
        raise NotThisProtocol(f"{what}: handshake type {msg[0]} is not {expected_type}")
    if len(msg) < 4:
        raise NeedMoreData(f"{what}: handshake header incomplete")
    length = (msg[1] << 16) | (msg[2] << 8) | msg[3]
    if length > MAX_HELLO_MESSAGE:
        raise Malformed(f"{what}: handshake length {length} exceeds {MAX_HELLO_MESSAGE}")
    if len(msg) < 4 + length:
        raise NeedMoreData(f"{what}: have {len(msg) - 4} of {length} body bytes")
    return length


def parse_client_hello_message(msg: bytes, *, record_count: int = 0) -> ClientHello:
    """Parse a ClientHello handshake message (type 1, uint24 length, body; RFC 8446 §4.1.2).

    ``msg`` is the handshake message as carried in TLS records or QUIC CRYPTO frames (RFC 9001 §4);
    bytes after the message are ignored.  ``record_count`` is recorded as given (0 for QUIC).
    """
    length = _handshake_bounds(msg, HANDSHAKE_CLIENT_HELLO, "ClientHello")
    reader = _Reader(memoryview(msg), 4, 4 + length, "ClientHello")
    legacy_version = reader.u16()
    random = bytes(reader.take(32))
    session_id = reader.vec8()
    if len(session_id) > 32:
        raise Malformed(f"ClientHello: session_id of {len(session_id)} bytes (max 32)")
    cipher_bytes = reader.vec16()
    if not cipher_bytes or len(cipher_bytes) % 2:
        raise Malformed(f"ClientHello: cipher_suites length {len(cipher_bytes)}")
    cipher_suites = _u16_list(cipher_bytes, "cipher_suites")
    compression_methods = bytes(reader.vec8())
    if not compression_methods:
        raise Malformed("ClientHello: empty compression_methods")
    extensions = _parse_extensions(reader)

    sni = None
    alpn: tuple[str, ...] = ()
    supported_versions: tuple[int, ...] = ()
    supported_groups: tuple[int, ...] = ()
    ec_point_formats: tuple[int, ...] = ()
    signature_algorithms: tuple[int, ...] = ()
    key_share_groups: tuple[int, ...] = ()
    has_ech = has_esni = False
    ech_type = None
    seen: set[int] = set()
    for ext_type, data in extensions:
        if ext_type in seen:  # RFC 8446 §4.2: no more than one extension of the same type
            raise Malformed(f"ClientHello: duplicate extension 0x{ext_type:04x}")
        seen.add(ext_type)
        if ext_type == EXT_SERVER_NAME:
            sni = _parse_server_name(data)
        elif ext_type == EXT_ALPN:
            alpn = _parse_alpn(data)
        elif ext_type == EXT_SUPPORTED_VERSIONS:
            supported_versions = _parse_client_supported_versions(data)
        elif ext_type == EXT_SUPPORTED_GROUPS:
            supported_groups = _parse_u16_vector16(data, "supported_groups")
        elif ext_type == EXT_EC_POINT_FORMATS:
            ec_point_formats = _parse_u8_vector8(data, "ec_point_formats")
        elif ext_type == EXT_SIGNATURE_ALGORITHMS:
            signature_algorithms = _parse_u16_vector16(data, "signature_algorithms")
        elif ext_type == EXT_KEY_SHARE:
            key_share_groups = _parse_key_share_groups(data)
        elif ext_type == EXT_ECH:
            has_ech = True
            ech_type = _parse_ech_type(data)
        elif ext_type == EXT_ESNI:
            has_esni = True

    return ClientHello(
        legacy_version=legacy_version,
        random=random,
        session_id=bytes(session_id),
        cipher_suites=cipher_suites,
        compression_methods=compression_methods,
        extensions=extensions,
        sni=sni,
        alpn=alpn,
        supported_versions=supported_versions,
        supported_groups=supported_groups,
        ec_point_formats=ec_point_formats,
        signature_algorithms=signature_algorithms,
        key_share_groups=key_share_groups,
        has_ech=has_ech,
        ech_type=ech_type,
        has_esni=has_esni,
        record_count=record_count,
    )


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


# --- ServerHello (RFC 8446 §4.1.3) --------------------------------------------------------------------


def parse_server_hello_message(msg: bytes, *, record_count: int = 0) -> ServerHello:
    """Parse a ServerHello handshake message (type 2); bytes after it are ignored."""
    length = _handshake_bounds(msg, HANDSHAKE_SERVER_HELLO, "ServerHello")
    reader = _Reader(memoryview(msg), 4, 4 + length, "ServerHello")
    legacy_version = reader.u16()
    random = bytes(reader.take(32))
    session_id = bytes(reader.vec8())
    if len(session_id) > 32:
        raise Malformed(f"ServerHello: session_id of {len(session_id)} bytes (max 32)")
    cipher_suite = reader.u16()
    compression_method = reader.u8()
    extensions = _parse_extensions(reader)
    selected_version = None
    alpn = None
    for ext_type, data in extensions:
        if ext_type == EXT_SUPPORTED_VERSIONS:
            if len(data) != 2:
                raise Malformed(f"ServerHello: supported_versions of {len(data)} bytes")
            selected_version = (data[0] << 8) | data[1]
        elif ext_type == EXT_ALPN:
            names = _parse_alpn(data)
            if len(names) != 1:  # RFC 7301 §3.1: exactly one protocol name
                raise Malformed(f"ServerHello: ALPN with {len(names)} names")
            alpn = names[0]
    return ServerHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suite=cipher_suite,
        compression_method=compression_method,
        extensions=extensions,
        selected_version=selected_version,
        alpn=alpn,
        record_count=record_count,
        is_hello_retry_request=random == HELLO_RETRY_REQUEST_RANDOM,
    )


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
