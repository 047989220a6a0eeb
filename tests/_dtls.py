"""DTLS 1.2 handshake records built byte by byte (RFC 6347 section 4.3, RFC 5246 section 7.4), with the extension
layout Pion's DTLS used in Snowflake in 2021-2022, for the TSPU's Snowflake rules.

Pion v2.0.9 (Snowflake until December 2021) put ``supported_groups`` (x25519, P-256, P-384) in its ServerHello
as well as its ClientHello (pion/dtls#409); its ServerHello carried ``extended_master_secret``,
``renegotiation_info`` and ``use_srtp`` before it. The TSPU matched ``1d 00 17 00 18`` at offset 0x5a of the
UDP payload (snowflake#40014 note_2765074): in this layout the groups start at 0x59 (``00 1d``), so ``1d`` is at
0x5a, which is how the offset is read. A record header is 13 bytes, a handshake header 12.
"""

from __future__ import annotations

import os

DTLS_1_2 = b"\xfe\xfd"
DTLS_1_0 = b"\xfe\xff"
GROUPS = b"\x00\x1d\x00\x17\x00\x18"  # x25519, secp256r1, secp384r1
#: Pion's ClientHello cipher suites then: CCM, CCM_8, AES-GCM x4, AES-CBC x2 (ECDSA/RSA): 8 suites.
PION_SUITES = (0xC0AC, 0xC0AE, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xC00A, 0xC014)


def _ext(kind: int, body: bytes) -> bytes:
    return kind.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


SUPPORTED_GROUPS = _ext(0x000A, len(GROUPS).to_bytes(2, "big") + GROUPS)
EXTENDED_MASTER_SECRET = _ext(0x0017, b"")
RENEGOTIATION_INFO = _ext(0xFF01, b"\x00")
USE_SRTP = _ext(0x000E, b"\x00\x02\x00\x01\x00")  # SRTP_AES128_CM_HMAC_SHA1_80, no MKI
EC_POINT_FORMATS = _ext(0x000B, b"\x01\x00")


def record(handshake_type: int, body: bytes, *, version: bytes = DTLS_1_2, seq: int = 0, msg_seq: int = 0) -> bytes:
    """One DTLS record (content type 22, handshake) carrying one unfragmented handshake message."""
    hs = bytes([handshake_type]) + len(body).to_bytes(3, "big") + msg_seq.to_bytes(2, "big")
    hs += (0).to_bytes(3, "big") + len(body).to_bytes(3, "big") + body
    return b"\x16" + version + (0).to_bytes(2, "big") + seq.to_bytes(6, "big") + len(hs).to_bytes(2, "big") + hs


def server_hello(*, pion_2021: bool = True, random: bytes | None = None) -> bytes:
    """A ServerHello as Pion sent it (``pion_2021``: with the supported_groups bug; else without, as after
    pion/dtls v2.0.12)."""
    extensions = EXTENDED_MASTER_SECRET + RENEGOTIATION_INFO + USE_SRTP
    if pion_2021:
        extensions += SUPPORTED_GROUPS
    extensions += EC_POINT_FORMATS
    body = DTLS_1_2 + (random or os.urandom(32)) + b"\x00" + b"\xc0\x2b" + b"\x00"
    body += len(extensions).to_bytes(2, "big") + extensions
    return record(2, body, seq=1, msg_seq=1)


def client_hello(*, cookie: bytes = b"", suites: tuple[int, ...] = PION_SUITES, random: bytes | None = None) -> bytes:
    """A ClientHello with Pion's groups as its first extension (the first one without a cookie, the second
    with the server's)."""
    suite_bytes = b"".join(s.to_bytes(2, "big") for s in suites)
    extensions = SUPPORTED_GROUPS + EC_POINT_FORMATS + EXTENDED_MASTER_SECRET + RENEGOTIATION_INFO + USE_SRTP
    body = DTLS_1_2 + (random or os.urandom(32)) + b"\x00" + bytes([len(cookie)]) + cookie
    body += len(suite_bytes).to_bytes(2, "big") + suite_bytes + b"\x01\x00"
    body += len(extensions).to_bytes(2, "big") + extensions
    return record(1, body, seq=1 if cookie else 0, msg_seq=1 if cookie else 0)


def hello_verify_request(cookie: bytes | None = None) -> bytes:
    """A HelloVerifyRequest (handshake type 3) with a 20-byte cookie, in a DTLS 1.0 record (RFC 6347 4.2.1)."""
    cookie = cookie if cookie is not None else os.urandom(20)
    return record(3, DTLS_1_0 + bytes([len(cookie)]) + cookie, version=DTLS_1_0)


__all__ = ["client_hello", "hello_verify_request", "record", "server_hello"]
