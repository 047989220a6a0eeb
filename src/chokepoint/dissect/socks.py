"""SOCKS client handshakes: SOCKS4, SOCKS4a and SOCKS5, read from the client-to-server stream.

* SOCKS4 (Ying-Da Lee, "SOCKS: A protocol for TCP proxy across firewalls", 1996; no RFC):
  ``04 CD DSTPORT(2) DSTIP(4) USERID 00`` with CD 1 = CONNECT, 2 = BIND.
* SOCKS4a (Lee, "SOCKS 4A: A Simple Extension to SOCKS 4 Protocol"): DSTIP ``0.0.0.x`` (x != 0), then the host
  name after the user id: ``... USERID 00 HOSTNAME 00``.
* SOCKS5 (RFC 1928): greeting ``05 NMETHODS METHODS``; optional username/password sub-negotiation
  (RFC 1929: ``01 ULEN UNAME PLEN PASSWD``) when method 02 was offered; request
  ``05 CMD 00 ATYP DST.ADDR DST.PORT`` with ATYP 1 = IPv4, 3 = domain name, 4 = IPv6.

The client sends the next message only after the server's answer, but the stream concatenates them; bytes after
the request are the tunnelled payload (``header_length`` tells where it starts).

False positives: a lone greeting is accepted only if the stream is exactly ``2 + NMETHODS`` bytes long or what
follows is a consistent (possibly cut-off) sub-negotiation or request; methods must be IANA-assigned (00-09) or
private (80-FE) and distinct. SOCKS4 needs a known command, a non-zero port and address, and a printable user id
(and host name) terminated by NUL. Anything else is NotThisProtocol: the few-byte signature is weak, so failing
its checks means "not SOCKS" rather than "broken SOCKS".
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from chokepoint.dissect.errors import NeedMoreData, NotThisProtocol

__all__ = ["SocksRequest", "parse_client", "CONNECT", "BIND", "UDP_ASSOCIATE"]

CONNECT, BIND, UDP_ASSOCIATE = 1, 2, 3
_MAX_FIELD = 255
_PRINTABLE = bytes(range(0x20, 0x7F))
_HOST_CHARS = bytes(range(0x21, 0x7F))


@dataclass(frozen=True, slots=True)
class SocksRequest:
    version: int  # 4 (also for 4a) or 5
    command: int | None  # 1 CONNECT, 2 BIND, 3 UDP ASSOCIATE; None until the SOCKS5 request arrives
    methods: tuple[int, ...]  # SOCKS5 authentication methods offered (empty for SOCKS4)
    dst_host: str | None  # IPv4/IPv6 text or the host name as sent; None until the request arrives
    dst_port: int | None
    user_id: str | None  # SOCKS4 USERID, or the RFC 1929 user name
    socks4a: bool = False
    header_length: int = 0  # handshake bytes parsed; with a request, where the tunnelled data starts


def _printable(raw: bytes, allowed: bytes) -> bool:
    return not raw.translate(None, allowed)


def _cstring(data: bytes, start: int, allowed: bytes, what: str) -> tuple[bytes, int]:
    """NUL-terminated field at ``start``: (value, offset after the NUL)."""
    nul = data.find(b"\0", start, start + _MAX_FIELD + 1)
    value = data[start : nul if nul >= 0 else start + _MAX_FIELD + 1]
    if not _printable(value, allowed):
        raise NotThisProtocol(f"SOCKS4 {what} is not printable")
    if nul < 0:
        if len(data) - start > _MAX_FIELD:
            raise NotThisProtocol(f"SOCKS4 {what} longer than {_MAX_FIELD} bytes")
        raise NeedMoreData(f"SOCKS4 {what} incomplete")
    return value, nul + 1


def _socks4(data: bytes) -> SocksRequest:
    if len(data) >= 2 and data[1] not in (CONNECT, BIND):
        raise NotThisProtocol(f"SOCKS4 command {data[1]}")
    if len(data) < 8:
        raise NeedMoreData("SOCKS4 request incomplete")
    command, port = data[1], struct.unpack_from("!H", data, 2)[0]
    address = data[4:8]
    if port == 0 or address == b"\0\0\0\0":
        raise NotThisProtocol("SOCKS4 request to port 0 or address 0.0.0.0")
    user, pos = _cstring(data, 8, _PRINTABLE, "user id")
    socks4a = address[:3] == b"\0\0\0"
    if socks4a:
        host, pos = _cstring(data, pos, _HOST_CHARS, "host name")
        if not host:
            raise NotThisProtocol("SOCKS4a request with an empty host name")
        dst = host.decode("ascii")
    else:
        dst = socket.inet_ntop(socket.AF_INET, address)
    return SocksRequest(4, command, (), dst, port, user.decode("ascii"), socks4a, pos)


def _greeting(data: bytes) -> tuple[tuple[int, ...], int]:
    if len(data) < 2:
        raise NeedMoreData("SOCKS5 greeting incomplete")
    count = data[1]
    if count == 0:
        raise NotThisProtocol("SOCKS5 greeting offering no method")
    methods = tuple(data[2 : 2 + count])
    for method in methods:
        if not (method <= 0x09 or 0x80 <= method <= 0xFE):
            raise NotThisProtocol(f"SOCKS5 method 0x{method:02x} is not assigned")
    if len(set(methods)) != len(methods):
        raise NotThisProtocol("SOCKS5 greeting repeats a method")
    if len(methods) < count:
        raise NeedMoreData("SOCKS5 greeting incomplete")
    return methods, 2 + count


def _userpass(data: bytes, pos: int) -> tuple[str, int] | None:
    """RFC 1929 sub-negotiation at ``pos``: (user name, offset after it), None while cut off."""
    if pos + 2 > len(data):
        return None
    ulen = data[pos + 1]
    if ulen == 0:
        raise NotThisProtocol("RFC 1929 request with an empty user name")
    if pos + 2 + ulen + 1 > len(data):
        return None
    plen = data[pos + 2 + ulen]
    end = pos + 3 + ulen + plen
    if end > len(data):
        return None
    return data[pos + 2 : pos + 2 + ulen].decode("latin-1"), end


def _request5(data: bytes, pos: int) -> tuple[int, str, int, int] | None:
    """SOCKS5 request at ``pos``: (command, host, port, end), None while cut off; checks every byte present."""
    head = data[pos : pos + 5]
    if head[:1] not in (b"", b"\x05"):
        raise NotThisProtocol("SOCKS5 request does not start with version 5")
    if len(head) > 1 and head[1] not in (CONNECT, BIND, UDP_ASSOCIATE):
        raise NotThisProtocol(f"SOCKS5 command {head[1]}")
    if len(head) > 2 and head[2] != 0:
        raise NotThisProtocol("SOCKS5 request reserved byte is not zero")
    if len(head) > 3 and head[3] not in (1, 3, 4):
        raise NotThisProtocol(f"SOCKS5 address type {head[3]}")
    if len(head) < 5:
        return None
    atyp = head[3]
    if atyp == 1:
        start, size = pos + 4, 4
    elif atyp == 4:
        start, size = pos + 4, 16
    else:
        start, size = pos + 5, head[4]
        if size == 0:
            raise NotThisProtocol("SOCKS5 request with an empty domain name")
        if not _printable(data[start : start + size], _HOST_CHARS):
            raise NotThisProtocol("SOCKS5 domain name is not printable")
    end = start + size + 2
    if end > len(data):
        return None
    raw = data[start : start + size]
    if atyp == 1:
        host = socket.inet_ntop(socket.AF_INET, raw)
    elif atyp == 4:
        host = socket.inet_ntop(socket.AF_INET6, raw)
    else:
        host = raw.decode("ascii")
    return head[1], host, struct.unpack_from("!H", data, start + size)[0], end


def _socks5(data: bytes) -> SocksRequest:
    methods, pos = _greeting(data)
    user = None
    if data[pos : pos + 2] == b"\x01\x01" and 0x01 in methods and 0x02 not in methods:
        # GSS-API negotiation (RFC 1961: version 1, message type 1): its tokens are not parsed
        return SocksRequest(5, None, methods, None, None, None, header_length=pos)
    if pos < len(data) and data[pos] == 0x01 and 0x02 in methods:
        auth = _userpass(data, pos)
        if auth is None:
            return SocksRequest(5, None, methods, None, None, None, header_length=pos)
        user, pos = auth
    request = _request5(data, pos)
    if request is None:
        return SocksRequest(5, None, methods, None, None, user, header_length=pos)
    command, host, port, end = request
    return SocksRequest(5, command, methods, host, port, user, header_length=end)


def parse_client(c2s: bytes) -> SocksRequest:
    """Parse the SOCKS client handshake at the start of a client-to-server stream.

    A SOCKS5 greeting alone gives ``version=5``, ``methods`` and ``dst_*=None``; when the request follows in
    the stream, ``command`` and ``dst_*`` are filled. NeedMoreData while even the first message is incomplete.
    """
    data = bytes(c2s)
    if not data:
        raise NeedMoreData("empty stream")
    if data[0] == 4:
        return _socks4(data)
    if data[0] == 5:
        return _socks5(data)
    raise NotThisProtocol(f"first byte 0x{data[0]:02x} is no SOCKS version")
