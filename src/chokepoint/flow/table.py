"""The flow table: idle timeouts by transport, an LRU bound and a memory budget with an emergency mode
(:mod:`chokepoint.flow.memcap`), all driven by packet time (no wall clock).

Flows live in one ordered map per timeout class (TCP open, TCP closed, UDP, other, and the unassured ones: TCP
flows that have not completed their handshake, "tcp_new", and UDP flows never answered, "udp_new"), least
recently active first, so expiry and eviction pop from the front
of a map and never scan the table.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterator

from chokepoint.flow import memcap
from chokepoint.flow.flow import S2C, Flow, TcpState
from chokepoint.flow.key import FlowKey, flow_key
from chokepoint.packet.record import TCP, UDP, Packet
from chokepoint.settings import EngineSettings


class FlowTable:
    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.timeouts = {
            "tcp": settings.tcp_timeout,
            "tcp_closed": settings.tcp_closed_timeout,
            "udp": settings.udp_timeout,
            "other": settings.other_timeout,
            "tcp_new": settings.tcp_timeout,  # these two: emergency_new_timeout while in emergency mode
            "udp_new": settings.udp_timeout,
        }
        self.classes: dict[str, OrderedDict[FlowKey, Flow]] = {name: OrderedDict() for name in self.timeouts}
        self.index: dict[FlowKey, Flow] = {}
        self.counters: Counter[str] = Counter()
        self.next_id = 1
        self.now = 0.0
        self.evicted: list[Flow] = []
        self.used = 0  # estimated bytes of the live flows (memcap.FLOW_BYTES, DATA_BYTES)
        self.emergency = False

    def __len__(self) -> int:
        return len(self.index)

    def lookup(self, pkt: Packet) -> tuple[Flow, bool]:
        """The packet's flow (created if new) and whether it was created. Refreshes its LRU position."""
        key = flow_key(pkt)
        flow = self.index.get(key)
        if flow is not None:
            self.classes[flow.timeout_class].move_to_end(key)
            return flow, False
        self._make_room()
        flow = Flow.from_first_packet(self.next_id, key, pkt)
        self.next_id += 1
        flow.timeout_class = _class_of(flow)
        self.classes[flow.timeout_class][key] = flow
        self.index[key] = flow
        self.used += memcap.FLOW_BYTES
        self.counters["flows_created"] += 1
        return flow, True

    def charge_data(self, flow: Flow) -> None:
        """``flow`` has just got its dissection state (its first data): charge it to the budget."""
        self.used += memcap.DATA_BYTES

    def _make_room(self) -> None:
        """Evict until one more flow fits both bounds (entering emergency mode if it did not)."""
        budget = memcap.budget_bytes(self.settings)
        while self.index and memcap.over(len(self.index), self.used, self.settings.max_flows, budget):
            if not self.emergency:
                self.emergency = True
                self.counters[memcap.EMERGENCIES] += 1
            self._evict_lru()

    def _forget(self, flow: Flow) -> None:
        del self.classes[flow.timeout_class][flow.key]
        del self.index[flow.key]
        self.used -= memcap.FLOW_BYTES + (memcap.DATA_BYTES if flow.facts is not None else 0)

    def reclassify(self, flow: Flow) -> None:
        """Move a flow whose TCP state changed to the right timeout class."""
        wanted = _class_of(flow)
        if wanted != flow.timeout_class:
            del self.classes[flow.timeout_class][flow.key]
            flow.timeout_class = wanted
            self.classes[wanted][flow.key] = flow

    def expire(self, now: float) -> Iterator[Flow]:
        """Remove and yield every flow idle for longer than its class's timeout at packet time ``now``."""
        self.now = max(self.now, now)
        emergency = self.emergency
        for name, flows in self.classes.items():
            timeout = self.timeouts[name]
            unassured = emergency and name in _UNASSURED_CLASSES
            if unassured:
                timeout = min(timeout, self.settings.emergency_new_timeout)
            limit = self.now - timeout
            while flows:
                flow = next(iter(flows.values()))
                if flow.last_ts > limit:
                    break
                self._forget(flow)
                flow.end_reason = "timeout"
                self.counters["flows_expired"] += 1
                if unassured:
                    self.counters[memcap.EXPIRED_EMERGENCY] += 1
                yield flow
        if emergency and memcap.recovered(
            len(self.index), self.used, self.settings.max_flows, memcap.budget_bytes(self.settings)
        ):
            self.emergency = False

    def drain(self) -> Iterator[Flow]:
        """Remove and yield every remaining flow (end of capture), oldest first."""
        flows = sorted(self.index.values(), key=lambda f: f.first_ts)
        for flows_of_class in self.classes.values():
            flows_of_class.clear()
        self.index.clear()
        self.used = 0
        for flow in flows:
            flow.end_reason = flow.end_reason or "end-of-capture"
            yield flow

    def _evict_lru(self) -> None:
        """Evict the least recently active unassured flow, or if there is none the least recently active one."""
        oldest: Flow | None = None
        for name in _UNASSURED_CLASSES:
            flows = self.classes[name]
            if flows:
                candidate = next(iter(flows.values()))
                if oldest is None or candidate.last_ts < oldest.last_ts:
                    oldest = candidate
        if oldest is not None:
            self.counters[memcap.EVICTED_UNASSURED] += 1
        else:
            for flows in self.classes.values():
                if flows:
                    candidate = next(iter(flows.values()))
                    if oldest is None or candidate.last_ts < oldest.last_ts:
                        oldest = candidate
        if oldest is None:
            return
        self._forget(oldest)
        oldest.end_reason = "evicted"
        self.counters[memcap.EVICTED] += 1
        self.evicted.append(oldest)

    def pop_evicted(self) -> list[Flow]:
        out, self.evicted = self.evicted, []
        return out


#: TCP states of a flow that has not completed its handshake (an unassured flow: memcap evicts these first).
UNASSURED = frozenset({TcpState.NEW, TcpState.SYN_SENT, TcpState.SYN_RECEIVED})
#: The timeout classes of unassured flows: TCP without a completed handshake, UDP without an answer.
_UNASSURED_CLASSES = ("tcp_new", "udp_new")


def _class_of(flow: Flow) -> str:
    if flow.proto == TCP:
        if flow.closed:
            return "tcp_closed"
        return "tcp_new" if flow.tcp_state in UNASSURED else "tcp"
    if flow.proto == UDP:
        return "udp" if flow.pkts[S2C] else "udp_new"
    return "other"
