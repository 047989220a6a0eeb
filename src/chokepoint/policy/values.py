"""Checks and canonical forms of the values a rule or list may hold (names, CIDRs, hex, regexes).

Each function returns the canonical value or raises ``ValueError`` with a message the loader reports
at the value's ``file:line:col``.
"""

from __future__ import annotations

import ipaddress
import re

_LABELS = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_HEX_SPACE = re.compile(r"\s+")


def domain(text: str) -> str:
    """A DNS name in the form MatchInput uses: lowercase, no final dot (RFC 4343: case-insensitive).

    Labels of letters, digits, '-' and '_' (real blocklists contain '_'); internationalised names must be
    written in their ASCII (punycode, ``xn--``) form, as they appear on the wire (RFC 5890).
    """
    name = text.strip().lower()
    if name.endswith(".") and len(name) > 1:
        name = name[:-1]
    if not _LABELS.fullmatch(name):
        if not name.isascii():
            raise ValueError(f"bad domain name {text!r}: write internationalised names as punycode (xn--...)")
        raise ValueError(f"bad domain name {text!r}: expected labels of a-z, 0-9, '-', '_' joined by '.'")
    if any(len(label) > 63 for label in name.split(".")) or len(name) > 253:
        raise ValueError(f"bad domain name {text!r}: a label exceeds 63 or the name 253 characters (RFC 1035)")
    return name


def cidr(text: str) -> str:
    """An IPv4 or IPv6 network (a bare address is a /32 or /128), canonical text; host bits must be 0."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=True))
    except ValueError as exc:
        raise ValueError(f"bad CIDR {text!r}: {exc}") from None


def port_range(item: int | str) -> tuple[int, int]:
    """A port (0-65535) or an inclusive range ``"lo-hi"``."""
    if isinstance(item, bool):
        raise ValueError(f"bad port {item!r}")
    if isinstance(item, int):
        lo = hi = item
    else:
        parts = item.split("-")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"bad port range {item!r}: expected 'lo-hi'")
        lo, hi = int(parts[0]), int(parts[1])
    if not (0 <= lo <= hi <= 65535):
        raise ValueError(f"bad port range {item!r}: need 0 <= lo <= hi <= 65535")
    return lo, hi


_ENCAP = re.compile(
    r"(?:vlan|qinq):(?P<vid>\d{1,4})|mpls:(?P<label>\d{1,7})|pppoe:0x[0-9a-f]{4}|gre(?::(?P<key>\d{1,10}))?"
    r"|vxlan:(?P<vni>\d{1,8})|gtpu:0x[0-9a-f]{8}|[46]in[46]|ppp"
)


def encap_label(text: str) -> str:
    """One encapsulation label as the decoder writes it (packet/decap.py): ``vlan:100``, ``qinq:30``,
    ``mpls:16``, ``pppoe:0x1a2b``, ``gre``/``gre:7``, ``vxlan:5001``, ``gtpu:0xdeadbeef``, ``6in4``, ``ppp``;
    hex in lowercase, numbers within their fields' ranges."""
    label = text.strip().lower()
    match = _ENCAP.fullmatch(label)
    if match is None:
        raise ValueError(
            f"bad encapsulation {text!r}: expected vlan:ID, qinq:ID, mpls:LABEL, pppoe:0xSSSS, gre[:KEY], vxlan:VNI, "
            "gtpu:0xTTTTTTTT, 4in4/6in4/4in6/6in6 or ppp"
        )
    limits = {"vid": 4095, "label": (1 << 20) - 1, "key": (1 << 32) - 1, "vni": (1 << 24) - 1}
    for group, top in limits.items():
        number = match.group(group)
        if number is not None and int(number) > top:
            raise ValueError(f"bad encapsulation {text!r}: {group} {int(number)} exceeds {top}")
        if number is not None:
            label = label.replace(number, str(int(number)), 1)  # no leading zeros: the decoder writes none
    return label


def hex_bytes(text: str) -> str:
    """Hex digits (whitespace between bytes allowed), canonical lowercase without spaces."""
    compact = _HEX_SPACE.sub("", text).lower()
    try:
        data = bytes.fromhex(compact)
    except ValueError:
        raise ValueError(f"bad hex {text!r}: expected pairs of hex digits") from None
    if not data:
        raise ValueError("empty hex")
    return data.hex()


def text_regex(pattern: str) -> str:
    """A regex over text (searched, not anchored; hyperscan/PCRE syntax, checked with Python's ``re``)."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regex {pattern!r}: {exc}") from None
    return pattern


def bytes_regex(pattern: str) -> str:
    """A regex over bytes: write bytes as ``\\xHH``; checked with Python's ``re`` on bytes."""
    try:
        re.compile(pattern.encode("utf-8"))
    except re.error as exc:
        raise ValueError(f"bad regex {pattern!r}: {exc}") from None
    return pattern


def literal_bytes(text: str) -> bytes:
    """How a text keyword is scanned: its UTF-8 bytes (lone surrogates kept, never an error)."""
    return text.encode("utf-8", "surrogatepass")


def escape_literal(data: bytes) -> bytes:
    """A hyperscan expression matching ``data`` literally (every non-alphanumeric byte as ``\\xHH``)."""
    out = bytearray()
    for b in data:
        if 48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122:
            out.append(b)
        else:
            out += b"\\x%02x" % b
    return bytes(out)
