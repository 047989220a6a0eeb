"""The lab the matrix runs in: brought up once, its censor restarted per profile and mode, torn down at the end.

``lab up`` builds the namespaces, the lab services and (when a selected transport needs it) the private Tor
network; the censor daemon is then (re)started for each profile and mode with ``censord.launch`` — the same
daemon ``lab up`` starts — and stopped for the baseline column (a stopped censor removes its kernel program,
so the censor namespace is a plain router). Restarting it clears every flow, residual and probe-block state,
so one profile's blocks never leak into the next. Events are read from the daemon's ``events.jsonl`` from an
offset taken at the start of each run.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import zlib
from collections.abc import Callable
from typing import Any

from chokepoint.lab import circumvention, instance
from chokepoint.transports import BUNDLED
from chokepoint.transports.runner import Placement
from chokepoint.transports.spec import TransportSpec

ORIGIN_IP = "198.19.0.10"
CLIENT_IP = "198.18.0.2"


class SessionError(Exception):
    """The lab could not be brought up for the matrix, or a censor would not start."""


def eve_time(text: str) -> float:
    """Epoch seconds of an EVE ``timestamp`` (``2026-12-07T16:22:36.354055+0000``)."""
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


class LabSession:
    def __init__(self, *, seed: int, say: Callable[[str], None] = lambda _: None) -> None:
        self.seed = seed
        self.say = say
        self.state: Any = None
        self.tor: Any = None
        self.censor_profile: str | None = None
        self.censor_mode: str | None = None
        self.owns_lab = False

    # -- lifecycle ----------------------------------------------------------------------------------------
    def up(self, *, need_tor: bool) -> None:
        from chokepoint import lab

        try:
            self.state = lab.up("demo", "inline", censor=False, seed=self.seed, say=self.say)
        except lab.LabAlreadyUp as exc:
            raise SessionError(f"{exc} (the matrix brings its own lab up; CHOKEPOINT_LAB={instance.NAME})") from None
        except lab.LabError as exc:
            raise SessionError(str(exc)) from None
        self.owns_lab = True
        if need_tor:
            from chokepoint.lab import tornet

            try:
                self.tor = tornet.start(self.state, say=self.say)
            except tornet.TorNetError as exc:
                self.say(f"private Tor network not available: {exc}")
                self.tor = None
            self.state.save()

    def down(self) -> None:
        from chokepoint import lab

        if self.owns_lab:
            report = lab.down()
            if report.errors:
                self.say("lab down: " + "; ".join(report.errors))
            self.owns_lab = False

    def use_censor(
        self,
        profile: str | None,
        mode: str,
        *,
        seed: int,
        as_of: str | None = None,
        probe_time_scale: float = 1.0,
        probe_max_delay_s: float | None = None,
    ) -> None:
        """Run ``profile``'s censor in ``mode`` (None: no censor, the baseline)."""
        from chokepoint.backends import censord
        from chokepoint.lab.state import StateError

        if self.state.processes.get("censor") and self.state.processes["censor"].alive():
            self.state.stop("censor", timeout=5.0)
        self.censor_profile, self.censor_mode = profile, mode
        if profile is None:
            self.state.save()
            return
        options: dict[str, Any] = {}
        accepted = inspect.signature(censord.launch).parameters
        if as_of is not None:
            if "as_of" not in accepted:
                raise SessionError("--as-of: this censor has no dated profiles yet (issue 13)")
            options["as_of"] = as_of
        if "probe_time_scale" in accepted:
            options["probe_time_scale"] = probe_time_scale
            options["probe_max_delay_s"] = probe_max_delay_s
        try:
            censord.launch(self.state, mode, profile, seed=seed, **options)
        except StateError as exc:
            raise SessionError(f"the {profile} censor ({mode}) did not start: {exc}") from None
        self.state.profile, self.state.mode = profile, mode
        self.state.save()

    # -- where things are ---------------------------------------------------------------------------------
    def placement(self, spec: TransportSpec) -> Placement:
        index = BUNDLED.index(spec.name) if spec.name in BUNDLED else len(BUNDLED) + zlib.crc32(spec.name.encode()) % 40
        extra: dict[str, str] = self.tor.client_context() if self.tor is not None else {}
        server_ip = str(circumvention.transport_address(index))
        if "tor-network" in spec.requires and self.tor is not None:
            bridge = next(n for n in self.tor.nodes if n.role == "bridge")
            server_ip = bridge.pt_address if spec.name.startswith("obfs4") else bridge.address
        return Placement(
            client_ns=instance.namespace("client"),
            server_ns=instance.namespace("vps"),
            server_ip=server_ip,
            client_ip=CLIENT_IP,
            origin_ip=ORIGIN_IP,
            lab=instance.NAME,
            extra=tuple(extra.items()),
        )

    # -- the censor's events --------------------------------------------------------------------------------
    def events_offset(self) -> int:
        try:
            return self.state.path("events.jsonl").stat().st_size
        except OSError:
            return 0

    def events_since(self, offset: int, started: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(condensed ``chokepoint`` actions, active-probe records) written after ``offset``; ``t`` is seconds
        after ``started`` (epoch)."""
        try:
            with open(self.state.path("events.jsonl"), "rb") as handle:
                handle.seek(offset)
                lines = handle.read().splitlines()
        except OSError:
            return [], []
        actions, probes = [], []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event_type")
            when = eve_time(event["timestamp"]) - started if "timestamp" in event else None
            if kind == "chokepoint":
                actions.append(condense_action(event, when))
            elif kind == "active_probe":
                probe = event.get("active_probe", {})
                probes.append({"t": None if when is None else round(when, 3), **probe})
        return actions, probes


def condense_action(event: dict[str, Any], when: float | None) -> dict[str, Any]:
    """The parts of a ``chokepoint`` event a matrix cell shows."""
    cp = event.get("chokepoint", {})
    residual = cp.get("residual") or {}
    out: dict[str, Any] = {
        "kind": "action",
        "t": None if when is None else round(when, 3),
        "rule": cp.get("rule", ""),
        "action": cp.get("action", ""),
        "reason": cp.get("reason", ""),
        "app_proto": event.get("app_proto", ""),
        "flow": f"{event.get('src_ip')}:{event.get('src_port')} -> {event.get('dest_ip')}:{event.get('dest_port')}",
        "injected": len(cp.get("injected") or ()),
    }
    if residual:
        out["residual_s"] = residual.get("seconds")
        out["residual_scope"] = residual.get("scope")
    if cp.get("throttle_kbps"):
        out["throttle_kbps"] = cp["throttle_kbps"]
    if cp.get("confirmed_by"):
        out["confirmed_by"] = cp["confirmed_by"]
    if cp.get("notes"):
        out["notes"] = cp["notes"]
    not_enforced = [n for n in cp.get("notes") or () if "cannot" in n]
    if not_enforced:
        out["not_enforced"] = not_enforced[0]
    return out


__all__ = ["LabSession", "SessionError", "condense_action", "eve_time"]
