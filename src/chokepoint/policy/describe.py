"""A profile as plain data for people: behaviours, dates, citations, uncertainties and examples.

``describe(profile)`` is what ``chokepoint profiles show NAME --json`` prints and what ``docs/profiles.md`` is
generated from (``chokepoint.cli.profiles_doc``); ``techniques(profile)`` names what each rule does in a few words
("TLS SNI reset", "QUIC SNI drop") for ``profiles list``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import fields
from pathlib import Path
from typing import Any

from chokepoint.policy.conditions import atoms
from chokepoint.policy.verdict import Action
from chokepoint.settings import EngineSettings

#: A rule's trigger family, by the fields it tests: the first family whose fields it uses names it.
_FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("QUIC SNI", ("quic.sni",)),
    ("ECH", ("tls.ech",)),
    ("ESNI", ("tls.esni",)),
    ("TLS SNI", ("tls.sni",)),
    ("HTTP", ("http.host", "http.path", "http.query", "http.url", "http.method", "http.user_agent")),
    ("DNS", ("dns.qname", "dns.qtype")),
    ("fully encrypted", ("fully_encrypted", "fet_exemption")),
    ("TLS-in-TLS", ("tls_in_tls",)),
    ("schedule", ("local_hour",)),
    ("protocol", ("app_proto", "ja3", "ja4", "tls.alpn")),
    (
        "payload signature",
        ("payload", "payload_len", "first_payload_c2s", "first_payload_c2s_len", "first_payload_s2c", "stream_c2s"),
    ),
    ("IP", ("server_ip", "client_ip")),
    ("port", ("server_port", "client_port")),
)
_VERBS = {Action.DNS_FORGE: "forge", Action.ICMP_UNREACHABLE: "ICMP unreachable", Action.TLS_INTERCEPT: "interception"}


def rule_technique(rule: Any) -> str:
    """Trigger family and action of one rule, e.g. "TLS SNI reset"; a log rule's mechanism if it has one."""
    used = {a.field for a in atoms(rule.when)}
    family = next((name for name, members in _FAMILIES if used & set(members)), "flow")
    verb = rule.mechanism or _VERBS.get(rule.action, rule.action.value)
    if getattr(rule, "defer", None) is not None:
        verb = f"deferred {verb}"
    return f"{family} {verb}"


def _in_force(dated: Any, profile: Any) -> bool:
    return profile.as_of is None or dated.active.contains(profile.as_of)


def techniques(profile: Any) -> list[str]:
    """What the profile's rules do, in rule order, without repeats (``log`` rules only with a mechanism)."""
    out: dict[str, None] = {}
    for rule in profile.policy.rules:
        if rule.action is Action.LOG and not rule.mechanism:
            continue
        out.setdefault(rule_technique(rule), None)
    return list(out)


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _volume(count: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"


def deferral_text(rule: Any, overridden: Any = ()) -> str:
    """A deferred rule in words, e.g. "flag, then drop after 24 h once 50 MB have passed"; a value set by a
    ``--param`` override is followed by "(overridden)"."""
    defer = rule.defer
    mark = {name: " (overridden)" if name in overridden else "" for name in ("after_s", "min_bytes")}
    parts = [f"flag, then {rule.action.value}"]
    if defer.after_s:
        parts.append(f"after {_duration(defer.after_s)}{mark['after_s']}")
    if defer.min_bytes:
        parts.append(f"once {_volume(defer.min_bytes)}{mark['min_bytes']} have passed")
    if not defer.after_s and not defer.min_bytes:
        parts.append("at once")
    return " ".join(parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def _knob_value(path: str, value: Any) -> Any:
    """A knob as written; DNS flags in hex, as the papers print them."""
    if path.endswith("dns.flags") and isinstance(value, int):
        return f"0x{value:04x}"
    if path == "parallel" and isinstance(value, tuple):  # "gfw-type-i (p 1)": preset and probability
        return [
            f"{dict(item).get('preset')} (p {dict(item).get('probability', 1)})" if isinstance(item, tuple) else item
            for item in value
        ]
    return _jsonable(value)


def _field16(spec: Any) -> str:
    if spec.kind == "fixed":
        return str(spec.lo)
    if spec.kind == "random":
        return f"random {spec.lo}-{spec.hi}"
    if spec.kind == "increment":
        return f"increment from {spec.lo} by {spec.step}"
    return "tsg"


def _ttl(ttl: Any) -> str:
    return {"fixed": str(ttl.lo), "range": f"{ttl.lo}-{ttl.hi}", "mirror": "mirror"}[ttl.kind]


def _ip(style: Any) -> dict[str, Any]:
    out = {"ttl": _ttl(style.ttl), "ip_id": _field16(style.ip_id), "df": style.df, "window": _field16(style.window)}
    if "tsg" in (style.ip_id.kind, style.window.kind):
        out["tsg"] = {"seed_key": style.tsg.seed_key, "seed_max": style.tsg.seed_max}
    return out


def _parallel(other: Any) -> dict[str, Any]:
    """A parallel injector: its RSTs and/or its forged DNS answers."""
    out: dict[str, Any] = {"preset": other.name, "probability": other.probability, "max_fragments": other.max_fragments}
    if other.reset is not None:
        out["reset"] = {
            "flags": other.reset.flags_text,
            "count": other.reset.count,
            "targets": other.reset.targets,
            **_ip(other.reset.ip),
        }
    if other.dns is not None:
        out["dns"] = {
            "flags": f"0x{other.dns.flags:04x}" if other.dns.flags is not None else "resolver-like",
            "answer_ttl": other.dns.answer_ttl,
            "compression": other.dns.compression,
        }
    return out


def personality_summary(p: Any) -> dict[str, Any]:
    """The injected packets' fields a personality produces, section by section."""
    reset, dns, page, residual = p.reset, p.dns, p.blockpage, p.residual
    return {
        "name": p.name,
        "reset": {
            "flags": reset.flags_text,
            "count": reset.count,
            "targets": reset.targets,
            "identical": reset.identical,
            "seq": reset.seq,
            "payload": reset.payload.hex(),
            **_ip(reset.ip),
        },
        "dns": {
            "flags": f"0x{dns.flags:04x}" if dns.flags is not None else "resolver-like",
            "answer_ttl": dns.answer_ttl,
            "answers": list(dns.answers),
            "compression": dns.compression,
            "mode": dns.mode,
            **_ip(dns.ip),
        },
        "blockpage": {"status": page.status, "location": page.location, "close": page.close, **_ip(page.ip)},
        "throttle": {"rate_kbps": p.throttle.rate_kbps, "burst_bytes": p.throttle.burst_bytes},
        "residual": {
            "scope": residual.scope,
            "seconds": residual.seconds,
            "rearm": residual.rearm,
            "action": residual.action,
        },
        "drop_trigger": p.drop_trigger,
        "parallel": [_parallel(other) for other in p.parallel],
        "max_fragments": p.max_fragments,
    }


def _engine(settings: EngineSettings) -> dict[str, Any]:
    default = EngineSettings()
    return {
        f.name: getattr(settings, f.name)
        for f in fields(EngineSettings)
        if getattr(settings, f.name) != getattr(default, f.name)
    }


def _example(ex: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ex.id, "protocol": ex.protocol, "symptom": ex.symptom}
    for key in (
        "target",
        "port",
        "client_port",
        "server_ip",
        "client_ip",
        "local_time",
        "prelude",
        "rule",
        "action",
        "note",
        "cite",
    ):
        value = getattr(ex, key)
        if value not in ("", None):
            out[key] = value
    if ex.protocol == "http" or ex.path != "/":
        out["path"] = ex.path
    if ex.payloads:
        out["payload"] = [p.hex() for p in ex.payloads]
    for key, default in (
        ("payload_random", 0),
        ("packets", 1),
        ("quic_version", 1),
        ("tcp_options", None),
        ("tls_record_split", False),
        ("ech", False),
    ):
        if getattr(ex, key) != default:
            out[key] = getattr(ex, key)
    for key in ("duration_s", "send_kbps"):
        if getattr(ex, key, 0):
            out[key] = getattr(ex, key)
    if getattr(ex, "params", ()):
        out["params"] = dict(ex.params)
    if ex.expect:
        out["expect"] = {k: _jsonable(v) for k, v in ex.expect}
    return out


def describe(profile: Any) -> dict[str, Any]:
    """Everything ``profiles show`` says about ``profile``, as JSON-ready data."""
    meta = profile.meta
    overrides = dict(getattr(profile, "overrides", ()))
    rules = []
    for rule in profile.policy.rules:
        item: dict[str, Any] = {
            "id": rule.id,
            "action": rule.action.value,
            "technique": rule_technique(rule),
            "when": str(rule.when),
            "reason": rule.reason,
            "cite": rule.cite,
        }
        params = {k: _jsonable(v) for k, v in rule.params}
        if rule.defer is not None:
            after = rule.defer.after_s
            params.update(after_s=int(after) if after.is_integer() else after, min_bytes=rule.defer.min_bytes)
        if params:
            item["params"] = params
        overridden = {k: _jsonable(overrides[f"{rule.id}.{k}"]) for k in params if f"{rule.id}.{k}" in overrides}
        if overridden:
            item["overridden"] = overridden
        if rule.defer is not None:
            item["deferred"] = deferral_text(rule, overridden)
        for key in ("observed", "mechanism"):
            if getattr(rule, key):
                item[key] = getattr(rule, key)
        if rule.uncertain:
            item["uncertain"] = {knob or "rule": why for knob, why in rule.uncertain}
        if getattr(rule, "active", None) is not None:
            item["active"] = rule.active.to_json()
        rules.append(item)
    lists = []
    for listdef in profile.policy.lists.values():
        item = {
            "name": listdef.name,
            "kind": listdef.kind,
            "entries": len(listdef.entries),
            "description": listdef.description,
            "cite": listdef.cite,
        }
        if listdef.file:
            item["file"] = f"lists/{Path(listdef.file).name}"
        if listdef.uncertain:
            item["uncertain"] = listdef.uncertain
        if getattr(listdef, "active", None) is not None:
            item["active"] = listdef.active.to_json()
        lists.append(item)
    knobs = [
        {
            "knob": k.path,
            "value": _knob_value(k.path, k.value),
            "cite": k.cite,
            **({"uncertain": k.uncertain} if k.uncertain else {}),
            **({"active": k.active.to_json()} if getattr(k, "active", None) is not None else {}),
        }
        for k in profile.knobs
    ]
    uncertainties = [f"profile: {meta.uncertain}"] if meta.uncertain else []
    uncertainties += [f"list {d.name}: {d.uncertain}" for d in profile.policy.lists.values() if d.uncertain]
    uncertainties += [
        f"rule {r.id}{'.' + knob if knob else ''}: {why}" for r in profile.policy.rules for knob, why in r.uncertain
    ]
    uncertainties += [f"{k.path}: {k.uncertain}" for k in profile.knobs if k.uncertain]
    uncertainties += [
        f"dates of {d.kind} {d.name} ({d.active.text()}): {d.active.uncertain}"
        for d in getattr(profile, "timeline", ())
        if d.active.uncertain and _in_force(d, profile)
    ]
    as_of, span = getattr(profile, "as_of", None), getattr(profile, "coverage", None)
    return {
        "name": profile.name,
        "title": meta.title,
        "country": meta.country,
        "operator": meta.operator,
        "observed": meta.observed,
        "as_of": as_of.isoformat() if as_of else None,
        "coverage": [d.isoformat() for d in span] if span and span[1] != dt.date.max else None,
        "named_dates": {n: d.isoformat() for n, d in getattr(meta, "named_dates", ())},
        "timeline": [d.to_json() for d in getattr(profile, "timeline", ())],
        "timezone": meta.timezone or "UTC",
        "distance": getattr(meta, "distance", None),
        "position": getattr(meta, "position", None),
        "description": " ".join(meta.description.split()),
        "cite": list(meta.cite),
        "techniques": techniques(profile),
        "engine": _engine(profile.engine),
        "rules": rules,
        "lists": lists,
        "personality": {
            "summary": personality_summary(profile.personality),
            "knobs": knobs,
            "also_observed": [
                {"preset": a.preset, "cite": a.cite, **({"note": a.note} if a.note else {})}
                for a in profile.also_observed
            ],
        },
        "examples": {
            outcome: [_example(e) for e in profile.examples if e.outcome == outcome]
            for outcome in ("blocked", "allowed")
        },
        "uncertainties": [" ".join(u.split()) for u in uncertainties],
        **({"overrides": [f"{k}={_jsonable(v)}" for k, v in overrides.items()]} if overrides else {}),
        "provenance_gaps": profile.provenance_gaps(),
    }


__all__ = ["deferral_text", "describe", "personality_summary", "rule_technique", "techniques"]
