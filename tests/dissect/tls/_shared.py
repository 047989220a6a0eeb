"""Helpers the TLS test modules share: record offsets of a stream, an SSLv2 hello built from a real one, and
the Malformed check."""

from __future__ import annotations

import struct

import pytest

from chokepoint.dissect import tls
from chokepoint.dissect.errors import Malformed


def _record_offsets(stream: bytes):
    pos = 0
    while pos + 5 <= len(stream):
        n = int.from_bytes(stream[pos + 3 : pos + 5], "big")
        yield pos, n
        pos += 5 + n


def _malformed(stream: bytes, match: str = "") -> None:
    with pytest.raises(Malformed, match=match):
        tls.parse_client_hello_records(stream)


def sslv2_hello_from(tls_hello: bytes) -> bytes:
    """Lay a real hello's cipher suites out as an SSLv2 CLIENT-HELLO (no implementation at hand sends one)."""
    ch = tls.parse_client_hello_records(tls_hello)
    specs = b"".join(b"\x00" + c.to_bytes(2, "big") for c in ch.cipher_suites) + b"\x07\x00\xc0"
    challenge = ch.random[:16]
    body = b"\x01\x03\x01" + struct.pack("!HHH", len(specs), 0, len(challenge)) + specs + challenge
    return struct.pack("!H", 0x8000 | len(body)) + body
