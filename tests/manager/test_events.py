"""The event store: EVE rows, query filters, size bound and retention (every removal counted), lab-only
addresses, the live stream, top values."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from chokepoint.manager.events import Rejected, parse_timestamp, row_of, server_name
from tests.manager.test_api_admin import _event


def test_timestamps_in_suricata_form_and_numbers():
    assert parse_timestamp("2026-12-07T10:00:00.500000+0000") == pytest.approx(1796637600.5)
    assert parse_timestamp(12.5) == 12.5
    with pytest.raises(Rejected) as err:
        parse_timestamp("yesterday")
    assert err.value.reason == "no_timestamp"


def test_rows_take_the_server_name_from_protocol_objects_or_evidence():
    assert server_name({"tls": {"sni": "a.test"}}) == "a.test"
    assert server_name({"dns": {"rrname": "d.test"}}) == "d.test"
    assert server_name(_event("e.test")) == "e.test"
    row = row_of({**_event(), "event_type": "flow", "chokepoint": {"verdict": "allow", "rule": None}})
    assert (row["action"], row["rule"], row["event_type"]) == ("allow", None, "flow")


def test_records_outside_the_lab_or_malformed_are_refused_by_reason():
    for record, reason in (
        ({**_event(), "src_ip": "8.8.8.8"}, "outside_lab"),
        ({**_event(), "timestamp": None}, "no_timestamp"),
        ("not an object", "malformed"),
        ({**_event(), "event_type": ""}, "malformed"),
        ({**_event(), "pad": "x" * 70000}, "oversized"),
    ):
        with pytest.raises(Rejected) as err:
            row_of(record)
        assert err.value.reason == reason


def _node(api, deployment: str = "a", name: str = "n1") -> tuple[int, str]:
    token = api.token("node", deployment)
    return api.call("POST", f"/deployments/{deployment}/nodes", token, json={"name": name}).json()["node"]["id"], token


def test_query_by_time_node_rule_action_app_proto_and_name(api):
    api.deployment("a")
    n1, t1 = _node(api, name="n1")
    n2, t2 = _node(api, name="n2")
    base = time.time() - 3600
    batch1 = [{**_event(f"x{i}.test"), "timestamp": base + i} for i in range(5)]
    batch2 = [
        {
            **_event("dns.test"),
            "timestamp": base + 10,
            "app_proto": "dns",
            "chokepoint": {"action": "dns-forge", "rule": "r-dns"},
        }
    ]
    assert api.call("POST", f"/nodes/{n1}/events", t1, json={"events": batch1}).json()["stored"] == 5
    assert api.call("POST", f"/nodes/{n2}/events", t2, json={"events": batch2}).json()["stored"] == 1

    def q(**params):
        return [
            e.get("timestamp")
            for e in api.call("GET", "/events", params={"deployment": "a", **params}).json()["events"]
        ]

    assert len(q()) == 6
    assert len(q(since=base + 1, until=base + 3)) == 2
    assert len(q(node="n2")) == 1 and len(q(node="n1")) == 5
    assert len(q(rule="r-dns")) == 1 and len(q(action="reset")) == 5
    assert len(q(app_proto="dns")) == 1 and len(q(server_name="x3.test")) == 1
    page = api.call("GET", "/events", params={"deployment": "a", "limit": 4}).json()
    rest = api.call("GET", "/events", params={"deployment": "a", "before_id": page["next_before_id"]}).json()
    assert len(page["events"]) == 4 and len(rest["events"]) == 2
    assert api.call("GET", "/events", params={"deployment": "a", "node": "zz"}).status_code == 404
    top = api.call("GET", "/deployments/a/top", params={"by": "rule", "window": 7 * 86400}).json()
    assert top[0] == {"value": "block-sni", "count": 5}


def test_size_bound_and_retention_remove_the_oldest_and_count_them(sqlite_url):
    from tests.manager.conftest import make_api

    now = time.time()
    for api in make_api(sqlite_url, max_events=1000, retention_s=3600):
        api.deployment("a")
        node, token = _node(api)
        events = [{**_event(), "timestamp": now - 7200 + i} for i in range(600)]  # older than the retention
        events += [{**_event(), "timestamp": now - 60 + i * 0.01} for i in range(1400)]
        answer = api.call("POST", f"/nodes/{node}/events", token, json={"events": events}).json()
        assert answer["stored"] == 2000
        ctx = api.app.state.ctx
        assert ctx.events.count() == 1000
        assert ctx.events.expire() == 0  # the old ones were the oldest: evicted by size already
        stats = api.call("GET", "/stats").json()
        assert stats["event_drops"]["events_evicted_size"] == 1000
        bad = [{**_event(), "src_ip": "203.0.113.9"}, {"event_type": "flow"}]
        assert api.call("POST", f"/nodes/{node}/events", token, json={"events": bad}).json()["rejected"] == {
            "outside_lab": 1,
            "no_timestamp": 1,
        }
        drops = api.call("GET", "/stats").json()["event_drops"]
        assert drops["events_rejected_outside_lab"] == 1 and drops["events_rejected_no_timestamp"] == 1
        ctx.events.retention_s = 30
        assert ctx.events.expire() > 0
        assert api.call("GET", "/stats").json()["event_drops"]["events_expired_retention"] > 0
        assert "chokepoint_manager_counter_total" in api.client.get("/metrics").text


def test_the_live_stream_delivers_stored_events_to_a_real_client(manager_process):
    """Server-Sent Events from a real manager process, read by the same client the CLI uses."""
    from chokepoint.manager.client import ManagerClient

    admin = ManagerClient(manager_process.url, manager_process.admin)
    admin.create_deployment("a")
    node_token = admin.create_token("n", "node", "a")["token"]
    node = ManagerClient(manager_process.url, node_token)
    node_id = node.register("a", "n1", {})["node"]["id"]
    received: list[dict] = []

    def listen() -> None:
        try:
            for event, data in admin.stream("a", timeout=10):
                if event == "eve":
                    received.append(json.loads(data))
                    return
        except httpx.HTTPError:
            pass

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        node.send_events(node_id, [_event("live.test")])
        thread.join(0.3)
    assert received and received[0]["node"] == "n1"
    assert received[0]["record"]["chokepoint"]["evidence"][0]["value"] == "live.test"
