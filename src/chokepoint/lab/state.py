"""The lab's state on disk (``/run/chokepoint-lab/``, or per lab name: lab/instance.py) and the detached processes it runs in namespaces.

``state.json`` records what ``lab up`` built: profile, mode, fail-open/closed, seed, the censor's clock offset
and rule-param overrides, the topology and every process (pid + kernel start time, so a recycled pid is never
mistaken for a lab process). ``lab down`` never needs it (it finds everything by the ``cpk-`` prefix),
``lab status`` and ``lab exec`` read it.

Two locks keep concurrent users apart; they are abstract unix sockets (Linux, see unix(7)), so they vanish
with their holder - even after ``kill -9`` - and leave no file behind: ``lab_lock()`` makes ``up`` and
``down`` atomic, ``session_lock()`` is for test suites that bring a whole lab up and down.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chokepoint.lab import instance, system
from chokepoint.lab.topology import Topology

STATE_DIR = instance.STATE_DIR
STATE_FILE = "state.json"
STATS_FILE = "censor-stats.json"
MODES = ("inline", "mirror")
LOCK_NAME = instance.LOCK_NAME
SESSION_LOCK_NAME = instance.SESSION_LOCK_NAME


class StateError(Exception):
    """state.json is unreadable or inconsistent, or a process could not be started."""


class LabBusy(StateError):
    """Another ``lab up``/``lab down`` (or a test session) holds the lock."""


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None if there is
    no such live process (zombies count as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        return None if fields[0] in (b"Z", b"X") else int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(slots=True)
class ProcessInfo:
    """A detached process started by the lab."""

    name: str
    host: str | None  # None: the host namespace
    netns: str | None
    pid: int
    start_time: int
    argv: list[str]
    log: str
    pidfile: str

    def alive(self) -> bool:
        return proc_start_time(self.pid) == self.start_time

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "netns": self.netns,
            "pid": self.pid,
            "start_time": self.start_time,
            "argv": self.argv,
            "log": self.log,
            "pidfile": self.pidfile,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessInfo:
        return cls(
            **{key: data[key] for key in ("name", "host", "netns", "pid", "start_time", "argv", "log", "pidfile")}
        )

    def log_tail(self, lines: int = 10) -> str:
        try:
            text = Path(self.log).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass(slots=True)
class LabState:
    """What a running lab is made of. Services and the censor daemon are started through ``start()``."""

    topology: Topology
    state_dir: Path = STATE_DIR
    profile: str | None = None
    mode: str = "inline"
    fail_closed: bool = False
    seed: int | None = None
    #: seconds added to the censor's wall clock (``censord --clock-offset``); None: the wall clock
    clock_offset_s: float | None = None
    #: rule-param overrides ``{"RULE.PARAM": "YAML value"}`` (``censord --param``)
    params: dict[str, str] = field(default_factory=dict)
    #: the day the censor's profile is loaded for (``censord --as-of``); None: the profile's default
    as_of: str | None = None
    #: ``lab up --wrap``: the client side behind a VLAN or a GRE tunnel (lab/wrap.py); None: unwrapped
    wrap: str | None = None
    #: ``lab up --hops-client/--hops-server/--delay-ms`` (lab/geometry.py ``Geometry.to_dict``); empty: none
    geometry: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, ProcessInfo] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    warnings: list[str] = field(default_factory=list)

    def path(self, name: str) -> Path:
        """A file in the state directory (logs, pidfiles, the CA, stats)."""
        return self.state_dir / name

    def namespace(self, host: str) -> str:
        return self.topology.host(host).namespace

    @staticmethod
    def python_argv(module: str, *args: str) -> list[str]:
        """``[this python, -m, module, *args]``: the interpreter (venv) the lab itself runs under."""
        return [sys.executable, "-m", module, *args]

    def start(
        self,
        name: str,
        host: str | None,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        grace: float = 0.0,
    ) -> ProcessInfo:
        """Start ``argv`` detached in ``cpk-<host>`` (``host`` None: in the host's own namespace, e.g. a node
        agent that talks to a manager on loopback); log to ``<name>.log``, pid to ``<name>.pid``.

        With ``grace`` > 0, wait that long and raise ``StateError`` (with the log's tail) if it has
        already exited. The caller should ``save()`` afterwards."""
        if name in self.processes and self.processes[name].alive():
            raise StateError(f"process {name!r} is already running (pid {self.processes[name].pid})")
        netns = self.namespace(host) if host is not None else None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log, pidfile = self.path(f"{name}.log"), self.path(f"{name}.pid")
        pid = system.spawn(argv, netns=netns, log_path=log, env=env)
        start_time = proc_start_time(pid)
        info = ProcessInfo(name, host, netns, pid, start_time or 0, list(argv), str(log), str(pidfile))
        pidfile.write_text(f"{pid} {info.start_time}\n")
        self.processes[name] = info
        if start_time is None or (grace > 0 and not _still_running(info, grace)):
            raise StateError(
                f"{name} exited right after it was started in {netns}; its log ({log}):\n{info.log_tail()}"
            )
        return info

    def stop(self, name: str, timeout: float = 2.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout`` s. True if it was running."""
        info = self.processes.get(name)
        if info is None or not info.alive():
            return False
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while info.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if info.alive():
            os.kill(info.pid, signal.SIGKILL)
        Path(info.pidfile).unlink(missing_ok=True)
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "profile": self.profile,
            "mode": self.mode,
            "fail_closed": self.fail_closed,
            "seed": self.seed,
            "clock_offset_s": self.clock_offset_s,
            "params": dict(self.params),
            "as_of": self.as_of,
            "wrap": self.wrap,
            "geometry": dict(self.geometry),
            "created_at": self.created_at,
            "state_dir": str(self.state_dir),
            "warnings": list(self.warnings),
            "topology": self.topology.to_dict(),
            "processes": {name: info.to_dict() for name, info in self.processes.items()},
        }

    def save(self) -> Path:
        """Write state.json atomically (temp file + rename)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        target = self.path(STATE_FILE)
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, state_dir: Path = STATE_DIR) -> LabState | None:
        """The saved state, or None when there is no state.json. ``StateError`` if it is damaged."""
        path = state_dir / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateError(f"{path}: unreadable ({exc})") from None
        try:
            return cls(
                topology=Topology.from_dict(data["topology"]),
                state_dir=Path(data["state_dir"]),
                profile=data["profile"],
                mode=data["mode"],
                fail_closed=data["fail_closed"],
                seed=data["seed"],
                created_at=data["created_at"],
                warnings=list(data["warnings"]),
                clock_offset_s=_optional_float(data.get("clock_offset_s")),
                params={str(k): str(v) for k, v in dict(data.get("params") or {}).items()},
                as_of=data.get("as_of"),
                wrap=data.get("wrap"),
                geometry=dict(data.get("geometry") or {}),
                processes={n: ProcessInfo.from_dict(p) for n, p in data["processes"].items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{path}: damaged ({type(exc).__name__}: {exc})") from None

    def read_stats(self) -> tuple[dict[str, Any] | None, float | None]:
        """The censor daemon's counters (``censor-stats.json``) and their age in seconds, or (None, None)."""
        path = self.path(STATS_FILE)
        try:
            age = time.time() - path.stat().st_mtime
            return json.loads(path.read_text(encoding="utf-8")), age
        except (OSError, ValueError):
            return None, None


def _optional_float(value: Any) -> float | None:
    """None stays None (state.json written before the field existed, or no offset); else a float."""
    return None if value is None else float(value)


def _still_running(info: ProcessInfo, grace: float) -> bool:
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not info.alive():
            return False
        time.sleep(0.02)
    return info.alive()


def recorded_pids(state_dir: Path = STATE_DIR) -> list[int]:
    """Pids from ``*.pid`` files that still name the same live process (pid and start time match)."""
    pids = []
    for pidfile in sorted(state_dir.glob("*.pid")) if state_dir.is_dir() else []:
        try:
            pid_text, start_text = pidfile.read_text().split()[:2]
            pid, start = int(pid_text), int(start_text)
        except (OSError, ValueError):
            continue
        if proc_start_time(pid) == start:
            pids.append(pid)
    return pids


def remove_state_dir(state_dir: Path = STATE_DIR) -> bool:
    """Delete the state directory; False if it was not there."""
    if not state_dir.exists():
        return False
    shutil.rmtree(state_dir)
    return True


@contextmanager
def _abstract_lock(name: str, timeout: float, what: str) -> Iterator[None]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                sock.bind("\0" + name)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                if time.monotonic() >= deadline:
                    raise LabBusy(f"{what} is held by another process (waited {timeout:g} s)") from None
                time.sleep(0.05)
        yield
    finally:
        sock.close()


def lab_lock(timeout: float = 60.0) -> Any:
    """Held by ``lab up`` and ``lab down`` for their whole run, so they never interleave."""
    return _abstract_lock(LOCK_NAME, timeout, "the lab lock (another `lab up` or `lab down` is running)")


_session_depth = 0  # how many times this process holds the session lock (it is re-entrant per process)


@contextmanager
def session_lock(timeout: float = 600.0) -> Iterator[None]:
    """For test suites: hold it from before ``lab up`` until after ``lab down``, so test sessions of
    different suites sharing the fixed ``cpk-`` names run one after another instead of tearing each other
    down. Re-entrant within one process: a session-wide holder (a fixture) does not lock out the tests
    that run inside it."""
    global _session_depth
    if _session_depth:
        _session_depth += 1
        try:
            yield
        finally:
            _session_depth -= 1
        return
    with _abstract_lock(SESSION_LOCK_NAME, timeout, "the lab session lock (another test session uses the lab)"):
        _session_depth = 1
        try:
            yield
        finally:
            _session_depth = 0


__all__ = [
    "LabBusy",
    "LabState",
    "MODES",
    "ProcessInfo",
    "STATE_DIR",
    "STATE_FILE",
    "STATS_FILE",
    "StateError",
    "lab_lock",
    "proc_start_time",
    "recorded_pids",
    "remove_state_dir",
    "session_lock",
]
