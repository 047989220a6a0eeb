"""A fleet in the lab (lab/fleet.py): N censor nodes joined to a real manager process, real clients blocked and
unblocked by pushes and rollbacks while the test watches the events arrive; faults (manager down, a node killed
with -9, a push that times out on one node)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chokepoint import lab
from chokepoint.backends.control import APPLIED_FILE, read_json
from chokepoint.lab import fleet as fm
from chokepoint.lab import system
from chokepoint.lab import topology as topo
from chokepoint.manager.client import ManagerClient
from tests.lab._e2e import all_left_behind, session
from tests.lab._lab import foreign
from tests.manager.conftest import POLICY, start_manager


def test_the_fleet_topology_gives_each_node_its_own_path():
    topology = fm.topology(topo.default_topology(), 3)
    names = topology.host_names()
    assert set(names) == set(topo.default_topology().host_names()) | {"client2", "censor2", "client3", "censor3"}
    server = topology.host("server")
    assert [i.name for i in server.interfaces][-2:] == ["sn2", "sn3"]
    assert "198.18.19.0/24 via 198.18.51.1" in [str(r) for r in server.routes]
    assert [str(r) for r in topology.host("censor3").routes] == [
        "default via 198.18.51.2",
        "default via 2001:db8:2:3::2",
    ]
    assert fm.topology(topo.default_topology(), 1) == topo.default_topology()
    with pytest.raises(fm.FleetError):
        fm.topology(topo.default_topology(), 99)


def test_fleet_options_are_checked_before_anything_exists():
    with pytest.raises(lab.LabError, match="--workers needs --mode inline"):
        lab.up("demo", "mirror", workers=2)
    with pytest.raises(lab.LabError, match="'start' or the manager's URL"):
        lab.up("demo", "inline", manager="ftp://x")


def curl(host: str, name: str) -> int:
    """curl's exit code for https://NAME/ from ``host`` (0: the page loaded)."""
    ns = lab.status().state.namespace(host)
    argv = ["curl", "-s", "-o", "/dev/null", "--max-time", "2", f"https://{name}/"]
    return system.run(argv, netns=ns, check=False, timeout=10).returncode


def cli(manager, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHOKEPOINT_MANAGER": manager.url, "CHOKEPOINT_TOKEN": manager.admin}
    return subprocess.run(
        [sys.executable, "-m", "chokepoint.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


class Watcher:
    """The manager's live event stream, read in a thread."""

    def __init__(self, manager, deployment: str) -> None:
        self.events: list[dict] = []
        self.client = ManagerClient(manager.url, manager.admin)
        self.thread = threading.Thread(target=self._run, args=(deployment,), daemon=True)
        self.thread.start()

    def _run(self, deployment: str) -> None:
        try:
            for event, data in self.client.stream(deployment, timeout=120):
                if event == "eve":
                    self.events.append(json.loads(data))
        except Exception:  # noqa: BLE001 - the stream ends with the test (manager stopped): nothing to report
            return

    def wait_for(self, node: str, rule: str, name: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.events:
                cp = item["record"].get("chokepoint") or {}
                names = [e.get("value") for e in cp.get("evidence") or ()]
                if item["node"] == node and cp.get("rule") == rule and name in names:
                    return item
            time.sleep(0.1)
        raise AssertionError(f"no {rule} event for {name} from {node}; saw {len(self.events)} events")


def status_of(manager, deployment: str) -> dict[str, tuple[str, int | None]]:
    status = ManagerClient(manager.url, manager.admin).status(deployment)
    return {n["name"]: (n["health"], n["policy_in_force"]) for n in status["nodes"]}


def restart(state, name: str):
    """Start a lab process again with the argv it had (what a node's supervisor would do after kill -9)."""
    info = state.processes[name]
    env = {"CHOKEPOINT_TOKEN": fm.Fleet.load(state.state_dir).node_token} if name.startswith("agent") else None
    return state.start(name, info.host, info.argv, env=env)


def test_a_fleet_follows_the_manager_and_survives_faults(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("the fleet lab needs root (network namespaces, NFQUEUE)")
    manager = start_manager(f"sqlite:///{tmp_path / 'manager.db'}", tmp_path / "manager.log")
    port = manager.url.rsplit(":", 1)[1]
    profile = tmp_path / "fleet.yaml"
    profile.write_text(POLICY)
    try:
        with session():
            try:
                state = lab.up(str(profile), "inline", nodes=2, manager=manager.url, manager_token=manager.admin)
                dep = fm.Fleet.load(state.state_dir).deployment
                watcher = Watcher(manager, dep)
                assert status_of(manager, dep) == {"node1": ("in-sync", 1), "node2": ("in-sync", 1)}
                assert curl("client2", "newly.test") == 0

                # push v2 (newly.test blocked) through the real CLI: both nodes enforce it, events arrive
                v2 = tmp_path / "v2.yaml"
                v2.write_text(POLICY.replace("[blocked.test]", "[blocked.test, newly.test]"))
                pushed = cli(manager, "policy", "push", str(v2), "-d", dep, "-m", "block newly", "--wait", "15")
                assert pushed.returncode == 0, pushed.stdout + pushed.stderr
                assert curl("client2", "newly.test") != 0 and curl("client", "newly.test") != 0
                watcher.wait_for("node2", "block-sni", "newly.test")
                watcher.wait_for("node1", "block-sni", "newly.test")

                # roll back to v1: allowed again
                back = cli(manager, "policy", "rollback", "-d", dep, "--to", "1", "--wait", "15")
                assert back.returncode == 0, back.stdout + back.stderr
                assert curl("client2", "newly.test") == 0
                assert status_of(manager, dep) == {"node1": ("in-sync", 3), "node2": ("in-sync", 3)}

                # a list feed: only the list's matchers are swapped on the nodes (a lists-only request)
                feed = tmp_path / "feed.txt"
                feed.write_text("# plain list\nfeed.test\nblocked.test\n")
                imported = cli(manager, "lists", "import", str(feed), "-d", dep, "-l", "blocked", "-f", "plain",
                               "--source", "test", "--licence", "CC0", "--wait", "15")  # fmt: skip
                assert imported.returncode == 0, imported.stdout + imported.stderr
                assert curl("client2", "feed.test") != 0
                worker2 = fm.Fleet.load(state.state_dir).worker_dir(state.state_dir, 2, 0)
                request = json.loads((worker2 / "control" / "request.json").read_text())
                assert "lists" in request and "policy" not in request
                watcher.wait_for("node2", "block-sni", "feed.test")
                acked = read_json(worker2 / "control" / APPLIED_FILE)["in_force"]["version"]

                # manager down: the nodes keep enforcing; back up, they resync
                manager.stop()
                time.sleep(1.5)
                assert curl("client2", "feed.test") != 0 and curl("client2", "allowed.test") == 0
                manager = start_manager(manager.db_url, tmp_path / "manager.log", port=int(port))
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    nodes = ManagerClient(manager.url, manager.admin).nodes(dep)
                    link = [n["manager_link"] for n in nodes]
                    if all(n["health"] == "in-sync" for n in nodes) and all(k.get("reachable") for k in link):
                        break
                    time.sleep(0.2)
                assert all(n["manager_link"]["outages"] >= 1 and n["manager_link"]["reachable"] for n in nodes)
                watcher = Watcher(manager, dep)

                # node 2 killed with -9 (daemon and agent): back on the version it last acknowledged
                for name in ("censor2-w0", "agent2"):
                    os.kill(state.processes[name].pid, signal.SIGKILL)
                time.sleep(0.5)
                # meanwhile the node fails open (the kernel's --queue-bypass): the killed daemon is not enforcing
                assert curl("client2", "feed.test") == 0
                pid = restart(state, "censor2-w0").pid
                deadline = time.monotonic() + 10
                stats: dict = {}
                while time.monotonic() < deadline and not (stats.get("pid") == pid and stats.get("running")):
                    time.sleep(0.1)
                    stats = read_json(worker2 / "censor-stats.json") or {}
                policy = stats.get("policy") or {}
                assert policy.get("version") == acked  # before its agent is even back
                assert curl("client2", "feed.test") != 0
                restart(state, "agent2")
                state.save()

                # a push that cannot reach node 2 (its agent stopped): the status says who runs what
                os.kill(state.processes["agent2"].pid, signal.SIGSTOP)
                try:
                    v4 = cli(manager, "policy", "push", str(v2), "-d", dep, "--wait", "6")
                    assert v4.returncode == 7, v4.stdout + v4.stderr
                    table = status_of(manager, dep)
                    assert table["node1"] == ("in-sync", 4) and table["node2"][0] == "stale" and table["node2"][1] == 3
                    assert "node2" in v4.stdout and "stale" in v4.stdout
                finally:
                    os.kill(state.processes["agent2"].pid, signal.SIGCONT)
                waited = cli(manager, "policy", "promote", "-d", dep, "--version", "4", "--wait", "15")
                assert waited.returncode == 0, waited.stdout + waited.stderr
                assert status_of(manager, dep)["node2"] == ("in-sync", 4)
                # the managed list replaces the policy's own entries of "blocked": the feed decides
                assert curl("client2", "feed.test") != 0 and curl("client2", "newly.test") == 0
            finally:
                report = lab.down(keep=foreign())
                assert not report.errors, report.errors
                left = all_left_behind()
                assert not any(left.values()), left
    finally:
        manager.stop()
