"""The handshake message grammar: a ClientHello or ServerHello message (RFC 8446 §4, RFC 5246 §7.4) and its
extensions, parsed from the message bytes, whatever carried them (TLS records, QUIC CRYPTO frames).
Raises ``NeedMoreData`` for a short message and ``Malformed`` for broken lengths or values."""

from __future__ import annotations

import struct

from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol
from chokepoint.dissect.tls.messages import (
    ECH_TYPE_NAMES,
    EXT_ALPN,
    EXT_EC_POINT_FORMATS,
    EXT_ECH,
    EXT_ESNI,
    EXT_KEY_SHARE,
    EXT_SERVER_NAME,
    EXT_SIGNATURE_ALGORITHMS,
    EXT_SUPPORTED_GROUPS,
    EXT_SUPPORTED_VERSIONS,
    HANDSHAKE_CLIENT_HELLO,
    HANDSHAKE_SERVER_HELLO,
    HELLO_RETRY_REQUEST_RANDOM,
    MAX_HELLO_MESSAGE,
    ClientHello,
    ServerHello,
)


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
