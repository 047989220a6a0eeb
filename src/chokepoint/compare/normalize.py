"""Normal forms shared by both sides of a comparison: flow keys, host names, QUIC versions, SSH banners.

Two tools print the same fact differently (``IPv6-ICMP`` vs ``ICMPV6``, ``V-1`` vs ``v1``, ``Host:
a.example:8080`` vs ``a.example``); everything is brought to one form here before it is compared.
"""

from __future__ import annotations

import ipaddress

FlowKey = tuple[str, tuple[str, int], tuple[str, int]]
"""(L4 name, lower endpoint, higher endpoint): the same for both directions of a flow."""

#: IANA protocol numbers of the transports either tool may print as a number.
_IP_PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 51: "AH", 58: "ICMPV6", 132: "SCTP"}
_L4_ALIASES = {"IPV6-ICMP": "ICMPV6", "ICMP6": "ICMPV6"}

#: QUIC versions with a name instead of a number (RFC 9000, RFC 9369, mvfst, Google QUIC).
_QUIC_NAMED = {
    "V-1": 0x00000001,
    "V1": 0x00000001,
    "V-2": 0x6B3343CF,
    "V2": 0x6B3343CF,
    "MVFST-22": 0xFACEB001,
    "MVFST-27": 0xFACEB002,
    "MVFST-EXP": 0xFACEB00E,
}


def l4_name(value: str | int) -> str:
    """Upper-case transport name; numbers become names (``17`` -> ``UDP``), ``IPv6-ICMP`` -> ``ICMPV6``."""
    text = str(value).strip().upper()
    if _decimal(text):
        return _IP_PROTO_NAMES.get(int(text), text)
    return _L4_ALIASES.get(text, text)


def ip_text(value: str) -> str:
    """Canonical text of an address (``0:0::1`` and ``[::1]`` -> ``::1``). Raises ``ValueError``/``TypeError``."""
    if not isinstance(value, str):
        raise TypeError(f"an address must be text, not {type(value).__name__}")
    return ipaddress.ip_address(value.strip().strip("[]")).compressed


def flow_key(l4: str | int, ip_a: str, port_a: int | None, ip_b: str, port_b: int | None) -> FlowKey:
    """Direction-free key; a missing port (ICMP, ESP) counts as 0, as nDPI prints it."""
    a = (ip_text(ip_a), int(port_a or 0))
    b = (ip_text(ip_b), int(port_b or 0))
    low, high = sorted((a, b))
    return (l4_name(l4), low, high)


def format_key(key: FlowKey) -> str:
    """``TCP 10.0.0.1:5 <-> [::1]:443``, the way nDPI writes a flow."""
    l4, a, b = key
    return f"{l4} {_endpoint(a)} <-> {_endpoint(b)}"


def _endpoint(end: tuple[str, int]) -> str:
    ip, port = end
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def host_name(value: object) -> str | None:
    """Lower case, no surrounding space, no trailing dot, no ``:port``; ``None`` when nothing is left."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if text.startswith("["):  # "[2001:db8::1]:443" (RFC 3986 IP-literal)
        end = text.find("]")
        text = text[1:end] if end > 0 else text
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if _decimal(port) or not port:
            text = host
    text = text.rstrip(".")
    return text or None


def ssh_banner(value: object) -> str | None:
    """``SSH-protoversion-softwareversion`` without the optional comments (RFC 4253 section 4.2)."""
    if not isinstance(value, str):
        return None
    text = value.strip("\r\n ").split(" ", 1)[0]
    return text or None


def quic_version_number(value: object) -> int | None:
    """The 32-bit QUIC version from any usual spelling; ``None`` when it names no single version.

    Accepts integers, ``0x...`` hex, decimal text, nDPI's names (``V-1``, ``Draft-29``, ``MVFST-27``,
    ``Q046``, ``T050``, ``Unknown (FACEB003)``) and the lower-case forms (``v1``, ``draft-29``).
    Google QUIC versions are their four ASCII characters read big-endian.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= 0xFFFFFFFF else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    upper = text.upper()
    if upper in _QUIC_NAMED:
        return _QUIC_NAMED[upper]
    if upper.startswith("DRAFT-") and _decimal(upper[6:]) and int(upper[6:]) <= 0xFF:
        return 0xFF000000 | int(upper[6:])
    if upper.startswith("UNKNOWN (") and upper.endswith(")"):
        text = "0x" + text[9:-1]
        upper = text.upper()
    if upper.startswith("0X"):
        try:
            number = int(text, 16)
        except ValueError:
            return None
        return number if number <= 0xFFFFFFFF else None
    if _decimal(text):
        number = int(text)
        return number if number <= 0xFFFFFFFF else None
    if len(text) == 4 and text[0] in "QT" and _decimal(text[1:]):
        return int.from_bytes(text.encode("ascii"), "big")
    return None


def _decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()
