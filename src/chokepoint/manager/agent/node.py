"""The node agent's loop: register, heartbeat, follow the desired state, apply it, forward events.

Three threads, none on the packet path:

- *main*: every ``heartbeat_s`` collects the workers' stats and sends a heartbeat (whose answer carries the
  desired state); applies a new desired state when one is known; forwards events in between.
- *watch*: long-polls the manager (``GET /nodes/ID/desired?known=HASH&wait=25``), so a push reaches the node
  as soon as it is made, and wakes *main*.
- *metrics*: the node's Prometheus ``/metrics`` (:mod:`chokepoint.manager.agent.metrics`).

Applying: fetch the bundle, validate it with the loader every censor uses (``bundle.validate``: an invalid
version is reported as ``last_error`` and the node keeps enforcing what it has), write it under
``STATE/bundles/<state hash>/``, ask every worker through its control directory — a whole policy when the
policy version changed, only the changed lists' entries otherwise (no full reload) — and wait for every
worker's acknowledgement; then the node enforces the new state hash, which the next heartbeat reports.

Manager down: the workers keep enforcing what they have; events stay in the workers' ``events.jsonl`` (the
file is the buffer, read from the last offset the manager stored: nothing is dropped while the disk holds);
heartbeats say since when the manager was unreachable and the agent resyncs when it answers again. Agent
killed: its state (``agent.json``: node id, request sequence, what each state hash means, event offsets) is
on disk and the workers' ``applied.json`` say what they enforce.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chokepoint.backends.control import write_json_atomic
from chokepoint.manager import bundle
from chokepoint.manager.agent.workers import Worker, load_events, summed_counters
from chokepoint.manager.client import ManagerClient, ManagerError, Unreachable
from chokepoint.policy.errors import PolicyError

STATE_FILE = "agent.json"
LONG_POLL_S = 25.0
#: Seconds the agent waits for every worker to acknowledge a request.
ACK_TIMEOUT_S = 15.0
BATCH = 2000
KEEP_BUNDLES = 8


@dataclass(slots=True)
class AgentConfig:
    manager: str
    token: str
    deployment: str
    name: str
    workers: list[Path]
    state_dir: Path
    heartbeat_s: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)


class Agent:
    def __init__(self, config: AgentConfig, *, say: Callable[[str], None] = lambda _: None) -> None:
        self.config = config
        self.say = say
        self.client = ManagerClient(config.manager, config.token, timeout=10.0)
        self.workers = [Worker(path, i) for i, path in enumerate(config.workers)]
        self.state_dir = Path(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state = self._load_state()
        self.node_id: int | None = self.state.get("node_id")
        self.desired: dict[str, Any] | None = None
        self.last_error: str | None = None
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.RLock()  # agent.json's dict is changed by the main and the apply thread
        self.events = {"read": 0, "sent": 0, "rejected": 0, "malformed": 0, "dropped": 0, "flow_bytes": 0}
        self.manager_link = {"reachable": False, "unreachable_since": time.time(), "outages": 0, "resyncs": 0}
        self.fail_open = {"state": "enforcing", "transitions": 0, "since": None}
        self.snapshot: dict[str, Any] = {}
        self.in_force = self._in_force_from_workers()

    # -- persistent state -----------------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            data = {}
        data.setdefault("seq", 0)
        data.setdefault("states", {})  # state hash -> {"policy": number, "lists": {name: number}, "dir": path}
        data.setdefault("offsets", {})
        return data

    def _save_state(self) -> None:
        with self.lock:
            write_json_atomic(self.state_dir / STATE_FILE, self.state)

    def _in_force_from_workers(self) -> dict[str, Any]:
        """What the workers enforce (their ``applied.json``), as the node's state: the hash they agree on."""
        hashes = {((w.applied().get("in_force") or {}).get("version")) for w in self.workers}
        seqs = [int(w.applied().get("seq") or 0) for w in self.workers]
        self.state["seq"] = max([self.state["seq"], *seqs])
        if len(hashes) == 1:
            digest = hashes.pop()
            known = self.state["states"].get(digest) if digest else None
            if known:
                return {"state_hash": digest, "policy": known["policy"], "lists": known["lists"]}
        return {"state_hash": None, "policy": None, "lists": {}}

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> None:
        for target, name in ((self._watch, "agent-watch"), (self._applier, "agent-apply")):
            threading.Thread(target=target, name=name, daemon=True).start()
        next_beat = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            if self.node_id is None:
                self._register()
            if self.node_id is not None and now >= next_beat:
                next_beat = now + self.config.heartbeat_s
                self._heartbeat()
            sent = self._forward_events() if self.node_id is not None else 0
            if not sent:
                self.stop.wait(min(0.1, max(0.0, next_beat - time.monotonic())))

    def _applier(self) -> None:
        """Applies a new desired state as soon as one is known (its own thread: never behind events)."""
        while not self.stop.is_set():
            self.wake.wait(0.5)
            self.wake.clear()
            wanted = self.desired
            if self.node_id is not None and wanted and wanted.get("state_hash"):
                if wanted["state_hash"] != self.in_force["state_hash"]:
                    self._apply(wanted)

    def close(self) -> None:
        self.stop.set()
        self.wake.set()
        self.client.close()

    def _reachable(self, ok: bool) -> None:
        link = self.manager_link
        if ok and not link["reachable"]:
            link["reachable"] = True
            if link["unreachable_since"] is not None:
                self.say(f"manager reachable again after {time.time() - link['unreachable_since']:.1f} s")
                link["resyncs"] += 1
            link["unreachable_since"] = None
        elif not ok and link["reachable"]:
            link["reachable"] = False
            link["unreachable_since"] = time.time()
            link["outages"] += 1
            self.say("manager unreachable: enforcing what the workers have, keeping events on disk")

    def _register(self) -> None:
        info = {**self.config.info, "workers": len(self.workers), "agent": "chokepoint.manager.agent"}
        try:
            answer = self.client.register(self.config.deployment, self.config.name, info)
        except Unreachable:
            self._reachable(False)
            self.stop.wait(1.0)
            return
        except ManagerError as exc:
            self.say(f"registration refused: {exc.detail}")
            self.stop.wait(5.0)
            return
        self._reachable(True)
        self.node_id = answer["node"]["id"]
        self.desired = answer["desired"]
        self.state["node_id"] = self.node_id
        self._save_state()
        self.say(f"registered as node {self.config.name} (id {self.node_id})")

    def _watch(self) -> None:
        while not self.stop.is_set():
            if self.node_id is None:
                self.stop.wait(0.2)
                continue
            try:
                answer = self.client.desired(self.node_id, self.in_force["state_hash"], wait=LONG_POLL_S)
            except Unreachable:
                self._reachable(False)
                self.stop.wait(1.0)
                continue
            except ManagerError as exc:
                if exc.status == 404:  # the manager lost this node (a new database): register again
                    self.node_id = None
                self.stop.wait(1.0)
                continue
            self._reachable(True)
            self.desired = answer["desired"]
            if answer.get("changed"):
                self.wake.set()

    # -- heartbeat ------------------------------------------------------------------------------------------
    def collect(self) -> dict[str, Any]:
        now = time.time()
        stats = [w.stats(now) for w in self.workers]
        running = all(s["running"] for s in stats)
        state = "enforcing" if running else "failing-open"
        if any(not s["running"] and (s["data"].get("fail_closed")) for s in stats):
            state = "failing-closed"
        if state != self.fail_open["state"]:
            if self.fail_open["state"] == "enforcing":
                self.fail_open["transitions"] += 1
            self.fail_open.update(state=state, since=now)
            self.say(f"workers: {state}")
        counters = summed_counters(stats)
        counters["flow_bytes_ended"] = self.events["flow_bytes"]
        doc = {
            "interval_s": self.config.heartbeat_s,
            "in_force": dict(self.in_force),
            "last_error": self.last_error,
            "workers": [
                {
                    "worker": w.index,
                    "running": s["running"],
                    "pid": s["data"].get("pid"),
                    "stats_age_s": None if s["age_s"] is None else round(s["age_s"], 3),
                    "policy": (s["data"].get("policy") or {}).get("version"),
                    "queue_num": (s["data"].get("backend") or {}).get("queue_num"),
                }
                for w, s in zip(self.workers, stats)
            ],
            "counters": counters,
            "fail_open": dict(self.fail_open),
            "events": dict(self.events),
            "manager": dict(self.manager_link),
        }
        self.snapshot = doc
        return doc

    def _heartbeat(self) -> None:
        doc = self.collect()
        try:
            answer = self.client.heartbeat(self.node_id, doc)
        except Unreachable:
            self._reachable(False)
            return
        except ManagerError as exc:
            if exc.status == 404:
                self.node_id = None
            return
        self._reachable(True)
        self.desired = answer["desired"]
        if self.desired.get("state_hash") != self.in_force["state_hash"]:
            self.wake.set()

    # -- applying -------------------------------------------------------------------------------------------
    def _apply(self, wanted: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            content = self.client.bundle(self.node_id)
        except Unreachable:
            self._reachable(False)
            return
        except ManagerError as exc:
            self.last_error = f"cannot fetch the bundle: {exc.detail}"
            return
        desired = content["desired"]
        digest = desired["state_hash"]
        if digest is None or digest == self.in_force["state_hash"]:
            return
        if self.last_error and self.state.get("failed") == digest:
            return  # already refused: report it, keep the old policy, wait for another version
        policy = content["policy"]
        lists = {name: ref["entries"] for name, ref in content["lists"].items()}
        same_policy = self.in_force.get("policy") == policy["number"] and self.in_force["state_hash"] is not None
        in_force_lists = self.in_force.get("lists") or {}
        changed_names = [n for n, ref in content["lists"].items() if in_force_lists.get(n) != ref["number"]]
        lists_only = same_policy and bool(changed_names) and set(in_force_lists) <= set(lists)
        try:
            if lists_only:
                # only entries changed: checked by the list loader the censor's lists-only swap uses
                declared = bundle.declared_lists(policy["files"])
                for name in changed_names:
                    bundle.check_list(name, declared[name], lists[name])
            else:
                bundle.validate(policy["files"], policy["params"], lists)
        except (PolicyError, bundle.BundleError, KeyError) as exc:
            self._refused(digest, f"v{policy['number']} refused by the node's loader: {exc}")
            return
        directory = self.state_dir / "bundles" / digest
        managed = bundle.materialize(policy["files"], directory, lists)
        changed = {n: str(p) for n, p in managed.items() if n in changed_names} if lists_only else {}
        with self.lock:
            self.state["seq"] += 1
            seq = self.state["seq"]
        if same_policy and changed:
            request = {"seq": seq, "version": digest, "lists": changed}
        else:
            request = {
                "seq": seq,
                "version": digest,
                "policy": {
                    "file": str(directory / bundle.ENTRY),
                    "params": policy["params"],
                    "lists": {n: str(p) for n, p in managed.items()},
                },
            }
        meaning = {"policy": policy["number"], "lists": {n: r["number"] for n, r in content["lists"].items()}}
        with self.lock:
            self.state["states"][digest] = {**meaning, "dir": str(directory)}
        self._save_state()
        for worker in self.workers:
            worker.request(request)
        asked = time.perf_counter()
        errors = self._await_acks(seq)
        if errors:
            self._refused(digest, "; ".join(errors))
            return
        self.in_force = {"state_hash": digest, **meaning}
        self.last_error = None
        with self.lock:
            self.state.pop("failed", None)
            self._prune_bundles(digest)
        self._save_state()
        self.say(
            f"enforcing v{policy['number']} lists {meaning['lists']} ({digest[:12]}): fetched, checked and asked in "
            f"{(asked - started) * 1000:.0f} ms, acknowledged by the workers in {(time.perf_counter() - asked) * 1000:.0f} ms"
        )
        self._heartbeat()  # tell the manager at once

    def _await_acks(self, seq: int) -> list[str]:
        deadline = time.monotonic() + ACK_TIMEOUT_S
        pending = {w.index: w for w in self.workers if w.stats()["running"]}
        errors: list[str] = []
        while pending and time.monotonic() < deadline:
            for index, worker in list(pending.items()):
                applied = worker.applied()
                if int(applied.get("seq") or 0) >= seq:
                    del pending[index]
                    if not applied.get("ok"):
                        errors.append(f"worker {index}: {applied.get('error')}")
            if pending:
                time.sleep(0.005)
        errors += [f"worker {i} did not acknowledge within {ACK_TIMEOUT_S:g} s" for i in pending]
        return errors

    def _refused(self, digest: str, error: str) -> None:
        self.last_error = error
        with self.lock:
            self.state["failed"] = digest
        self._save_state()
        self.say(f"keeping {self.in_force.get('policy')}: {error}")
        self._heartbeat()

    def _prune_bundles(self, keep: str) -> None:
        import shutil

        known = self.state["states"]
        for digest in list(known)[:-KEEP_BUNDLES]:
            if digest != keep:
                shutil.rmtree(known[digest].get("dir", ""), ignore_errors=True)
                del known[digest]

    # -- events ---------------------------------------------------------------------------------------------
    def _forward_events(self) -> int:
        sent = 0
        for worker in self.workers:
            key = str(worker.dir)
            offset = int(self.state["offsets"].get(key, 0))
            batch = worker.read_events(offset, BATCH)
            if not batch.lines:
                if batch.end != offset:
                    with self.lock:
                        self.state["offsets"][key] = batch.end
                continue
            try:
                answer = self.client.call(
                    "POST",
                    f"/nodes/{self.node_id}/events",
                    content='{"events":' + load_events(batch.lines) + "}",
                    headers={"Content-Type": "application/json"},
                )
            except Unreachable:
                self._reachable(False)
                return sent
            except ManagerError as exc:
                if exc.status != 422:
                    return sent
                answer = self._send_one_by_one(batch.lines)
            self._reachable(True)
            self.events["read"] += len(batch.lines)
            self.events["sent"] += int(answer.get("stored", 0))
            self.events["rejected"] += sum((answer.get("rejected") or {}).values())
            self.events["flow_bytes"] += batch.flow_bytes
            with self.lock:
                self.state["offsets"][key] = batch.end
            self._save_state()
            sent += len(batch.lines)
        return sent

    def _send_one_by_one(self, lines: list[bytes]) -> dict[str, Any]:
        """A batch the manager could not parse: the lines that are JSON go, the others are counted."""
        good = []
        for line in lines:
            try:
                good.append(json.loads(line))
            except ValueError:
                self.events["malformed"] += 1
        return self.client.send_events(self.node_id, good) if good else {"stored": 0}


__all__ = ["Agent", "AgentConfig"]
