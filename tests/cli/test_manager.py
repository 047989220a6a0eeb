"""``chokepoint manager``: tokens on the database, deployments through the API, clear errors."""

from __future__ import annotations

from tests.cli.conftest import run
from tests.manager.conftest import free_port


def test_token_create_prints_a_working_token_and_bad_roles_are_usage_errors(manager, tmp_path):
    made = run(None, "manager", "token", "create", "--role", "viewer", "--db", manager.db_url)
    assert made.returncode == 0 and made.stdout.strip().startswith("cpm_")
    listed = run(manager, "manager", "deployment", "list", token=made.stdout.strip())
    assert listed.returncode == 0
    bad = run(None, "manager", "token", "create", "--role", "operator", "--db", manager.db_url)
    assert bad.returncode == 2 and "scoped to one deployment" in bad.stderr


def test_deployments_through_the_api_with_role_errors(manager):
    assert run(manager, "manager", "deployment", "create", "x1", "--description", "one").returncode == 0
    again = run(manager, "manager", "deployment", "create", "x1")
    assert again.returncode == 3 and "exists" in again.stderr
    viewer = run(manager, "manager", "token", "issue", "--role", "viewer", "--name", "v").stdout.strip()
    denied = run(manager, "manager", "deployment", "create", "x2", token=viewer)
    assert denied.returncode == 6 and "not an admin token" in denied.stderr
    listed = run(manager, "manager", "deployment", "list")
    assert "x1" in listed.stdout


def test_an_unreachable_manager_is_exit_5_and_says_where(manager):
    down = run(manager, "manager", "deployment", "list", url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 5 and "cannot reach the manager" in down.stderr


def test_db_upgrade(tmp_path):
    first = run(None, "manager", "db", "upgrade", "--db", f"sqlite:///{tmp_path / 'n.db'}")
    assert first.returncode == 0 and "revision 0001" in first.stdout
    bad = run(None, "manager", "db", "upgrade", "--db", "mysql://x/y")
    assert bad.returncode == 2 and "unsupported database" in bad.stderr
