"""A node's /metrics, from the agent's last look at its workers."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import generate_latest

from chokepoint.manager.agent.metrics import registry_for


def test_node_metrics_from_a_snapshot():
    snapshot = {
        "in_force": {"policy": 3},
        "counters": {"verdicts_by_action": {"reset": 2}, "verdicts_by_rule": {"r1": 2}, "flows_active": 5,
                     "queue_dropped": 1, "flow_bytes_ended": 900},
        "fail_open": {"state": "failing-open", "transitions": 1},
        "workers": [{"running": True}, {"running": False}],
        "events": {"read": 4, "sent": 4},
        "manager": {"reachable": True},
    }  # fmt: skip
    text = generate_latest(registry_for(SimpleNamespace(snapshot=snapshot))).decode()
    for line in (
        'chokepoint_node_verdicts_total{action="reset"} 2.0',
        'chokepoint_node_rule_verdicts_total{rule="r1"} 2.0',
        "chokepoint_node_flows_active 5.0",
        'chokepoint_node_queue_dropped_total{reason="queue_full"} 1.0',
        "chokepoint_node_failing_open 1.0",
        "chokepoint_node_policy_version 3.0",
        "chokepoint_node_workers_running 1.0",
        "chokepoint_node_flow_bytes_total 900.0",
        "chokepoint_node_manager_reachable 1.0",
    ):
        assert line in text, line
