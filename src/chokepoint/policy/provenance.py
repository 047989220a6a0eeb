"""A profile's provenance beyond its ``profile:`` block: a citation (and any uncertainty) on every personality
knob, the injectors also observed, and worked examples (``examples:``), each parsed with its source position.

Personality knobs (the ``personality:`` section, parsed by :func:`chokepoint.enforce.personality.parse_personality`)
carry their sources in two forms, both stripped before the personality parser sees the section::

    personality:
      based_on: gfw-type-ii          # a preset: its citation is the preset's own (PRESET_CITES)
      cite: "..."                    # covers the top-level knobs (based_on, drop_trigger)
      reset:
        cite: "Wu et al., IEEE S&P 2025, table fingerprint"      # covers every knob of the section
        count: 3
        ttl: {value: 255, cite: "geedge.report fingerprints", uncertain: "TTL 255 since 2024 only"}
      uncertain: {reset.window: "how the window is drawn is not published"}
      also_observed:                 # other injectors seen for the same censor (documented, not enforced)
        - {preset: gfw-type-i, cite: "..."}

``uncertain`` is text (the whole scope) or a mapping from knob name (dotted at the top level) to why.
A knob written as ``{value: X, cite: ..., uncertain: ...}`` is the plain value ``X`` to the parser.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from chokepoint.policy.dates import Active, is_active, parse_active
from chokepoint.policy.errors import PolicyError, SourcePos
from chokepoint.policy.yamlsrc import Marks

Path = tuple[str | int, ...]

#: Sections of ``personality:`` whose keys are knobs (``ip`` holds header defaults for all of them).
SECTIONS = ("ip", "reset", "dns", "blockpage", "throttle", "delay", "icmp", "residual")
#: Keys the provenance layer reads and removes before the personality parser runs.
PROVENANCE_KEYS = ("cite", "uncertain", "also_observed")
#: Top-level personality keys that describe rather than configure (not knobs).
_DESCRIPTIVE = ("name", "description")

EXAMPLE_PROTOCOLS = ("dns", "tls", "http", "quic", "tcp", "udp")
#: What a client sees, in OONI's vocabulary where it has a word for it (``connection_reset``,
#: ``generic_timeout_error``, ``ssl_unknown_authority``: OONI failure strings; the others are the Web
#: Connectivity blocking kinds ``dns``/``http-diff`` named by their cause).
SYMPTOMS = (
    "ok",
    "connection_reset",
    "generic_timeout_error",
    "dns_forged",
    "http_blockpage",
    "throttled",
    "ssl_unknown_authority",
)
_NAMED = frozenset(("dns", "tls", "http", "quic"))
_TIMEZONE = re.compile(r"^UTC([+-])(0\d|1[0-4]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class Knob:
    """One personality setting as written, with where it comes from. ``path`` is ``section.key`` or a
    top-level key; ``value`` is the written value (lists as tuples)."""

    path: str
    value: Any
    cite: str
    uncertain: str = ""
    pos: SourcePos | None = field(default=None, compare=False)
    #: when this value was in force (``chokepoint.policy.dates.Active``); None: throughout
    active: Active | None = None


@dataclass(frozen=True, slots=True)
class AlsoObserved:
    """Another injector documented for the same censor, given as a personality preset (not enforced: one
    personality acts per profile)."""

    preset: str
    cite: str
    note: str = ""
    active: Active | None = None


@dataclass(frozen=True, slots=True)
class Example:
    """A worked example target: how to reproduce one behaviour (``outcome`` blocked or allowed) and the
    ``symptom`` a client should see. Tests build a capture from it; the lab probes drive real clients with it.

    ``target`` is the name a client asks for (DNS question, TLS/QUIC SNI, HTTP Host); ``payloads`` the client's
    data packets for raw ``tcp``/``udp`` examples, in order (``payload_random``: that many seeded random bytes
    instead); ``packets`` cuts the client's data into that many packets; ``local_time`` the client's wall clock
    ("HH:MM" in the profile's timezone); ``tcp_options`` whether data segments carry TCP options;
    ``tls_record_split`` a ClientHello cut into two TLS records; ``prelude`` something sent first on the same
    flow (``dummy-udp``: one random datagram); ``expect`` free-form facts the lab should confirm on the wire.
    ``duration_s``/``send_kbps`` (tcp/udp): the client keeps sending random chunks (``payload_random`` bytes each)
    at that rate for that long, for behaviours that need an old or large flow (a deferred rule); ``params``:
    rule-param overrides (``"RULE.PARAM"`` -> YAML text, as ``load_profile(params=...)`` takes them) the profile
    must be loaded with to reproduce the example in reasonable time (e.g. a 3 s delay instead of 24 h)."""

    id: str
    outcome: str
    protocol: str
    symptom: str
    target: str = ""
    port: int | None = None
    client_port: int | None = None
    server_ip: str = ""
    client_ip: str = ""
    path: str = "/"
    payloads: tuple[bytes, ...] = ()
    payload_random: int = 0
    packets: int = 1
    quic_version: int = 1
    local_time: str = ""
    tcp_options: bool | None = None
    tls_record_split: bool = False
    prelude: str = ""
    ech: bool = False
    rule: str = ""
    action: str = ""
    expect: tuple[tuple[str, Any], ...] = ()
    note: str = ""
    cite: str = ""
    duration_s: float = 0.0
    send_kbps: float = 0.0
    params: tuple[tuple[str, str], ...] = ()
    pos: SourcePos | None = field(default=None, compare=False)
    #: when this outcome was what a client saw (``chokepoint.policy.dates.Active``); None: throughout
    active: Active | None = None

    def expected(self, key: str, default: Any = None) -> Any:
        for name, value in self.expect:
            if name == key:
                return value
        return default


def freeze(value: Any) -> Any:
    """Lists to tuples, mappings to tuples of pairs (hashable, immutable)."""
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, freeze(v)) for k, v in value.items())
    return value


def cite_text(raw: Any) -> str:
    """A ``cite:`` value (text or a list of texts) as one string."""
    if raw is None:
        return ""
    return "; ".join(raw) if isinstance(raw, list) else str(raw)


def utc_offset(text: str, pos: SourcePos) -> int:
    """Seconds east of UTC for ``UTC+HH:MM`` / ``UTC-HH:MM`` (fixed offsets only: no DST rules, so a
    profile's clock is deterministic)."""
    m = _TIMEZONE.match(text)
    if m is None:
        raise PolicyError.at(pos, f"bad timezone {text!r}: expected UTC+HH:MM or UTC-HH:MM")
    seconds = int(m.group(2)) * 3600 + int(m.group(3)) * 60
    return seconds if m.group(1) == "+" else -seconds


# ------------------------------------------------------------------------------------------------ personality


def _check_text(marks: Marks, path: Path, value: Any, what: str) -> str:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return "; ".join(value)
    raise PolicyError.at(marks.value(path), f"{what}: expected text or a list of texts, got {value!r}")


def _uncertain(marks: Marks, path: Path, raw: Any) -> tuple[str, dict[str, str]]:
    """(why for the whole scope, {knob: why})."""
    if raw is None:
        return "", {}
    if isinstance(raw, str) and raw.strip():
        return raw, {}
    if isinstance(raw, dict) and raw:
        out = {}
        for key, why in raw.items():
            if not isinstance(why, str) or not why.strip():
                raise PolicyError.at(marks.value(path + (key,)), f"uncertain.{key}: say why, as text")
            out[key] = why
        return "", out
    raise PolicyError.at(marks.value(path), "uncertain: expected text or a mapping of knob to why")


@dataclass(frozen=True, slots=True)
class _Variant:
    """One way a knob is written: its plain value, own cite and uncertainty, when it is in force."""

    plain: Any
    cite: str = ""
    why: str = ""
    active: Active | None = None


_KNOB_KEYS = frozenset({"value", "cite", "uncertain", "active"})


def _variant(marks: Marks, path: Path, value: dict[str, Any]) -> _Variant:
    cite = _check_text(marks, path + ("cite",), value["cite"], "cite") if "cite" in value else ""
    why = ""
    if "uncertain" in value:
        why = value["uncertain"]
        if not isinstance(why, str) or not why.strip():
            raise PolicyError.at(marks.value(path + ("uncertain",)), "uncertain: say why, as text")
    active = _active(marks, path + ("active",), value.get("active"))
    return _Variant(value["value"], cite, why, active)


def _active(marks: Marks, path: Path, raw: Any) -> Active | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or "cite" not in raw or not ({"from", "until"} & set(raw)):
        raise PolicyError.at(marks.value(path), "active: needs from and/or until, and cite")
    unknown = sorted(set(raw) - {"from", "until", "cite", "uncertain"})
    if unknown:
        raise PolicyError.at(marks.key(path + (unknown[0],)), f"active: unknown key {unknown[0]!r}")
    _check_text(marks, path + ("cite",), raw["cite"], "active.cite")
    return parse_active(raw, marks, path)


def _variants(marks: Marks, path: Path, value: Any) -> list[_Variant]:
    """A knob written plain, as ``{value, cite, uncertain, active}``, or as ``{dated: [{value, cite,
    uncertain, active}, ...]}`` (alternatives in force on different dates: each needs ``active``, and no two may
    overlap)."""
    if isinstance(value, dict) and set(value) == {"dated"}:
        items = value["dated"]
        if not isinstance(items, list) or not items:
            raise PolicyError.at(marks.value(path + ("dated",)), "dated: expected a list of {value, cite, active}")
        out: list[_Variant] = []
        for i, item in enumerate(items):
            here = path + ("dated", i)
            if not isinstance(item, dict) or "value" not in item or "active" not in item or not set(item) <= _KNOB_KEYS:
                raise PolicyError.at(marks.value(here), "dated: each entry is {value, cite, uncertain, active}")
            variant = _variant(marks, here, item)
            for other in out:
                assert variant.active is not None and other.active is not None  # the schema requires active here
                if variant.active.overlaps(other.active):
                    raise PolicyError.at(
                        marks.value(here + ("active",)),
                        f"dated: {variant.active.text()} overlaps {other.active.text()} (one value per day)",
                    )
            out.append(variant)
        return out
    if isinstance(value, dict) and "value" in value and set(value) <= _KNOB_KEYS:
        return [_variant(marks, path, value)]
    return [_Variant(value)]


def _chosen(variants: list[_Variant], day: dt.date | None) -> _Variant | None:
    """The variant in force on ``day`` (None: the undated one, else the latest to start)."""
    if day is None:
        return max(variants, key=lambda v: (v.active.start or dt.date.min) if v.active else dt.date.max)
    return next((v for v in variants if is_active(v.active, day)), None)


def _dated_items(marks: Marks, path: Path, plain: Any, day: dt.date | None, knobs: list[Knob], cite: str) -> Any:
    """A list knob (``parallel``) whose items may carry ``active``: the items in force on ``day`` (``active``
    stripped), and a knob ``parallel.PRESET`` per dated item for the timeline."""
    if not isinstance(plain, list):
        return plain
    kept = []
    for i, item in enumerate(plain):
        if isinstance(item, dict) and "active" in item:
            active = _active(marks, path + (i, "active"), item["active"])
            assert active is not None  # the schema requires active to be a mapping here
            name = f"{path[-1] if path[-1] != 'value' else path[-2]}.{item.get('preset', i)}"
            knobs.append(
                Knob(name, item.get("probability", 1.0), active.cite or cite, "", marks.value(path + (i,)), active)
            )
            if day is None or active.contains(day):
                kept.append({k: v for k, v in item.items() if k != "active"})
        else:
            kept.append(item)
    return kept


def split_personality(
    raw: Any, marks: Marks, base: Path = ("personality",), *, as_of: dt.date | None = None
) -> tuple[dict[str, Any] | None, tuple[Knob, ...], tuple[AlsoObserved, ...]]:
    """Separate provenance from settings: (the section as ``parse_personality`` takes it for the day ``as_of``,
    the knobs with their citations, the injectors also observed). Knob citations inherit from their section,
    never from the top level (a knob without any cite keeps ``cite`` empty: ``provenance_gaps`` reports it).

    Dated knobs (``active:`` on a knob, a section or an item of ``parallel``; ``dated:`` alternatives) are in
    the settings only on the days they are in force; every variant is among the knobs, with its ``active``
    (the caller keeps those in force for ``Profile.knobs`` and all of them for the timeline). ``as_of`` None:
    every dated element counts, and of ``dated:`` alternatives the latest."""
    if raw is None:
        return None, (), ()
    if not isinstance(raw, dict):
        raise PolicyError.at(marks.value(base), f"personality: expected a mapping, got {type(raw).__name__}")
    top_cite = _check_text(marks, base + ("cite",), raw["cite"], "cite") if "cite" in raw else ""
    top_why, top_whys = _uncertain(marks, base + ("uncertain",), raw.get("uncertain"))
    clean: dict[str, Any] = {}
    knobs: list[Knob] = []
    for key, value in raw.items():
        if key in PROVENANCE_KEYS:
            continue
        if key in SECTIONS and isinstance(value, dict):
            spath = base + (key,)
            sec_cite = _check_text(marks, spath + ("cite",), value["cite"], "cite") if "cite" in value else ""
            sec_why, sec_whys = _uncertain(marks, spath + ("uncertain",), value.get("uncertain"))
            sec_active = _active(marks, spath + ("active",), value.get("active"))
            section: dict[str, Any] = {}
            for name, item in value.items():
                if name in ("cite", "uncertain", "active"):
                    continue
                variants = _variants(marks, spath + (name,), item)
                dotted = f"{key}.{name}"
                for variant in variants:
                    knobs.append(
                        Knob(
                            dotted,
                            freeze(variant.plain),
                            variant.cite or sec_cite,
                            variant.why or sec_whys.get(name, "") or top_whys.get(dotted, "") or sec_why or top_why,
                            marks.key(spath + (name,)),
                            variant.active or sec_active,
                        )
                    )
                chosen = _chosen(variants, as_of)
                if chosen is not None:
                    section[name] = chosen.plain
            for name in list(sec_whys):
                if name not in value:
                    raise PolicyError.at(
                        marks.key(spath + ("uncertain", name)),
                        f"uncertain names {name!r}, which this section does not set",
                    )
            if as_of is None or is_active(sec_active, as_of):
                clean[key] = section
            continue
        variants = _variants(marks, base + (key,), value)
        dated: list[Knob] = []
        for variant in variants:
            if key not in _DESCRIPTIVE:
                knobs.append(
                    Knob(
                        key,
                        freeze(variant.plain),
                        variant.cite or top_cite,
                        variant.why or top_whys.get(key, "") or top_why,
                        marks.key(base + (key,)),
                        variant.active,
                    )
                )
        chosen = _chosen(variants, as_of)
        if chosen is not None:
            where = base + (key, "value") if isinstance(value, dict) and "value" in value else base + (key,)
            clean[key] = _dated_items(marks, where, chosen.plain, as_of, dated, chosen.cite or top_cite)
            if dated and key not in _DESCRIPTIVE:  # the knob's value is what is in force; each dated item is
                # its own timeline entry
                knobs[-1] = replace(knobs[-1], value=freeze(clean[key]))
                knobs.extend(dated)
    known = {k.path for k in knobs}
    for name in top_whys:
        if name not in known:
            raise PolicyError.at(
                marks.key(base + ("uncertain", name)), f"uncertain names {name!r}, which the personality does not set"
            )
    also = _also_observed(marks, base + ("also_observed",), raw.get("also_observed"))
    return clean, tuple(knobs), also


def _also_observed(marks: Marks, path: Path, raw: Any) -> tuple[AlsoObserved, ...]:
    from chokepoint.enforce.personality import PRESETS

    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PolicyError.at(marks.value(path), "also_observed: expected a list of {preset, cite, note}")
    out = []
    for i, item in enumerate(raw):
        here = path + (i,)
        if (
            not isinstance(item, dict)
            or "preset" not in item
            or "cite" not in item
            or not set(item) <= {"preset", "cite", "note", "active"}
        ):
            raise PolicyError.at(marks.value(here), "also_observed: each entry is {preset, cite, note, active}")
        if item["preset"] not in PRESETS:
            raise PolicyError.at(
                marks.value(here + ("preset",)),
                f"no personality preset {item['preset']!r}; known: {', '.join(PRESETS)}",
            )
        out.append(
            AlsoObserved(
                item["preset"],
                _check_text(marks, here + ("cite",), item["cite"], "cite"),
                str(item.get("note", "")),
                _active(marks, here + ("active",), item.get("active")),
            )
        )
    return tuple(out)


# ------------------------------------------------------------------------------------------------- examples


def parse_examples(
    raw: Mapping[str, Any] | None, marks: Marks, rules: Mapping[str, Any], base: Path = ("examples",)
) -> tuple[Example, ...]:
    """Schema-checked ``examples:`` into :class:`Example` values; a blocked example must name the rule that
    blocks it (and that rule must exist, with the action given, if any)."""
    if not raw:
        return ()
    out: list[Example] = []
    seen: dict[str, SourcePos] = {}
    for outcome in ("blocked", "allowed"):
        for i, item in enumerate(raw.get(outcome) or ()):
            here = base + (outcome, i)
            pos = marks.value(here)
            ident = item["id"]
            if ident in seen:
                raise PolicyError.at(
                    marks.value(here + ("id",)), f"duplicate example id {ident!r} (first at line {seen[ident].line})"
                )
            seen[ident] = pos
            protocol = item["protocol"]
            if protocol in _NAMED and not item.get("target"):
                raise PolicyError.at(pos, f"a {protocol} example needs a target (the name to ask for)")
            if protocol in ("tcp", "udp") and "payload" not in item and "payload_random" not in item:
                raise PolicyError.at(pos, f"a {protocol} example needs payload (hex) or payload_random (bytes)")
            rule_id = item.get("rule", "")
            if outcome == "blocked" and not rule_id:
                raise PolicyError.at(pos, "a blocked example names the rule that blocks it (rule: ...)")
            if outcome == "blocked" and item["symptom"] == "ok":
                raise PolicyError.at(marks.value(here + ("symptom",)), "a blocked example has a symptom other than ok")
            if rule_id:
                rule = rules.get(rule_id)
                if rule is None:
                    raise PolicyError.at(marks.value(here + ("rule",)), f"no rule {rule_id!r} in this profile")
                deferred = getattr(rule, "defer", None) is not None
                if outcome == "allowed" and rule.action.value != "log" and not deferred:
                    raise PolicyError.at(
                        marks.value(here + ("rule",)),
                        f"an allowed example names only a log rule or a deferred one (that marks "
                        f"it), not a {rule.action.value} rule",
                    )
                action = item.get("action", "")
                if action and action != rule.action.value:
                    raise PolicyError.at(
                        marks.value(here + ("action",)), f"rule {rule_id!r} is a {rule.action.value} rule, not {action}"
                    )
            raw_payload = item.get("payload", ())
            payloads = tuple(
                bytes.fromhex("".join(h.split()))
                for h in ([raw_payload] if isinstance(raw_payload, str) else raw_payload)
            )
            if len(payloads) > 1 and item.get("packets", 1) != 1:
                raise PolicyError.at(
                    marks.value(here + ("packets",)), "give either several payloads or packets (which cuts one payload)"
                )
            if "duration_s" in item and protocol not in ("tcp", "udp"):
                raise PolicyError.at(marks.key(here + ("duration_s",)), "duration_s is for tcp/udp examples")
            if ("duration_s" in item) != ("send_kbps" in item):
                raise PolicyError.at(pos, "give duration_s and send_kbps together")
            params = tuple(
                (key, value if isinstance(value, str) else json.dumps(value))
                for key, value in (item.get("params") or {}).items()
            )
            for key, _ in params:
                if key.rpartition(".")[0] not in rules:
                    raise PolicyError.at(
                        marks.key(here + ("params", key)),
                        f"params: {key!r} names no rule of this profile (RULE_ID.PARAM)",
                    )
            out.append(
                Example(
                    id=ident,
                    outcome=outcome,
                    protocol=protocol,
                    symptom=item["symptom"],
                    target=item.get("target", ""),
                    port=item.get("port"),
                    client_port=item.get("client_port"),
                    server_ip=item.get("server_ip", ""),
                    client_ip=item.get("client_ip", ""),
                    path=item.get("path", "/"),
                    payloads=payloads,
                    payload_random=item.get("payload_random", 0),
                    packets=item.get("packets", 1),
                    quic_version=item.get("quic_version", 1),
                    local_time=item.get("local_time", ""),
                    tcp_options=item.get("tcp_options"),
                    tls_record_split=item.get("tls_record_split", False),
                    prelude=item.get("prelude", ""),
                    ech=item.get("ech", False),
                    rule=rule_id,
                    action=item.get("action", "") or (rules[rule_id].action.value if rule_id else ""),
                    expect=freeze(item.get("expect") or {}),
                    note=item.get("note", ""),
                    cite=cite_text(item.get("cite")),
                    duration_s=float(item.get("duration_s", 0)),
                    send_kbps=float(item.get("send_kbps", 0)),
                    params=params,
                    pos=pos,
                    active=parse_active(item.get("active"), marks, here + ("active",)),
                )
            )
    return tuple(out)


__all__ = [
    "AlsoObserved",
    "EXAMPLE_PROTOCOLS",
    "Example",
    "Knob",
    "PROVENANCE_KEYS",
    "SECTIONS",
    "SYMPTOMS",
    "cite_text",
    "freeze",
    "parse_examples",
    "split_personality",
    "utc_offset",
]
