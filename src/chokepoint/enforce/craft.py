"""Crafting the packets a censor injects: TCP resets, forged DNS answers, HTTP blockpages, ICMP unreachables.

Pure: bytes in, bytes out; nothing is sent. Every function returns whole IP packets (IPv4 or IPv6, chosen by the
address length) with valid checksums, built with :mod:`chokepoint.packet.build`. Header values (TTL, IP ID, DF,
window) come from a :class:`Stamp`, produced per packet by the censor's :class:`Stamper` from an
:class:`~chokepoint.enforce.personality.IpStyle`; the stamper holds the generator state (incrementing counters)
and an injected ``random.Random``, so a seeded censor is reproducible.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

from chokepoint.dissect.dns import DnsMessage, RType, build_response
from chokepoint.enforce.personality import BlockpageStyle, DnsStyle, Field16, IpStyle
from chokepoint.packet import build
from chokepoint.packet.record import ACK, FIN, ICMP, ICMPV6, PSH, RST, TCP, UDP

__all__ = [
    "Stamp",
    "Stamper",
    "Endpoints",
    "ip_packet",
    "tcp_segment",
    "tcp_reset",
    "udp_datagram",
    "pick_answers",
    "dns_payload",
    "dns_answer",
    "http_response",
    "http_blockpage",
    "icmp_error_allowed",
    "icmp_unreachable",
]

#: RFC 4443 §2.4 (c): an ICMPv6 error must not exceed the minimum IPv6 MTU.
IPV6_MIN_MTU = 1280


@dataclass(frozen=True, slots=True)
class Stamp:
    """Header values for one injected packet (``ip_id`` and ``df`` unused for IPv6, ``window`` for non-TCP)."""

    ttl: int = 64
    ip_id: int = 0
    df: bool = True
    window: int = 0


class Stamper:
    """The censor's header generators: one per censor process, fed a seeded ``random.Random``.

    ``increment`` generators keep one counter per distinct :class:`Field16`; ``tsg`` draws ``val`` once per
    packet and derives IP ID and window from it (``win = val + (dip mod k)``, ``ipid = M - val*k + (sip mod win)``,
    geedge.report; ``sip``/``dip`` are the addresses of the stream being terminated as integers).
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._counters: dict[Field16, int] = {}

    def stamp(self, style: IpStyle, *, trigger_ttl: int = 64, sip: bytes = b"", dip: bytes = b"") -> Stamp:
        ttl = style.ttl
        if ttl.kind == "fixed":
            ttl_value = ttl.lo
        elif ttl.kind == "range":
            ttl_value = self.rng.randint(ttl.lo, ttl.hi)
        else:
            ttl_value = min(max(trigger_ttl, 1), 255)
        tsg = None
        if style.ip_id.kind == "tsg" or style.window.kind == "tsg":
            k, top = style.tsg.seed_key, style.tsg.seed_max
            val = self.rng.randint(*style.tsg.val_range)
            win = val + int.from_bytes(dip, "big") % k
            tsg = ((top - val * k + int.from_bytes(sip, "big") % win) & 0xFFFF, win & 0xFFFF)
        return Stamp(ttl_value, self._field(style.ip_id, tsg, 0), style.df, self._field(style.window, tsg, 1))

    def _field(self, spec: Field16, tsg: tuple[int, int] | None, which: int) -> int:
        if spec.kind == "fixed":
            return spec.lo
        if spec.kind == "random":
            return self.rng.randint(spec.lo, spec.hi)
        if spec.kind == "increment":
            n = self._counters.get(spec, 0)
            self._counters[spec] = n + 1
            return (spec.lo + n * spec.step) & 0xFFFF
        assert tsg is not None
        return tsg[which]


class Endpoints(Protocol):
    """Anything with packed ``src``/``dst`` and ports, e.g. a ``chokepoint.packet.record.Packet``."""

    src: bytes
    dst: bytes
    sport: int
    dport: int


StampSource = Stamp | Callable[[], Stamp]


def _next(stamp: StampSource) -> Stamp:
    return stamp if isinstance(stamp, Stamp) else stamp()


# ------------------------------------------------------------------------------------------------- IP/TCP


def ip_packet(src: str | bytes, dst: str | bytes, proto: int, payload: bytes, stamp: Stamp) -> bytes:
    """An IPv4 or IPv6 packet (by address length) around an already checksummed transport payload."""
    if len(build.address(src)) == 16:
        return build.ipv6(src, dst, proto, payload, hop_limit=stamp.ttl)
    return build.ipv4(src, dst, proto, payload, ttl=stamp.ttl, ip_id=stamp.ip_id, df=stamp.df)


def _same_family(src: str | bytes, dst: str | bytes) -> None:
    if len(build.address(src)) != len(build.address(dst)):
        raise ValueError("source and destination are of different IP versions")


def tcp_segment(
    src: str | bytes,
    dst: str | bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    stamp: Stamp,
    payload: bytes = b"",
) -> bytes:
    """One TCP segment in an IP packet; ``seq``/``ack`` are taken modulo 2**32."""
    _same_family(src, dst)
    segment = build.tcp(src, dst, sport, dport, seq, ack, flags, payload, window=stamp.window)
    return ip_packet(src, dst, TCP, segment, stamp)


def tcp_reset(
    src: str | bytes,
    dst: str | bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    *,
    with_ack: bool,
    stamp: Stamp,
    payload: bytes = b"",
    extra_flags: int = 0,
) -> bytes:
    """An RST (``with_ack`` False: the ACK field is sent as 0) or RST+ACK segment. A payload is allowed
    (RFC 9293 §3.5.3 lets an RST carry diagnostic data; the Henan firewall sends 10 bytes). ``extra_flags``:
    AE/reserved bits (0x100-0x800) set as well (Pakistan's RST+AE+RE, geedge.report)."""
    if extra_flags & ~0xF00:
        raise ValueError(f"extra_flags 0x{extra_flags:x} is not within the AE/reserved bits 0xf00")
    flags = (RST | ACK if with_ack else RST) | extra_flags
    return tcp_segment(src, dst, sport, dport, seq, ack if with_ack else 0, flags, stamp, payload)


def udp_datagram(src: str | bytes, dst: str | bytes, sport: int, dport: int, payload: bytes, stamp: Stamp) -> bytes:
    _same_family(src, dst)
    return ip_packet(src, dst, UDP, build.udp(src, dst, sport, dport, payload), stamp)


# ---------------------------------------------------------------------------------------------------- DNS


def pick_answers(pool: Sequence[str], qtype: int | None, rng: random.Random, count: int = 1) -> tuple[str, ...]:
    """Up to ``count`` distinct addresses of the query's family from ``pool`` (A: IPv4, AAAA: IPv6; none for
    any other type), in the order the censor's RNG draws them. Raises ``ValueError`` for a non-address."""
    unique = dict.fromkeys(ipaddress.ip_address(a) for a in pool)
    if qtype == RType.A:
        family = [str(a) for a in unique if a.version == 4]
    elif qtype == RType.AAAA:
        family = [a.compressed for a in unique if a.version == 6]
    else:
        return ()
    return tuple(rng.sample(family, min(count, len(family))))


def dns_payload(message: DnsMessage, style: DnsStyle, answers: Sequence[str]) -> bytes:
    """The forged DNS message answering ``message`` (its id and questions echoed): ``style.flags`` (or
    resolver-like ones), ``answers`` with ``style.answer_ttl``, compression as ``style.compression``, and the
    query's OPT record copied when ``style.copy_query_edns``. Raises ``ValueError`` for a message without a
    question."""
    additional = ()
    if style.copy_query_edns:
        additional = tuple(r for r in message.additional if r.rtype == RType.OPT)[:1]
    return build_response(
        message, answers, ttl=style.answer_ttl, flags=style.flags, compress=style.compression, additional=additional
    )


def dns_answer(
    query: Endpoints, message: DnsMessage, style: DnsStyle, *, answers: Sequence[str], stamp: Stamp
) -> bytes:
    """A UDP datagram from the query's destination (the resolver's address and port) back to its source,
    carrying :func:`dns_payload`."""
    return udp_datagram(query.dst, query.src, query.dport, query.sport, dns_payload(message, style, answers), stamp)


# --------------------------------------------------------------------------------------------------- HTTP


def http_response(style: BlockpageStyle) -> bytes:
    """The blockpage as an HTTP/1.1 message (RFC 9112): status line, the style's headers, Location for a
    redirect, Content-Length, then the body."""
    try:
        phrase = HTTPStatus(style.status).phrase
    except ValueError:
        phrase = "Blocked"
    lines = [f"HTTP/1.1 {style.status} {phrase}"]
    lines += [f"{name}: {value}" for name, value in style.headers]
    if style.location:
        lines.append(f"Location: {style.location}")
    lines.append(f"Content-Length: {len(style.body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return head + style.body


def http_blockpage(
    src: str | bytes,
    dst: str | bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    style: BlockpageStyle,
    stamp: StampSource,
) -> tuple[bytes, ...]:
    """The blockpage as server-to-client segments starting at ``seq`` (the client's RCV.NXT) and acknowledging
    ``ack``: ACK on every segment, PSH on the last, FIN on it too when ``style.close`` is ``fin``, else a
    separate RST+ACK after the data. ``stamp`` may be a callable giving fresh header values per segment."""
    response = http_response(style)
    chunks = [response[i : i + style.mss] for i in range(0, len(response), style.mss)]
    out = []
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        flags = ACK | (PSH if last else 0) | (FIN if last and style.close == "fin" else 0)
        out.append(tcp_segment(src, dst, sport, dport, seq + i * style.mss, ack, flags, _next(stamp), chunk))
    if style.close == "rst":
        out.append(tcp_reset(src, dst, sport, dport, seq + len(response), ack, with_ack=True, stamp=_next(stamp)))
    return tuple(out)


# --------------------------------------------------------------------------------------------------- ICMP

_ICMP4_ERRORS = frozenset({3, 4, 5, 11, 12})


def icmp_error_allowed(trigger: bytes) -> bool:
    """Whether an ICMP error may be sent about this IP packet (RFC 1812 §4.3.2.7, RFC 4443 §2.4 (e)): not about
    an ICMP error, not about a non-initial IPv4 fragment. False for bytes that are not an IP header."""
    if len(trigger) < 20:
        return False
    version = trigger[0] >> 4
    if version == 4:
        ihl = (trigger[0] & 0x0F) * 4
        if ihl < 20 or len(trigger) < ihl:
            return False
        if struct.unpack_from("!H", trigger, 6)[0] & 0x1FFF:
            return False
        if trigger[9] == ICMP:
            return len(trigger) > ihl and trigger[ihl] not in _ICMP4_ERRORS
        return True
    if version == 6 and len(trigger) >= 40:
        if trigger[6] == ICMPV6:
            return len(trigger) > 40 and trigger[40] >= 128
        return True
    return False


def icmp_unreachable(
    trigger: bytes, *, code: int, stamp: Stamp, code6: int = 1, source: str | bytes | None = None
) -> bytes:
    """Destination unreachable about ``trigger`` (a whole IP packet), sent back to its source from ``source``
    (default: the trigger's destination). IPv4: type 3 ``code``, quoting the IP header and the first 8 data bytes
    (RFC 792). IPv6: type 1 ``code6``, quoting as much of the trigger as fits in 1280 bytes (RFC 4443 §2.4 (c),
    §3.1). Raises ``ValueError`` when ``trigger`` is not an IP packet."""
    version = trigger[0] >> 4 if trigger else 0
    if version == 4:
        ihl = (trigger[0] & 0x0F) * 4
        if ihl < 20 or len(trigger) < ihl:
            raise ValueError("the trigger is not an IPv4 packet (header too short)")
        src = build.address(source) if source is not None else trigger[16:20]
        if len(src) != 4:
            raise ValueError("an ICMP error about an IPv4 packet needs an IPv4 source")
        message = build.icmp(3, code, b"\0\0\0\0", trigger[: ihl + 8])
        return ip_packet(src, trigger[12:16], ICMP, message, stamp)
    if version == 6:
        if len(trigger) < 40:
            raise ValueError("the trigger is not an IPv6 packet (header too short)")
        src = build.address(source) if source is not None else trigger[24:40]
        if len(src) != 16:
            raise ValueError("an ICMPv6 error about an IPv6 packet needs an IPv6 source")
        dst = trigger[8:24]
        quote = trigger[: IPV6_MIN_MTU - 40 - 8]
        message = build.icmp(1, code6, b"\0\0\0\0", quote, src=src, dst=dst)
        return ip_packet(src, dst, ICMPV6, message, stamp)
    raise ValueError(f"the trigger is not an IP packet (version {version})")
