"""What agents call: registration, heartbeats, the long poll woken by a push, bundles, event batches."""

from __future__ import annotations

import threading

from tests.manager.conftest import POLICY


def test_a_long_poll_is_answered_by_the_push_not_by_its_timeout(api):
    api.deployment("a")
    token = api.token("node", "a")
    node = api.call("POST", "/deployments/a/nodes", token, json={"name": "n1"}).json()
    known = node["desired"]["state_hash"]
    answers = []
    poll = threading.Thread(
        target=lambda: answers.append(
            api.call("GET", f"/nodes/{node['node']['id']}/desired", token, params={"known": known, "wait": 60}).json()
        )
    )
    poll.start()
    v2 = {"files": {"policy.yaml": POLICY.replace("blocked.test", "b2.test")}, "expected_version": 1}
    assert api.call("POST", "/deployments/a/policy", json=v2).status_code == 201
    poll.join(30)  # woken by the push; a poll that only timed out would still be waiting
    assert not poll.is_alive() and answers[0]["changed"] is True
    assert answers[0]["desired"]["policy"]["number"] == 2


def test_the_bundle_has_the_policy_files_and_the_managed_lists(api):
    api.deployment("a")
    api.call("POST", "/deployments/a/lists/blocked", json={"entries": "m.test\n", "expected_version": 0})
    token = api.token("node", "a")
    node_id = api.call("POST", "/deployments/a/nodes", token, json={"name": "n1"}).json()["node"]["id"]
    content = api.call("GET", f"/nodes/{node_id}/bundle", token).json()
    assert content["policy"]["files"]["policy.yaml"] == POLICY
    assert content["lists"]["blocked"]["entries"] == "m.test\n"
    assert content["desired"]["state_hash"]
    big = {"events": [{"event_type": "flow"}] * 10001}
    assert api.call("POST", f"/nodes/{node_id}/events", token, json=big).status_code == 413
    assert api.call("POST", "/deployments/a/nodes", token, json={"name": "Bad Name"}).status_code == 422


def test_heartbeats_feed_the_status_and_the_rates(api):
    api.deployment("a")
    token = api.token("node", "a")
    node = api.call("POST", "/deployments/a/nodes", token, json={"name": "n1"}).json()
    for n in (0, 10):
        doc = {
            "in_force": {"policy": 1, "state_hash": node["desired"]["state_hash"]},
            "counters": {"verdicts_by_action": {"drop": n}},
        }
        assert api.call("POST", f"/nodes/{node['node']['id']}/heartbeat", token, json=doc).status_code == 200
    status = api.call("GET", "/deployments/a").json()
    assert status["converged"] and status["nodes"][0]["health"] == "in-sync"
    series = api.call("GET", "/deployments/a/rates").json()["series"]
    assert series and series[-1]["by_action"]["drop"] > 0
