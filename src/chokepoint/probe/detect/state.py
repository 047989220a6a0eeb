"""Per-flow detector state: what each endpoint of a TCP connection sent, the RSTs, HTTP responses and DNS
exchanges seen, an endpoint's baseline, and an injected packet while it is judged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from chokepoint.dissect.dns import DnsMessage
from chokepoint.flow.flow import Flow
from chokepoint.flow.key import ip_text
from chokepoint.packet.record import FIN, TCP, Packet
from chokepoint.probe.detect.fields import _MOD, MAX_HOPS, _after, _describe_payload, flag_text, initial_ttl
from chokepoint.probe.detect.report import InjectedPacket

_MAX_RSTS = 64
_MAX_SEGMENTS = 1024
_MAX_HTTP = 8
_HEAD_MAX = 16384
_MAX_QUERIES = 256
_MAX_IDS = 64


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
