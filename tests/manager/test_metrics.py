"""The manager's /metrics: requests, persistent counters and per-node health from heartbeats."""

from __future__ import annotations


def test_metrics_show_nodes_and_counters(api):
    api.deployment("a")
    token = api.token("node", "a")
    node = api.call("POST", "/deployments/a/nodes", token, json={"name": "n1"}).json()
    doc = {
        "in_force": {"policy": 1, "state_hash": node["desired"]["state_hash"]},
        "counters": {"verdicts_by_action": {"reset": 4}, "queue_dropped": 2},
        "events": {"dropped": 0},
        "fail_open": {"transitions": 1},
    }
    api.call("POST", f"/nodes/{node['node']['id']}/heartbeat", token, json=doc)
    text = api.client.get("/metrics").text
    assert 'chokepoint_node_up{deployment="a",health="in-sync",node="n1"} 1.0' in text
    assert 'chokepoint_node_verdicts_total{action="reset",deployment="a",node="n1"} 4.0' in text
    assert 'chokepoint_node_queue_dropped_total{deployment="a",node="n1"} 2.0' in text
    assert 'chokepoint_node_fail_open_transitions_total{deployment="a",node="n1"} 1.0' in text
    assert 'chokepoint_manager_counter_total{name="policy_pushes"} 1.0' in text
    assert "chokepoint_manager_http_requests_total" in text
