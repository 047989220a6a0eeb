"""Access control: tokens hashed, roles, an operator scoped to one deployment, unauthenticated writes refused,
every write audited."""

from __future__ import annotations

from chokepoint.manager.auth import token_hash
from chokepoint.manager.schema import tokens
from tests.manager.conftest import POLICY

PUSH = {"files": {"policy.yaml": POLICY}, "expected_version": 1}


def _event(name: str = "blocked.test") -> dict:
    return {
        "timestamp": "2026-12-07T10:00:00.000000+0000",
        "event_type": "chokepoint",
        "src_ip": "198.18.0.2",
        "src_port": 40000,
        "dest_ip": "198.19.0.10",
        "dest_port": 443,
        "proto": "TCP",
        "app_proto": "tls",
        "chokepoint": {"action": "reset", "rule": "block-sni", "evidence": [{"field": "tls.sni", "value": name}]},
    }


def test_an_operator_of_a_can_neither_read_b_events_nor_push_to_b(api):
    api.deployment("a")
    api.deployment("b")
    op_a = api.token("operator", "a")
    node_b = api.token("node", "b")
    node_id = api.call("POST", "/deployments/b/nodes", node_b, json={"name": "b1"}).json()["node"]["id"]
    assert api.call("POST", f"/nodes/{node_id}/events", node_b, json={"events": [_event()]}).json()["stored"] == 1
    # B's events and status are closed to A's operator ...
    assert api.call("GET", "/events", op_a, params={"deployment": "b"}).status_code == 403
    assert api.call("GET", "/deployments/b", op_a).status_code == 403
    assert api.call("GET", "/deployments/b/top", op_a).status_code == 403
    assert [d["name"] for d in api.call("GET", "/deployments", op_a).json()] == ["a"]
    # ... so is the live stream, and pushing or rolling back there
    assert api.call("GET", "/events/stream", op_a, params={"deployment": "b"}).status_code == 403
    assert api.call("POST", "/deployments/b/policy", op_a, json=PUSH).status_code == 403
    assert (
        api.call("POST", "/deployments/b/policy/rollback", op_a, json={"to": 1, "expected_version": 1}).status_code
        == 403
    )
    assert (
        api.call(
            "POST", "/deployments/b/lists/blocked", op_a, json={"entries": "x.test", "expected_version": 0}
        ).status_code
        == 403
    )
    # nothing changed in B; in A the operator can push
    assert api.call("GET", "/deployments/b/policy/versions").json()[0]["number"] == 1
    assert api.call("POST", "/deployments/a/policy", op_a, json=PUSH).status_code == 201
    # an admin reads B's event
    events = api.call("GET", "/events", params={"deployment": "b"}).json()["events"]
    assert [(e["node"], e["chokepoint"]["rule"]) for e in events] == [("b1", "block-sni")]


def test_viewers_read_everything_and_write_nothing(api):
    api.deployment("a")
    viewer = api.token("viewer")
    assert api.call("GET", "/deployments/a", viewer).status_code == 200
    assert api.call("GET", "/audit", viewer).status_code == 200
    assert api.call("POST", "/deployments/a/policy", viewer, json=PUSH).status_code == 403
    assert api.call("POST", "/deployments", viewer, json={"name": "c"}).status_code == 403
    assert api.call("POST", "/tokens", viewer, json={"name": "x", "role": "admin"}).status_code == 403


def test_node_tokens_act_as_nodes_of_their_deployment_only(api):
    api.deployment("a")
    api.deployment("b")
    node_a = api.token("node", "a")
    assert api.call("POST", "/deployments/b/nodes", node_a, json={"name": "x"}).status_code == 403
    assert api.call("POST", "/deployments/a/policy", node_a, json=PUSH).status_code == 403
    node_b = api.token("node", "b")
    b1 = api.call("POST", "/deployments/b/nodes", node_b, json={"name": "b1"}).json()["node"]["id"]
    assert api.call("POST", f"/nodes/{b1}/heartbeat", node_a, json={}).status_code == 403
    assert api.call("GET", f"/nodes/{b1}/bundle", node_a).status_code == 403


def test_unauthenticated_requests_are_refused_and_tokens_are_stored_hashed(api):
    assert api.client.post("/api/v1/deployments", json={"name": "x"}).status_code == 401
    assert api.client.get("/api/v1/deployments").status_code == 401
    bad = api.client.get("/api/v1/deployments", headers={"Authorization": "Bearer cpm_nope"})
    assert bad.status_code == 401
    assert api.client.get("/api/v1/deployments", headers={"Authorization": "Basic abc"}).status_code == 401
    made = api.call("POST", "/tokens", json={"name": "ops", "role": "viewer"}).json()
    secret = made["token"]
    assert "hash" not in made and api.call("GET", "/deployments", secret).status_code == 200
    with api.store.engine.connect() as conn:
        stored = [r.hash for r in conn.execute(tokens.select())]
    assert secret not in stored and token_hash(secret) in stored
    api.call("DELETE", f"/tokens/{made['id']}")
    assert api.call("GET", "/deployments", secret).status_code == 401
    # public: the page, the health check, the OpenAPI document, metrics
    for path in ("/", "/healthz", "/openapi.json", "/docs", "/metrics"):
        assert api.client.get(path).status_code == 200, path


def test_roles_and_scopes_are_checked_when_tokens_are_made(api):
    api.deployment("a")
    assert api.call("POST", "/tokens", json={"name": "x", "role": "operator"}).status_code == 422
    assert api.call("POST", "/tokens", json={"name": "x", "role": "viewer", "deployment": "a"}).status_code == 422
    assert api.call("POST", "/tokens", json={"name": "x", "role": "root"}).status_code == 422
    assert api.call("POST", "/tokens", json={"name": "x", "role": "operator", "deployment": "zz"}).status_code == 404


def test_every_write_is_in_the_audit_log_with_who_and_versions(api):
    api.deployment("a")
    op = api.token("operator", "a")
    api.call("POST", "/deployments/a/policy", op, json=PUSH)
    log = api.call("GET", "/audit", op).json()
    push = next(e for e in log if e["action"] == "policy.push" and e["to_version"] == "2")
    assert push["actor"] == "operator-a" and push["role"] == "operator" and push["from_version"] == "1"
    assert push["remote"] and push["ts"] > 0
    assert {"deployment.create", "policy.push"} <= {e["action"] for e in api.call("GET", "/audit").json()}
