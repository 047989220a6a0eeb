"""The store's view of what a node should enforce: canary overrides, only the lists a policy declares."""

from __future__ import annotations

from chokepoint.manager import db
from chokepoint.manager.store import NotFound, Store
from tests.manager.conftest import POLICY

NO_LIST = POLICY.replace("tls.sni: {in_list: blocked}", "tls.sni: {exact: x.test}").replace(
    "http.host: {in_list: blocked}", "http.host: {exact: x.test}"
)
NO_LIST = NO_LIST.replace("lists:\n  blocked:\n    kind: domain\n    items: [blocked.test]\n    cite: test\n", "")


def test_desired_state_follows_canaries_and_declared_lists(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 's.db'}")
    db.migrate(engine)
    store = Store(engine)
    dep = store.create_deployment("a", "", "t")
    store.push_policy(dep["id"], {"policy.yaml": POLICY}, {}, author="t", message="", expected=0)
    store.push_list(dep["id"], "blocked", "x.test\n", count=1, author="t", message="", expected=0)
    n1 = store.register_node(dep["id"], "n1", {})
    store.register_node(dep["id"], "n2", {})
    store.push_policy(dep["id"], {"policy.yaml": NO_LIST}, {}, author="t", message="", expected=1, canary=["n1"])
    base = store.desired(store.deployment("a"))
    canary = store.desired(store.deployment("a"), store.node(n1["id"])["desired_override"])
    assert base["policy"]["number"] == 1 and set(base["lists"]) == {"blocked"}
    assert canary["policy"]["number"] == 2 and canary["lists"] == {}  # v2 declares no list: none sent
    assert store.register_node(dep["id"], "n1", {"again": True})["id"] == n1["id"]
    try:
        store.node(999)
    except NotFound as exc:
        assert "no node 999" in str(exc)
    engine.dispose()
