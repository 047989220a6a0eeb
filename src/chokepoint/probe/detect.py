"""Attribution: find the packets a censor injected into a capture and say which documented injector they match.

Finders, run per flow over both directions:

* **rst**: TCP RSTs (and RST+ACKs) that the endpoint whose address they carry did not send. Strong signals: an
  IP TTL at least 2 away from that endpoint's handshake (SYN / SYN-ACK) or usual TTL; the endpoint went on
  sending after "its" RST; the TSG generator relation between IP ID and window; a header constant or payload
  only an injector uses (PacketLogic IP ID 13330 / window 32120, Henan's 10-byte payload). An RST toward the
  other end within a second of an injected one, answering nothing, is its pair (an RST is never answered with an
  RST, RFC 9293 §3.10.7). Weak signals (reported, never sufficient): DF or IP ID off the endpoint's pattern, a
  non-zero window, a burst. Forged-RST detection from header anomalies: Weaver, Sommer, Paxson, "Detecting
  Forged TCP Reset Packets", NDSS 2009; TTL against the SYN-ACK: Citizen Lab "Bad Traffic" (2018).
* **dns**: two or more different answers to one query (id and question) from the resolver's address, the first
  usually forged (the GFW races the resolver: Hoang et al., USENIX Security 2021; "Triplet Censors", FOCI
  2020); or one answer carrying a known forged address (ooni/blocking-fingerprints, or a preset's pool).
  DNS over UDP only.
* **blockpage**: an HTTP response from the server's address whose TTL, IP ID or window differs from the
  handshake's, that conflicts with other bytes at the same sequence number, or that matches a blockpage
  fingerprint or a preset's page; with the FIN or RST that closes it.
* **icmp**: destination unreachable "administratively prohibited" (RFC 1812 §5.2.7.1, RFC 4443 §3.1), or any
  unreachable from a middle hop (a source other than the quoted packet's destination).

Each finding gets a preset-independent fingerprint (count, flags, TTL with the inferred initial TTL 64/128/255
and hops, IP ID generator, DF, window, payload) and candidates: the personality presets of
:mod:`chokepoint.enforce.personality` (the data and its citations, never a copy of the numbers) checked field
by field. A TTL may sit up to N hops below a preset's value, N being the hop count of the endpoint the packet
impersonates (an on-path injector is no farther from the capture point than that endpoint). Presets whose
checks come out the same are one candidate: the evidence cannot tell them apart. The TSG check is the relation
the personality module documents (``win = val + (dip mod k)``, ``ipid = M - val*k + (sip mod win)``, geedge.report),
tried with sip/dip as the flow's client/server and the other way round (which is which is unverified there);
:func:`recover_seed_keys` finds every k in a range that fits the samples ("k recoverable from two RSTs").

Limits: one capture point sees only the injected packets that pass it (a preset's "both" targets then look like
one); flags are compared as sent, so the RST+ACK an injector must send toward an end still in SYN-SENT
(RFC 9293 §3.10.7.3) counts against a preset that sends bare RSTs; a lone, plausible forged DNS answer (an inline
censor that drops the query) cannot be told from the resolver's without a control measurement.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from chokepoint.dissect.dns import DnsMessage, RType, parse_message
from chokepoint.dissect.errors import DissectError
from chokepoint.dissect.http import parse_request, parse_response
from chokepoint.dissect.tls import parse_client_hello_records
from chokepoint.enforce.personality import DEFAULT, PRESET_CITES, PRESETS, Field16, IpStyle, Personality, Ttl, preset
from chokepoint.flow.flow import C2S, S2C, Flow
from chokepoint.flow.key import flow_key, ip_text
from chokepoint.flow.table import FlowTable
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import open_capture
from chokepoint.packet.record import ACK, FIN, ICMP, ICMPV6, RST, SYN, TCP, UDP, Packet, tcp_flags_text
from chokepoint.probe.fingerprints import FingerprintDB
from chokepoint.settings import EngineSettings

__all__ = [
    "KINDS",
    "Check",
    "Candidate",
    "InjectedPacket",
    "Finding",
    "CaptureSummary",
    "DetectReport",
    "Detector",
    "detect_captures",
    "initial_ttl",
    "tsg_relation",
    "recover_seed_keys",
    "flag_text",
]

KINDS = ("rst", "dns", "blockpage", "icmp")
#: Initial TTLs of common stacks (Linux/macOS 64, Windows 128, network gear 255).
INITIAL_TTLS = (64, 128, 255)
#: Hop allowance below a preset's TTL when the impersonated endpoint's distance is unknown.
MAX_HOPS = 32
#: A TTL at least this far from the impersonated endpoint's is an injection signal.
TTL_JUMP = 2
#: Seconds within which an RST toward the other end is taken as the pair of an injected one.
PAIR_WINDOW = 1.0
#: Flows idle this long (packet time) are finished; closed TCP flows are kept long enough to see who goes on.
SETTINGS = EngineSettings(tcp_timeout=300.0, tcp_closed_timeout=60.0, udp_timeout=120.0, other_timeout=60.0)
_MAX_RSTS = 64
_MAX_SEGMENTS = 1024
_MAX_HTTP = 8
_HEAD_MAX = 16384
_MAX_QUERIES = 256
_MAX_IDS = 64
_MOD = 1 << 32


# ------------------------------------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class Check:
    """One field of a preset checked against the observed packets: ``ok`` True (match), False (mismatch) or
    None (not applicable); ``weight`` is how specific a match is (0 anything fits .. 3 a rare constant)."""

    field: str
    expected: str
    observed: str
    ok: bool | None
    weight: int = 1

    def to_json(self) -> dict[str, Any]:
        result = "n/a" if self.ok is None else "match" if self.ok else "mismatch"
        return {
            "field": self.field,
            "expected": self.expected,
            "observed": self.observed,
            "result": result,
            "weight": self.weight,
        }


@dataclass(frozen=True, slots=True)
class Candidate:
    """Presets the finding is checked against, merged when their checks come out the same: ``score`` is the
    summed weight of matching fields, ``mismatches`` the number of fields that rule them out."""

    personalities: tuple[str, ...]
    score: int
    mismatches: int
    checks: tuple[Check, ...]

    @property
    def consistent(self) -> bool:
        return self.mismatches == 0

    @property
    def name(self) -> str:
        return self.personalities[0]

    def matched(self) -> list[str]:
        return [f"{c.field} {c.observed}" for c in self.checks if c.ok]

    def mismatched(self) -> list[str]:
        return [f"{c.field} {c.observed} (expected {c.expected})" for c in self.checks if c.ok is False]

    def to_json(self) -> dict[str, Any]:
        return {
            "personalities": list(self.personalities),
            "score": self.score,
            "mismatches": self.mismatches,
            "consistent": self.consistent,
            "cite": [PRESET_CITES.get(n, "") for n in self.personalities],
            "matched": self.matched(),
            "mismatched": self.mismatched(),
            "checks": [c.to_json() for c in self.checks],
        }


@dataclass(frozen=True, slots=True)
class InjectedPacket:
    """One packet judged injected. ``claimed``: the endpoint whose address it carries; ``signals``: why (tags
    such as ``ttl``, ``continued``, ``tsg``, ``paired``); ``details``: kind-specific fields (DNS flags and
    answers, HTTP status, ICMP code)."""

    index: int
    ts: float
    ip_version: int
    src: str
    sport: int
    dst: str
    dport: int
    claimed: str
    flags: str
    ttl: int
    ip_id: int | None
    df: bool | None
    window: int | None
    seq: int | None
    ack: int | None
    payload: bytes
    signals: tuple[str, ...]
    details: tuple[tuple[str, Any], ...] = ()

    @property
    def initial_ttl(self) -> int:
        return initial_ttl(self.ttl)

    @property
    def hops(self) -> int:
        return self.initial_ttl - self.ttl

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "ts": self.ts,
            "src": self.src,
            "sport": self.sport,
            "dst": self.dst,
            "dport": self.dport,
            "claimed": self.claimed,
            "flags": self.flags,
            "ttl": self.ttl,
            "initial_ttl": self.initial_ttl,
            "hops": self.hops,
            "ip_id": self.ip_id,
            "df": self.df,
            "window": self.window,
            "seq": self.seq,
            "ack": self.ack,
            "payload_len": len(self.payload),
            "payload_hex": self.payload[:64].hex(),
            "signals": list(self.signals),
        }
        out.update(self.details)
        return out


@dataclass(frozen=True, slots=True)
class Finding:
    """Injected packets of one kind in one flow, their fingerprint, the evidence and the ranked candidates."""

    kind: str
    proto: str
    client: str
    client_port: int
    server: str
    server_port: int
    summary: str
    packets: tuple[InjectedPacket, ...]
    evidence: tuple[str, ...]
    fingerprint: tuple[tuple[str, str], ...]
    candidates: tuple[Candidate, ...]

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "flow": {
                "proto": self.proto,
                "client": self.client,
                "client_port": self.client_port,
                "server": self.server,
                "server_port": self.server_port,
            },
            "summary": self.summary,
            "evidence": list(self.evidence),
            "fingerprint": dict(self.fingerprint),
            "packets": [p.to_json() for p in self.packets],
            "candidates": [c.to_json() for c in self.candidates],
        }


@dataclass(frozen=True, slots=True)
class CaptureSummary:
    path: str
    frames: int
    packets: int
    truncated: bool
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "frames": self.frames,
            "packets": self.packets,
            "truncated": self.truncated,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class DetectReport:
    captures: tuple[CaptureSummary, ...]
    findings: tuple[Finding, ...]
    counters: tuple[tuple[str, int], ...]

    @property
    def truncated(self) -> bool:
        return any(c.truncated for c in self.captures)

    def message(self) -> str:
        """One line: what was found, or that nothing was and what was examined."""
        seen = dict(self.counters)
        examined = (
            f"{seen.get('tcp_connections', 0)} TCP connections, {seen.get('rst_examined', 0)} RSTs, "
            f"{seen.get('dns_responses', 0)} DNS responses, {seen.get('http_responses', 0)} HTTP "
            f"responses, {seen.get('icmp_unreachables', 0)} ICMP unreachables examined"
        )
        frames = sum(c.frames for c in self.captures)
        where = f"{len(self.captures)} capture{'s' if len(self.captures) != 1 else ''}, {frames} frames"
        if not self.findings:
            return f"nothing found: no injected packets in {where} ({examined})"
        kinds = Counter(f.kind for f in self.findings)
        listed = ", ".join(f"{n} {k}" for k, n in kinds.items())
        return (
            f"{len(self.findings)} finding{'s' if len(self.findings) != 1 else ''} ({listed}) in {where} ({examined})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message(),
            "captures": [c.to_json() for c in self.captures],
            "counters": dict(self.counters),
            "findings": [f.to_json() for f in self.findings],
        }


# ---------------------------------------------------------------------------------------------- helpers


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


#: Top-level labels of names that only exist on a local network (RFC 6762 .local, RFC 6761 .localhost,
#: RFC 8375 home.arpa, and the de-facto .lan/.home/.internal/.localdomain/.corp).
_LOCAL_TLDS = frozenset({"local", "localhost", "arpa", "lan", "home", "internal", "intranet", "localdomain", "corp"})


def _local_name(name: str) -> bool:
    labels = name.rstrip(".").lower().split(".")
    return len(labels) < 2 or labels[-1] in _LOCAL_TLDS


def _is_bogus_address(value: str) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return not address.is_global


# ------------------------------------------------------------------------------------ per-flow state


class _Side:
    """What one endpoint of a TCP connection sent (RSTs excluded)."""

    __slots__ = (
        "hs",
        "ttls",
        "dfs",
        "ids",
        "sent",
        "last_nonrst",
        "seq_end",
        "max_ack",
        "last_data",
        "segments",
        "http",
        "waiting",
    )

    def __init__(self) -> None:
        self.hs: Packet | None = None  # its SYN or SYN-ACK
        self.ttls: Counter[int] = Counter()
        self.dfs: Counter[bool] = Counter()
        self.ids: list[int] = []  # first IP IDs, in order
        self.sent = 0  # non-RST packets
        self.last_nonrst = 0  # capture index of the latest one
        self.seq_end: int | None = None  # just after the highest byte sent
        self.max_ack: int | None = None  # highest acknowledgment sent
        self.last_data: Packet | None = None
        self.segments: dict[int, _Seg] = {}  # seq -> the first data segment seen there
        self.http: list[_Http] = []
        self.waiting: list[_Rst] = []  # RSTs "from" this side waiting for its next packet


class _Seg(NamedTuple):
    """A data segment remembered by its sequence number: capture index, TTL, first 64 payload bytes."""

    index: int
    ttl: int
    head: bytes


class _Rst:
    """An RST with the connection's context when it arrived."""

    __slots__ = (
        "pkt",
        "side",
        "peer_last_nonrst",
        "in_flight",
        "own_last_data",
        "latest_data",
        "trigger",
        "next_packet",
    )

    def __init__(self, pkt: Packet, side: int, conn: _Conn) -> None:
        self.pkt = pkt
        self.side = side
        own, peer = conn.sides[side], conn.sides[1 - side]
        self.peer_last_nonrst = peer.last_nonrst
        self.in_flight = 0
        if peer.seq_end is not None and own.max_ack is not None and _after(own.max_ack, peer.seq_end):
            self.in_flight = (peer.seq_end - own.max_ack) % _MOD
        self.own_last_data = own.last_data
        self.latest_data = conn.latest_data
        self.trigger = _describe_payload(conn.latest_data.payload) if conn.latest_data is not None else None
        self.next_packet: Packet | None = None  # the next non-RST packet from the same side


class _Http:
    """An HTTP response from the server side: its segments and what closed it."""

    __slots__ = ("packets", "head", "next_seq", "fin", "rst", "open")

    def __init__(self, pkt: Packet) -> None:
        self.packets = [pkt]
        self.head = bytearray(pkt.payload[:_HEAD_MAX])
        self.next_seq = (pkt.seq + len(pkt.payload)) % _MOD
        self.fin = bool(pkt.tcp_flags & FIN)
        self.rst: Packet | None = None
        self.open = not self.fin


class _Conn:
    """One TCP connection's detector state (a flow may hold several connections on one 5-tuple)."""

    __slots__ = ("sides", "rsts", "latest_data", "conflicts", "client_isn")

    def __init__(self) -> None:
        self.sides = (_Side(), _Side())
        self.rsts: list[_Rst] = []
        self.latest_data: Packet | None = None
        self.conflicts: list[tuple[int, _Seg, _Seg]] = []  # (side, first segment, conflicting one)
        self.client_isn: int | None = None


class _Dns:
    """One UDP flow's DNS queries and answers, keyed by (id, question name, type)."""

    __slots__ = ("queries", "answers")

    def __init__(self) -> None:
        self.queries: dict[tuple[int, str, int], tuple[Packet, DnsMessage]] = {}
        self.answers: dict[tuple[int, str, int], list[tuple[Packet, DnsMessage]]] = {}


@dataclass(frozen=True, slots=True)
class _Baseline:
    """How an endpoint's own packets look: TTL and DF of its handshake packet, else its most common ones."""

    ttl: int | None
    df: bool | None
    source: str

    @property
    def hops(self) -> int:
        return MAX_HOPS if self.ttl is None else initial_ttl(self.ttl) - self.ttl


def _baseline(side: _Side, role: str) -> _Baseline:
    if side.hs is not None:
        return _Baseline(side.hs.ttl, side.hs.df, "SYN-ACK" if role == "server" else "SYN")
    if side.ttls:
        return _Baseline(side.ttls.most_common(1)[0][0], side.dfs.most_common(1)[0][0], "other packets")
    return _Baseline(None, None, "")


class _Obs:
    """An injected packet while it is being judged."""

    __slots__ = ("pkt", "claimed", "allowance", "signals", "details", "client_ip", "server_ip", "trigger_ttl")

    def __init__(
        self,
        pkt: Packet,
        claimed: str,
        allowance: int,
        flow: Flow,
        signals: Sequence[str] = (),
        details: Sequence[tuple[str, Any]] = (),
        trigger_ttl: int | None = None,
    ) -> None:
        self.pkt = pkt
        self.claimed = claimed
        self.allowance = allowance  # hops the TTL may sit below a preset's value
        self.signals = list(signals)
        self.details = tuple(details)
        self.client_ip, self.server_ip = flow.client_ip, flow.server_ip
        self.trigger_ttl = trigger_ttl  # TTL of the packet that provoked it (for a "mirror" TTL)

    def public(self) -> InjectedPacket:
        p = self.pkt
        v4 = p.ip_version == 4
        tcp = p.proto == TCP
        return InjectedPacket(
            p.index,
            p.ts,
            p.ip_version,
            ip_text(p.src),
            p.sport,
            ip_text(p.dst),
            p.dport,
            self.claimed,
            flag_text(p.tcp_flags) if tcp else "",
            p.ttl,
            p.ip_id if v4 else None,
            p.df if v4 else None,
            p.window if tcp else None,
            p.seq if tcp else None,
            p.ack if tcp else None,
            bytes(p.payload),
            tuple(dict.fromkeys(self.signals)),
            self.details,
        )


# ----------------------------------------------------------------------------------------- the detector


class Detector:
    """Feed decoded packets in capture order, then :meth:`finish`; findings accumulate in ``findings``.

    ``fingerprints``: ooni/blocking-fingerprints signatures for DNS answers and blockpages (optional);
    ``personalities``: preset names to attribute to (default: every preset in :data:`PRESETS`).
    """

    def __init__(
        self, *, fingerprints: FingerprintDB | None = None, personalities: Sequence[str] | None = None
    ) -> None:
        names = list(personalities) if personalities is not None else list(PRESETS)
        self.presets: dict[str, Personality] = {name: preset(name) for name in names}
        self.fingerprints = fingerprints
        self.table = FlowTable(SETTINGS)
        self.findings: list[Finding] = []
        self.counters: Counter[str] = Counter()
        ip_ids = {
            s.ip_id.lo
            for p in self.presets.values()
            for s in (p.reset.ip, p.blockpage.ip, p.icmp.ip, p.dns.ip)
            if s.ip_id.kind == "fixed"
        }
        windows = {
            s.window.lo for p in self.presets.values() for s in (p.reset.ip, p.blockpage.ip) if s.window.kind == "fixed"
        }
        common = {DEFAULT.reset.ip.window.lo, DEFAULT.blockpage.ip.window.lo}
        #: Header values only an injector in the presets uses (0 and 1 are too common to count alone).
        self.rare_ip_ids = frozenset(v for v in ip_ids if v > 1)
        self.rare_windows = frozenset(v for v in windows if v not in common and v > 1)
        self.rare_payloads = frozenset(p.reset.payload for p in self.presets.values() if p.reset.payload)
        self.tsg_seeds = tuple(
            dict.fromkeys(
                s.tsg
                for p in self.presets.values()
                for s in (p.reset.ip, p.blockpage.ip)
                if "tsg" in (s.ip_id.kind, s.window.kind)
            )
        )
        self.dns_pools = frozenset(a for p in self.presets.values() for a in p.dns.answers)
        self.preset_bodies = {p.blockpage.body for p in self.presets.values() if p.blockpage.body}

    # -- feeding ------------------------------------------------------------------------------------

    def feed(self, pkt: Packet) -> None:
        self.counters["packets"] += 1
        for flow in self.table.expire(pkt.ts):
            self._finish_flow(flow)
        for flow in self.table.pop_evicted():
            self._finish_flow(flow)
        if pkt.proto in (ICMP, ICMPV6):
            self._icmp(pkt)
            return
        if pkt.proto not in (TCP, UDP):
            return
        flow, _new = self.table.lookup(pkt)
        flow.last_ts = max(flow.last_ts, pkt.ts)
        direction = flow.direction_of(pkt)
        if pkt.proto == TCP:
            self._tcp(flow, pkt, direction)
        elif 53 in (pkt.sport, pkt.dport):
            self._dns(flow, pkt, direction)

    def finish(self) -> list[Finding]:
        """Finish every flow still open; returns all findings, in capture order of their first packet."""
        for flow in self.table.drain():
            self._finish_flow(flow)
        self.findings.sort(key=lambda f: f.packets[0].index if f.packets else 0)
        return self.findings

    def _finish_flow(self, flow: Flow) -> None:
        state = flow.state.pop("detect", None)
        if isinstance(state, _Conn):
            self._finish_conn(flow, state)
        elif isinstance(state, _Dns):
            self._finish_dns(flow, state)

    # -- TCP ------------------------------------------------------------------------------------------

    def _tcp(self, flow: Flow, pkt: Packet, direction: int) -> None:
        conn = flow.state.get("detect")
        flags = pkt.tcp_flags
        if conn is None:
            conn = flow.state["detect"] = _Conn()
            self.counters["tcp_connections"] += 1
        elif flags & SYN and not flags & ACK and conn.client_isn is not None and pkt.seq != conn.client_isn:
            self._finish_conn(flow, conn)  # a new connection on the same 5-tuple
            conn = flow.state["detect"] = _Conn()
            self.counters["tcp_connections"] += 1
        flow.update_tcp(pkt, direction)
        self.table.reclassify(flow)
        side = conn.sides[direction]
        if flags & RST:
            self.counters["rst_examined"] += 1
            if len(conn.rsts) < _MAX_RSTS:
                record = _Rst(pkt, direction, conn)
                conn.rsts.append(record)
                side.waiting.append(record)
            if direction == S2C and side.http and side.http[-1].rst is None:
                side.http[-1].rst = pkt
                side.http[-1].open = False
            return
        for record in side.waiting:
            record.next_packet = pkt
        side.waiting.clear()
        if flags & SYN:
            side.hs = side.hs or pkt
            if not flags & ACK:
                conn.client_isn = pkt.seq
        side.ttls[pkt.ttl] += 1
        side.dfs[pkt.df] += 1
        if len(side.ids) < _MAX_IDS and pkt.ip_version == 4:
            side.ids.append(pkt.ip_id)
        side.sent += 1
        side.last_nonrst = pkt.index
        end = (pkt.seq + len(pkt.payload) + bool(flags & SYN) + bool(flags & FIN)) % _MOD
        if side.seq_end is None or _after(side.seq_end, end):
            side.seq_end = end
        if flags & ACK and (side.max_ack is None or _after(side.max_ack, pkt.ack)):
            side.max_ack = pkt.ack
        if pkt.payload:
            self._data(conn, side, pkt, direction)
        elif flags & FIN and direction == S2C and side.http:
            response = side.http[-1]
            if response.open and response.next_seq == pkt.seq:
                response.packets.append(pkt)
                response.fin, response.open = True, False

    def _data(self, conn: _Conn, side: _Side, pkt: Packet, direction: int) -> None:
        side.last_data = pkt
        conn.latest_data = pkt
        seen = side.segments.get(pkt.seq)
        segment = _Seg(pkt.index, pkt.ttl, bytes(pkt.payload[:64]))
        if seen is None:
            if len(side.segments) < _MAX_SEGMENTS:
                side.segments[pkt.seq] = segment
        else:
            n = min(len(seen.head), len(segment.head))
            if seen.head[:n] != segment.head[:n]:
                conn.conflicts.append((direction, seen, segment))
        if direction != S2C:
            return
        starts = pkt.payload.startswith(b"HTTP/1.")
        for response in side.http:
            if starts:
                response.open = False
            elif response.open and response.next_seq == pkt.seq:
                response.packets.append(pkt)
                room = _HEAD_MAX - len(response.head)
                response.head += pkt.payload[: max(room, 0)]
                response.next_seq = (pkt.seq + len(pkt.payload)) % _MOD
                if pkt.tcp_flags & FIN or len(response.head) >= _HEAD_MAX:
                    response.fin = bool(pkt.tcp_flags & FIN)
                    response.open = False
                return
        if starts and len(side.http) < _MAX_HTTP:
            side.http.append(_Http(pkt))
            self.counters["http_responses"] += 1

    def _finish_conn(self, flow: Flow, conn: _Conn) -> None:
        base = (_baseline(conn.sides[0], "client"), _baseline(conn.sides[1], "server"))
        claimed: set[int] = set()  # RSTs that belong to a blockpage finding
        for response in conn.sides[S2C].http:
            finding = self._blockpage_finding(flow, conn, response, base)
            if finding is not None:
                self.findings.append(finding)
                claimed.update(p.index for p in finding.packets)
        records = [r for r in conn.rsts if r.pkt.index not in claimed]
        if records:
            self.findings += self._rst_findings(flow, conn, records, base)

    # -- RST -------------------------------------------------------------------------------------------

    def _constants(self, pkt: Packet) -> list[str]:
        """Header values of ``pkt`` that only an injector preset uses (its fixed IP ID or window)."""
        notes = []
        if pkt.ip_version == 4 and pkt.ip_id in self.rare_ip_ids:
            notes.append(f"IP ID {_hex16(pkt.ip_id)}, an injector constant")
        if pkt.window in self.rare_windows:
            notes.append(f"window {pkt.window}, an injector constant")
        return notes

    def _rst_signals(self, flow: Flow, conn: _Conn, record: _Rst, base: _Baseline) -> tuple[list[str], list[str]]:
        """(signal tags, evidence sentences) for one RST; strong tags first."""
        pkt = record.pkt
        who = "server" if record.side == S2C else "client"
        tags: list[str] = []
        notes: list[str] = []
        if base.ttl is not None and abs(pkt.ttl - base.ttl) >= TTL_JUMP:
            tags.append("ttl")
            notes.append(f"TTL {_ttl_text(pkt.ttl)} where the {who}'s {base.source} had {_ttl_text(base.ttl)}")
        nxt = record.next_packet
        if nxt is not None and not nxt.tcp_flags & SYN and nxt.ts >= pkt.ts:
            tags.append("continued")
            notes.append(
                f'the {who} kept sending after "its" RST (#{nxt.index}, {flag_text(nxt.tcp_flags)}, TTL {nxt.ttl})'
            )
        if pkt.ip_version == 4 and pkt.window:
            for seed in self.tsg_seeds:
                order = _tsg_order(
                    pkt.ip_id, pkt.window, flow.client_ip, flow.server_ip, seed.seed_key, seed.seed_max, seed.val_range
                )
                if order:
                    tags.append("tsg")
                    notes.append(
                        f"IP ID {pkt.ip_id} and window {pkt.window} satisfy the TSG "
                        f"generator relation with k = {seed.seed_key} ({order})"
                    )
                    break
        for note in self._constants(pkt):
            tags.append("constant")
            notes.append(note)
        if pkt.payload and bytes(pkt.payload) in self.rare_payloads:
            tags.append("payload")
            notes.append(f"RST payload {bytes(pkt.payload).hex(' ')}, an injector's")
        elif pkt.payload:
            tags.append("payload?")
            notes.append(f"the RST carries {len(pkt.payload)} payload bytes")
        own = conn.sides[record.side]
        if pkt.ip_version == 4 and base.df is not None and pkt.df != base.df:
            tags.append("df?")
        if pkt.ip_version == 4 and _off_counter(own.ids, pkt.ip_id):
            tags.append("ip-id?")
        if pkt.window:
            tags.append("window?")
        return tags, notes

    def _rst_findings(
        self, flow: Flow, conn: _Conn, records: Sequence[_Rst], base: tuple[_Baseline, _Baseline]
    ) -> list[Finding]:
        """One finding per injector that reset the connection (see :func:`_injector_clusters`)."""
        judged: dict[int, tuple[list[str], list[str]]] = {}
        injected: list[_Rst] = []
        for record in records:
            tags, notes = self._rst_signals(flow, conn, record, base[record.side])
            judged[id(record)] = (tags, notes)
            if any(t in _STRONG for t in tags):
                injected.append(record)
        if not injected:
            return []
        chosen = {id(r) for r in injected}
        for record in records:
            if id(record) in chosen:
                continue
            partner = next(
                (
                    r
                    for r in injected
                    if r.side != record.side
                    and abs(r.pkt.ts - record.pkt.ts) <= PAIR_WINDOW
                    and (record.pkt.index < r.pkt.index or record.peer_last_nonrst < r.pkt.index)
                ),
                None,
            )
            if partner is not None:
                judged[id(record)][0].insert(0, "paired")
                judged[id(record)][1].insert(
                    0,
                    f"toward the other end {abs(record.pkt.ts - partner.pkt.ts) * 1000:.1f}"
                    f" ms from injected #{partner.pkt.index}, answering nothing (an RST "
                    f"is never answered with an RST, RFC 9293 §3.10.7)",
                )
                injected.append(record)
                chosen.add(id(record))
        injected.sort(key=lambda r: r.pkt.index)
        clusters = _injector_clusters(injected)
        return [self._rst_finding(flow, cluster, judged, base, len(clusters)) for cluster in clusters]

    def _rst_finding(
        self,
        flow: Flow,
        injected: list[_Rst],
        judged: dict[int, tuple[list[str], list[str]]],
        base: tuple[_Baseline, _Baseline],
        injectors: int,
    ) -> Finding:
        """The finding for one injector's RSTs (``injectors``: how many answered the same trigger)."""
        copies: dict[tuple, list[_Rst]] = {}  # identical copies share their evidence
        for record in injected:
            copies.setdefault((record.side, _wire(record.pkt)), []).append(record)
        evidence = [
            f"{', '.join(f'#{r.pkt.index}' for r in same)}: {note}"
            for same in copies.values()
            for note in judged[id(same[0])][1]
        ]
        roles = ("client", "server")
        obs = [
            _Obs(
                r.pkt,
                roles[r.side],
                base[r.side].hops,
                flow,
                judged[id(r)][0],
                (("to", roles[1 - r.side]), ("in_flight", r.in_flight), ("trigger", r.trigger)),
                r.latest_data.ttl if r.latest_data is not None else None,
            )
            for r in injected
        ]
        groups = _groups(injected)
        first = injected[0]
        if first.trigger:
            evidence.append(
                f"trigger: {first.trigger} (#{first.latest_data.index})"
                + (
                    f", {first.in_flight} bytes of it not yet acknowledged when the RST arrived"
                    if first.in_flight
                    else ""
                )
            )
        for target, members in groups.items():
            if len(members) > 1:
                span = (members[-1].pkt.ts - members[0].pkt.ts) * 1000
                same = "identical " if _identical(members) else ""
                evidence.append(f"burst of {len(members)} {same}RSTs toward the {target} within {span:.1f} ms")
        if injectors > 1:
            evidence.append(
                f"one of {injectors} injectors resetting this connection, told apart by flags, DF "
                "and copies (the GFW runs several side by side: IEEE S&P 2025, table fingerprint)"
            )
        fingerprint = _fingerprint(obs, flow, tcp=True)
        fingerprint.insert(
            0,
            (
                "count",
                ", ".join(
                    f"{len(m)} to the {t}" + (" (identical)" if len(m) > 1 and _identical(m) else "")
                    for t, m in groups.items()
                ),
            ),
        )
        trigger_state = _trigger_state(injected)
        candidates = _rank(
            {name: self._reset_checks(p, obs, groups, trigger_state) for name, p in self.presets.items()}
        )
        summary = ", ".join(
            f"{len(m)} {'identical ' if len(m) > 1 and _identical(m) else ''}"
            f"{'/'.join(sorted({flag_text(r.pkt.tcp_flags) for r in m}))} to the {t}"
            for t, m in groups.items()
        )
        summary += f"; TTL {', '.join(str(t) for t in dict.fromkeys(o.pkt.ttl for o in obs))}"
        if base[S2C].ttl is not None:
            summary += f" (server's {base[S2C].source} {base[S2C].ttl})"
        return _finding("rst", flow, summary, obs, evidence, fingerprint, candidates)

    def _reset_checks(
        self, personality: Personality, obs: Sequence[_Obs], groups: Mapping[str, list[_Rst]], trigger_state: str | None
    ) -> list[Check]:
        style = personality.reset
        checks = []
        flags = sorted({flag_text(o.pkt.tcp_flags) for o in obs})
        checks.append(Check("flags", style.flags_text, "/".join(flags), flags == [style.flags_text], 1))
        observed = ", ".join(
            f"{len(m)} to the {t}" + (" identical" if len(m) > 1 and _identical(m) else "") for t, m in groups.items()
        )
        counts_ok = all(len(m) == style.count for m in groups.values())
        if counts_ok and style.count > 1:
            counts_ok = all(_identical(m) == style.identical for m in groups.values())
        expected = f"{style.count} per target" + (" identical" if style.count > 1 and style.identical else "")
        checks.append(Check("count", expected, observed, counts_ok, 1 if style.count == 1 else 3))
        targets = set(groups)
        wanted = {"client", "server"} if style.targets == "both" else {style.targets}
        if targets == wanted:
            checks.append(Check("targets", style.targets, "+".join(sorted(targets)), True, 1))
        elif targets < wanted:
            checks.append(
                Check(
                    "targets",
                    style.targets,
                    "+".join(sorted(targets)) + " (the other end may be outside the capture)",
                    True,
                    0,
                )
            )
        else:
            checks.append(Check("targets", style.targets, "+".join(sorted(targets)), False, 1))
        payloads = {bytes(o.pkt.payload) for o in obs}
        shown = ", ".join(p.hex(" ") or "none" for p in payloads)
        checks.append(
            Check(
                "payload",
                style.payload.hex(" ") or "none",
                shown,
                payloads == {style.payload},
                3 if style.payload else 0,
            )
        )
        checks += _ip_checks(style.ip, obs, tcp=True)
        if trigger_state is not None:
            if personality.drop_trigger:
                ok = True if trigger_state == "dropped" else None
                expected = "dropped (inline) or delivered (mirror mode)"
            else:
                ok = trigger_state == "delivered"
                expected = "delivered (on-path)"
            checks.append(Check("trigger", expected, trigger_state, ok, 1 if ok else 0))
        return checks

    # -- blockpages ------------------------------------------------------------------------------------

    def _blockpage_finding(
        self, flow: Flow, conn: _Conn, response: _Http, base: tuple[_Baseline, _Baseline]
    ) -> Finding | None:
        head = bytes(response.head)
        try:
            parsed = parse_response(head)
        except DissectError:
            self.counters["http_unparsed"] += 1
            return None
        server = base[S2C]
        packets = list(response.packets)
        tags: list[str] = []
        evidence: list[str] = []
        first = packets[0]
        for pkt in packets:
            if server.ttl is not None and abs(pkt.ttl - server.ttl) >= TTL_JUMP:
                tags.append("ttl")
                evidence.append(
                    f"#{pkt.index}: TTL {_ttl_text(pkt.ttl)} where the server's {server.source} had "
                    f"{_ttl_text(server.ttl)}"
                )
                break
        for note in self._constants(first):
            tags.append("constant")
            evidence.append(f"#{first.index}: {note}")
        indexes = {p.index for p in packets}
        for direction, a, b in conn.conflicts:
            if direction != S2C:
                continue
            # The injector's copy: the one whose TTL is off the server's, else the earlier (it races).
            off_a, off_b = (server.ttl is not None and abs(x.ttl - server.ttl) >= TTL_JUMP for x in (a, b))
            forged = b if off_b and not off_a else a
            if forged.index in indexes:
                tags.append("race")
                evidence.append(
                    f"#{a.index} and #{b.index}: different bytes at the same sequence number (two "
                    f"responses raced; #{forged.index} is the injected one)"
                )
                break
        body = parsed.body_prefix
        match = None
        if self.fingerprints is not None:
            match = self.fingerprints.match_http(body, parsed.headers)
            if match is not None and not match.is_false_positive:
                tags.append("fingerprint")
                evidence.append(
                    f"blockpage fingerprint {match.name} ({match.scope}, "
                    f"{','.join(match.countries) or 'any country'}) in {match.location}"
                )
        if body and any(page.startswith(body) or body.startswith(page) for page in self.preset_bodies):
            tags.append("preset-page")
            evidence.append("the body is a chokepoint preset's blockpage")
        if not any(t in _STRONG for t in tags):
            return None
        closing = []
        if response.fin:
            closing.append("FIN on its last segment")
        if response.rst is not None:
            closing.append(f"RST #{response.rst.index}")
            packets.append(response.rst)
        last = packets[-1].index
        for record in conn.rsts:  # the server's side reset in the client's name (``reset_server``)
            if (
                record.side == C2S
                and record.pkt.index > first.index
                and record.peer_last_nonrst <= last
                and record.pkt.ts - first.ts <= PAIR_WINDOW
            ):
                closing.append(f"RST #{record.pkt.index} toward the server in the client's name")
                packets.append(record.pkt)
        if closing:
            evidence.append("closed by " + " and ".join(closing))
        evidence.insert(
            0,
            f"HTTP {parsed.status} {parsed.reason}".rstrip()
            + (f" -> {parsed.header('location')}" if parsed.header("location") else ""),
        )
        details = (
            ("status", parsed.status),
            ("location", parsed.header("location")),
            ("fingerprint", match.name if match is not None and not match.is_false_positive else None),
        )
        client = base[C2S]
        obs = [
            _Obs(p, "server", server.hops, flow, tags, details if p is first else ())
            if flow.direction_of(p) == S2C
            else _Obs(p, "client", client.hops, flow, ["paired"])
            for p in packets
        ]
        fingerprint = _fingerprint(obs, flow, tcp=True)
        fingerprint.insert(
            0,
            (
                "response",
                f"HTTP {parsed.status}, {len(response.packets)} segment(s), "
                f"close: {' + '.join(closing) or 'none seen'}",
            ),
        )
        candidates = _rank(
            {
                name: _blockpage_checks(p, obs, parsed.status, parsed.header("location") or "", body, response)
                for name, p in self.presets.items()
            }
        )
        summary = (
            f"HTTP {parsed.status} from the server's address, TTL {first.ttl}"
            + (f" (server's {server.source} {server.ttl})" if server.ttl is not None else "")
            + (f", {' + '.join(closing)}" if closing else "")
        )
        return _finding("blockpage", flow, summary, obs, evidence, fingerprint, candidates)

    # -- DNS -------------------------------------------------------------------------------------------

    def _dns(self, flow: Flow, pkt: Packet, direction: int) -> None:
        try:
            message = parse_message(bytes(pkt.payload))
        except DissectError:
            self.counters["dns_unparsed"] += 1
            return
        if not message.questions:
            return
        state = flow.state.get("detect")
        if state is None:
            state = flow.state["detect"] = _Dns()
        question = message.questions[0]
        key = (message.id, question.name.lower(), question.qtype)
        if not message.is_response:
            if len(state.queries) < _MAX_QUERIES:
                state.queries.setdefault(key, (pkt, message))
            return
        self.counters["dns_responses"] += 1
        answers = state.answers.get(key)
        if answers is None:
            if len(state.answers) >= _MAX_QUERIES:
                self.counters["dns_untracked"] += 1
                return
            answers = state.answers[key] = []
        if len(answers) < 16:
            answers.append((pkt, message))

    def _finish_dns(self, flow: Flow, state: _Dns) -> None:
        for key, responses in state.answers.items():
            query = state.queries.get(key)
            self.findings += self._dns_findings(flow, query, responses)

    def _bogus(self, message: DnsMessage) -> list[str]:
        """Why an answer's addresses are known forgeries (fingerprint database, a preset's pool)."""
        reasons = []
        local = _local_name(message.qname or "")
        for value in _addresses(message):
            if local and _is_bogus_address(value):
                continue  # a home-network name may well resolve to a private or loopback address
            if self.fingerprints is not None:
                match = self.fingerprints.match_dns(value)
                if match is not None and not match.is_false_positive:
                    reasons.append(
                        f"{value} is a known forged answer ({match.name}, {','.join(match.countries) or 'any country'})"
                    )
                    continue
            if value in self.dns_pools:
                reasons.append(f"{value} is in a censor preset's forged-answer pool")
        return reasons

    def _dns_findings(
        self, flow: Flow, query: tuple[Packet, DnsMessage] | None, responses: list[tuple[Packet, DnsMessage]]
    ) -> list[Finding]:
        """The forged answers to one query, one finding per injector: answers with different flags or name
        compression come from different injectors (the GFW's three, "Triplet Censors", FOCI 2020)."""
        contents = {(_answer_set(m), m.flags) for _p, m in responses}
        ttls = [p.ttl for p, _m in responses]
        race = len(responses) > 1 and (len(contents) > 1 or max(ttls) - min(ttls) >= TTL_JUMP)
        bogus = {pkt.index: self._bogus(m) for pkt, m in responses}
        if not race and not any(bogus.values()):
            return []
        evidence: list[str] = []
        forged = [(p, m) for p, m in responses if bogus[p.index]]
        if race:
            self.counters["dns_races"] += 1
            evidence.append(
                f"{len(responses)} different answers to one query from the resolver's address "
                f"(an on-path injector races the resolver)"
            )
            if not forged:  # the on-path injectors win the race; the resolver's answer comes last
                last = (_answer_set(responses[-1][1]), responses[-1][1].flags)
                forged = [(p, m) for p, m in responses if (_answer_set(m), m.flags) != last]
                evidence.append(
                    f"#{responses[-1][0].index} arrived last: taken as the resolver's answer, "
                    f"{', '.join(f'#{p.index}' for p, _m in forged)} before it as forged"
                )
        genuine = [(p, m) for p, m in responses if all(p is not f for f, _ in forged)]
        groups: dict[tuple, list[tuple[Packet, DnsMessage]]] = {}
        for pkt, message in forged:
            groups.setdefault((message.flags, _compressed(pkt.payload)), []).append((pkt, message))
        if len(groups) > 1:
            evidence.append(f"{len(groups)} injectors answered (different DNS flags or name compression)")
        return [self._dns_finding(flow, query, race, group, genuine, bogus, evidence) for group in groups.values()]

    def _dns_finding(
        self,
        flow: Flow,
        query: tuple[Packet, DnsMessage] | None,
        race: bool,
        forged: list[tuple[Packet, DnsMessage]],
        genuine: list[tuple[Packet, DnsMessage]],
        bogus: dict[int, list[str]],
        shared: list[str],
    ) -> Finding:
        """One injector's forged answers (``shared``: evidence about the whole query)."""
        evidence = list(shared)
        for pkt, _m in forged:
            evidence += [f"#{pkt.index}: {reason}" for reason in bogus[pkt.index]]
        real_ttl = Counter(p.ttl for p, _m in genuine).most_common(1)[0][0] if genuine else None
        hops = MAX_HOPS if real_ttl is None else initial_ttl(real_ttl) - real_ttl
        if real_ttl is not None:
            for pkt, _m in forged:
                if abs(pkt.ttl - real_ttl) >= TTL_JUMP:
                    evidence.append(
                        f"#{pkt.index}: TTL {_ttl_text(pkt.ttl)} where the resolver's other answer had "
                        f"{_ttl_text(real_ttl)}"
                    )
        obs = []
        for pkt, message in forged:
            tags = ["race"] if race else []
            tags += ["bogus-answer"] if bogus[pkt.index] else []
            obs.append(
                _Obs(
                    pkt,
                    "server",
                    hops,
                    flow,
                    tags,
                    (
                        ("qname", message.qname),
                        ("qtype", message.qtype),
                        ("dns_flags", f"0x{message.flags:04x}"),
                        ("answers", list(_addresses(message))),
                        ("answer_ttls", [r.ttl for r in message.answers]),
                        ("compressed", _compressed(pkt.payload)),
                    ),
                    query[0].ttl if query is not None else None,
                )
            )
        fingerprint = _fingerprint(obs, flow, tcp=False)
        first = forged[0][1]
        fingerprint.insert(
            0,
            (
                "dns",
                f"flags 0x{first.flags:04x}, answers {', '.join(_addresses(first)) or 'none'}"
                f", answer TTL {', '.join(str(r.ttl) for r in first.answers) or 'n/a'}, "
                f"name compression {_yes_no(_compressed(forged[0][0].payload))}",
            ),
        )
        if genuine:
            real = genuine[-1]
            fingerprint.append(
                ("real answer", f"#{real[0].index}: {', '.join(_addresses(real[1])) or 'none'} (TTL {real[0].ttl})")
            )
        query_message = query[1] if query is not None else None
        candidates = _rank({name: _dns_checks(p, obs, forged, query_message) for name, p in self.presets.items()})
        summary = (
            f"{'race: ' if race else ''}forged answer for {first.qname} "
            f"({', '.join(_addresses(first)) or 'no address'}), flags 0x{first.flags:04x}, "
            f"TTL {forged[0][0].ttl}" + (f" (resolver {real_ttl})" if real_ttl is not None else "")
        )
        return _finding("dns", flow, summary, obs, evidence, fingerprint, candidates)

    # -- ICMP ------------------------------------------------------------------------------------------

    def _icmp(self, pkt: Packet) -> None:
        v6 = pkt.proto == ICMPV6
        if pkt.icmp_type != (1 if v6 else 3):
            return
        self.counters["icmp_unreachables"] += 1
        quoted = _quoted(pkt.payload, v6)
        if quoted is None:
            self.counters["icmp_unquoted"] += 1
            return
        qsrc, qdst, qproto, qsport, qdport = quoted
        admin = pkt.icmp_code == 1 if v6 else pkt.icmp_code in (9, 10, 13)
        middle = pkt.src != qdst
        if not admin and not middle:
            return
        probe = Packet(pkt.ts, pkt.ip_version, qsrc, qdst, qproto, qsport, qdport)
        flow = self.table.index.get(flow_key(probe))
        if flow is None:
            flow = Flow.from_first_packet(0, flow_key(probe), probe)
        state = flow.state.get("detect")
        dst_side = flow.direction_of(probe) ^ 1
        base = _Baseline(None, None, "")
        if isinstance(state, _Conn):
            base = _baseline(state.sides[dst_side], ("client", "server")[dst_side])
        tags = []
        evidence = []
        code_text = f"ICMP{'v6' if v6 else ''} type {pkt.icmp_type} code {pkt.icmp_code}"
        if admin:
            tags.append("admin-prohibited")
            evidence.append(f"#{pkt.index}: {code_text}, administratively prohibited")
        if middle:
            tags.append("middle-hop")
            evidence.append(f"#{pkt.index}: sent by {ip_text(pkt.src)}, a hop before {ip_text(qdst)}")
        elif base.ttl is not None and abs(pkt.ttl - base.ttl) >= TTL_JUMP:
            tags.append("ttl")
            evidence.append(
                f"#{pkt.index}: TTL {_ttl_text(pkt.ttl)} where {ip_text(qdst)}'s {base.source} had "
                f"{_ttl_text(base.ttl)}"
            )
        claimed = "middle hop" if middle else ("client", "server")[dst_side]
        details = (
            ("icmp_type", pkt.icmp_type),
            ("icmp_code", pkt.icmp_code),
            ("quoted", f"{ip_text(qsrc)}:{qsport} -> {ip_text(qdst)}:{qdport} proto {qproto}"),
        )
        obs = [_Obs(pkt, claimed, base.hops if not middle else MAX_HOPS, flow, tags, details)]
        fingerprint = _fingerprint(obs, flow, tcp=False)
        fingerprint.insert(0, ("icmp", f"{code_text} from {'a middle hop' if middle else 'the destination'}"))
        candidates = _rank({name: _icmp_checks(p, obs[0], qdst, v6) for name, p in self.presets.items()})
        summary = f"{code_text} about {ip_text(qsrc)} -> {ip_text(qdst)}:{qdport} from {ip_text(pkt.src)}"
        self.findings.append(_finding("icmp", flow, summary, obs, evidence, fingerprint, candidates))


_STRONG = frozenset({"ttl", "continued", "tsg", "constant", "payload", "race", "fingerprint", "preset-page"})


# ------------------------------------------------------------------------------------ finding helpers


def _finding(
    kind: str,
    flow: Flow,
    summary: str,
    obs: Sequence[_Obs],
    evidence: Sequence[str],
    fingerprint: Sequence[tuple[str, str]],
    candidates: tuple[Candidate, ...],
) -> Finding:
    proto = {TCP: "tcp", UDP: "udp"}.get(flow.proto, str(flow.proto))
    return Finding(
        kind,
        proto,
        flow.client_text or ip_text(flow.client_ip),
        flow.client_port,
        flow.server_text or ip_text(flow.server_ip),
        flow.server_port,
        summary,
        tuple(o.public() for o in obs),
        tuple(dict.fromkeys(evidence)),
        tuple(fingerprint),
        candidates,
    )


def _groups(records: Sequence[_Rst]) -> dict[str, list[_Rst]]:
    """Injected RSTs by the end they are sent to."""
    out: dict[str, list[_Rst]] = {}
    for record in records:
        out.setdefault("client" if record.side == S2C else "server", []).append(record)
    return out


def _wire(pkt: Packet) -> tuple:
    return (pkt.tcp_flags, pkt.seq, pkt.ack, pkt.ttl, pkt.ip_id, pkt.df, pkt.window, bytes(pkt.payload))


def _injector_clusters(records: Sequence[_Rst]) -> list[list[_Rst]]:
    """The injected RSTs split by the injector that sent them, for when several answered one trigger (GFW
    types I, II and III side by side, IEEE S&P 2025): first by flags and DF; then, where one such group holds
    bursts of identical copies of different sizes (type II's three identical RST+ACKs beside type III's
    single RST+ACK, same flags and DF), by burst size. One injector's RSTs stay together."""
    by_kind: dict[tuple[int, bool], list[_Rst]] = {}
    for record in records:
        by_kind.setdefault((record.pkt.tcp_flags, record.pkt.df), []).append(record)
    clusters: list[list[_Rst]] = []
    for members in by_kind.values():
        bursts: dict[tuple, list[_Rst]] = {}
        for record in members:
            bursts.setdefault((record.side, _wire(record.pkt)), []).append(record)
        if len({len(b) for b in bursts.values()}) <= 1:
            clusters.append(members)
            continue
        by_size: dict[int, list[_Rst]] = {}
        for burst in bursts.values():
            by_size.setdefault(len(burst), []).extend(burst)
        clusters += by_size.values()
    for cluster in clusters:
        cluster.sort(key=lambda r: r.pkt.index)
    return sorted(clusters, key=lambda c: c[0].pkt.index)


def _identical(records: Sequence[_Rst]) -> bool:
    return len({_wire(r.pkt) for r in records}) == 1


def _trigger_state(records: Sequence[_Rst]) -> str | None:
    """Whether the trigger reached its receiver, from the RST forged in the trigger sender's name: at the
    trigger's first byte (dropped inline) or after its last (delivered)."""
    for record in records:
        trigger = record.own_last_data
        if trigger is None or record.latest_data is not trigger:
            continue
        if record.pkt.seq == trigger.seq:
            return "dropped"
        if record.pkt.seq == (trigger.seq + len(trigger.payload)) % _MOD:
            return "delivered"
    return None


def _off_counter(ids: Sequence[int], ip_id: int) -> bool:
    """The endpoint's IP IDs count up (mostly steps of 1..64) and ``ip_id`` is far from all of them."""
    if len(ids) < 4:
        return False
    steps = [(b - a) & 0xFFFF for a, b in zip(ids, ids[1:])]
    if sum(1 for s in steps if 0 < s <= 64) < 0.75 * len(steps):
        return False
    return all(min((ip_id - i) & 0xFFFF, (i - ip_id) & 0xFFFF) > 1024 for i in ids)


def _tsg_order(
    ip_id: int, window: int, client: bytes, server: bytes, key: int, top: int, val_range: tuple[int, int]
) -> str:
    """Which address order satisfies the TSG relation ("" if none)."""
    if tsg_relation(ip_id, window, client, server, key, top, val_range):
        return "sip = client, dip = server"
    if tsg_relation(ip_id, window, server, client, key, top, val_range):
        return "sip = server, dip = client"
    return ""


def _fingerprint(obs: Sequence[_Obs], flow: Flow, *, tcp: bool) -> list[tuple[str, str]]:
    """The preset-independent description of the injected packets."""
    pkts = [o.pkt for o in obs]
    v4 = [p for p in pkts if p.ip_version == 4]
    out = [("ttl", ", ".join(_ttl_text(t) for t in dict.fromkeys(p.ttl for p in pkts)))]
    if tcp:
        out.insert(0, ("flags", ", ".join(dict.fromkeys(flag_text(p.tcp_flags) for p in pkts))))
    if v4:
        out.append(("ip_id", _describe16([p.ip_id for p in v4])))
        out.append(("df", ", ".join(dict.fromkeys("DF" if p.df else "no DF" for p in v4))))
    if tcp:
        out.append(("window", _describe16([p.window for p in pkts])))
        samples = [(p.ip_id, p.window, flow.client_ip, flow.server_ip) for p in v4 if p.window]
        if samples:
            keys = recover_seed_keys(samples)
            if not keys:
                keys = recover_seed_keys([(i, w, d, s) for i, w, s, d in samples])
            if keys:
                out.append(
                    (
                        "tsg_keys",
                        f"k = {', '.join(map(str, keys[:8]))} fits {len(set(samples))} "
                        f"distinct sample(s) (k <= 4096 searched)",
                    )
                )
        payloads = list(dict.fromkeys(bytes(p.payload) for p in pkts if p.tcp_flags & RST))
        if payloads and any(payloads):
            out.append(("rst_payload", ", ".join(p.hex(" ") or "none" for p in payloads)))
    return out


def _rank(per_preset: Mapping[str, Sequence[Check]]) -> tuple[Candidate, ...]:
    """Candidates, presets with the same check outcomes merged, best first: fewest mismatches, then the
    highest score, then preset order."""
    merged: dict[tuple, list[str]] = {}
    for name, checks in per_preset.items():
        merged.setdefault(tuple((c.field, c.ok, c.weight) for c in checks), []).append(name)
    order = {name: i for i, name in enumerate(per_preset)}
    out = []
    for names in merged.values():
        checks = tuple(per_preset[names[0]])
        score = sum(c.weight for c in checks if c.ok)
        mismatches = sum(1 for c in checks if c.ok is False)
        out.append(Candidate(tuple(names), score, mismatches, checks))
    out.sort(key=lambda c: (c.mismatches, -c.score, order[c.personalities[0]]))
    return tuple(out)


# ------------------------------------------------------------------------------------------ field checks


def _ttl_check(spec: Ttl, obs: Sequence[_Obs]) -> Check:
    """Observed TTLs against a preset's: exact, or up to the impersonated endpoint's hop count below it."""
    if spec.kind == "fixed":
        expected = str(spec.lo)
    elif spec.kind == "range":
        expected = f"{spec.lo}-{spec.hi}"
    else:
        expected = "the trigger's TTL (mirror)"
    weights = []
    for o in obs:
        ttl, allowance = o.pkt.ttl, o.allowance
        if spec.kind == "mirror":
            if o.trigger_ttl is None:
                return Check("ttl", expected, str(ttl), None, 0)
            lo = hi = o.trigger_ttl
        else:
            lo, hi = spec.lo, spec.hi
        if lo <= ttl <= hi:
            width = hi - lo
            weights.append(2 if width <= 16 else 1 if width <= 80 else 0)
        elif lo - allowance <= ttl < lo:
            weights.append(1 if hi == lo else 0)
        else:
            observed = ", ".join(dict.fromkeys(str(x.pkt.ttl) for x in obs))
            return Check("ttl", f"{expected} (up to {allowance} hops less)", observed, False, 1)
    observed = ", ".join(dict.fromkeys(str(o.pkt.ttl) for o in obs))
    return Check("ttl", expected, observed, True, min(weights) if weights else 0)


def _field16_check(name: str, spec: Field16, values: Sequence[int], *, common: int | None = None) -> Check:
    observed = _describe16(values)
    if spec.kind == "fixed":
        ok = all(v == spec.lo for v in values)
        weight = 1 if spec.lo in (0, common) else 3
        return Check(name, _hex16(spec.lo), observed, ok, weight)
    if spec.kind == "random":
        ok = all(spec.lo <= v <= spec.hi for v in values)
        width = spec.hi - spec.lo
        return Check(name, f"random {spec.lo}-{spec.hi}", observed, ok, 0 if width >= 0x8000 else 2)
    if spec.kind == "increment":
        distinct = list(dict.fromkeys(values))
        ok = all((b - a) & 0xFFFF == spec.step for a, b in zip(distinct, distinct[1:]))
        return Check(name, f"increment by {spec.step}", observed, ok, 2 if len(distinct) > 1 else 0)
    return Check(name, "tsg generator", observed, None, 0)


def _ip_checks(style: IpStyle, obs: Sequence[_Obs], *, tcp: bool, window_common: int | None = None) -> list[Check]:
    """TTL, DF, IP ID and (TCP) window of the observed packets against an IpStyle."""
    checks = [_ttl_check(style.ttl, obs)]
    v4 = [o for o in obs if o.pkt.ip_version == 4]
    if v4:
        dfs = {o.pkt.df for o in v4}
        checks.append(
            Check(
                "df", "DF" if style.df else "no DF", "/".join("DF" if d else "no DF" for d in dfs), dfs == {style.df}, 1
            )
        )
    uses_tsg = style.ip_id.kind == "tsg" or (tcp and style.window.kind == "tsg")
    if uses_tsg:
        samples = [o for o in v4 if tcp]
        if samples:
            seed = style.tsg
            fits = all(
                _tsg_order(
                    o.pkt.ip_id, o.pkt.window, o.client_ip, o.server_ip, seed.seed_key, seed.seed_max, seed.val_range
                )
                for o in samples
            )
            shown = ", ".join(dict.fromkeys(f"id {o.pkt.ip_id}/win {o.pkt.window}" for o in samples))
            checks.append(
                Check("ip_id+window", f"tsg generator k = {seed.seed_key}, M = {seed.seed_max}", shown, fits, 3)
            )
        elif v4:
            checks.append(Check("ip_id", "tsg generator", _describe16([o.pkt.ip_id for o in v4]), None, 0))
    if v4 and style.ip_id.kind != "tsg":
        checks.append(_field16_check("ip_id", style.ip_id, [o.pkt.ip_id for o in v4]))
    if tcp and style.window.kind != "tsg":
        checks.append(_field16_check("window", style.window, [o.pkt.window for o in obs], common=window_common))
    return checks


def _blockpage_checks(
    personality: Personality, obs: Sequence[_Obs], status: int, location: str, body: bytes, response: _Http
) -> list[Check]:
    style = personality.blockpage
    checks = [
        Check("status", str(style.status), str(status), status == style.status, 1 if style.status in (403, 200) else 2)
    ]
    if style.location or location:
        checks.append(Check("location", style.location or "none", location or "none", location == style.location, 3))
    if body:
        ok = style.body.startswith(body) or body.startswith(style.body)
        checks.append(Check("body", f"{len(style.body)} bytes", f"{len(body)} bytes", ok, 3))
    close = "fin" if response.fin else "rst" if response.rst is not None else None
    if close is not None:
        checks.append(Check("close", style.close, close, close == style.close, 1))
    page = [o for o in obs if not o.pkt.tcp_flags & RST] or list(obs)
    checks += _ip_checks(style.ip, page, tcp=True, window_common=DEFAULT.blockpage.ip.window.lo)
    return checks


def _dns_checks(
    personality: Personality, obs: Sequence[_Obs], forged: Sequence[tuple[Packet, DnsMessage]], query: DnsMessage | None
) -> list[Check]:
    style = personality.dns
    checks = []
    flags = {m.flags for _p, m in forged}
    if style.flags is None:
        qflags = query.flags if query is not None else 0x0100
        expected_flags = 0x8000 | (qflags & 0x7900) | 0x0080
        label = f"resolver-like (0x{expected_flags:04x} for this query)"
        weight = 1
    else:
        expected_flags, label, weight = style.flags, f"0x{style.flags:04x}", 1 if style.flags == 0x8180 else 2
    checks.append(Check("dns_flags", label, ", ".join(f"0x{f:04x}" for f in flags), flags == {expected_flags}, weight))
    compressed = {_compressed(p.payload) for p, _m in forged} - {None}
    if compressed:
        checks.append(
            Check(
                "compression",
                _yes_no(style.compression),
                "/".join(map(_yes_no, compressed)),
                compressed == {style.compression},
                1,
            )
        )
    answer_ttls = {r.ttl for _p, m in forged for r in m.answers if r.rtype in (RType.A, RType.AAAA)}
    if answer_ttls:
        checks.append(
            Check(
                "answer_ttl",
                str(style.answer_ttl),
                ", ".join(map(str, sorted(answer_ttls))),
                answer_ttls == {style.answer_ttl},
                2,
            )
        )
    for _p, message in forged[:1]:
        addresses = list(_addresses(message))
        pool = _family_pool(style.answers, message.qtype)
        if pool:
            ok = bool(addresses) and set(addresses) <= pool and len(addresses) <= style.answers_per_response
            checks.append(
                Check(
                    "answers",
                    f"up to {style.answers_per_response} of {', '.join(sorted(pool))}",
                    ", ".join(addresses) or "none",
                    ok,
                    3,
                )
            )
        else:
            checks.append(
                Check(
                    "answers",
                    "none (empty NOERROR)",
                    ", ".join(addresses) or "none",
                    not addresses and message.rcode == 0,
                    1,
                )
            )
        if query is not None:
            has_opt = any(r.rtype == RType.OPT for r in message.additional)
            wanted = style.copy_query_edns and query.edns is not None
            checks.append(Check("edns", _yes_no(wanted), _yes_no(has_opt), has_opt == wanted, 1))
    checks += _ip_checks(style.ip, obs, tcp=False)
    return checks


def _icmp_checks(personality: Personality, o: _Obs, quoted_dst: bytes, v6: bool) -> list[Check]:
    style = personality.icmp
    code = style.code6 if v6 else style.code
    checks = [Check("icmp_code", str(code), str(o.pkt.icmp_code), o.pkt.icmp_code == code, 2 if code else 1)]
    if style.source == "destination":
        ok = o.pkt.src == quoted_dst
        checks.append(Check("source", "the unreachable destination", ip_text(o.pkt.src), ok, 1))
    else:
        ok = ip_text(o.pkt.src) == style.source
        checks.append(Check("source", style.source, ip_text(o.pkt.src), ok, 3))
    checks += _ip_checks(style.ip, [o], tcp=False)
    return checks


# ------------------------------------------------------------------------------------------- DNS helpers


def _addresses(message: DnsMessage) -> tuple[str, ...]:
    return tuple(r.value for r in message.answers if r.rtype in (RType.A, RType.AAAA))


def _answer_set(message: DnsMessage) -> tuple:
    return tuple(sorted((r.rtype, r.value) for r in message.answers)) + (message.rcode,)


def _family_pool(pool: Iterable[str], qtype: int | None) -> set[str]:
    version = 4 if qtype == RType.A else 6 if qtype == RType.AAAA else 0
    out = set()
    for value in pool:
        address = ipaddress.ip_address(value)
        if address.version == version:
            out.add(address.compressed)
    return out


def _compressed(payload: bytes) -> bool | None:
    """Whether the first answer's owner name is a compression pointer (RFC 1035 §4.1.4); None without an
    answer or when the question section cannot be walked."""
    data = bytes(payload)
    if len(data) < 12:
        return None
    qdcount = int.from_bytes(data[4:6], "big")
    ancount = int.from_bytes(data[6:8], "big")
    if not ancount:
        return None
    pos = 12
    for _ in range(qdcount):
        while True:
            if pos >= len(data):
                return None
            length = data[pos]
            if length == 0:
                pos += 1
                break
            if length & 0xC0 == 0xC0:
                pos += 2
                break
            pos += 1 + length
        pos += 4
    if pos >= len(data):
        return None
    return data[pos] & 0xC0 == 0xC0


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _quoted(payload: bytes, v6: bool) -> tuple[bytes, bytes, int, int, int] | None:
    """(src, dst, proto, sport, dport) of the packet an ICMP error quotes (ports 0 when not quoted)."""
    data = bytes(payload)
    if v6:
        if len(data) < 40 or data[0] >> 4 != 6:
            return None
        proto, src, dst, pos = data[6], data[8:24], data[24:40], 40
    else:
        if len(data) < 20 or data[0] >> 4 != 4:
            return None
        ihl = (data[0] & 0x0F) * 4
        if ihl < 20 or len(data) < ihl:
            return None
        proto, src, dst, pos = data[9], data[12:16], data[16:20], ihl
    sport = dport = 0
    if proto in (TCP, UDP) and len(data) >= pos + 4:
        sport, dport = int.from_bytes(data[pos : pos + 2], "big"), int.from_bytes(data[pos + 2 : pos + 4], "big")
    return src, dst, proto, sport, dport


# ----------------------------------------------------------------------------------------------- captures


def detect_captures(
    paths: Iterable[str | Path],
    *,
    fingerprints: FingerprintDB | None = None,
    personalities: Sequence[str] | None = None,
) -> DetectReport:
    """Run the detector over captures (each on its own: flows do not span files). A damaged capture is read up
    to the damage (``CaptureSummary.truncated``/``error``); a file that is no capture raises
    ``chokepoint.packet.pcap.CaptureFormatError``."""
    summaries = []
    findings: list[Finding] = []
    counters: Counter[str] = Counter()
    for path in paths:
        detector = Detector(fingerprints=fingerprints, personalities=personalities)
        decoder = Decoder(settings_fragment_reassembly=True)
        frames = packets = 0
        with open_capture(path) as reader:
            for frame in reader:
                frames += 1
                pkt = decoder.decode(frame)
                if pkt is None:
                    continue
                packets += 1
                detector.feed(pkt)
            truncated, error = reader.truncated, reader.error
        findings += detector.finish()
        counters.update(detector.counters)
        summaries.append(CaptureSummary(str(path), frames, packets, truncated, error))
    return DetectReport(tuple(summaries), tuple(findings), tuple(sorted(counters.items())))
