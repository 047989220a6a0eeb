"""``chokepoint nodes list`` through the real entry point."""

from __future__ import annotations

import json

from chokepoint.manager.client import ManagerClient
from tests.cli.conftest import run
from tests.manager.conftest import POLICY


def test_nodes_list_shows_health_versions_and_counters(manager):
    admin = ManagerClient(manager.url, manager.admin)
    admin.create_deployment("d")
    admin.push_policy("d", expected=0, files={"policy.yaml": POLICY})
    node = ManagerClient(manager.url, admin.create_token("n", "node", "d")["token"])
    node_id = node.register("d", "n1", {})["node"]["id"]
    desired = admin.status("d")["desired"]
    beat = {
        "in_force": {"policy": 1, "state_hash": desired["state_hash"], "lists": {}},
        "counters": {"verdicts_by_action": {"reset": 3}},
        "events": {"sent": 4, "dropped": 0},
    }
    node.heartbeat(node_id, beat)
    table = run(manager, "nodes", "list", "-d", "d")
    assert table.returncode == 0 and "n1" in table.stdout and "in-sync" in table.stdout and "reset=3" in table.stdout
    node.heartbeat(node_id, beat)  # fresh again: a slow machine can take the 5 s a node needs to be stale
    as_json = json.loads(run(manager, "nodes", "list", "-d", "d", "--json").stdout)
    assert as_json[0]["policy_in_force"] == 1 and as_json[0]["health"] == "in-sync"
