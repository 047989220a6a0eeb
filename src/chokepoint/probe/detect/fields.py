"""Header-field arithmetic shared by the finders: initial TTLs, flag text, the TSG generator relation, 16-bit
field descriptions, sequence-number order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from chokepoint.dissect.errors import DissectError
from chokepoint.dissect.http import parse_request
from chokepoint.dissect.tls import parse_client_hello_records
from chokepoint.packet.record import tcp_flags_text

KINDS = ("rst", "dns", "blockpage", "icmp")
#: Initial TTLs of common stacks (Linux/macOS 64, Windows 128, network gear 255).
INITIAL_TTLS = (64, 128, 255)
#: Hop allowance below a preset's TTL when the impersonated endpoint's distance is unknown.
MAX_HOPS = 32
#: A TTL at least this far from the impersonated endpoint's is an injection signal.
TTL_JUMP = 2
#: Seconds within which an RST toward the other end is taken as the pair of an injected one.
PAIR_WINDOW = 1.0

_MOD = 1 << 32


def initial_ttl(ttl: int) -> int:
    """The smallest common initial TTL (64, 128, 255) at or above ``ttl``."""
    for start in INITIAL_TTLS:
        if ttl <= start:
            return start
    return 255


def flag_text(flags: int) -> str:
    """TCP flags as the censor's events print them (RST+ACK is ``RA``, FIN+PSH+ACK ``FPA``, ``R+AE+RE``)."""
    return tcp_flags_text(flags)


def tsg_relation(
    ip_id: int,
    window: int,
    sip: bytes,
    dip: bytes,
    seed_key: int = 13,
    seed_max: int = 65535,
    val_range: tuple[int, int] | None = None,
) -> bool:
    """Whether (IP ID, window) came from the TSG signature-mode generator with key ``seed_key``:
    ``val = window - (dip mod k)`` must lie in ``val_range`` (default [1, M // k]) and
    ``ip_id == (M - val*k + (sip mod window)) mod 2**16`` (geedge.report fingerprints; the generator in
    :class:`chokepoint.enforce.craft.Stamper`)."""
    if seed_key < 1 or window <= 0:
        return False
    lo, hi = val_range or (1, seed_max // seed_key)
    val = window - int.from_bytes(dip, "big") % seed_key
    if not lo <= val <= hi:
        return False
    return ip_id == (seed_max - val * seed_key + int.from_bytes(sip, "big") % window) & 0xFFFF


def recover_seed_keys(
    samples: Iterable[tuple[int, int, bytes, bytes]], seed_max: int = 65535, keys: Iterable[int] = range(1, 4097)
) -> list[int]:
    """Every key k in ``keys`` for which all (ip_id, window, sip, dip) ``samples`` satisfy :func:`tsg_relation`.
    Two independent samples leave a wrong k about a 2**-32 chance per key."""
    unique = list(dict.fromkeys(samples))
    if not unique:
        return []
    return [k for k in keys if all(tsg_relation(i, w, s, d, k, seed_max) for i, w, s, d in unique)]


def _tsg_order(
    ip_id: int, window: int, client: bytes, server: bytes, key: int, top: int, val_range: tuple[int, int]
) -> str:
    """Which address order satisfies the TSG relation ("" if none)."""
    if tsg_relation(ip_id, window, client, server, key, top, val_range):
        return "sip = client, dip = server"
    if tsg_relation(ip_id, window, server, client, key, top, val_range):
        return "sip = server, dip = client"
    return ""


def _hex16(value: int) -> str:
    return f"{value} (0x{value:04x})"


def _describe16(values: Sequence[int]) -> str:
    """A 16-bit field over several packets: one value, an incrementing counter, or a range."""
    if not values:
        return "n/a"
    distinct = list(dict.fromkeys(values))
    if len(distinct) == 1:
        return ("fixed " if len(values) > 1 else "") + _hex16(distinct[0])
    steps = {(b - a) & 0xFFFF for a, b in zip(distinct, distinct[1:])}
    if len(steps) == 1 and 0 < next(iter(steps)) < 256:
        return f"increment by {next(iter(steps))} from {_hex16(distinct[0])}"
    return f"range 0x{min(distinct):04x}-0x{max(distinct):04x} ({len(distinct)} values)"


def _ttl_text(ttl: int) -> str:
    start = initial_ttl(ttl)
    return f"{ttl} (initial {start}, {start - ttl} hops)"


def _describe_payload(payload: bytes) -> str:
    """What a trigger carried: a TLS ClientHello's SNI, an HTTP request's host and path, or its size."""
    try:
        hello = parse_client_hello_records(payload)
        return f"TLS ClientHello, SNI {hello.sni}" if hello.sni else "TLS ClientHello without SNI"
    except DissectError:
        pass
    try:
        request = parse_request(payload, partial=True)
        return f"HTTP {request.method} {request.host or ''}{request.path}"
    except DissectError:
        pass
    return f"{len(payload)} bytes"


def _after(a: int, b: int) -> bool:
    """Sequence number ``b`` is after ``a`` (RFC 9293 §3.4 modular comparison)."""
    return 0 < (b - a) % _MOD < _MOD // 2


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"
