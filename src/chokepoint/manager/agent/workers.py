"""What the agent reads and writes beside a node's censor workers: their stats, their events, their control
directory (:mod:`chokepoint.backends.control`).

A worker is one ``censord`` process with its own ``--state-dir DIR`` (``censor-stats.json``, ``events.jsonl``)
and ``--control-dir DIR/control``. A node runs one worker, or several behind NFQUEUE ``--queue-balance``.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chokepoint.backends.censor import EVENTS_FILE, STATS_FILE
from chokepoint.backends.control import APPLIED_FILE, REQUEST_FILE, read_json, write_json_atomic

CONTROL_DIR = "control"
#: A worker whose stats are older than this (or whose process is gone) counts as not running.
STATS_STALE_S = 3.0
_BYTES = re.compile(rb'"bytes_to(?:server|client)":(\d+)')


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


@dataclass(slots=True)
class EventBatch:
    """Complete lines read from one worker's ``events.jsonl``, and the offset after the last one."""

    lines: list[bytes]
    end: int
    flow_bytes: int = 0


class Worker:
    def __init__(self, state_dir: Path, index: int) -> None:
        self.dir = Path(state_dir)
        self.index = index
        self.control = self.dir / CONTROL_DIR

    # -- stats ----------------------------------------------------------------------------------------------
    def stats(self, now: float | None = None) -> dict[str, Any]:
        data = read_json(self.dir / STATS_FILE) or {}
        now = time.time() if now is None else now
        age = None
        try:
            age = now - (self.dir / STATS_FILE).stat().st_mtime
        except OSError:
            pass
        running = bool(data.get("running")) and pid_alive(data.get("pid")) and age is not None and age < STATS_STALE_S
        return {"data": data, "running": running, "age_s": age}

    # -- events ---------------------------------------------------------------------------------------------
    def read_events(self, offset: int, max_lines: int) -> EventBatch:
        """Complete lines from ``offset`` (a partial last line waits for its newline). A file shorter than the
        offset was replaced: reading starts again at 0."""
        path = self.dir / EVENTS_FILE
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return EventBatch([], offset)
        if size < offset:
            offset = 0
        lines: list[bytes] = []
        flow_bytes = 0
        with path.open("rb") as handle:
            handle.seek(offset)
            position = offset
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                position += len(line)
                stripped = line.strip()
                if stripped:
                    lines.append(stripped)
                    if b'"event_type":"flow"' in stripped:
                        flow_bytes += sum(int(n) for n in _BYTES.findall(stripped))
                if len(lines) >= max_lines:
                    break
        return EventBatch(lines, position, flow_bytes)

    # -- control --------------------------------------------------------------------------------------------
    def request(self, body: Mapping[str, Any]) -> None:
        self.control.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.control / REQUEST_FILE, dict(body))

    def applied(self) -> dict[str, Any]:
        return read_json(self.control / APPLIED_FILE) or {}


def summed_counters(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The node's counters: the sum over its workers' ``censor-stats.json``."""
    total: dict[str, Any] = {
        "packets_seen": 0,
        "undecodable": 0,
        "queued": 0,
        "offloaded": 0,
        "blocked": 0,
        "flows_active": 0,
        "flows_created": 0,
        "flows_ended": 0,
        "flows_evicted": 0,
        "actions": 0,
        "queue_dropped": 0,
        "user_dropped": 0,
        "failed_open": 0,
        "injections": 0,
        "policy_swaps": 0,
        "verdicts_by_action": {},
        "verdicts_by_rule": {},
    }
    for s in stats:
        data = s["data"]
        packets = data.get("packets") or {}
        flows = data.get("flows") or {}
        queue = (data.get("backend") or {}).get("kernel_queue") or {}
        total["packets_seen"] += int(packets.get("seen") or 0)
        total["undecodable"] += int(packets.get("undecodable") or 0)
        for key in ("queued", "offloaded", "blocked"):
            total[key] += int(packets.get(key) or 0)
        total["flows_active"] += int(flows.get("active") or 0)
        total["flows_created"] += int(flows.get("created") or 0)
        total["flows_ended"] += int(flows.get("ended") or 0)
        total["actions"] += int(data.get("actions") or 0)
        total["queue_dropped"] += int(queue.get("queue_dropped") or 0)
        total["user_dropped"] += int(queue.get("user_dropped") or 0)
        total["failed_open"] += int(((data.get("backend") or {}).get("overload") or {}).get("failed_open") or 0)
        total["flows_evicted"] += int(flows.get("evicted") or 0)
        total["injections"] += sum(
            int(v) for k, v in (data.get("injections") or {}).items() if k.startswith("injected")
        )
        total["policy_swaps"] += int((data.get("engine") or {}).get("policy_swaps") or 0)
        for key, field in (("verdicts_by_action", "by_action"), ("verdicts_by_rule", "by_rule")):
            for name, n in ((data.get("verdicts") or {}).get(field) or {}).items():
                total[key][name] = total[key].get(name, 0) + int(n)
    return total


def load_events(lines: list[bytes]) -> str:
    """A JSON array of raw event lines (spliced, not re-encoded)."""
    return "[" + ",".join(line.decode("utf-8", "replace") for line in lines) + "]"


__all__ = ["CONTROL_DIR", "EventBatch", "Worker", "json", "load_events", "pid_alive", "summed_counters"]
