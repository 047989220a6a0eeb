"""Prometheus metrics of the manager (``/metrics``), in a registry of its own (no global state).

- ``chokepoint_manager_http_requests_total{method,route,status}`` and ``..._http_request_seconds`` (histogram);
- ``chokepoint_manager_counter_total{name}``: the persistent counters (events stored; events rejected, evicted,
  expired, dropped by the live stream, by reason; policy and list pushes);
- ``chokepoint_manager_events_in_store``; ``chokepoint_manager_sse_subscribers``;
- per node, from its last heartbeat: ``chokepoint_node_up{deployment,node,health}`` (1 for the node's current
  health), ``chokepoint_node_policy_version``, ``chokepoint_node_heartbeat_age_seconds``,
  ``chokepoint_node_verdicts_total{action}``, ``chokepoint_node_events_dropped_total`` (by its agent),
  ``chokepoint_node_queue_dropped_total``, ``chokepoint_node_fail_open_transitions_total``.

Every node also serves its own ``/metrics`` (:mod:`chokepoint.manager.agent.metrics`).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from chokepoint.manager.status import HEALTH, node_view


class _FleetCollector:
    def __init__(self, context) -> None:
        self.context = context

    def collect(self):
        c = self.context
        counters = CounterMetricFamily(
            "chokepoint_manager_counter",
            "persistent manager counters (events dropped by reason, pushes)",
            labels=["name"],
        )
        for name, value in sorted(c.store.counters().items()):
            counters.add_metric([name], value)
        yield counters
        stored = GaugeMetricFamily("chokepoint_manager_events_in_store", "events held in the event store")
        stored.add_metric([], c.events.count())
        yield stored
        subs = GaugeMetricFamily("chokepoint_manager_sse_subscribers", "live event stream subscribers")
        subs.add_metric([], len(c.hub))
        yield subs
        up = GaugeMetricFamily(
            "chokepoint_node_up", "1 for the node's current health", labels=["deployment", "node", "health"]
        )
        version = GaugeMetricFamily(
            "chokepoint_node_policy_version", "policy version in force", labels=["deployment", "node"]
        )
        age = GaugeMetricFamily(
            "chokepoint_node_heartbeat_age_seconds", "since the last heartbeat", labels=["deployment", "node"]
        )
        verdicts = CounterMetricFamily(
            "chokepoint_node_verdicts", "verdicts by action (node counters)", labels=["deployment", "node", "action"]
        )
        dropped = CounterMetricFamily(
            "chokepoint_node_events_dropped", "events the node's agent dropped", labels=["deployment", "node"]
        )
        queue = CounterMetricFamily(
            "chokepoint_node_queue_dropped", "packets the kernel queue dropped", labels=["deployment", "node"]
        )
        fail_open = CounterMetricFamily(
            "chokepoint_node_fail_open_transitions",
            "enforcing -> failing open transitions",
            labels=["deployment", "node"],
        )
        now = c.clock()
        for dep in c.store.deployments():
            base = c.store.desired(dep)
            for node in c.store.nodes(dep["id"]):
                view = node_view(
                    node, c.store.desired(dep, node["desired_override"]) if node["desired_override"] else base, now
                )
                labels = [dep["name"], node["name"]]
                for health in HEALTH:
                    up.add_metric(labels + [health], 1.0 if view["health"] == health else 0.0)
                if view["policy_in_force"] is not None:
                    version.add_metric(labels, view["policy_in_force"])
                if view["heartbeat_age_s"] is not None:
                    age.add_metric(labels, view["heartbeat_age_s"])
                for action, n in sorted((view["counters"].get("verdicts_by_action") or {}).items()):
                    verdicts.add_metric(labels + [action], n)
                dropped.add_metric(labels, int(view["events"].get("dropped") or 0))
                queue.add_metric(labels, int(view["counters"].get("queue_dropped") or 0))
                fail_open.add_metric(labels, int(view["fail_open"].get("transitions") or 0))
        yield from (up, version, age, verdicts, dropped, queue, fail_open)


class ManagerMetrics:
    def __init__(self, context) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "chokepoint_manager_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "chokepoint_manager_http_request_seconds", "HTTP request time", ["route"], registry=self.registry
        )
        self.registry.register(_FleetCollector(context))

    def install(self, app) -> None:
        metrics = self

        @app.middleware("http")
        async def count(request: Request, call_next):
            started = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            if not path.endswith("/stream"):
                metrics.latency.labels(path).observe(time.perf_counter() - started)
            metrics.requests.labels(request.method, path, str(response.status_code)).inc()
            return response

        @app.get("/metrics", include_in_schema=False)
        def prometheus() -> Response:
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def text(self) -> str:
        return generate_latest(self.registry).decode()


__all__: list[Any] = ["ManagerMetrics"]
