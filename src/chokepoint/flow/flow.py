"""A bidirectional flow: endpoints with client/server roles, TCP state, bounded reassembly, per-flow state.

Index 0 of every per-direction pair is client-to-server ("c2s"), index 1 server-to-client ("s2c").
The client is whoever sent the SYN (or received the SYN+ACK); without a handshake (a capture that began
mid-connection, UDP, one side only), the side whose port looks less like a service's: ports rank well-known
(< 1024), then (TCP only) registered (< 32768, below Linux's ephemeral range), then ephemeral; on a tie,
whoever sent the first packet. UDP keeps to well-known ports: peer-to-peer UDP (calls, games) picks
registered-range ports at random on both sides.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from chokepoint.appproto import AppProto
from chokepoint.flow.key import FlowKey, ip_text
from chokepoint.flow.reassembly import StreamReassembler
from chokepoint.packet.record import ACK, FIN, RST, SYN, TCP, Packet

C2S: Final = 0
S2C: Final = 1
UNKNOWN = AppProto.UNKNOWN.value
DIRECTION_NAMES = ("c2s", "s2c")


class TcpState(StrEnum):
    NONE = "none"  # not TCP
    NEW = "new"  # first packet was not a SYN (picked up mid-stream)
    SYN_SENT = "syn_sent"
    SYN_RECEIVED = "syn_received"
    ESTABLISHED = "established"
    CLOSING = "closing"  # a FIN seen in one direction
    CLOSED = "closed"  # FINs both ways, or a RST


#: Below this a port is "registered" rather than ephemeral: the start of Linux's default ephemeral range
#: (net.ipv4.ip_local_port_range 32768-60999); Windows and the IANA dynamic range start higher, at 49152.
EPHEMERAL_START = 32768


def port_rank(port: int, tcp: bool) -> int:
    """0 for a well-known port (< 1024, RFC 6335 system ports); for TCP 1 for a registered one and 2 for an
    ephemeral one; for UDP 2 for any other port."""
    if port < 1024:
        return 0
    return 1 if tcp and port < EPHEMERAL_START else 2


@dataclass(slots=True, eq=False, init=False)
class Flow:
    """One flow. ``__init__`` is written out (the generated one calls a factory per list field): every flow
    of a capture is built once, so this is on the hot path."""

    id: int
    key: FlowKey
    proto: int
    ip_version: int
    client_ip: builtins.bytes
    client_port: int
    server_ip: builtins.bytes
    server_port: int
    first_ts: float
    last_ts: float
    pkts: list[int] = field(default_factory=lambda: [0, 0])
    bytes: list[int] = field(default_factory=lambda: [0, 0])  # IP bytes
    payload_bytes: list[int] = field(default_factory=lambda: [0, 0])
    inspected_pkts: list[int] = field(default_factory=lambda: [0, 0])
    inspected_bytes: list[int] = field(default_factory=lambda: [0, 0])
    tcp_state: TcpState = TcpState.NONE
    syn_seen: bool = False
    synack_seen: bool = False
    fin_seen: list[bool] = field(default_factory=lambda: [False, False])
    rst_seen: bool = False
    tcp_flags: list[int] = field(default_factory=lambda: [0, 0])  # OR of flags seen per direction
    seq_end: list[int | None] = field(default_factory=lambda: [None, None])  # highest seq + len seen, per direction
    streams: list[StreamReassembler | None] = field(default_factory=lambda: [None, None])  # from the first data
    #: sequence number of the first SYN seen per direction while inspecting: anchors the reassembler that is
    #: only allocated when data arrives (a flow without payload carries no dissection or reassembly state)
    syn_seq: list[int | None] = field(default_factory=lambda: [None, None])
    first_payload: list[builtins.bytes | None] = field(default_factory=lambda: [None, None])
    inspecting: bool = True
    facts: Any = None  # chokepoint.dissect.dispatch.FlowFacts, attached by the engine when data arrives
    verdict: Any = None  # terminal Verdict once decided
    logs: list[Any] = field(default_factory=list)  # `log` and flagged verdicts (one per rule)
    #: deferred verdicts this flow was flagged for, waiting for its age and volume: [(Verdict, Deferral)], in
    #: rule order; None when not flagged (the engine then skips the check). Cleared once a verdict is reached.
    watch: list[tuple[Any, Any]] | None = None
    state: dict[str, Any] = field(default_factory=dict)  # per-flow rule state, keyed by rule id
    end_reason: str = ""
    timeout_class: str = ""
    client_text: str = ""  # addresses as text, converted once per flow (policy and output use them)
    server_text: str = ""
    encap: tuple[str, ...] = ()  # the first packet's encapsulation labels (packet/decap.py), outermost first

    def __init__(
        self,
        id: int,
        key: FlowKey,
        proto: int,
        ip_version: int,
        client_ip: builtins.bytes,
        client_port: int,
        server_ip: builtins.bytes,
        server_port: int,
        first_ts: float,
        last_ts: float,
        *,
        client_text: str = "",
        server_text: str = "",
        encap: tuple[str, ...] = (),
    ) -> None:
        self.id = id
        self.key = key
        self.proto = proto
        self.ip_version = ip_version
        self.client_ip = client_ip
        self.client_port = client_port
        self.server_ip = server_ip
        self.server_port = server_port
        self.first_ts = first_ts
        self.last_ts = last_ts
        self.pkts = [0, 0]
        self.bytes = [0, 0]
        self.payload_bytes = [0, 0]
        self.inspected_pkts = [0, 0]
        self.inspected_bytes = [0, 0]
        self.tcp_state = TcpState.NONE
        self.syn_seen = False
        self.synack_seen = False
        self.fin_seen = [False, False]
        self.rst_seen = False
        self.tcp_flags = [0, 0]
        self.seq_end = [None, None]
        self.streams = [None, None]
        self.syn_seq = [None, None]
        self.first_payload = [None, None]
        self.inspecting = True
        self.facts = None
        self.verdict = None
        self.logs = []
        self.watch = None
        self.state = {}
        self.end_reason = ""
        self.timeout_class = ""
        self.client_text = client_text
        self.server_text = server_text
        self.encap = encap

    @classmethod
    def from_first_packet(cls, flow_id: int, key: FlowKey, pkt: Packet) -> Flow:
        if pkt.proto == TCP and pkt.tcp_flags & SYN:
            client_is_src = not pkt.tcp_flags & ACK  # a SYN+ACK seen first: its receiver is the client
        else:
            # Picked up without a handshake: a packet from a service-like port to a less service-like one is the
            # server speaking (as Zeek and nDPI assume for well-known ports); otherwise the first sender is the client.
            tcp = pkt.proto == TCP
            client_is_src = port_rank(pkt.sport, tcp) >= port_rank(pkt.dport, tcp)
        if client_is_src:
            c_ip, c_port, s_ip, s_port = pkt.src, pkt.sport, pkt.dst, pkt.dport
        else:
            c_ip, c_port, s_ip, s_port = pkt.dst, pkt.dport, pkt.src, pkt.sport
        flow = cls(
            flow_id,
            key,
            pkt.proto,
            pkt.ip_version,
            c_ip,
            c_port,
            s_ip,
            s_port,
            pkt.ts,
            pkt.ts,
            client_text=ip_text(c_ip),
            server_text=ip_text(s_ip),
            encap=pkt.encap,
        )
        if pkt.proto == TCP:
            flow.tcp_state = TcpState.NEW
        return flow

    def direction_of(self, pkt: Packet) -> int:
        return C2S if (pkt.src == self.client_ip and pkt.sport == self.client_port) else S2C

    def update_tcp(self, pkt: Packet, direction: int) -> None:
        flags = pkt.tcp_flags
        self.tcp_flags[direction] |= flags
        if flags & RST:
            self.rst_seen = True
            self.tcp_state = TcpState.CLOSED
            return
        if flags & SYN:
            if flags & ACK:
                self.synack_seen = True
                if self.tcp_state in (TcpState.SYN_SENT, TcpState.NEW):
                    self.tcp_state = TcpState.SYN_RECEIVED
            else:
                self.syn_seen = True
                if self.tcp_state is TcpState.NEW:
                    self.tcp_state = TcpState.SYN_SENT
        elif flags & ACK and self.tcp_state is TcpState.SYN_RECEIVED and direction == C2S:
            self.tcp_state = TcpState.ESTABLISHED
        elif self.tcp_state is TcpState.NEW and pkt.payload:
            self.tcp_state = TcpState.ESTABLISHED  # mid-stream pickup
        if flags & FIN:
            self.fin_seen[direction] = True
            self.tcp_state = TcpState.CLOSED if all(self.fin_seen) else TcpState.CLOSING

    def advance_seq(self, pkt: Packet, direction: int) -> None:
        """Remember the sequence number just after the highest byte seen in ``direction`` (mod 2**32)."""
        end = (pkt.seq + len(pkt.payload) + (1 if pkt.tcp_flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        current = self.seq_end[direction]
        if current is None or 0 < (end - current) & 0xFFFFFFFF < 0x80000000:
            self.seq_end[direction] = end

    @property
    def closed(self) -> bool:
        return self.tcp_state is TcpState.CLOSED

    @property
    def app_proto(self) -> str:
        """What the dissectors found the flow to be (``unknown`` before any data was dissected)."""
        return self.facts.app_proto if self.facts is not None else UNKNOWN
