"""Which connections the proxy gets (the kernel redirect) and what the profile decides for each one: a
private engine fed the bytes as the packet path would have seen them."""

from __future__ import annotations

import ipaddress
import random
import socket
import time
from collections.abc import Callable
from typing import Any

from chokepoint.backends.intercept.common import DEFAULT_INTERCEPT_PORTS, DEFAULT_PORT, Address
from chokepoint.backends.kernel import Redirect
from chokepoint.dissect import tls
from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol
from chokepoint.engine import Engine
from chokepoint.packet.record import ACK, PSH, SYN, TCP, Packet
from chokepoint.policy.conditions import AllOf, Atom
from chokepoint.policy.verdict import Action, Verdict

MSS = 1448  # synthetic segments fed to the engine (Ethernet MSS with timestamps)
# linux/netfilter_ipv4.h SO_ORIGINAL_DST, linux/netfilter_ipv6/ip6_tables.h IP6T_SO_ORIGINAL_DST
SO_ORIGINAL_DST = 80
IP6T_SO_ORIGINAL_DST = 80
_TCPI_OPT_TIMESTAMPS = 1
_CLIENT_ISN, _SERVER_ISN = 0x1000, 0x8000


def intercept_rules(policy: Any) -> list[Any]:
    """The compiled policy's ``tls-intercept`` rules."""
    return [rule for rule in policy.rules if rule.action is Action.TLS_INTERCEPT]


def _top_atoms(condition: Any) -> list[Atom]:
    if isinstance(condition, Atom):
        return [condition]
    if isinstance(condition, AllOf):
        return [c for c in condition.children if isinstance(c, Atom)]
    return []


def redirect_for(policy: Any, listen_port: int = DEFAULT_PORT) -> Redirect | None:
    """What the kernel must send to the proxy: the ports and destinations the intercept rules can match (a
    top-level ``server_port``/``server_ip`` ``in`` condition of each; otherwise port 443 and any destination),
    or None when the policy intercepts nothing."""
    rules = intercept_rules(policy)
    if not rules:
        return None
    ports: set[tuple[int, int]] = set()
    destinations: set[str] = set()
    any_destination = False
    for rule in rules:
        atoms = _top_atoms(rule.when)
        rule_ports = {tuple(r) for a in atoms if a.field == "server_port" and a.op == "in" for r in a.value}
        rule_dests = {d for a in atoms if a.field == "server_ip" and a.op == "in" for d in a.value}
        ports |= rule_ports or set(DEFAULT_INTERCEPT_PORTS)
        destinations |= rule_dests
        any_destination = any_destination or not rule_dests
    return Redirect(listen_port, tuple(sorted(ports)), () if any_destination else tuple(sorted(destinations)))


def so_original_dst(sock: Any) -> Address:
    """The destination a REDIRECTed connection was sent to, from conntrack (``SO_ORIGINAL_DST``)."""
    if sock.family == socket.AF_INET6:
        raw = sock.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, 28)
        port = int.from_bytes(raw[2:4], "big")
        return str(ipaddress.IPv6Address(raw[8:24])), port
    raw = sock.getsockopt(socket.IPPROTO_IP, SO_ORIGINAL_DST, 16)
    return str(ipaddress.IPv4Address(raw[4:8])), int.from_bytes(raw[2:4], "big")


def tcp_header_len(sock: Any) -> int:
    """Data-segment TCP header length of this connection: 32 with timestamps (RFC 7323), else 20."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except (OSError, AttributeError):
        return 20
    return 32 if len(info) > 5 and info[5] & _TCPI_OPT_TIMESTAMPS else 20


class FlowDecider:
    """One proxied connection as the packet path would have seen it, fed to a private engine of the profile:
    a synthetic three-way handshake, then each chunk of bytes as MSS-sized segments in order."""

    def __init__(
        self,
        profile: Any,
        client: Address,
        server: Address,
        *,
        rng: random.Random,
        clock: Callable[[], float] = time.time,
        header_len: int = 20,
    ) -> None:
        self.engine = Engine(profile, rng=rng)
        self.client, self.server = client, server
        self.packed = (ipaddress.ip_address(client[0]).packed, ipaddress.ip_address(server[0]).packed)
        self.version = 6 if len(self.packed[0]) == 16 else 4
        self.clock = clock
        self.header_len = header_len
        self.seq = [_CLIENT_ISN, _SERVER_ISN]
        self.index = 0
        self.flow: Any = None
        self.trigger: Packet | None = None
        self._segment(0, SYN)
        self._segment(1, SYN | ACK)
        self._segment(0, ACK)

    @property
    def verdict(self) -> Verdict | None:
        return self.flow.verdict

    @property
    def inspecting(self) -> bool:
        return self.flow.inspecting

    @property
    def hello(self) -> Any:
        """The dissected ClientHello (``chokepoint.dissect.tls.ClientHello``), once complete."""
        return self.flow.facts.tls if self.flow.facts is not None else None

    def client_data(self, data: bytes) -> None:
        self._data(0, data)

    def server_data(self, data: bytes) -> None:
        self._data(1, data)

    def _data(self, direction: int, data: bytes) -> None:
        for start in range(0, len(data), MSS):
            if not self.flow.inspecting:
                return
            self._segment(direction, PSH | ACK, data[start : start + MSS])

    def _segment(self, direction: int, flags: int, payload: bytes = b"") -> None:
        src, dst = self.packed if direction == 0 else self.packed[::-1]
        ends = (self.client, self.server) if direction == 0 else (self.server, self.client)
        tcp_len = 40 if flags & SYN else self.header_len
        self.index += 1
        pkt = Packet(
            ts=self.clock(),
            ip_version=self.version,
            src=src,
            dst=dst,
            proto=TCP,
            sport=ends[0][1],
            dport=ends[1][1],
            payload=payload,
            ttl=64,
            ip_len=(20 if self.version == 4 else 40) + tcp_len + len(payload),
            tcp_flags=flags,
            seq=self.seq[direction],
            ack=self.seq[1 - direction] if flags & ACK else 0,
            window=65535,
            tcp_header_len=tcp_len,
            index=self.index,
        )
        self.seq[direction] = (self.seq[direction] + len(payload) + (1 if flags & SYN else 0)) % (1 << 32)
        step = self.engine.step(pkt)
        self.flow = step.flow
        if step.decided_now:
            self.trigger = pkt


def hello_state(data: bytes) -> str:
    """``complete`` (a whole ClientHello), ``partial`` (a valid prefix) or ``other`` (not a ClientHello)."""
    try:
        tls.parse_client_hello_records(data)
    except NeedMoreData:
        return "partial"
    except (NotThisProtocol, Malformed):
        return "other"
    return "complete"
