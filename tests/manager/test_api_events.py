"""Event routes as the dashboard uses them: top values with an action filter; queries answer stored JSON."""

from __future__ import annotations

import time

from tests.manager.test_api_admin import _event


def test_top_blocked_names_and_the_event_json(api):
    api.deployment("a")
    token = api.token("node", "a")
    node = api.call("POST", "/deployments/a/nodes", token, json={"name": "n1"}).json()["node"]["id"]
    now = time.time()
    records = [{**_event("x.test"), "timestamp": now - 5}] * 3 + [{**_event("y.test"), "timestamp": now - 4}]
    api.call("POST", f"/nodes/{node}/events", token, json={"events": records})
    top = api.call("GET", "/deployments/a/top", params={"by": "server_name", "action": "reset"}).json()
    assert top == [{"value": "x.test", "count": 3}, {"value": "y.test", "count": 1}]
    assert api.call("GET", "/deployments/a/top", params={"by": "src_ip"}).status_code == 422
    events = api.call("GET", "/events", params={"deployment": "a", "limit": 2}).json()
    first = events["events"][0]
    assert first["node"] == "n1" and first["event_type"] == "chokepoint" and isinstance(first["id"], int)
    assert events["next_before_id"] == events["events"][-1]["id"]
