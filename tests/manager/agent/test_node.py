"""The node agent (a real process) between a real manager process and a censor worker: the worker is the real
reload hook (PolicyControl) swapping policies into a real Censor in a thread, without NFQUEUE (the lab test
tests/lab/test_fleet.py runs the whole thing with censord)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from chokepoint.backends.censor import Censor
from chokepoint.backends.control import PolicyControl
from chokepoint.manager.client import ManagerClient
from chokepoint.policy import load_rules_file
from tests.manager.conftest import POLICY, start_manager
from tests.manager.test_api_admin import _event


class Worker:
    """What censord does with its control directory and stats file, in a thread."""

    def __init__(self, directory: Path, fallback: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.control = PolicyControl(directory / "control")
        profile = self.control.startup_profile(lambda: load_rules_file(fallback), {"rules": str(fallback)})
        self.censor = Censor(profile, mode="inline", state_dir=directory)
        self.control.swap = self.censor.swap_profile
        self.censor.extra_stats["policy"] = self.control.stats
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            self.control.poll()
            self.censor.maybe_write_stats({})
            time.sleep(0.01)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.censor.close()


def wait(predicate, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_agent_applies_refuses_forwards_and_survives_the_manager_going_away(tmp_path):
    fallback = tmp_path / "fallback.yaml"
    fallback.write_text(POLICY)
    manager = start_manager(f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "m.log")
    worker = Worker(tmp_path / "worker0", fallback)
    agent = None
    try:
        admin = ManagerClient(manager.url, manager.admin)
        admin.create_deployment("d")
        admin.push_policy("d", expected=0, files={"policy.yaml": POLICY}, message="v1")
        node_token = admin.create_token("n", "node", "d")["token"]
        argv = [
            sys.executable, "-m", "chokepoint.manager.agent", "--manager", manager.url, "--deployment", "d",
            "--name", "n1", "--worker", str(worker.dir), "--state-dir", str(tmp_path / "agent"),
        ]  # fmt: skip
        log = open(tmp_path / "agent.log", "ab")
        agent = subprocess.Popen(argv, env={**os.environ, "CHOKEPOINT_TOKEN": node_token}, stdout=log, stderr=log)

        def node() -> dict:
            nodes = admin.nodes("d")
            return nodes[0] if nodes else {}

        wait(lambda: node().get("health") == "in-sync" and node().get("policy_in_force") == 1, what="v1 in sync")
        # a list change: the worker gets a lists-only request and the censor's list changes
        admin.push_list("d", "blocked", "feed.test\n", expected=0)
        wait(lambda: worker.censor.profile.policy.lists["blocked"].entries == ("feed.test",), what="the list swap")
        wait(lambda: node().get("lists_in_force") == {"blocked": 1}, what="the list acknowledged")
        assert "lists" in json.loads((worker.dir / "control" / "request.json").read_text())
        # events written by the censor reach the store, counted
        with open(worker.dir / "events.jsonl", "a") as events:
            for i in range(30):
                events.write(json.dumps(_event(f"e{i}.test")) + "\n")
        wait(lambda: admin.stats()["counters"].get("events_stored", 0) >= 30, what="events stored")
        wait(lambda: node().get("events", {}).get("sent") == 30, what="the agent's count")
        # manager down: the worker keeps its policy; events wait on disk; back up, everything arrives
        manager.stop()
        with open(worker.dir / "events.jsonl", "a") as events:
            for i in range(20):
                events.write(json.dumps(_event(f"late{i}.test")) + "\n")
        time.sleep(2.5)
        assert worker.censor.profile.policy.lists["blocked"].entries == ("feed.test",)
        manager = start_manager(manager.db_url, tmp_path / "m.log", port=int(manager.url.rsplit(":", 1)[1]))
        admin = ManagerClient(manager.url, manager.admin)
        wait(lambda: admin.stats()["counters"].get("events_stored", 0) >= 50, what="the late events")
        wait(lambda: (node().get("manager_link") or {}).get("outages", 0) >= 1, what="the outage reported")
        assert admin.stats()["counters"]["events_stored"] == 50  # each line exactly once
        # kill -9 of the agent: it comes back with its state (same node id, nothing sent twice)
        agent.kill()
        agent.wait()
        agent = subprocess.Popen(argv, env={**os.environ, "CHOKEPOINT_TOKEN": node_token}, stdout=log, stderr=log)
        admin.push_list("d", "blocked", "feed.test\nafter.test\n", expected=1)
        wait(lambda: node().get("lists_in_force") == {"blocked": 2}, what="the restarted agent applying")
        assert len(admin.nodes("d")) == 1 and admin.stats()["counters"]["events_stored"] == 50
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(10)
        worker.close()
        manager.stop()
