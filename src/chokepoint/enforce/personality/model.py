"""The personality as frozen values: header-value specs (16-bit fields, TTL, the TSG seed, IP style), one section
per action (reset, DNS, blockpage, throttle, delay, ICMP, residual), parallel injectors, and the neutral default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chokepoint.packet.record import ACK, RST, tcp_flags_text

Path = tuple[str | int, ...]
RESIDUAL_SCOPES = ("3-tuple", "4-tuple", "server", "client-server")
#: The reserved bit set for ``+RE``: geedge.report names the flag "RE" without saying which of the three
#: reserved bits (0x200, 0x400, 0x800) it saw; the lowest is used (UNVERIFIED, stated in the pakistan profile).
RE_BIT = 0x200


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
