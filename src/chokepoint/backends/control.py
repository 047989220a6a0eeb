"""A censor node's policy reload: requests in a control directory, applied between two packets.

This is the whole hook between the censor daemon (:mod:`chokepoint.backends.censord` ``--control-dir DIR``)
and whatever manages the node — the central manager's agent (:mod:`chokepoint.manager.agent`) or a person
with a text editor. The daemon knows nothing of the manager: it reads a request file, loads the policy with the
same loader as the command line, swaps it into the running censor and writes what happened.

``DIR/request.json`` (written atomically by the requester: a temporary file renamed over it)::

    {"seq": 7, "version": "any label",
     "policy": {"file": "/abs/policy.yaml", "params": {"RULE.PARAM": "VALUE"}, "lists": {"NAME": "/abs/x.txt"}}}
    {"seq": 8, "version": "any label", "lists": {"NAME": "/abs/x.txt"}}

The first form loads a whole rule file (``load_rules_file`` with ``params`` overrides and ``list_files``); the
second replaces only the entries of named lists of the policy in force: no YAML, schema or personality work,
the rules are kept and only the matchers are rebuilt (what a list feed needs). A request is applied once, when
its ``seq`` is greater than the last one applied.

``DIR/applied.json`` (written atomically by the daemon after each request)::

    {"seq": 8, "version": "...", "ok": true, "error": null, "at": 1764201600.1, "took_ms": 3.2,
     "in_force": {"version": "...", "seq": 8, "policy": {"file": ..., "params": ..., "lists": {...}},
                  "profile": "name", "since": 1764201600.1}}

When a request fails (``ok: false``, ``error`` is the loader's ``file:line:column: message``) the policy in force
is unchanged and ``in_force`` still describes it. When the daemon starts with ``--control-dir`` and
``applied.json`` names a policy in force that still loads, it starts on that policy instead of ``--profile`` /
``--rules``: a node killed with ``kill -9`` comes back on the version it last applied, never on no policy.

The swap is atomic with respect to packets (the backends are single-threaded: :meth:`PolicyControl.poll` runs
in their loop, between two packets). What flows see is :meth:`chokepoint.engine.Engine.swap_profile`'s: flows
already decided keep their verdict and kernel state; flows under inspection are judged by the new policy from
their next inspected packet. The TLS-intercept proxy (a child process) keeps the policy it started with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from chokepoint.policy.errors import PolicyError

REQUEST_FILE = "request.json"
APPLIED_FILE = "applied.json"
#: Seconds between two looks at request.json (a ``stat``) from the packet loop.
POLL_INTERVAL = 0.05


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so that a reader sees the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is missing or not (yet) a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_policy_request(policy: Mapping[str, Any], as_of: str | None = None):
    """The profile a ``policy`` request names (``PolicyError`` when it does not load), as of the daemon's
    ``--as-of`` day when it has one."""
    from chokepoint.policy import load_rules_file

    file = policy.get("file")
    if not isinstance(file, str) or not file:
        raise PolicyError(REQUEST_FILE, 0, 0, "policy.file must name a rule file")
    params = {str(k): str(v) for k, v in (policy.get("params") or {}).items()}
    lists = {str(k): str(v) for k, v in (policy.get("lists") or {}).items()}
    return load_rules_file(file, params=params or None, list_files=lists or None, as_of=as_of)


def replace_lists(profile, lists: Mapping[str, str]):
    """``profile`` with the entries of the named lists read from files (kind, cite and the rest of each list's
    declaration kept) and the policy recompiled from the rules already parsed; ``PolicyError`` at the bad
    entry's ``file:line:column``, or for a list the policy does not declare."""
    from chokepoint.policy.compiler import compile_policy
    from chokepoint.policy.lists import load_list
    from chokepoint.policy.yamlsrc import Marks

    current = dict(profile.policy.lists)
    for name, path in lists.items():
        old = current.get(name)
        if old is None:
            known = ", ".join(sorted(current)) or "none"
            raise PolicyError(str(path), 0, 0, f"the policy in force declares no list {name!r} (lists: {known})")
        spec: dict[str, Any] = {"kind": old.kind, "file": str(path), "nocase": old.nocase}
        for key in ("cite", "description", "uncertain"):
            if getattr(old, key):
                spec[key] = getattr(old, key)
        current[name] = load_list(name, spec, Marks(str(path), {}, {}), ("lists", name), Path("/"))
    policy = compile_policy(profile.policy.rules, current)
    return dataclasses.replace(profile, policy=policy)


class PolicyControl:
    """Watches ``DIR/request.json`` and applies requests to a running censor (``swap(profile)``)."""

    def __init__(
        self,
        directory: Path,
        *,
        clock: Callable[[], float] = time.time,
        say: Callable[[str], None] = lambda _: None,
        as_of: str | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.as_of = as_of
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.say = say
        self.swap: Callable[[Any], None] | None = None
        self.profile: Any = None
        self.applied: dict[str, Any] = read_json(self.dir / APPLIED_FILE) or {}
        self.in_force: dict[str, Any] = dict(self.applied.get("in_force") or {})
        self.counters = {"requests": 0, "applied": 0, "failed": 0}
        self._seen: tuple[int, int, int] | None = None
        self._next_poll = 0.0

    # -- start -----------------------------------------------------------------------------------------
    def startup_profile(self, fallback: Callable[[], Any], described: Mapping[str, Any]):
        """The profile to start on: the policy in force when the daemon last stopped (``applied.json``),
        else ``fallback()`` (the command line's, described by ``described``). ``PolicyError`` only from
        ``fallback``."""
        policy = self.in_force.get("policy")
        if policy:
            try:
                profile = load_policy_request(policy, self.as_of)
                if self.in_force.get("lists_only"):
                    profile = replace_lists(profile, self.in_force["lists_only"])
                self.say(f"starting on the policy last applied: {self.in_force.get('version')}")
                self.profile = profile
                self._started()
                return profile
            except PolicyError as exc:
                self.say(f"the policy last applied no longer loads ({exc}); starting on the command line's")
        profile = fallback()
        self.in_force = {"version": None, "seq": 0, "policy": None, "command_line": dict(described)}
        self.in_force["profile"] = profile.name
        self.in_force["since"] = self.clock()
        self.profile = profile
        self._started()
        return profile

    def _started(self) -> None:
        self.applied = {**self.applied, "in_force": self.in_force, "started_at": self.clock()}
        self.applied.setdefault("seq", 0)
        write_json_atomic(self.dir / APPLIED_FILE, self.applied)

    # -- the loop --------------------------------------------------------------------------------------
    def poll(self, now: float | None = None) -> bool:
        """Apply a new request if there is one (cheap otherwise: one ``stat`` per ``POLL_INTERVAL``); True
        when a request was handled (applied or refused)."""
        mono = time.monotonic() if now is None else now
        if mono < self._next_poll:
            return False
        self._next_poll = mono + POLL_INTERVAL
        try:
            st = (self.dir / REQUEST_FILE).stat()
        except FileNotFoundError:
            return False
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen == self._seen:
            return False
        self._seen = seen
        request = read_json(self.dir / REQUEST_FILE)
        if request is None or not isinstance(request.get("seq"), int):
            return False
        if request["seq"] <= int(self.applied.get("seq") or 0):
            return False
        self.handle(request)
        return True

    def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Apply one request now and write ``applied.json``; returns what was written."""
        self.counters["requests"] += 1
        started = time.perf_counter()
        error = None
        try:
            if request.get("policy"):
                profile = load_policy_request(request["policy"], self.as_of)
                in_force = {"policy": dict(request["policy"]), "lists_only": {}}
            elif request.get("lists"):
                if self.profile is None:
                    raise PolicyError(REQUEST_FILE, 0, 0, "no policy in force to replace lists in")
                lists = {str(k): str(v) for k, v in request["lists"].items()}
                profile = replace_lists(self.profile, lists)
                in_force = {
                    "policy": self.in_force.get("policy"),
                    "lists_only": {**(self.in_force.get("lists_only") or {}), **lists},
                }
            else:
                raise PolicyError(REQUEST_FILE, 0, 0, "a request needs policy or lists")
            if self.swap is not None:
                self.swap(profile)
        except PolicyError as exc:
            error = str(exc)
        took_ms = round((time.perf_counter() - started) * 1000, 3)
        now = self.clock()
        if error is None:
            self.profile = profile
            self.in_force = {
                **in_force,
                "version": request.get("version"),
                "seq": request["seq"],
                "profile": profile.name,
                "since": now,
            }
            self.counters["applied"] += 1
            self.say(f"policy {request.get('version')} applied in {took_ms:.1f} ms")
        else:
            self.counters["failed"] += 1
            self.say(f"policy {request.get('version')} refused, keeping {self.in_force.get('version')}: {error}")
        self.applied = {
            "seq": request["seq"],
            "version": request.get("version"),
            "ok": error is None,
            "error": error,
            "at": now,
            "took_ms": took_ms,
            "in_force": self.in_force,
        }
        write_json_atomic(self.dir / APPLIED_FILE, self.applied)
        return self.applied

    def stats(self) -> dict[str, Any]:
        """The ``policy`` section of ``censor-stats.json``."""
        return {
            "control_dir": str(self.dir),
            "version": self.in_force.get("version"),
            "seq": self.in_force.get("seq"),
            "profile": self.in_force.get("profile"),
            "since": self.in_force.get("since"),
            "last_error": self.applied.get("error"),
            **self.counters,
        }


__all__ = [
    "APPLIED_FILE",
    "REQUEST_FILE",
    "PolicyControl",
    "load_policy_request",
    "read_json",
    "replace_lists",
    "write_json_atomic",
]
