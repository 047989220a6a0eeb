"""TLS client/server fingerprints: JA3 / JA3S (salesforce/ja3) and JA4 (FoxIO-LLC/ja4).

JA3 (https://github.com/salesforce/ja3, README and python/ja3.py): the decimal fields
``SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats`` of the ClientHello, values within a
field joined by ``-``, GREASE values (RFC 8701) removed; JA3 hash = MD5 of that string.
JA3S: ``SSLVersion,Cipher,Extensions`` of the ServerHello, MD5.

JA4 (https://github.com/FoxIO-LLC/ja4, technical_details/JA4.md): ``a_b_c`` where
 a = transport ("t" TCP, "q" QUIC, "d" DTLS) + version (highest non-GREASE supported_versions value, else
     legacy_version: "13" "12" "11" "10" "s3" "s2" "d1" "d2" "d3", unknown "00") + "d" if an SNI extension is
     present else "i" + 2-digit cipher count + 2-digit extension count (GREASE removed, capped at 99; the
     count includes SNI and ALPN) + first and last character of the first ALPN value ("00" without ALPN; if
     either character is not ASCII alphanumeric, the first hex digit of the first byte and the last hex digit
     of the last byte are used instead);
 b = first 12 hex of SHA-256 of the sorted 4-hex cipher list joined by "," ("000000000000" if empty);
 c = first 12 hex of SHA-256 of the sorted extension list without SNI (0x0000) and ALPN (0x0010), then "_"
     and the signature algorithms in wire order ("_" omitted when there are none); "000000000000" if there
     are no extensions left.
The ClientHello types are duck-typed here to avoid an import cycle with ``dissect/tls/``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chokepoint.dissect.tls import ClientHello, ServerHello

_EXT_SNI = 0x0000
_EXT_ALPN = 0x0010

_JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}


def is_grease(value: int) -> bool:
    """True for an RFC 8701 GREASE value (0x0A0A, 0x1A1A, ... 0xFAFA)."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


def _no_grease(values: Iterable[int]) -> list[int]:
    return [v for v in values if not is_grease(v)]


def _dash(values: Iterable[object]) -> str:
    return "-".join(str(v) for v in values)


def ja3_for(ch: ClientHello) -> str:
    """The JA3 string of a ClientHello (GREASE removed from ciphers, extensions and curves)."""
    return ",".join(
        (
            str(ch.legacy_version),
            _dash(_no_grease(ch.cipher_suites)),
            _dash(_no_grease(t for t, _ in ch.extensions)),
            _dash(_no_grease(ch.supported_groups)),
            _dash(ch.ec_point_formats),
        )
    )


def ja3_hash_for(ch: ClientHello) -> str:
    """MD5 hex of :func:`ja3_for`."""
    return hashlib.md5(ja3_for(ch).encode("ascii"), usedforsecurity=False).hexdigest()


def ja3s_for(sh: ServerHello) -> str:
    """The JA3S string of a ServerHello: ``SSLVersion,Cipher,Extensions`` (GREASE removed)."""
    return ",".join(
        (
            str(sh.legacy_version),
            str(sh.cipher_suite),
            _dash(_no_grease(t for t, _ in sh.extensions)),
        )
    )


def ja3s_hash_for(sh: ServerHello) -> str:
    """MD5 hex of :func:`ja3s_for`."""
    return hashlib.md5(ja3s_for(sh).encode("ascii"), usedforsecurity=False).hexdigest()


def _sha256_12(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12]


def _alpn_chars(first: str) -> str:
    if not first:
        return "00"
    head, tail = first[0], first[-1]
    if head.isascii() and head.isalnum() and tail.isascii() and tail.isalnum():
        return head + tail
    return f"{ord(head) & 0xFF:02x}"[0] + f"{ord(tail) & 0xFF:02x}"[-1]


def ja4_parts(ch: ClientHello, transport: str = "t") -> tuple[str, str, str]:
    """The raw (unhashed) JA4 parts: ``(a, sorted ciphers, sorted extensions[_sigalgs])``."""
    if transport not in ("t", "q", "d"):
        raise ValueError(f"transport must be 't', 'q' or 'd', not {transport!r}")
    versions = _no_grease(ch.supported_versions)
    version = max(versions) if versions else ch.legacy_version
    ciphers = _no_grease(ch.cipher_suites)
    ext_types = _no_grease(t for t, _ in ch.extensions)
    has_sni = _EXT_SNI in ext_types
    alpn = _alpn_chars(ch.alpn[0]) if ch.alpn else "00"
    part_a = (
        f"{transport}{_JA4_VERSIONS.get(version, '00')}{'d' if has_sni else 'i'}"
        f"{min(len(ciphers), 99):02d}{min(len(ext_types), 99):02d}{alpn}"
    )
    part_b = ",".join(f"{c:04x}" for c in sorted(ciphers))
    part_c = ",".join(f"{e:04x}" for e in sorted(e for e in ext_types if e not in (_EXT_SNI, _EXT_ALPN)))
    sigalgs = ",".join(f"{s:04x}" for s in ch.signature_algorithms)
    if sigalgs:
        part_c = f"{part_c}_{sigalgs}"
    return part_a, part_b, part_c


def ja4_r_for(ch: ClientHello, transport: str = "t") -> str:
    """JA4_r: the raw, unhashed JA4 (``a_ciphers_extensions_sigalgs``)."""
    return "_".join(ja4_parts(ch, transport))


def ja4_for(ch: ClientHello, transport: str = "t") -> str:
    """The JA4 fingerprint of a ClientHello seen over ``transport`` ("t" TCP, "q" QUIC, "d" DTLS)."""
    part_a, part_b, part_c = ja4_parts(ch, transport)
    hash_b = _sha256_12(part_b) if part_b else "000000000000"
    hash_c = _sha256_12(part_c) if part_c.split("_", 1)[0] else "000000000000"
    return f"{part_a}_{hash_b}_{hash_c}"
