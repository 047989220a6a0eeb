"""Policy and list versions through the API: validation with file:line:column, preconditions (409), rollback,
canary/promote, diffs, the audit log."""

from __future__ import annotations

from tests.manager.conftest import POLICY

BAD = POLICY.replace("action: drop", "action: dropp")


def test_an_invalid_policy_is_refused_with_its_position_and_never_stored(api):
    api.deployment("a")
    answer = api.call("POST", "/deployments/a/policy", json={"files": {"policy.yaml": BAD}, "expected_version": 1})
    assert answer.status_code == 422
    error = answer.json()["error"]
    line = BAD.splitlines().index("    action: dropp") + 1
    assert (error["file"], error["line"], error["column"]) == ("policy.yaml", line, 13)
    assert "dropp" in error["message"]
    assert [v["number"] for v in api.call("GET", "/deployments/a/policy/versions").json()] == [1]
    # a bad list file inside the bundle: the list file's own position
    files = {
        "policy.yaml": POLICY.replace("items: [blocked.test]", "file: lists/b.txt"),
        "lists/b.txt": "ok.test\nno good\n",
    }
    answer = api.call("POST", "/deployments/a/policy", json={"files": files, "expected_version": 1})
    assert answer.status_code == 422 and answer.json()["error"]["file"] == "lists/b.txt"
    assert answer.json()["error"]["line"] == 2


def test_a_stale_write_gets_409_and_changes_nothing(api):
    api.deployment("a")
    push = {"files": {"policy.yaml": POLICY.replace("blocked.test", "two.test")}, "expected_version": 1}
    assert api.call("POST", "/deployments/a/policy", json=push).status_code == 201
    stale = api.call("POST", "/deployments/a/policy", json=push)  # the second editor still thinks v1 is newest
    assert stale.status_code == 409 and stale.json()["current"] == 2
    assert api.call("GET", "/deployments/a").json()["desired"]["policy"]["number"] == 2


def test_rollback_is_a_new_version_copying_the_old_one_and_the_diff_reads(api):
    api.deployment("a")
    v2 = {
        "files": {"policy.yaml": POLICY.replace("[blocked.test]", "[blocked.test, more.test]")},
        "expected_version": 1,
    }
    assert api.call("POST", "/deployments/a/policy", json=v2).status_code == 201
    diff = api.call("GET", "/deployments/a/policy/diff", params={"to": 2}).json()["diff"]
    assert "-    items: [blocked.test]" in diff and "+    items: [blocked.test, more.test]" in diff
    back = api.call("POST", "/deployments/a/policy/rollback", json={"to": 1, "expected_version": 2})
    assert back.status_code == 201
    v1, v3 = (api.call("GET", f"/deployments/a/policy/versions/{n}").json() for n in (1, 3))
    assert v3["rollback_of"] == 1 and v3["hash"] == v1["hash"] and v3["files"] == v1["files"]
    status = api.call("GET", "/deployments/a").json()
    assert status["desired"]["policy"] == {"number": 3, "hash": v1["hash"]}
    actions = [(e["action"], e["from_version"], e["to_version"]) for e in api.call("GET", "/audit").json()]
    assert ("policy.rollback", "2", "3") in actions and ("policy.push", "1", "2") in actions


def test_canary_then_promote(api):
    api.deployment("a")
    node = api.token("node", "a")
    ids = {}
    for name in ("n1", "n2"):
        ids[name] = api.call("POST", "/deployments/a/nodes", node, json={"name": name}).json()["node"]["id"]
    push = {"files": {"policy.yaml": POLICY.replace("blocked.test", "c.test")}, "expected_version": 1, "canary": ["n1"]}
    assert api.call("POST", "/deployments/a/policy", json=push).status_code == 201
    desired = {
        n: api.call("GET", f"/nodes/{i}/desired", node).json()["desired"]["policy"]["number"] for n, i in ids.items()
    }
    assert desired == {"n1": 2, "n2": 1}
    assert (
        api.call("POST", "/deployments/a/policy/promote", json={"number": 2, "expected_version": 2}).status_code == 200
    )
    assert api.call("GET", f"/nodes/{ids['n2']}/desired", node).json()["desired"]["policy"]["number"] == 2
    unknown = dict(push, expected_version=2, canary=["nope"])
    assert api.call("POST", "/deployments/a/policy", json=unknown).status_code == 404


def test_lists_are_checked_with_the_declared_kind_and_carry_provenance(api):
    api.deployment("a")
    body = {"entries": "x.test\n# comment\ny.test\n", "expected_version": 0, "source": "paper", "licence": "CC0"}
    answer = api.call("POST", "/deployments/a/lists/blocked", json=body)
    assert answer.status_code == 201, answer.text
    assert (answer.json()["count"], answer.json()["licence"], answer.json()["kind"]) == (2, "CC0", "domain")
    bad = api.call("POST", "/deployments/a/lists/blocked", json={"entries": "ok.test\nnot ok\n", "expected_version": 1})
    assert (
        bad.status_code == 422 and bad.json()["error"]["file"] == "lists/blocked" and bad.json()["error"]["line"] == 2
    )
    undeclared = api.call("POST", "/deployments/a/lists/other", json={"entries": "z.test\n", "expected_version": 0})
    assert undeclared.status_code == 422 and "declares no list 'other'" in undeclared.json()["detail"]
    stale = api.call("POST", "/deployments/a/lists/blocked", json={"entries": "z.test\n", "expected_version": 0})
    assert stale.status_code == 409
    entries = api.call("GET", "/deployments/a/lists/blocked/versions/1").json()["entries"]
    assert entries == "x.test\ny.test\n"
    status = api.call("GET", "/deployments/a").json()
    assert status["desired"]["lists"]["blocked"]["number"] == 1


def test_a_policy_push_validates_against_the_managed_lists(api):
    """A new policy that cannot take the deployment's managed list (a cidr list now) is refused."""
    api.deployment("a")
    assert api.call(
        "POST", "/deployments/a/lists/blocked", json={"entries": "x.test\n", "expected_version": 0}
    ).is_success
    cidr = POLICY.replace("kind: domain", "kind: cidr").replace("[blocked.test]", "[198.18.0.0/24]")
    cidr = cidr.replace("tls.sni: {in_list: blocked}", "server_ip: {in_list: blocked}")
    cidr = cidr.replace("http.host: {in_list: blocked}", "server_ip: {in_list: blocked}")
    answer = api.call("POST", "/deployments/a/policy", json={"files": {"policy.yaml": cidr}, "expected_version": 1})
    assert answer.status_code == 422 and answer.json()["error"]["file"] == "managed-lists/blocked.txt"


def test_a_bundled_profile_can_be_pushed_by_name(api):
    api.deployment("a", policy=None)
    answer = api.call("POST", "/deployments/a/policy", json={"profile": "gfw", "expected_version": 0})
    assert answer.status_code == 201
    files = api.call("GET", "/deployments/a/policy/versions/1").json()["files"]
    assert (
        "lists/gfw-domains.txt" in files and files["policy.yaml"].startswith("#") or "profile:" in files["policy.yaml"]
    )


def test_malformed_and_oversized_requests_are_4xx_and_apply_nothing(sqlite_url):
    from tests.manager.conftest import make_api

    for api in make_api(sqlite_url, max_body_bytes=4096):
        api.deployment("a")
        big = {"files": {"policy.yaml": POLICY + "#" * 5000}, "expected_version": 1}
        assert api.call("POST", "/deployments/a/policy", json=big).status_code == 413
        not_json = api.client.post("/api/v1/deployments/a/policy", content=b"{nope", headers=api.headers())
        assert not_json.status_code == 422
        no_version = api.call("POST", "/deployments/a/policy", json={"files": {"policy.yaml": POLICY}})
        assert no_version.status_code == 422 and "expected_version" in no_version.json()["detail"]
        escape = {"files": {"policy.yaml": POLICY, "../etc/x": "a"}, "expected_version": 1}
        assert api.call("POST", "/deployments/a/policy", json=escape).status_code == 422
        both = {"files": {"policy.yaml": POLICY}, "profile": "gfw", "expected_version": 1}
        assert api.call("POST", "/deployments/a/policy", json=both).status_code == 422
        assert api.call("GET", "/deployments/a/policy/versions").json()[0]["number"] == 1
