"""A node's Prometheus ``/metrics``, from the agent's last look at its workers (its own registry).

``chokepoint_node_verdicts_total{action}``, ``chokepoint_node_rule_verdicts_total{rule}``,
``chokepoint_node_packets_total``, ``chokepoint_node_flows_created_total``, ``..._flows_ended_total``,
``chokepoint_node_flows_active``, ``chokepoint_node_flow_bytes_total`` (bytes of ended flows, from their
events), ``chokepoint_node_queue_dropped_total{reason}`` (kernel queue full / netlink buffer full),
``chokepoint_node_fail_open_transitions_total``, ``chokepoint_node_failing_open`` (1 while a worker is down),
``chokepoint_node_policy_version``, ``chokepoint_node_workers_running``, ``chokepoint_node_events_total{outcome}``
(read, sent, rejected, malformed, dropped), ``chokepoint_node_manager_reachable``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class _NodeCollector:
    def __init__(self, agent) -> None:
        self.agent = agent

    def collect(self):
        doc = self.agent.snapshot or self.agent.collect()
        counters = doc.get("counters") or {}
        verdicts = CounterMetricFamily("chokepoint_node_verdicts", "verdicts by action", labels=["action"])
        for action, n in sorted((counters.get("verdicts_by_action") or {}).items()):
            verdicts.add_metric([action], n)
        rules = CounterMetricFamily("chokepoint_node_rule_verdicts", "verdicts by rule", labels=["rule"])
        for rule, n in sorted((counters.get("verdicts_by_rule") or {}).items()):
            rules.add_metric([rule], n)
        yield verdicts
        yield rules
        for name, key, help_ in (
            ("chokepoint_node_packets", "packets_seen", "packets the censor saw"),
            ("chokepoint_node_flows_created", "flows_created", "flows created"),
            ("chokepoint_node_flows_ended", "flows_ended", "flows ended"),
            ("chokepoint_node_flow_bytes", "flow_bytes_ended", "bytes of ended flows (both directions)"),
        ):
            metric = CounterMetricFamily(name, help_)
            metric.add_metric([], int(counters.get(key) or 0))
            yield metric
        active = GaugeMetricFamily("chokepoint_node_flows_active", "flows in the censors' tables")
        active.add_metric([], int(counters.get("flows_active") or 0))
        yield active
        queue = CounterMetricFamily(
            "chokepoint_node_queue_dropped", "packets dropped by the kernel queue", labels=["reason"]
        )
        queue.add_metric(["queue_full"], int(counters.get("queue_dropped") or 0))
        queue.add_metric(["netlink_buffer"], int(counters.get("user_dropped") or 0))
        yield queue
        fail_open = doc.get("fail_open") or {}
        transitions = CounterMetricFamily("chokepoint_node_fail_open_transitions", "enforcing -> failing open")
        transitions.add_metric([], int(fail_open.get("transitions") or 0))
        yield transitions
        failing = GaugeMetricFamily("chokepoint_node_failing_open", "1 while a censor worker is not running")
        failing.add_metric([], 0.0 if fail_open.get("state", "enforcing") == "enforcing" else 1.0)
        yield failing
        version = GaugeMetricFamily("chokepoint_node_policy_version", "the policy version the node enforces")
        policy = (doc.get("in_force") or {}).get("policy")
        version.add_metric([], float(policy) if policy is not None else -1.0)
        yield version
        workers = GaugeMetricFamily("chokepoint_node_workers_running", "censor workers running")
        workers.add_metric([], sum(1 for w in doc.get("workers") or () if w.get("running")))
        yield workers
        events = CounterMetricFamily("chokepoint_node_events", "events by outcome at the agent", labels=["outcome"])
        for outcome in ("read", "sent", "rejected", "malformed", "dropped"):
            events.add_metric([outcome], int((doc.get("events") or {}).get(outcome) or 0))
        yield events
        link = GaugeMetricFamily("chokepoint_node_manager_reachable", "1 when the manager answered last time")
        link.add_metric([], 1.0 if (doc.get("manager") or {}).get("reachable") else 0.0)
        yield link


def registry_for(agent) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeCollector(agent))
    return registry


def serve(agent, host: str, port: int):
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns (server, thread)."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=host, registry=registry_for(agent))


__all__ = ["registry_for", "serve"]
