"""Options shared by the processes of a censor node (censord and the TLS-intercept proxy): the policy they
load, ``--param`` overrides and the injected clock (``--clock-offset`` / ``--fake-time``)."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Mapping


def fake_time_offset(text: str, now: float | None = None) -> float:
    """Seconds to add to the wall clock (``now``, default ``time.time()``) so that it reads ``text`` now.

    ``text`` is an ISO 8601 date and time with a fixed UTC offset (``2026-11-27T02:30:00+06:30``, ``...Z``;
    ISO 8601-1:2019 5.3.4): a time without one would depend on the machine's zone and its DST rules.
    ``ValueError`` with the reason for anything else."""
    try:
        instant = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO 8601 date and time: {text!r} (e.g. 2026-11-27T02:30:00+06:30)") from None
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{text!r} has no UTC offset: add one, e.g. {text.strip()}+06:30 or {text.strip()}Z")
    return instant.timestamp() - (time.time() if now is None else now)


def clock_offset(text: str) -> float:
    """A clock offset in seconds (may be negative); ``ValueError`` unless a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"not a finite number of seconds: {text!r}")
    return value


def param_override(text: str) -> tuple[str, str]:
    """``RULE.PARAM=VALUE`` as ``("RULE.PARAM", "VALUE")`` (the value is YAML text, checked by the loader);
    ``ValueError`` when the shape is wrong."""
    key, sep, value = text.partition("=")
    rule, dot, param = key.strip().rpartition(".")
    if not sep or not dot or not rule or not param:
        raise ValueError(f"expected RULE.PARAM=VALUE, not {text!r} (e.g. tsg-unknown-high-volume.after_s=5)")
    return f"{rule}.{param}", value.strip()


def load_policy(
    profile: str | None, rules: str | None, params: Mapping[str, str] | None = None, as_of: str | None = None
):
    """The daemon's profile: ``--rules FILE`` or ``--profile NAME`` (default demo), with ``--param`` overrides,
    as of ``--as-of DAY`` (also the intercept proxy's, which the daemon starts with the same arguments)."""
    from chokepoint.policy import load_profile, load_rules_file

    if rules:
        return load_rules_file(rules, params=params or None, as_of=as_of)
    return load_profile(profile or "demo", params=params or None, as_of=as_of)
