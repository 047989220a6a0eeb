"""Loading a profile: YAML -> schema check -> lists -> rules -> compiled policy -> personality, or ``PolicyError``.

A profile is policy + personality + provenance: ``profile:`` (who, where, when, citations, timezone),
``engine:`` (``EngineSettings``), ``lists:`` and ``rules:`` (what is blocked), ``personality:`` (how the
censor acts: ``chokepoint.enforce.personality``, with a citation on every knob: ``chokepoint.policy.provenance``)
and ``examples:`` (targets that show each behaviour, with the symptom a client sees). A rule file is the same
format with ``profile:`` optional. Every rule's params are checked against the personality at load time
(``effective``), so an enforcer never meets a parameter it cannot apply. Nothing is half-loaded: every function
returns a new immutable ``Profile`` or raises.

Rule-param overrides (``params={"RULE_ID.PARAM": "VALUE"}``, the CLI's ``--param``): each value is a YAML
scalar or flow collection as text (``"5"``, ``"1e6"``, ``"[1, 2]"``), set into the rule's ``params:`` before
the schema check, so it is validated exactly like the file; a mistake is a ``PolicyError`` naming the override
(``--param RULE.PARAM=VALUE: message``). ``Profile.overrides`` records what was applied. The overrides are
:mod:`chokepoint.policy.overrides`; the profile's days (coverage, ``--as-of``, the dated checks, the timeline and
``era_starts``) are :mod:`chokepoint.policy.eras`.

List files supplied from outside (``list_files={"LIST": path}``; the central manager's lists,
``chokepoint.manager``): the entries of the profile's list ``LIST`` are read from ``path`` instead of its
``items``/``file`` (kind, cite and the rest of the declaration stay), checked entry by entry like any list file,
with errors at ``path:line:column``. A name the profile does not declare is a ``PolicyError``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chokepoint import profiles as _bundled
from chokepoint.policy.compiler import DEFERRAL_PARAMS, CompiledPolicy, Deferral, Rule, compile_policy
from chokepoint.policy.conditions import parse_condition_data
from chokepoint.policy.dates import is_active, parse_active, parse_as_of
from chokepoint.policy.eras import (
    AsOf,
    Dated,
    _as_of,
    _check_dates,
    _check_lists_in_force,
    _check_span,
    _coverage,
    _timeline,
    era_starts,
)
from chokepoint.policy.errors import PolicyError, SourcePos
from chokepoint.policy.lists import load_list
from chokepoint.policy.outcomes import parse_outcomes
from chokepoint.policy.overrides import apply_overrides
from chokepoint.policy.probing import parse_active_probing
from chokepoint.policy.provenance import (
    AlsoObserved,
    Example,
    Knob,
    cite_text,
    freeze,
    parse_examples,
    split_personality,
    utc_offset,
)
from chokepoint.policy.schema import build_schema, validate
from chokepoint.policy.verdict import Action
from chokepoint.policy.yamlsrc import Marks, load_yaml
from chokepoint.settings import EngineSettings

BUNDLED_DIR = Path(_bundled.__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class ProfileMeta:
    title: str = ""
    country: str = ""
    operator: str = ""
    observed: str = ""
    description: str = ""
    cite: tuple[str, ...] = ()
    timezone: str = ""  # "UTC+06:30"; empty: UTC
    utc_offset_s: int = 0  # the same in seconds east of UTC (the engine's local_hour)
    uncertain: str = ""
    #: names that load this profile as of a day (``gfw-2023`` -> 2022-06-01)
    named_dates: tuple[tuple[str, dt.date], ...] = ()
    #: ``profile.distance``: RTT to a server abroad (``rtt_ms``, ``range_ms``, ``cite``, ``uncertain``); the lab's
    #: far-side delay (``lab up --distance``, lab/geometry.py)
    distance: dict[str, Any] | None = field(default=None, hash=False)
    #: ``profile.position``: the censor's hops from each side (``hops_client``, ``hops_server``, ``cite``, ...)
    position: dict[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    meta: ProfileMeta
    engine: EngineSettings
    policy: CompiledPolicy
    source: Path
    #: how the censor acts (``chokepoint.enforce.personality.Personality``; the neutral default when the file
    #: has no ``personality:`` section)
    personality: Any = None
    knobs: tuple[Knob, ...] = ()
    also_observed: tuple[AlsoObserved, ...] = ()
    examples: tuple[Example, ...] = ()
    #: rule params set at load time instead of the file's: (("RULE_ID.PARAM", value), ...) in the order given
    overrides: tuple[tuple[str, Any], ...] = ()
    #: the day the profile was loaded for (what was in force that day is what the policy holds)
    as_of: dt.date | None = None
    #: the days the profile covers (``profile.observed``), inclusive
    coverage: tuple[dt.date, dt.date] | None = None
    #: every dated element, in force on ``as_of`` or not, by start date
    timeline: tuple[Dated, ...] = ()
    #: the file's own name when ``name`` is a named date of it (``gfw`` for ``gfw-2023``), else ``name``
    base: str = ""
    #: published outcomes of named transports under this censor (``policy/outcomes.py``)
    outcomes: tuple[Any, ...] = ()
    #: the censor's active prober, when it has one (``policy/probing.py``)
    active_probing: Any = None

    def overridden(self, rule_id: str, param: str) -> bool:
        """Whether ``rule_id``'s ``param`` comes from an override rather than the file."""
        key = f"{rule_id}.{param}"
        return any(k == key for k, _ in self.overrides)

    def provenance_gaps(self) -> list[str]:
        """What lacks a citation: rules, lists and personality knobs (a bundled profile has none)."""
        gaps = [f"rule {r.id}: no cite" for r in self.policy.rules if not r.cite]
        gaps += [f"list {n}: no cite" for n, d in self.policy.lists.items() if not d.cite]
        gaps += [f"knob {k.path}: no cite" for k in self.knobs if not k.cite]
        if not self.meta.cite:
            gaps.append("profile: no cite")
        return gaps


def list_profiles() -> list[str]:
    """Names of the bundled profiles (``src/chokepoint/profiles/<name>.yaml``), not their named dates."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


def named_dates() -> dict[str, str]:
    """Names that load a bundled profile as of a day (``gfw-2023`` -> ``gfw``): ``chokepoint.profiles``'s
    registry; the day itself is in the profile's ``named_dates``."""
    return dict(_bundled.NAMED_DATES)


Params = Mapping[str, str] | None
ListFiles = Mapping[str, str | Path] | None


def load_profile(
    name_or_path: str, *, params: Params = None, as_of: AsOf = None, list_files: ListFiles = None
) -> Profile:
    """A bundled profile by name (``"gfw"``) or named date (``"gfw-2023"``: ``gfw`` as of its day), or a
    profile file by path (anything with a ``/`` or a ``.yaml``/``.yml`` suffix). The file must have a
    ``profile:`` block. An unknown name or an unreadable file is a ``PolicyError`` too (at line 1, column 1).
    ``params``: rule-param overrides, ``{"RULE_ID.PARAM": "YAML value"}`` (see the module docstring).
    ``as_of``: the day (``YYYY-MM-DD`` or a date) whose behaviour is loaded; default the last day the profile
    covers (``chokepoint.policy.dates``); a day outside its coverage is a ``PolicyError``."""
    looks_like_path = "/" in name_or_path or name_or_path.endswith((".yaml", ".yml"))
    alias = ""
    if looks_like_path:
        path = Path(name_or_path)
    else:
        names = list_profiles()
        if name_or_path in names:
            path = BUNDLED_DIR / f"{name_or_path}.yaml"
        elif name_or_path in _bundled.NAMED_DATES:
            alias = name_or_path
            path = BUNDLED_DIR / f"{_bundled.NAMED_DATES[alias]}.yaml"
        else:
            known = ", ".join(names + sorted(_bundled.NAMED_DATES))
            raise PolicyError(name_or_path, 1, 1, f"no bundled profile {name_or_path!r}; bundled: {known}")
    return _load_file(path, require_profile=True, params=params, as_of=as_of, alias=alias, list_files=list_files)


def load_rules_file(
    path: str | Path, *, params: Params = None, as_of: AsOf = None, list_files: ListFiles = None
) -> Profile:
    """A rule file: the profile format with ``profile:`` optional (the name is then the file's stem)."""
    return _load_file(Path(path), require_profile=False, params=params, as_of=as_of, list_files=list_files)


def load_rules_text(
    text: str,
    source: str = "<rules>",
    base_dir: str | Path = ".",
    *,
    require_profile: bool = False,
    params: Params = None,
    as_of: AsOf = None,
    list_files: ListFiles = None,
) -> Profile:
    """The same from a string; list files resolve against ``base_dir``."""
    return _load(text, source, Path(base_dir), Path(source), require_profile, params, as_of, list_files=list_files)


def _load_file(
    path: Path,
    *,
    require_profile: bool,
    params: Params,
    as_of: AsOf = None,
    alias: str = "",
    list_files: ListFiles = None,
) -> Profile:
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(shown, 1, 1, f"not UTF-8: {exc.reason}") from None
    except OSError as exc:
        raise PolicyError(shown, 1, 1, f"cannot read: {exc.strerror or exc}") from None
    return _load(text, shown, path.parent, path, require_profile, params, as_of, alias, list_files)


def _load(
    text: str,
    shown: str,
    base_dir: Path,
    source: Path,
    require_profile: bool,
    params: Params = None,
    as_of: AsOf = None,
    alias: str = "",
    list_files: ListFiles = None,
) -> Profile:
    data, marks = load_yaml(text, shown)
    overrides: tuple[tuple[str, Any], ...] = ()
    if params:
        data, marks, overrides = apply_overrides(data, marks, params, shown)
    schema = build_schema(require_profile=require_profile)
    validate(data, marks, schema)
    meta, name = _meta(data.get("profile"), source, marks)
    span = _coverage(meta, marks)
    day = _as_of(as_of, alias, meta, span, name)
    engine = _engine(data.get("engine") or {})
    declared = data.get("lists") or {}
    for name_ in list_files or {}:
        if name_ not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise PolicyError(
                shown, 1, 1, f"no list {name_!r} is declared here to take entries from outside (lists: {known})"
            )
    all_lists = {
        name_: load_list(name_, _external(spec, (list_files or {}).get(name_)), marks, ("lists", name_), base_dir)
        for name_, spec in declared.items()
    }
    all_rules = [_rule(raw, marks, ("rules", i)) for i, raw in enumerate(data["rules"])]
    _check_dates(all_rules, all_lists, span, marks)
    lists = {n: d for n, d in all_lists.items() if is_active(d.active, day)}
    rules = [r for r in all_rules if is_active(r.active, day)]
    _check_lists_in_force(rules, all_lists, lists, day)
    policy = compile_policy(rules, lists)
    personality, all_knobs, all_also = _personality(data.get("personality"), marks, shown, day)
    for index, rule in ((i, r) for i, r in enumerate(all_rules) if is_active(r.active, day)):
        _check_params(rule, personality, marks, ("rules", index))
    by_id = {r.id: r for r in all_rules}
    by_id.update({r.id: r for r in rules})  # of rules sharing an id (different dates), the one in force
    all_examples = parse_examples(data.get("examples"), marks, by_id)
    examples = tuple(e for e in all_examples if is_active(e.active, day))
    in_force = {r.id for r in rules}
    for example in examples:
        if example.rule and example.rule not in in_force:
            raise PolicyError.at(
                example.pos or SourcePos(shown, 1, 1),
                f"example {example.id!r} names rule {example.rule!r}, which is not in force on {day.isoformat()}",
            )
        if example.params:
            _check_example_params(example, data, marks, shown, schema)
    if meta.timezone:
        meta = replace(meta, utc_offset_s=utc_offset(meta.timezone, marks.value(("profile", "timezone"))))
    all_knobs = _engine_knobs(data.get("engine") or {}, marks) + all_knobs
    everything_dated: tuple[Knob | AlsoObserved | Example, ...] = (*all_knobs, *all_also, *all_examples)
    for dated in everything_dated:
        _check_span(dated.active, span, marks)
    outcomes = parse_outcomes(data.get("outcomes"), marks, _transport_names())
    active_probing = parse_active_probing(data.get("active_probing"), marks, {r.id for r in policy.rules})
    return Profile(
        name=alias or name,
        meta=meta,
        engine=engine,
        policy=policy,
        source=source,
        personality=personality,
        knobs=tuple(k for k in all_knobs if is_active(k.active, day)),
        also_observed=tuple(a for a in all_also if is_active(a.active, day)),
        examples=examples,
        overrides=overrides,
        as_of=day,
        coverage=span,
        timeline=_timeline(all_rules, all_lists, all_knobs, all_also, all_examples),
        base=name,
        outcomes=outcomes,
        active_probing=active_probing,
    )


def _external(spec: Mapping[str, Any], path: str | Path | None) -> Mapping[str, Any]:
    """A list declaration whose entries come from ``path`` (an outside list file) when one is given."""
    if path is None:
        return spec
    return {**{k: v for k, v in spec.items() if k != "items"}, "file": str(path)}


def _transport_names() -> tuple[str, ...]:
    """The bundled transports' names (``outcomes:`` patterns must name at least one)."""
    from chokepoint.transports import BUNDLED

    return BUNDLED


def _check_example_params(example: Example, data: Any, marks: Marks, shown: str, schema: dict[str, Any]) -> None:
    """An example's ``params`` must be overrides the loader accepts (checked against the schema here; the
    example is reported, at its position)."""
    try:
        changed, changed_marks, _ = apply_overrides(data, marks, dict(example.params), shown)
        validate(changed, changed_marks, schema)
    except PolicyError as exc:
        where = example.pos or SourcePos(shown, 1, 1)
        raise PolicyError.at(where, f"example {example.id!r}: {exc}") from None


def _personality(
    raw: Any, marks: Marks, shown: str, day: dt.date
) -> tuple[Any, tuple[Knob, ...], tuple[AlsoObserved, ...]]:
    from chokepoint.enforce.personality import DEFAULT, parse_personality

    clean, knobs, also = split_personality(raw, marks, as_of=day)
    if clean is None:
        return DEFAULT, (), ()
    return parse_personality(clean, file=shown, marks=marks), knobs, also


def _check_params(rule: Rule, personality: Any, marks: Marks, path: tuple[str | int, ...]) -> None:
    """The enforcer must understand every param of a blocking rule (``log`` rules carry none it reads)."""
    from chokepoint.enforce.personality import effective

    if rule.action is Action.LOG or not rule.params:
        return
    try:
        effective(personality, rule.params, marks=marks, path=path + ("params",))
    except PolicyError as exc:  # at the offending value (e.g. an unknown injector preset)
        raise PolicyError(exc.file, exc.line, exc.column, f"rule {rule.id!r}: {exc.message}") from None


def _meta(raw: dict[str, Any] | None, source: Path, marks: Marks) -> tuple[ProfileMeta, str]:
    if raw is None:  # a rule file without a profile block covers every day
        return ProfileMeta(title=source.stem), source.stem
    named = []
    for key, text in (raw.get("named_dates") or {}).items():
        try:
            named.append((key, parse_as_of(text)))
        except ValueError as exc:
            raise PolicyError.at(marks.value(("profile", "named_dates", key)), f"named_dates.{key}: {exc}") from None
    return ProfileMeta(
        title=raw["title"],
        country=raw["country"],
        operator=raw.get("operator", ""),
        observed=raw["observed"],
        description=raw["description"],
        cite=tuple(raw["cite"]),
        timezone=raw.get("timezone", ""),
        uncertain=raw.get("uncertain", ""),
        named_dates=tuple(named),
        distance=raw.get("distance"),
        position=raw.get("position"),
    ), raw["name"]


def _engine(raw: dict[str, Any]) -> EngineSettings:
    types = EngineSettings.field_types()
    return EngineSettings(**{key: types[key](value) for key, value in raw.items() if key in types})


def _engine_knobs(raw: dict[str, Any], marks: Marks) -> tuple[Knob, ...]:
    """The ``engine:`` settings a profile writes, as knobs (``engine.<name>``) citing the section's cite."""
    cite = cite_text(raw.get("cite"))
    why = raw.get("uncertain")
    whys = why if isinstance(why, dict) else {}
    return tuple(
        Knob(
            f"engine.{key}", value, cite, whys.get(key, why if isinstance(why, str) else ""), marks.key(("engine", key))
        )
        for key, value in raw.items()
        if key in EngineSettings.field_types()
    )


def _uncertain(raw: str | dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (("", raw),)
    return tuple(raw.items())


def _rule(raw: dict[str, Any], marks: Marks, path: tuple[str | int, ...]) -> Rule:
    uncertain = _uncertain(raw.get("uncertain"))
    params = raw.get("params") or {}
    for knob, _why in uncertain:
        if knob and knob not in params and knob not in ("when", "action"):
            raise PolicyError.at(
                marks.key(path + ("uncertain", knob)),
                f"uncertain names {knob!r}: not a param of this rule, nor when/action",
            )
    defer = None
    if any(k in params for k in DEFERRAL_PARAMS):  # the schema allows them on terminal actions only
        defer = Deferral(after_s=float(params.get("after_s", 0)), min_bytes=int(params.get("min_bytes", 0)))
    return Rule(
        id=raw["id"],
        action=Action(raw["action"]),
        when=parse_condition_data(raw["when"], marks, path + ("when",)),
        params=tuple((k, freeze(v)) for k, v in params.items() if k not in DEFERRAL_PARAMS),
        defer=defer,
        reason=raw.get("reason", ""),
        cite=cite_text(raw.get("cite")),
        observed=raw.get("observed", ""),
        pos=marks.value(path + ("id",)),
        uncertain=uncertain,
        mechanism=raw.get("mechanism", ""),
        active=parse_active(raw.get("active"), marks, path + ("active",)),
    )


__all__ = [
    "Dated",
    "Profile",
    "ProfileMeta",
    "apply_overrides",
    "era_starts",
    "list_profiles",
    "load_profile",
    "named_dates",
    "load_rules_file",
    "load_rules_text",
]
