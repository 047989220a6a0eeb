"""``chokepoint policy push|diff|rollback|promote|status`` through the real entry point."""

from __future__ import annotations

from tests.cli.conftest import run
from tests.manager.conftest import POLICY


def test_push_diff_rollback_status(manager, tmp_path):
    assert run(manager, "manager", "deployment", "create", "p1").returncode == 0
    v1 = tmp_path / "v1.yaml"
    v1.write_text(POLICY)
    pushed = run(manager, "policy", "push", str(v1), "-d", "p1", "-m", "first")
    assert pushed.returncode == 0 and "v1 pushed to every node" in pushed.stdout
    v2 = tmp_path / "v2.yaml"
    v2.write_text(POLICY.replace("blocked.test", "other.test"))
    local = run(manager, "policy", "diff", str(v2), "-d", "p1")
    assert "-    items: [blocked.test]" in local.stdout and "+    items: [other.test]" in local.stdout
    assert run(manager, "policy", "push", str(v2), "-d", "p1").returncode == 0
    stale = run(manager, "policy", "push", str(v2), "-d", "p1", "--expect", "1")
    assert stale.returncode == 3 and "stale write" in stale.stderr
    stored = run(manager, "policy", "diff", "-d", "p1", "--from", "1", "--to", "2")
    assert "+++ v2/policy.yaml" in stored.stdout
    assert run(manager, "policy", "rollback", "-d", "p1", "--to", "1").returncode == 0
    status = run(manager, "policy", "status", "-d", "p1")
    assert status.returncode == 0 and "v3 (= v1)" in status.stdout and "desired v3" in status.stdout


def test_a_bad_policy_is_exit_1_with_file_line_column(manager, tmp_path):
    run(manager, "manager", "deployment", "create", "p2")
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.replace("action: reset", "action: rest"))
    refused = run(manager, "policy", "push", str(bad), "-d", "p2")
    assert refused.returncode == 1 and "policy.yaml:" in refused.stderr and "'rest'" in refused.stderr
    missing = run(manager, "policy", "push", str(tmp_path / "nope.yaml"), "-d", "p2")
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    unknown = run(manager, "policy", "status", "-d", "zz")
    assert unknown.returncode == 4


def test_wait_reports_nodes_that_did_not_converge(manager, tmp_path):
    """A node registered but never heartbeating: --wait gives up with exit 7 and shows it."""
    from chokepoint.manager.client import ManagerClient

    admin = ManagerClient(manager.url, manager.admin)
    admin.create_deployment("p3")
    node = ManagerClient(manager.url, admin.create_token("n", "node", "p3")["token"])
    node.register("p3", "silent", {})
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    waited = run(manager, "policy", "push", str(policy), "-d", "p3", "--wait", "1")
    assert waited.returncode == 7 and "silent" in waited.stdout and "registered" in waited.stdout
