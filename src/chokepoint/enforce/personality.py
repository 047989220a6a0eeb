"""Personalities: how a censor acts on the wire once a rule has decided (the injector's fingerprint).

A rule says *what* (``reset``, ``dns-forge``, ...); the profile's ``personality:`` section says *how*: RST flags,
count and targets, the TTL / IP ID / DF / window of injected packets, the forged DNS answer's flags and TTL,
the blockpage, throttling rate, ICMP code and residual blocking. Rule params override it per verdict
(:func:`effective`). Everything here is a frozen value; the generators' state lives in
:class:`chokepoint.enforce.craft.Stamper`.

Documented injector fingerprints the presets encode (sources in ``PRESET_CITES``):

* GFW types I/II/III and the Henan firewall: Wu, Zohaib, Durumeric, Houmansadr, Wustrow, "A Wall Behind A Wall:
  Emerging Regional Censorship in China", IEEE S&P 2025, table ``fingerprint``.
* The TSG (Geedge) injector: geedge.report "Remote Fingerprints & Deployments" (USENIX Security 2026 companion):
  1-3 RST or RST+ACK (default one RST+ACK), DF hard-coded, IP ID/window from a seeded generator with
  ``seed_key`` k = 13, ``seed_max_val`` M = 65535, reduced to ``win = val + (dip mod k)``,
  ``ipid = M - val*k + (sip mod win)``; TTL 48-247; DNS answers with flags 0x8180 and a compressed answer name.
* Sandvine PacketLogic: IP ID 13330 and window 32120 on every injected packet, the 307 redirect sent with FIN+ACK
  (Citizen Lab "Bad Traffic" pcaps, see measurement-anchors.md).

UNVERIFIED in the TSG generator: how ``val`` is drawn (the leak analysis gives only the reduced formula). It is a
labelled knob, ``tsg: {val: [lo, hi]}``, uniform over [1, M // k] by default: the widest range that keeps
``ipid`` within 16 bits, consistent with GFW type II's observed IP IDs 0x00A3-0xFE5F. Also unverified: which
addresses ``sip``/``dip`` are (taken here as the flow's client and server) and how TTL derives from ``val``
(drawn independently from its range here).
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from chokepoint.packet.record import ACK, AE, RST, tcp_flags_text
from chokepoint.policy.errors import PolicyError, SourcePos

__all__ = [
    "Field16",
    "Ttl",
    "TsgSeed",
    "IpStyle",
    "ResetStyle",
    "DnsStyle",
    "BlockpageStyle",
    "ThrottleStyle",
    "DelayStyle",
    "IcmpStyle",
    "ResidualStyle",
    "ParallelInjector",
    "Personality",
    "DEFAULT",
    "PRESETS",
    "PRESET_CITES",
    "RESIDUAL_SCOPES",
    "RE_BIT",
    "fits_fragments",
    "parse_personality",
    "preset",
    "effective",
]

Path = tuple[str | int, ...]
RESIDUAL_SCOPES = ("3-tuple", "4-tuple", "server", "client-server")
#: The reserved bit set for ``+RE``: geedge.report names the flag "RE" without saying which of the three
#: reserved bits (0x200, 0x400, 0x800) it saw; the lowest is used (UNVERIFIED, stated in the pakistan profile).
RE_BIT = 0x200
_EXTRA_FLAGS = {"AE": AE, "RE": RE_BIT}


# ------------------------------------------------------------------------------------------- header values


@dataclass(frozen=True, slots=True)
class Field16:
    """A 16-bit header field generator (IP ID or TCP window).

    ``fixed``: always ``lo``; ``random``: uniform in [lo, hi]; ``increment``: ``lo``, ``lo + step``, ... modulo
    2**16 (one counter per distinct generator in a :class:`~chokepoint.enforce.craft.Stamper`); ``tsg``: the
    TSG signature-mode generator (see :class:`TsgSeed`).
    """

    kind: Literal["fixed", "random", "increment", "tsg"]
    lo: int = 0
    hi: int = 0
    step: int = 1


@dataclass(frozen=True, slots=True)
class Ttl:
    """IP TTL / hop limit: ``fixed`` (``lo``), ``range`` (uniform in [lo, hi]) or ``mirror`` (the triggering
    packet's TTL as the censor saw it; one GFW DNS injector does this, "Triplet Censors", FOCI 2020)."""

    kind: Literal["fixed", "range", "mirror"]
    lo: int = 64
    hi: int = 64


@dataclass(frozen=True, slots=True)
class TsgSeed:
    """Parameters of the TSG signature-mode generator: ``win = val + (dip mod k)``, ``ipid = M - val*k +
    (sip mod win)`` (geedge.report). ``val`` uniform in [val_lo, val_hi] is an UNVERIFIED modelling choice;
    ``val_hi`` 0 means ``seed_max // seed_key``."""

    seed_key: int = 13
    seed_max: int = 65535
    val_lo: int = 1
    val_hi: int = 0

    @property
    def val_range(self) -> tuple[int, int]:
        return self.val_lo, self.val_hi or self.seed_max // self.seed_key


@dataclass(frozen=True, slots=True)
class IpStyle:
    """How the IP (and TCP window) header of an injected packet is filled. IPv6 has no DF or IP ID."""

    ttl: Ttl = Ttl("fixed", 64, 64)
    ip_id: Field16 = Field16("random", 0, 0xFFFF)
    df: bool = True
    window: Field16 = Field16("fixed", 0)
    tsg: TsgSeed = TsgSeed()


# ---------------------------------------------------------------------------------------------- sections


@dataclass(frozen=True, slots=True)
class ResetStyle:
    """TCP RST injection.

    ``seq``: ``in-window`` puts each RST exactly at the receiver's RCV.NXT, which is what a stack that follows
    RFC 5961 §3.2 requires to reset without a challenge ACK (accounting for whether the trigger was dropped);
    ``ack-based`` computes the numbers from the trigger as if it had been delivered (RFC 9293 §3.10.7.1 reply
    style: the RST to the trigger's sender takes SEG.ACK; to its receiver SEG.SEQ + SEG.LEN), what an on-path
    injector that cannot drop does: with an inline drop of a data-carrying trigger the RST to the receiver then
    lands in the window but not at RCV.NXT and draws a challenge ACK instead of a reset.
    ``identical``: the ``count`` copies to one target are the same packet (GFW type II, IEEE S&P 2025);
    otherwise each copy gets fresh header values.
    ``extra_flags``: bits 8-11 of the TCP flags word set on every RST (written ``R+AE+RE``: AE = 0x100,
    RE = :data:`RE_BIT`); Pakistan's injector sets both (geedge.report fingerprints). A stack that does not
    negotiate AccECN ignores them, so the reset still works.
    """

    flags: Literal["R", "RA"] = "RA"
    extra_flags: int = 0
    count: int = 1
    targets: Literal["client", "server", "both"] = "both"
    seq: Literal["in-window", "ack-based"] = "in-window"
    payload: bytes = b""
    identical: bool = True
    ip: IpStyle = IpStyle()

    @property
    def flags_text(self) -> str:
        """The flags as written in profiles and printed in events: ``R``, ``RA``, ``R+AE+RE``..."""
        return tcp_flags_text(RST | (ACK if self.flags == "RA" else 0) | self.extra_flags)


@dataclass(frozen=True, slots=True)
class DnsStyle:
    """Forged DNS answers.

    ``flags`` None answers like a recursive resolver (QR, the query's opcode and RD, RA, NOERROR); a fixed value
    is an injector fingerprint (TSG and GFW Injector 2: 0x8180; Iran 0x81a0; geedge.report). ``answers`` is the
    pool: A queries get IPv4 entries, AAAA queries IPv6 entries, ``answers_per_response`` of them drawn by the
    censor's RNG; any other query type, or an empty pool for the type, gets an empty NOERROR answer.
    ``compression`` points the answer name at the question (RFC 1035 §4.1.4). ``copy_query_edns`` copies the
    query's OPT record (RFC 6891) into the answer. ``mode``: ``race`` forwards the query and the forged answer
    just arrives first; ``replace`` drops the query (inline only).
    """

    flags: int | None = None
    answer_ttl: int = 60
    answers: tuple[str, ...] = ()
    answers_per_response: int = 1
    compression: bool = True
    copy_query_edns: bool = False
    mode: Literal["race", "replace"] = "replace"
    ip: IpStyle = IpStyle()


_DEFAULT_BODY = (
    b"<!DOCTYPE html>\n<html><head><title>Blocked</title></head>\n"
    b"<body><h1>Access denied</h1><p>This site is blocked (chokepoint lab).</p></body></html>\n"
)


@dataclass(frozen=True, slots=True)
class BlockpageStyle:
    """An HTTP response injected in place of the server's: status, extra headers, body (or ``location`` for a
    redirect), then the connection closed to the client with ``fin`` (FIN on the last data segment, as the
    PacketLogic 307 injection does) or ``rst`` (an RST+ACK after the data). ``reset_server`` also resets the
    server's side. The response is cut into segments of at most ``mss`` bytes. Content-Length is computed."""

    status: int = 403
    headers: tuple[tuple[str, str], ...] = (
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("Connection", "close"),
    )
    body: bytes = _DEFAULT_BODY
    location: str = ""
    close: Literal["fin", "rst"] = "fin"
    reset_server: bool = True
    mss: int = 1200
    ip: IpStyle = IpStyle(window=Field16("fixed", 64240))


@dataclass(frozen=True, slots=True)
class ThrottleStyle:
    """Per-flow rate limit; the default 140 kbit/s is the middle of Russia's 130-150 kbit/s Twitter throttling
    (Xue et al., "Throttling Twitter", IMC 2021). ``burst_bytes`` is the token-bucket depth."""

    rate_kbps: float = 140.0
    burst_bytes: int = 15000


@dataclass(frozen=True, slots=True)
class DelayStyle:
    ms: float = 100.0
    jitter_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class IcmpStyle:
    """Destination unreachable sent to the trigger's sender: ICMP type 3 with ``code`` (default 13,
    "communication administratively prohibited", the code RFC 1812 §5.2.7.1 prescribes for filtering; 10 is
    "host administratively prohibited", RFC 1122 §3.2.2.1), or ICMPv6 type 1 with ``code6`` (default 1,
    "administratively prohibited", RFC 4443 §3.1). ``source``: ``destination`` (spoofs the unreachable host, like
    a host firewall's REJECT) or an IP address (a router's own address)."""

    code: int = 13
    code6: int = 1
    source: str = "destination"
    ip: IpStyle = IpStyle(df=False)


@dataclass(frozen=True, slots=True)
class ResidualStyle:
    """Residual blocking after a blocking verdict: ``scope`` 3-tuple (client IP, server IP, server port),
    4-tuple (+ client port), server (server IP:port) or client-server (IP pair); ``seconds`` 0 = none; ``rearm``
    restarts the timer on every new blocked attempt (Iran's protocol filter, FOCI 2020); ``action`` drop, reset or
    auto (reset for TCP resets and blockpages, drop otherwise)."""

    scope: Literal["3-tuple", "4-tuple", "server", "client-server"] = "3-tuple"
    seconds: float = 0.0
    rearm: bool = False
    action: Literal["drop", "reset", "auto"] = "auto"


@dataclass(frozen=True, slots=True)
class ParallelInjector:
    """Another injector on the same path that acts on the same verdicts on its own, with ``probability`` per
    verdict: on ``reset`` verdicts it sends its own RSTs (``reset``, None if its preset has no reset section)
    after the personality's; on ``dns-forge`` verdicts over UDP its own forged answer (``dns``, None if its
    preset has no dns section; an empty pool takes the personality's). The GFW runs several RST injectors side
    by side (IEEE S&P 2025, table fingerprint: types I, II, III; geedge.report measures each type's response to
    the same probes separately) and three DNS injectors ("Triplet Censors", FOCI 2020; flags per geedge.report)."""

    name: str
    reset: ResetStyle | None
    probability: float = 1.0
    dns: DnsStyle | None = None
    max_fragments: int | None = None


@dataclass(frozen=True, slots=True)
class Personality:
    """How one censor acts. ``drop_trigger``: an inline censor also drops the packet that triggered a reset
    (an on-path one cannot: set it false to emulate one inline). ``parallel``: other injectors that reset the
    same connections (:class:`ParallelInjector`). ``max_fragments``: the injector's own IP reassembly limit,
    when it differs from the engine's: it does not act on a trigger reassembled from more fragments (0: from
    any fragments; None: whatever the engine reassembled). geedge.report measured GFW I >= 500, GFW II 102,
    GFW III and Henan 0, TSG 101. The defaults are :data:`DEFAULT`."""

    name: str = "linux"
    reset: ResetStyle = ResetStyle()
    dns: DnsStyle = DnsStyle()
    blockpage: BlockpageStyle = BlockpageStyle()
    throttle: ThrottleStyle = ThrottleStyle()
    delay: DelayStyle = DelayStyle()
    icmp: IcmpStyle = IcmpStyle()
    residual: ResidualStyle = ResidualStyle()
    drop_trigger: bool = True
    parallel: tuple[ParallelInjector, ...] = ()
    max_fragments: int | None = None

    def acts_on(self, fragments: int) -> bool:
        """Whether this injector sees a trigger reassembled from ``fragments`` IP fragments (1: unfragmented)."""
        return fits_fragments(self.max_fragments, fragments)


def fits_fragments(limit: int | None, fragments: int) -> bool:
    """An injector with reassembly ``limit`` (None: no limit of its own) sees a trigger of ``fragments``."""
    return fragments <= 1 or limit is None or fragments <= limit


DEFAULT = Personality()
"""A neutral, Linux-stack-like personality: TTL 64, random IP ID, DF set, one RST+ACK to both ends at the exact
RCV.NXT with window 0 (what Linux puts in its RSTs), resolver-like DNS answers, a 403 blockpage, ICMP 3/13 without
DF, no residual blocking."""


# ------------------------------------------------------------------------------------------------ presets

PRESETS: Mapping[str, Mapping[str, Any]] = {
    "linux": {},
    "gfw-type-i": {
        "reset": {"flags": "R", "count": 1, "targets": "both", "df": False, "ip_id": 0, "ttl": [55, 118]},
        "residual": {"scope": "3-tuple", "seconds": 180},
        "drop_trigger": False,
    },
    "gfw-type-ii": {
        "max_fragments": 102,
        "reset": {
            "flags": "RA",
            "count": 3,
            "targets": "both",
            "df": True,
            "ip_id": "tsg",
            "window": "tsg",
            "ttl": 255,
            "identical": True,
        },
        "dns": {"flags": 0x8180, "compression": True, "mode": "race"},
        "residual": {"scope": "3-tuple", "seconds": 180},
        "drop_trigger": False,
    },
    "gfw-type-iii": {
        "max_fragments": 0,
        "reset": {
            "flags": "RA",
            "count": 1,
            "targets": "both",
            "df": True,
            "ip_id": "tsg",
            "window": "tsg",
            "ttl": 255,
        },
        "residual": {"scope": "3-tuple", "seconds": 180},
        "drop_trigger": False,
    },
    "henan": {
        "max_fragments": 0,
        "reset": {
            "flags": "RA",
            "count": 1,
            "targets": "client",
            "df": False,
            "ip_id": 1,
            "ttl": 58,
            "payload": "01 02 03 04 05 06 07 08 09 00",
        },
        "drop_trigger": False,
    },
    "tsg": {
        "max_fragments": 101,
        "reset": {
            "flags": "RA",
            "count": 1,
            "targets": "both",
            "df": True,
            "ip_id": "tsg",
            "window": "tsg",
            "ttl": [48, 247],
        },
        "dns": {"flags": 0x8180, "compression": True, "mode": "race"},
    },
    "packetlogic": {
        "ip": {"ip_id": 13330},
        "reset": {"flags": "RA", "window": 32120},
        "blockpage": {"window": 32120, "status": 307, "close": "fin", "location": "http://blocked.invalid/"},
    },
    "belarus-2020": {
        "reset": {"flags": "RA", "window": 502, "ip_id": 0},
        "blockpage": {"window": 32678, "ip_id": 1, "status": 302, "close": "fin", "location": "http://82.209.230.23"},
    },
    "iran": {
        "dns": {
            "flags": 0x81A0,
            "compression": False,
            "answers": ["10.10.34.34", "10.10.34.35", "10.10.34.36", "d0::11"],
        },
        "residual": {"scope": "3-tuple", "seconds": 60, "rearm": True, "action": "drop"},
    },
    "turkmenistan": {
        "dns": {"answers": ["127.0.0.1"], "answer_ttl": 300, "ip_id": 30000, "ttl": 128, "df": False},
        "reset": {
            "flags": "R",
            "count": 1,
            "df": False,
            "ip_id": 30000,
            "ttl": 128,
            "window": 0,
            "seq": "ack-based",
            "targets": "both",
        },
        "residual": {"scope": "4-tuple", "seconds": 30, "action": "reset"},
    },
    "tspu": {"throttle": {"rate_kbps": 140}},
    # The other two GFW DNS injectors (Injector 2 is gfw-type-ii's dns); only their flags and compression were
    # retrieved, so they are DNS-only presets for a personality's ``parallel`` list.
    "gfw-dns-1": {"dns": {"flags": 0x8580, "compression": False, "mode": "race"}},
    "gfw-dns-3": {"dns": {"flags": 0x8400, "compression": False, "mode": "race"}},
}

PRESET_CITES: Mapping[str, str] = {
    "linux": "neutral defaults (this module)",
    "gfw-type-i": "Wu et al., A Wall Behind A Wall, IEEE S&P 2025, table fingerprint: RST x1, DF 0, IP ID 0, "
    "TTL 55-118 at the client, both ends, residual 180 s; geedge.report fingerprints: reassembles "
    ">= 500 IPv4 fragments (no limit of its own here)",
    "gfw-type-ii": "IEEE S&P 2025 (RST+ACK x3 identical, residual 180 s); geedge.report fingerprints: DF, k = 13, "
    "TTL fixed 255 since 2024; DNS Injector 2 = TSG (0x8180, compression); reassembles up to 102 "
    "IPv4 fragments",
    "gfw-type-iii": "IEEE S&P 2025 (RST+ACK x1, residual 180 s; its table says DF 0); geedge.report: DF set, "
    "k = 13, TTL 255 (the newer measurement is used here); reassembles no IPv4 fragments",
    "henan": "IEEE S&P 2025: RST+ACK x1, DF 0, IP ID 0x0001, TTL 58 at the client, 10-byte payload 01..09 00, "
    "client only, no residual; geedge.report: reassembles no IPv4 fragments",
    "tsg": "geedge.report fingerprints (USENIX Security 2026): default one RST+ACK, DF, seeded IPID/window k = 13, "
    "TTL 48-247; DNS 0x8180 with compression; up to 101 IPv4 fragments per datagram",
    "packetlogic": "Citizen Lab Bad Traffic pcaps: IP ID 13330, window 32120, 307 with FIN+ACK "
    "(measurement-anchors.md); TTL not modelled; redirect target is a placeholder",
    "belarus-2020": "Qurium and Human Constanta, Internet blocking in Belarus (2020-09; net4people/bbs#46): Business "
    "Network's HTTPS RST/ACK with window 502, IP ID 0; Beltelecom's HTTP redirect to 82.209.230.23 with window 32678, "
    "IP ID 1 (its status and close not reported: 302 and FIN+ACK assumed)",
    "iran": "geedge.report: Iran's DNS injector flags 0x81a0, no compression; OONI fingerprints_dns.csv "
    "10.10.34.34-36, d0::11; residual 60 s with timer reset (Bock et al., FOCI 2020)",
    "turkmenistan": "Nourin et al., WWW 2023: RSTs, residual 30 s on the 4-tuple; DNS A 127.0.0.1 TTL 300 "
    "(net4people/bbs#80); RST and DNS injector fields (flags R, IP ID 30000, initial TTL 128, "
    "no DF, window 0) from the paper's artifact README (breakerspace/turkmenistan-censorship)",
    "tspu": "Xue et al., Throttling Twitter, IMC 2021: 130-150 kbit/s",
    "gfw-dns-1": "Triplet Censors, FOCI 2020 (three GFW DNS injectors); geedge.report fingerprints: CN Injector 1, "
    "flags 0x8580, no name compression; IP ID/TTL/answer TTL not retrieved (neutral defaults)",
    "gfw-dns-3": "Triplet Censors, FOCI 2020; geedge.report fingerprints: CN Injector 3, flags 0x8400, no name "
    "compression (in their measurements; FOCI 2020 saw compression); IP fields not retrieved",
}


def preset(name: str) -> Personality:
    """A bundled personality by name (see :data:`PRESETS`)."""
    if name not in PRESETS:
        raise PolicyError("<personality>", 1, 1, f"no personality preset {name!r}; known: {', '.join(PRESETS)}")
    return parse_personality({"name": name, **PRESETS[name]}, defaults=DEFAULT)


# ------------------------------------------------------------------------------------------------ parsing


class _Where:
    """Turns a data path into a PolicyError at the best known position."""

    def __init__(self, file: str, marks: Any, base: Path) -> None:
        self.file, self.marks, self.base = file, marks, base

    def error(self, path: Path, message: str) -> PolicyError:
        shown = ".".join(str(p) for p in self.base + path)
        if self.marks is not None:
            pos: SourcePos = self.marks.value(self.base + path)
            return PolicyError.at(pos, f"{shown}: {message}")
        return PolicyError(self.file, 1, 1, f"{shown}: {message}")


def _int(w: _Where, path: Path, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise w.error(path, f"expected an integer in [{lo}, {hi}], got {value!r}")
    if not lo <= value <= hi:
        raise w.error(path, f"{value} is out of range [{lo}, {hi}]")
    return value


def _num(w: _Where, path: Path, value: Any, lo: float, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise w.error(path, f"expected a number, got {value!r}")
    if value < lo or (positive and value <= 0) or value != value or value == float("inf"):
        raise w.error(path, f"{value} is out of range ({'> 0' if positive else f'>= {lo}'})")
    return float(value)


def _bool(w: _Where, path: Path, value: Any) -> bool:
    if not isinstance(value, bool):
        raise w.error(path, f"expected true or false, got {value!r}")
    return value


def _choice(w: _Where, path: Path, value: Any, choices: Sequence[str]) -> Any:
    if value not in choices or not isinstance(value, str):
        raise w.error(path, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _reset_flags(w: _Where, path: Path, value: Any) -> tuple[str, int]:
    """``R`` or ``RA``, optionally followed by ``+AE`` and/or ``+RE`` (see :class:`ResetStyle`)."""
    if not isinstance(value, str):
        raise w.error(path, f"expected R or RA (optionally +AE, +RE), got {value!r}")
    base, *extras = value.split("+")
    if base not in ("R", "RA") or len(set(extras)) != len(extras) or not set(extras) <= set(_EXTRA_FLAGS):
        raise w.error(path, f"expected R or RA, optionally followed by +AE and/or +RE, got {value!r}")
    bits = 0
    for name in extras:
        bits |= _EXTRA_FLAGS[name]
    return base, bits


def _pair(w: _Where, path: Path, value: Any, lo: int, hi: int) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise w.error(path, f"expected [low, high], got {value!r}")
    a = _int(w, path + (0,), value[0], lo, hi)
    b = _int(w, path + (1,), value[1], lo, hi)
    if a > b:
        raise w.error(path, f"low {a} is above high {b}")
    return a, b


def _mapping(w: _Where, path: Path, value: Any, known: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise w.error(path, f"expected a mapping, got {type(value).__name__}")
    for key in value:
        if key not in known:
            raise w.error(path + (key,), f"unknown key {key!r}; known: {', '.join(known)}")
    return value


def _field16(w: _Where, path: Path, value: Any) -> Field16:
    if value == "random":
        return Field16("random", 0, 0xFFFF)
    if value == "tsg":
        return Field16("tsg")
    if isinstance(value, int) and not isinstance(value, bool):
        return Field16("fixed", _int(w, path, value, 0, 0xFFFF))
    if isinstance(value, list | tuple):
        lo, hi = _pair(w, path, value, 0, 0xFFFF)
        return Field16("random", lo, hi)
    if isinstance(value, Mapping) and "increment" in value:
        m = _mapping(w, path, value, ("increment", "step"))
        start = _int(w, path + ("increment",), m["increment"], 0, 0xFFFF)
        step = _int(w, path + ("step",), m.get("step", 1), 1, 0xFFFF)
        return Field16("increment", start, 0, step)
    raise w.error(path, f"expected an integer, [low, high], random, tsg or {{increment: N, step: S}}, got {value!r}")


def _ttl(w: _Where, path: Path, value: Any) -> Ttl:
    if value == "mirror":
        return Ttl("mirror", 0, 0)
    if isinstance(value, int) and not isinstance(value, bool):
        ttl = _int(w, path, value, 1, 255)
        return Ttl("fixed", ttl, ttl)
    if isinstance(value, list | tuple):
        lo, hi = _pair(w, path, value, 1, 255)
        return Ttl("range", lo, hi)
    raise w.error(path, f"expected a TTL 1-255, [low, high] or mirror, got {value!r}")


def _tsg(w: _Where, path: Path, value: Any, base: TsgSeed) -> TsgSeed:
    m = _mapping(w, path, value, ("seed_key", "seed_max", "val"))
    key = _int(w, path + ("seed_key",), m.get("seed_key", base.seed_key), 1, 0xFFFF)
    top = _int(w, path + ("seed_max",), m.get("seed_max", base.seed_max), 1, 0xFFFF)
    if key > top:
        raise w.error(path, f"seed_key {key} is above seed_max {top}")
    if "val" in m:
        lo, hi = _pair(w, path + ("val",), m["val"], 1, top // key)
    else:
        lo, hi = 1, 0
    return TsgSeed(key, top, lo, hi)


_IP_KEYS = ("ttl", "ip_id", "df", "window", "tsg")


def _ip(w: _Where, path: Path, raw: Mapping[str, Any], base: IpStyle, keys: Sequence[str] = _IP_KEYS) -> IpStyle:
    """``base`` with the header keys of ``raw`` applied (other keys are the caller's)."""
    changes: dict[str, Any] = {}
    if "ttl" in raw and "ttl" in keys:
        changes["ttl"] = _ttl(w, path + ("ttl",), raw["ttl"])
    if "ip_id" in raw and "ip_id" in keys:
        changes["ip_id"] = _field16(w, path + ("ip_id",), raw["ip_id"])
    if "df" in raw and "df" in keys:
        changes["df"] = _bool(w, path + ("df",), raw["df"])
    if "window" in raw and "window" in keys:
        changes["window"] = _field16(w, path + ("window",), raw["window"])
    if "tsg" in raw and "tsg" in keys:
        changes["tsg"] = _tsg(w, path + ("tsg",), raw["tsg"], base.tsg)
    return replace(base, **changes)


def _payload(w: _Where, path: Path, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        digits = "".join(c for c in value if c not in " :\t")
        if len(digits) % 2 or any(c not in string.hexdigits for c in digits):
            raise w.error(path, f"expected hex bytes such as '01 02 0a', got {value!r}")
        return bytes.fromhex(digits)
    if isinstance(value, list | tuple):
        return bytes(_int(w, path + (i,), b, 0, 255) for i, b in enumerate(value))
    raise w.error(path, f"expected hex text or a list of byte values, got {value!r}")


def _addresses(w: _Where, path: Path, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise w.error(path, f"expected a non-empty list of IP addresses, got {value!r}")
    out = []
    for i, item in enumerate(value):
        try:
            out.append(ipaddress.ip_address(item).compressed)
        except ValueError:
            raise w.error(path + (i,), f"not an IPv4 or IPv6 address: {item!r}") from None
    return tuple(dict.fromkeys(out))


def _dns_flags(w: _Where, path: Path, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise w.error(path, f"expected a 16-bit number such as 0x8180, got {value!r}") from None
    flags = _int(w, path, value, 0, 0xFFFF)
    if not flags & 0x8000:
        raise w.error(path, f"0x{flags:04x} lacks the QR bit (0x8000): that is not a response")
    return flags


_TOKEN = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")


def _headers(w: _Where, path: Path, value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = []
        for i, pair in enumerate(value):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise w.error(path + (i,), f"expected [name, value], got {pair!r}")
            items.append((pair[0], pair[1]))
    else:
        raise w.error(path, f"expected a mapping of header names to values, got {value!r}")
    out = []
    for name, text in items:
        if not isinstance(name, str) or not name or not set(name) <= _TOKEN:
            raise w.error(path, f"bad header name {name!r} (RFC 9110 token)")
        if name.lower() in ("content-length", "location"):
            raise w.error(path, f"{name} is set by the enforcer (use location: for redirects)")
        if not isinstance(text, str) or any(c in text for c in "\r\n\0"):
            raise w.error(path, f"bad value for header {name}: {text!r}")
        out.append((name, text))
    return tuple(out)


def _location(w: _Where, path: Path, value: Any) -> str:
    if not isinstance(value, str) or any(c in value for c in "\r\n\0 "):
        raise w.error(path, f"expected a URL without spaces or line breaks, got {value!r}")
    return value


def _body(w: _Where, path: Path, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise w.error(path, f"expected text, got {value!r}")
    return value.encode("utf-8")


def _check_blockpage(w: _Where, path: Path, page: BlockpageStyle) -> BlockpageStyle:
    if 300 <= page.status < 400 and not page.location:
        raise w.error(path, f"status {page.status} is a redirect: it needs a location")
    return page


_RESET_KEYS = ("flags", "count", "targets", "seq", "payload", "identical", *_IP_KEYS)
_DNS_KEYS = (
    "flags",
    "answer_ttl",
    "answers",
    "answers_per_response",
    "compression",
    "copy_query_edns",
    "mode",
    "ttl",
    "ip_id",
    "df",
    "tsg",
)
_PAGE_KEYS = ("status", "headers", "body", "location", "close", "reset_server", "mss", *_IP_KEYS)
_ICMP_KEYS = ("code", "code6", "source", "ttl", "ip_id", "df", "tsg")
_TOP_KEYS = (
    "name",
    "based_on",
    "description",
    "cite",
    "ip",
    "reset",
    "dns",
    "blockpage",
    "throttle",
    "delay",
    "icmp",
    "residual",
    "drop_trigger",
    "parallel",
    "max_fragments",
)


def parse_personality(
    raw: Mapping[str, Any] | None,
    *,
    defaults: Personality = DEFAULT,
    file: str = "<personality>",
    marks: Any = None,
    base: Path = ("personality",),
) -> Personality:
    """A profile's ``personality:`` section over ``defaults`` (or over the preset named by ``based_on``).

    Keys: ``name``, ``based_on`` (a :data:`PRESETS` name), ``description``/``cite`` (free text), ``ip`` (header
    defaults for every injected packet: ``ttl``, ``ip_id``, ``df``, ``window``, ``tsg``), the sections
    ``reset``, ``dns``, ``blockpage``, ``throttle``, ``delay``, ``icmp``, ``residual`` (each takes its own header
    keys too), ``drop_trigger`` and ``parallel`` (a list of ``{preset, probability}``: other injectors on the
    path, :class:`ParallelInjector`). Raises ``PolicyError`` naming the offending key; with ``marks`` (the
    profile's ``chokepoint.policy.yamlsrc.Marks``) at its position, ``base`` being the section's data path.
    """
    if raw is None:
        return defaults
    w = _Where(file, marks, base)
    m = _mapping(w, (), raw, _TOP_KEYS)
    if "based_on" in m:
        name = _choice(w, ("based_on",), m["based_on"], tuple(PRESETS))
        defaults = parse_personality({"name": name, **PRESETS[name]}, defaults=DEFAULT, file=file)
    name = m.get("name", defaults.name)
    if not isinstance(name, str) or not name:
        raise w.error(("name",), f"expected a name, got {name!r}")
    for key in ("description", "cite"):
        if key in m and not isinstance(m[key], str | list):
            raise w.error((key,), "expected text or a list of texts")
    shared = _mapping(w, ("ip",), m.get("ip", {}), _IP_KEYS)

    def ip_of(section: str, style: IpStyle, raw_section: Mapping[str, Any], keys: Sequence[str]) -> IpStyle:
        style = _ip(w, ("ip",), shared, style, keys)
        return _ip(w, (section,), raw_section, style, keys)

    r = _mapping(w, ("reset",), m.get("reset", {}), _RESET_KEYS)
    d = defaults.reset
    flags, extra_flags = _reset_flags(w, ("reset", "flags"), r["flags"]) if "flags" in r else (d.flags, d.extra_flags)
    reset = ResetStyle(
        flags=flags,
        extra_flags=extra_flags,
        count=_int(w, ("reset", "count"), r.get("count", d.count), 1, 16),
        targets=_choice(w, ("reset", "targets"), r.get("targets", d.targets), ("client", "server", "both")),
        seq=_choice(w, ("reset", "seq"), r.get("seq", d.seq), ("in-window", "ack-based")),
        payload=_payload(w, ("reset", "payload"), r["payload"]) if "payload" in r else d.payload,
        identical=_bool(w, ("reset", "identical"), r.get("identical", d.identical)),
        ip=ip_of("reset", d.ip, r, _IP_KEYS),
    )

    s = _mapping(w, ("dns",), m.get("dns", {}), _DNS_KEYS)
    dd = defaults.dns
    dns = DnsStyle(
        flags=_dns_flags(w, ("dns", "flags"), s["flags"]) if "flags" in s else dd.flags,
        answer_ttl=_int(w, ("dns", "answer_ttl"), s.get("answer_ttl", dd.answer_ttl), 0, 0x7FFFFFFF),
        answers=_addresses(w, ("dns", "answers"), s["answers"]) if "answers" in s else dd.answers,
        answers_per_response=_int(
            w, ("dns", "answers_per_response"), s.get("answers_per_response", dd.answers_per_response), 1, 32
        ),
        compression=_bool(w, ("dns", "compression"), s.get("compression", dd.compression)),
        copy_query_edns=_bool(w, ("dns", "copy_query_edns"), s.get("copy_query_edns", dd.copy_query_edns)),
        mode=_choice(w, ("dns", "mode"), s.get("mode", dd.mode), ("race", "replace")),
        ip=ip_of("dns", dd.ip, s, ("ttl", "ip_id", "df", "tsg")),
    )

    b = _mapping(w, ("blockpage",), m.get("blockpage", {}), _PAGE_KEYS)
    db = defaults.blockpage
    page = BlockpageStyle(
        status=_int(w, ("blockpage", "status"), b.get("status", db.status), 100, 599),
        headers=_headers(w, ("blockpage", "headers"), b["headers"]) if "headers" in b else db.headers,
        body=_body(w, ("blockpage", "body"), b["body"]) if "body" in b else db.body,
        location=_location(w, ("blockpage", "location"), b["location"]) if "location" in b else db.location,
        close=_choice(w, ("blockpage", "close"), b.get("close", db.close), ("fin", "rst")),
        reset_server=_bool(w, ("blockpage", "reset_server"), b.get("reset_server", db.reset_server)),
        mss=_int(w, ("blockpage", "mss"), b.get("mss", db.mss), 64, 65495),
        ip=ip_of("blockpage", db.ip, b, _IP_KEYS),
    )
    _check_blockpage(w, ("blockpage",), page)

    t = _mapping(w, ("throttle",), m.get("throttle", {}), ("rate_kbps", "burst_bytes"))
    throttle = ThrottleStyle(
        rate_kbps=_num(w, ("throttle", "rate_kbps"), t.get("rate_kbps", defaults.throttle.rate_kbps), 0, positive=True),
        burst_bytes=_int(
            w, ("throttle", "burst_bytes"), t.get("burst_bytes", defaults.throttle.burst_bytes), 1, 1 << 30
        ),
    )

    y = _mapping(w, ("delay",), m.get("delay", {}), ("ms", "jitter_ms"))
    delay = DelayStyle(
        ms=_num(w, ("delay", "ms"), y.get("ms", defaults.delay.ms), 0),
        jitter_ms=_num(w, ("delay", "jitter_ms"), y.get("jitter_ms", defaults.delay.jitter_ms), 0),
    )

    c = _mapping(w, ("icmp",), m.get("icmp", {}), _ICMP_KEYS)
    di = defaults.icmp
    source = c.get("source", di.source)
    if source != "destination":
        try:
            source = ipaddress.ip_address(source).compressed
        except ValueError:
            raise w.error(("icmp", "source"), f"expected destination or an IP address, got {source!r}") from None
    icmp = IcmpStyle(
        code=_int(w, ("icmp", "code"), c.get("code", di.code), 0, 15),
        code6=_int(w, ("icmp", "code6"), c.get("code6", di.code6), 0, 255),
        source=source,
        ip=ip_of("icmp", di.ip, c, ("ttl", "ip_id", "df", "tsg")),
    )

    e = _mapping(w, ("residual",), m.get("residual", {}), ("scope", "seconds", "rearm", "action"))
    de = defaults.residual
    residual = ResidualStyle(
        scope=_choice(w, ("residual", "scope"), e.get("scope", de.scope), RESIDUAL_SCOPES),
        seconds=_num(w, ("residual", "seconds"), e.get("seconds", de.seconds), 0),
        rearm=_bool(w, ("residual", "rearm"), e.get("rearm", de.rearm)),
        action=_choice(w, ("residual", "action"), e.get("action", de.action), ("drop", "reset", "auto")),
    )
    drop_trigger = _bool(w, ("drop_trigger",), m.get("drop_trigger", defaults.drop_trigger))
    parallel = _parallel(w, ("parallel",), m["parallel"]) if "parallel" in m else defaults.parallel
    max_fragments = defaults.max_fragments
    if "max_fragments" in m:
        max_fragments = (
            None if m["max_fragments"] is None else _int(w, ("max_fragments",), m["max_fragments"], 0, 65535)
        )
    return Personality(name, reset, dns, page, throttle, delay, icmp, residual, drop_trigger, parallel, max_fragments)


def _parallel(w: _Where, path: Path, value: Any) -> tuple[ParallelInjector, ...]:
    if not isinstance(value, list | tuple):
        raise w.error(path, "expected a list of {preset, probability}")
    out = []
    for i, item in enumerate(value):
        item = _mapping(w, path + (i,), item, ("preset", "probability"))
        if "preset" not in item:
            raise w.error(path + (i,), "each parallel injector names a preset")
        name = _choice(w, path + (i, "preset"), item["preset"], tuple(PRESETS))
        probability = _num(w, path + (i, "probability"), item.get("probability", 1.0), 0)
        if probability > 1:
            raise w.error(path + (i, "probability"), f"{probability} is above 1")
        chosen, sections = preset(name), PRESETS[name]
        out.append(
            ParallelInjector(
                name,
                chosen.reset if "reset" in sections else None,
                probability,
                chosen.dns if "dns" in sections else None,
                chosen.max_fragments,
            )
        )
    return tuple(out)


# ------------------------------------------------------------------------------------ per-verdict override

#: ICMP code (v4) -> the ICMPv6 destination-unreachable code with the same meaning (RFC 4443 §3.1).
_CODE6 = {0: 0, 1: 3, 3: 4, 9: 1, 10: 1, 13: 1}
#: Rule params the engine or the planner read themselves.
#: read elsewhere: the engine (probability), the planner (direction, injector), the TLS-intercepting proxy's CA
#: (issuer_cn, issuer_country: chokepoint.backends.intercept.ca.CensorCA.names_for)
_PASS_THROUGH = frozenset({"probability", "direction", "injector", "issuer_cn", "issuer_country"})


def effective(
    personality: Personality,
    params: Mapping[str, Any] | Sequence[tuple[str, Any]],
    *,
    marks: Any = None,
    path: Path = ("params",),
) -> Personality:
    """``personality`` with a verdict's rule params applied (``Verdict.params`` or a mapping).

    ``injector`` (a :data:`PRESETS` name) first replaces the whole personality with that preset, so one profile
    can model several injectors as separate rules (e.g. GFW types I/II/III). Then: count/flags/targets -> reset;
    answers/ttl (answer TTL) -> dns; status/location/body -> blockpage; rate_kbps -> throttle;
    delay_ms/jitter_ms -> delay; code -> icmp (its ICMPv6 counterpart follows); residual_s (alias
    residual_seconds)/residual_scope -> residual. ``probability`` and ``direction`` are read by the engine and
    the planner and ignored here; any other key is a ``PolicyError`` (call this at load time for every rule to
    catch them early; with the profile's ``marks`` and the params' data ``path`` the error points at the value).
    """
    items = dict(params.items() if isinstance(params, Mapping) else params)
    if not items:
        return personality
    w = _Where("<rule params>", marks, tuple(path))
    p = personality
    if "injector" in items:
        p = preset(_choice(w, ("injector",), items["injector"], tuple(PRESETS)))
    reset, dns, page, throttle, delay, icmp, residual = (
        p.reset,
        p.dns,
        p.blockpage,
        p.throttle,
        p.delay,
        p.icmp,
        p.residual,
    )
    for key, value in items.items():
        path = (key,)
        if key == "count":
            reset = replace(reset, count=_int(w, path, value, 1, 16))
        elif key == "flags":
            flags, extra_flags = _reset_flags(w, path, value)
            reset = replace(reset, flags=flags, extra_flags=extra_flags)
        elif key == "targets":
            reset = replace(reset, targets=_choice(w, path, value, ("client", "server", "both")))
        elif key == "answers":
            dns = replace(dns, answers=_addresses(w, path, value))
        elif key == "ttl":
            dns = replace(dns, answer_ttl=_int(w, path, value, 0, 0x7FFFFFFF))
        elif key == "status":
            page = replace(page, status=_int(w, path, value, 100, 599))
        elif key == "location":
            page = replace(page, location=_location(w, path, value))
        elif key == "body":
            page = replace(page, body=_body(w, path, value))
        elif key == "rate_kbps":
            throttle = replace(throttle, rate_kbps=_num(w, path, value, 0, positive=True))
        elif key == "delay_ms":
            delay = replace(delay, ms=_num(w, path, value, 0))
        elif key == "jitter_ms":
            delay = replace(delay, jitter_ms=_num(w, path, value, 0))
        elif key == "code":
            code = _int(w, path, value, 0, 15)
            icmp = replace(icmp, code=code, code6=_CODE6.get(code, 1))
        elif key in ("residual_s", "residual_seconds"):
            residual = replace(residual, seconds=_num(w, path, value, 0))
        elif key == "residual_scope":
            residual = replace(residual, scope=_choice(w, path, value, RESIDUAL_SCOPES))
        elif key not in _PASS_THROUGH:
            raise w.error(path, "unknown rule parameter for enforcement")
    _check_blockpage(w, (), page)
    return replace(
        p, reset=reset, dns=dns, blockpage=page, throttle=throttle, delay=delay, icmp=icmp, residual=residual
    )
