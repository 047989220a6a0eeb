"""What the status API, the CLI and the dashboard say about a deployment: nodes, health, versions, rates.

A node's ``health`` is one of (``HEALTH``):

- ``in-sync``: heartbeats arrive and the node acknowledged the state hash it should enforce;
- ``updating``: heartbeats arrive, it still enforces an older version and reports no error;
- ``error``: it refused the desired version (``last_error``: the loader's message) and keeps enforcing the one
  it acknowledged before;
- ``failing-open``: its agent says a censor worker is not running (the kernel's ``--queue-bypass`` passes
  traffic uninspected) or the kernel queue overflowed since the last heartbeat;
- ``stale``: no heartbeat for ``stale_after`` seconds (agent or node down, or cut off from the manager; the node
  keeps enforcing what it last acknowledged, which ``policy_in_force`` shows);
- ``registered``: never sent a heartbeat.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Mapping
from typing import Any

HEALTH = ("in-sync", "updating", "error", "failing-open", "stale", "registered")
#: Seconds without a heartbeat after which a node is ``stale`` (its agent beats every second by default).
STALE_AFTER = 5.0


def node_health(node: Mapping[str, Any], desired_hash: str | None, now: float, stale_after: float = STALE_AFTER) -> str:
    beat = node.get("last_heartbeat")
    if beat is None:
        return "registered"
    interval = float((node.get("health") or {}).get("interval_s") or 1.0)
    if now - beat > max(stale_after, 3 * interval):
        return "stale"
    health = node.get("health") or {}
    if (health.get("fail_open") or {}).get("state") == "failing-open":
        return "failing-open"
    if node.get("state_hash") == desired_hash:
        return "in-sync"  # (both None: nothing pushed yet, the node enforces its command line's policy)
    if node.get("last_error"):
        return "error"
    return "updating"


def node_view(
    node: Mapping[str, Any], desired: Mapping[str, Any], now: float, stale_after: float = STALE_AFTER
) -> dict:
    health = node.get("health") or {}
    counters = health.get("counters") or {}
    return {
        "id": node["id"],
        "name": node["name"],
        "health": node_health(node, desired.get("state_hash"), now, stale_after),
        "last_heartbeat": node.get("last_heartbeat"),
        "heartbeat_age_s": None if node.get("last_heartbeat") is None else round(now - node["last_heartbeat"], 3),
        "policy_in_force": node.get("policy_in_force"),
        "lists_in_force": node.get("lists_in_force") or {},
        "state_hash": node.get("state_hash"),
        "desired_policy": (desired.get("policy") or {}).get("number"),
        "desired_state_hash": desired.get("state_hash"),
        "canary": node.get("desired_override") is not None,
        "last_error": node.get("last_error"),
        "workers": health.get("workers") or [],
        "fail_open": health.get("fail_open") or {},
        "manager_link": health.get("manager") or {},
        "events": health.get("events") or {},
        "counters": counters,
        "info": node.get("info") or {},
    }


def deployment_status(store, dep: Mapping[str, Any], now: float, stale_after: float = STALE_AFTER) -> dict[str, Any]:
    """Everything ``policy status`` and the dashboard show of one deployment."""
    base = store.desired(dep)
    views = []
    for node in store.nodes(dep["id"]):
        desired = store.desired(dep, node["desired_override"]) if node["desired_override"] else base
        views.append(node_view(node, desired, now, stale_after))
    by_health: dict[str, int] = defaultdict(int)
    for view in views:
        by_health[view["health"]] += 1
    return {
        "deployment": dep["name"],
        "id": dep["id"],
        "description": dep["description"],
        "desired": base,
        "policy_head": dep["policy_head"],
        "desired_lists": dep["desired_lists"],
        "nodes": views,
        "by_health": dict(by_health),
        "converged": bool(views) and all(v["health"] == "in-sync" for v in views),
    }


class RateBook:
    """Verdicts per second by action, from the nodes' cumulative counters in successive heartbeats (kept in
    memory: the last ``keep`` heartbeats of each node)."""

    def __init__(self, keep: int = 600) -> None:
        self.keep = keep
        self._series: dict[tuple[int, int], deque] = {}
        self._lock = threading.Lock()

    def add(self, dep_id: int, node_id: int, ts: float, by_action: Mapping[str, int]) -> None:
        with self._lock:
            series = self._series.setdefault((dep_id, node_id), deque(maxlen=self.keep))
            series.append((ts, {str(k): int(v) for k, v in by_action.items()}))

    def rates(self, dep_id: int, since: float) -> list[dict[str, Any]]:
        """``[{"t": second, "by_action": {action: per second}}]`` for whole seconds from ``since``."""
        buckets: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        with self._lock:
            series = [list(s) for (d, _), s in self._series.items() if d == dep_id]
        for points in series:
            for (t0, c0), (t1, c1) in zip(points, points[1:]):
                if t1 < since or t1 <= t0:
                    continue
                for action, value in c1.items():
                    delta = value - c0.get(action, 0)
                    if delta < 0:  # a worker restarted: its counters started again from zero
                        delta = value
                    buckets[int(t1)][action] += delta / (t1 - t0)
        return [
            {"t": t, "by_action": {a: round(v, 3) for a, v in sorted(b.items())}} for t, b in sorted(buckets.items())
        ]


__all__ = ["HEALTH", "STALE_AFTER", "RateBook", "deployment_status", "node_health", "node_view"]
