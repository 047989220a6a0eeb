"""The flow table: idle timeouts by transport and an LRU bound, both driven by packet time (no wall clock).

Flows live in one ordered map per timeout class (TCP open, TCP closed, UDP, other), least recently active
first, so expiry pops from the front of each map and never scans the table.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterator

from chokepoint.flow.flow import Flow
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
        }
        self.classes: dict[str, OrderedDict[FlowKey, Flow]] = {name: OrderedDict() for name in self.timeouts}
        self.index: dict[FlowKey, Flow] = {}
        self.counters: Counter[str] = Counter()
        self.next_id = 1
        self.now = 0.0
        self.evicted: list[Flow] = []

    def __len__(self) -> int:
        return len(self.index)

    def lookup(self, pkt: Packet) -> tuple[Flow, bool]:
        """The packet's flow (created if new) and whether it was created. Refreshes its LRU position."""
        key = flow_key(pkt)
        flow = self.index.get(key)
        if flow is not None:
            self.classes[flow.timeout_class].move_to_end(key)
            return flow, False
        if len(self.index) >= self.settings.max_flows:
            self._evict_lru()
        flow = Flow.from_first_packet(self.next_id, key, pkt)
        self.next_id += 1
        flow.timeout_class = _class_of(flow)
        self.classes[flow.timeout_class][key] = flow
        self.index[key] = flow
        self.counters["flows_created"] += 1
        return flow, True

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
        for name, flows in self.classes.items():
            limit = self.now - self.timeouts[name]
            while flows:
                key, flow = next(iter(flows.items()))
                if flow.last_ts > limit:
                    break
                del flows[key]
                del self.index[key]
                flow.end_reason = "timeout"
                self.counters["flows_expired"] += 1
                yield flow

    def drain(self) -> Iterator[Flow]:
        """Remove and yield every remaining flow (end of capture), oldest first."""
        flows = sorted(self.index.values(), key=lambda f: f.first_ts)
        for flows_of_class in self.classes.values():
            flows_of_class.clear()
        self.index.clear()
        for flow in flows:
            flow.end_reason = flow.end_reason or "end-of-capture"
            yield flow

    def _evict_lru(self) -> None:
        oldest: Flow | None = None
        for flows in self.classes.values():
            if flows:
                candidate = next(iter(flows.values()))
                if oldest is None or candidate.last_ts < oldest.last_ts:
                    oldest = candidate
        if oldest is None:
            return
        del self.classes[oldest.timeout_class][oldest.key]
        del self.index[oldest.key]
        oldest.end_reason = "evicted"
        self.counters["flows_evicted"] += 1
        self.evicted.append(oldest)

    def pop_evicted(self) -> list[Flow]:
        out, self.evicted = self.evicted, []
        return out


def _class_of(flow: Flow) -> str:
    if flow.proto == TCP:
        return "tcp_closed" if flow.closed else "tcp"
    if flow.proto == UDP:
        return "udp"
    return "other"
