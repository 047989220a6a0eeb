"""Residual-blocking probe: trigger the censor, then retry an innocuous request to the same server address
and port at fixed intervals, and report how long the innocuous requests kept failing.

Residual censorship (Bock et al., "Even Censors Have a Backup: Examining China's Double HTTPS Censorship
Middleboxes", FOCI 2021; Rambert et al., WWW 2021: a 90 s penalty box on (client IP, server IP, server
port)) blocks *every* connection of that 3-tuple for a while after a trigger. Each clean retry is a new
connection from a new source port with a control Host/SNI, so a block that outlives the triggering
connection on the 3-tuple shows up. Method:

1. wait until a clean request succeeds (a block left over from earlier probes would fake a residual);
2. trigger: the same request with the real Host/SNI;
3. retry the clean request immediately, then every `interval` s, until one succeeds or `max_seconds` pass.

`duration_s` is the time from the trigger's end to the start of the first clean request that succeeded (an
upper bound, at most `interval` too long; `lower_bound_s` is the start of the last one that failed). With
no success before `max_seconds`, `duration_s` is the time waited and `ended` is false.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from chokepoint.probe.measurement import ResidualObservation
from chokepoint.probe.probes import http
from chokepoint.probe.probes.common import ProbeContext, ProbeError, Target, join_host_port

__all__ = ["DEFAULT_INTERVAL", "DEFAULT_MAX_SECONDS", "ResidualResult", "measure"]

DEFAULT_INTERVAL = 1.0
DEFAULT_MAX_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request of the probe: when it ran and how it ended (None: it completed)."""

    role: str  # "baseline", "trigger" or "clean"
    t0: float
    t: float
    failure: str | None

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "t0": self.t0, "t": self.t, "failure": self.failure}


@dataclass(frozen=True, slots=True)
class ResidualResult:
    """Everything the probe did; `observation` is the `x_chokepoint.residual` entry."""

    target: str
    trigger: str
    interval: float
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)
    measured: bool = True  # False: never saw a clean success before triggering

    @property
    def trigger_attempt(self) -> Attempt | None:
        return next((a for a in self.attempts if a.role == "trigger"), None)

    @property
    def clean(self) -> tuple[Attempt, ...]:
        return tuple(a for a in self.attempts if a.role == "clean")

    @property
    def ended(self) -> bool:
        return any(a.failure is None for a in self.clean)

    @property
    def duration_s(self) -> float:
        """0 when the first clean request after the trigger succeeded; else from the trigger's end to the
        start of the first clean success (or to the end of the last clean failure, when none succeeded)."""
        trigger = self.trigger_attempt
        clean = self.clean
        if trigger is None or not clean or clean[0].failure is None:
            return 0.0
        success = next((a for a in clean if a.failure is None), None)
        end = success.t0 if success is not None else clean[-1].t
        return round(max(0.0, end - trigger.t), 6)

    @property
    def lower_bound_s(self) -> float:
        """Start of the last clean request that still failed, after the trigger (0 when none failed)."""
        trigger = self.trigger_attempt
        bound = 0.0
        for attempt in self.clean if trigger is not None else ():
            if attempt.failure is None:
                break
            bound = max(0.0, attempt.t0 - trigger.t)  # type: ignore[union-attr]
        return round(bound, 6)

    @property
    def failure(self) -> str | None:
        """How the clean requests failed while the block lasted (the first failure)."""
        return next((a.failure for a in self.clean if a.failure is not None), None)

    @property
    def observation(self) -> ResidualObservation | None:
        if not self.measured or self.trigger_attempt is None:
            return None
        trigger = self.trigger_attempt
        extra = {
            "lower_bound_s": self.lower_bound_s,
            "interval_s": self.interval,
            "ended": self.ended,
            "trigger_failure": trigger.failure,
            "attempts": [a.to_json() for a in self.attempts],
        }
        return ResidualObservation(self.target, self.trigger, self.duration_s, self.failure, extra)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "trigger": self.trigger,
            "measured": self.measured,
            "duration_s": self.duration_s,
            "lower_bound_s": self.lower_bound_s,
            "ended": self.ended,
            "failure": self.failure,
            "attempts": [a.to_json() for a in self.attempts],
        }


def _attempt(ctx: ProbeContext, target: Target, ip: str, host: str, role: str) -> Attempt:
    t0 = ctx.clock.now()
    result = http.fetch(ctx, target, ip, host=host, tags=(f"residual={role}",))
    return Attempt(role, t0, ctx.clock.now(), result.failure)


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def measure(
    ctx: ProbeContext,
    target: Target,
    ip: str,
    control_host: str,
    *,
    interval: float = DEFAULT_INTERVAL,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    trigger_host: str | None = None,
) -> ResidualResult:
    """Baseline (clean until it works), trigger with `trigger_host` (default: the target's host), then
    clean retries every `interval` s for at most `max_seconds`."""
    if not interval > 0 or not max_seconds > 0:
        raise ProbeError("the residual probe needs a positive interval and time budget")
    trigger_host = trigger_host or target.host
    endpoint = join_host_port(ip, target.port)
    trigger = f"{target.scheme.upper()} request with Host/SNI {trigger_host} to {endpoint}"
    attempts: list[Attempt] = []
    start = time.monotonic()
    while True:  # 1. a clean state first
        attempts.append(_attempt(ctx, target, ip, control_host, "baseline"))
        if attempts[-1].failure is None:
            break
        if time.monotonic() + interval > start + max_seconds:
            return ResidualResult(endpoint, trigger, interval, tuple(attempts), measured=False)
        _sleep_until(time.monotonic() + interval)
    attempts.append(_attempt(ctx, target, ip, trigger_host, "trigger"))  # 2.
    triggered = time.monotonic()
    retry = 0
    while True:  # 3.
        _sleep_until(triggered + retry * interval)
        attempts.append(_attempt(ctx, target, ip, control_host, "clean"))
        retry += 1
        if attempts[-1].failure is None or time.monotonic() - triggered + interval > max_seconds:
            break
    return ResidualResult(endpoint, trigger, interval, tuple(attempts))
