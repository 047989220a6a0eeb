"""``chokepoint lists import|push|rollback`` through the real entry point."""

from __future__ import annotations

from chokepoint.manager.client import ManagerClient
from tests.cli.conftest import run
from tests.manager.conftest import POLICY
from tests.manager.test_feeds import CITIZENLAB


def test_import_records_provenance_and_push_and_rollback(manager, tmp_path):
    admin = ManagerClient(manager.url, manager.admin)
    admin.create_deployment("l1")
    admin.push_policy("l1", expected=0, files={"policy.yaml": POLICY})
    csv = tmp_path / "xx.csv"
    csv.write_text(CITIZENLAB)
    dry = run(manager, "lists", "import", str(csv), "-d", "l1", "-l", "blocked", "-f", "citizenlab", "--dry-run")
    assert dry.returncode == 0 and "2 domain entries" in dry.stdout and admin.lists("l1") == []
    imported = run(
        manager, "lists", "import", str(csv), "-d", "l1", "-l", "blocked", "-f", "citizenlab",
        "--source", "https://github.com/citizenlab/test-lists", "--date", "2026-11-30", "--licence", "see source",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    (listed,) = admin.lists("l1")
    assert (listed["number"], listed["count"], listed["format"], listed["licence"]) == (
        1,
        2,
        "citizenlab",
        "see source",
    )
    plain = tmp_path / "l.txt"
    plain.write_text("one.test\n")
    assert run(manager, "lists", "push", str(plain), "-d", "l1", "-l", "blocked").returncode == 0
    assert run(manager, "lists", "rollback", "-d", "l1", "-l", "blocked", "--to", "1").returncode == 0
    assert admin.lists("l1")[0]["number"] == 3 and admin.lists("l1")[0]["count"] == 2


def test_bad_feeds_and_entries_are_clear_errors(manager, tmp_path):
    admin = ManagerClient(manager.url, manager.admin)
    admin.create_deployment("l2")
    admin.push_policy("l2", expected=0, files={"policy.yaml": POLICY})
    wrong = tmp_path / "w.csv"
    wrong.write_text("a,b\n")
    bad = run(manager, "lists", "import", str(wrong), "-d", "l2", "-l", "blocked", "-f", "citizenlab")
    assert bad.returncode == 1 and "not a Citizen Lab test list" in bad.stderr
    entries = tmp_path / "e.txt"
    entries.write_text("fine.test\nnot fine\n")
    refused = run(manager, "lists", "push", str(entries), "-d", "l2", "-l", "blocked")
    assert refused.returncode == 1 and "lists/blocked:2:1" in refused.stderr
