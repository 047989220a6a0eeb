"""Per-verdict override: a rule's params applied to the personality (:func:`effective`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from chokepoint.enforce.personality.model import RESIDUAL_SCOPES, Path, Personality
from chokepoint.enforce.personality.parse import (
    _addresses,
    _body,
    _check_blockpage,
    _choice,
    _int,
    _location,
    _num,
    _reset_flags,
    _Where,
    preset,
)
from chokepoint.enforce.personality.presets import PRESETS

#: ICMP code (v4) -> the ICMPv6 destination-unreachable code with the same meaning (RFC 4443 §3.1).
_CODE6 = {0: 0, 1: 3, 3: 4, 9: 1, 10: 1, 13: 1}
#: Rule params the engine or the planner read themselves.
#: read elsewhere: the engine (probability), the planner (direction, injector), the TLS-intercepting proxy's CA
#: (issuer_cn, issuer_country: chokepoint.backends.intercept.ca.CensorCA.names_for)
_PASS_THROUGH = frozenset({"probability", "direction", "injector", "issuer_cn", "issuer_country"})


def effective(
    personality: Personality,
    params: Mapping[str, Any] | Sequence[tuple[str, Any]],
    *,
    marks: Any = None,
    path: Path = ("params",),
) -> Personality:
    """``personality`` with a verdict's rule params applied (``Verdict.params`` or a mapping).

    ``injector`` (a :data:`PRESETS` name) first replaces the whole personality with that preset, so one profile
    can model several injectors as separate rules (e.g. GFW types I/II/III). Then: count/flags/targets -> reset;
    answers/ttl (answer TTL) -> dns; status/location/body -> blockpage; rate_kbps -> throttle;
    delay_ms/jitter_ms -> delay; code -> icmp (its ICMPv6 counterpart follows); residual_s (alias
    residual_seconds)/residual_scope -> residual. ``probability`` and ``direction`` are read by the engine and
    the planner and ignored here; any other key is a ``PolicyError`` (call this at load time for every rule to
    catch them early; with the profile's ``marks`` and the params' data ``path`` the error points at the value).
    """
    items = dict(params.items() if isinstance(params, Mapping) else params)
    if not items:
        return personality
    w = _Where("<rule params>", marks, tuple(path))
    p = personality
    if "injector" in items:
        p = preset(_choice(w, ("injector",), items["injector"], tuple(PRESETS)))
    reset, dns, page, throttle, delay, icmp, residual = (
        p.reset,
        p.dns,
        p.blockpage,
        p.throttle,
        p.delay,
        p.icmp,
        p.residual,
    )
    for key, value in items.items():
        path = (key,)
        if key == "count":
            reset = replace(reset, count=_int(w, path, value, 1, 16))
        elif key == "flags":
            flags, extra_flags = _reset_flags(w, path, value)
            reset = replace(reset, flags=flags, extra_flags=extra_flags)
        elif key == "targets":
            reset = replace(reset, targets=_choice(w, path, value, ("client", "server", "both")))
        elif key == "answers":
            dns = replace(dns, answers=_addresses(w, path, value))
        elif key == "ttl":
            dns = replace(dns, answer_ttl=_int(w, path, value, 0, 0x7FFFFFFF))
        elif key == "status":
            page = replace(page, status=_int(w, path, value, 100, 599))
        elif key == "location":
            page = replace(page, location=_location(w, path, value))
        elif key == "body":
            page = replace(page, body=_body(w, path, value))
        elif key == "rate_kbps":
            throttle = replace(throttle, rate_kbps=_num(w, path, value, 0, positive=True))
        elif key == "delay_ms":
            delay = replace(delay, ms=_num(w, path, value, 0))
        elif key == "jitter_ms":
            delay = replace(delay, jitter_ms=_num(w, path, value, 0))
        elif key == "code":
            code = _int(w, path, value, 0, 15)
            icmp = replace(icmp, code=code, code6=_CODE6.get(code, 1))
        elif key in ("residual_s", "residual_seconds"):
            residual = replace(residual, seconds=_num(w, path, value, 0))
        elif key == "residual_scope":
            residual = replace(residual, scope=_choice(w, path, value, RESIDUAL_SCOPES))
        elif key not in _PASS_THROUGH:
            raise w.error(path, "unknown rule parameter for enforcement")
    _check_blockpage(w, (), page)
    return replace(
        p, reset=reset, dns=dns, blockpage=page, throttle=throttle, delay=delay, icmp=icmp, residual=residual
    )
