"""Loading a profile: YAML -> schema check -> lists -> rules -> compiled policy -> personality, or ``PolicyError``.

A profile is policy + personality + provenance: ``profile:`` (who, where, when, citations, timezone),
``engine:`` (``EngineSettings``), ``lists:`` and ``rules:`` (what is blocked), ``personality:`` (how the
censor acts: ``chokepoint.enforce.personality``, with a citation on every knob: ``chokepoint.policy.provenance``)
and ``examples:`` (targets that show each behaviour, with the symptom a client sees). A rule file is the same
format with ``profile:`` optional. Every rule's params are checked against the personality at load time
(``effective``), so an enforcer never meets a parameter it cannot apply. Nothing is half-loaded: every function
returns a new immutable ``Profile`` or raises.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chokepoint import profiles as _bundled
from chokepoint.policy.compiler import CompiledPolicy, Rule, compile_policy
from chokepoint.policy.conditions import parse_condition_data
from chokepoint.policy.errors import PolicyError
from chokepoint.policy.lists import load_list
from chokepoint.policy.provenance import AlsoObserved, Example, Knob, cite_text, freeze, parse_examples, \
    split_personality, utc_offset
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
    timezone: str = ""          # "UTC+06:30"; empty: UTC
    utc_offset_s: int = 0       # the same in seconds east of UTC (the engine's local_hour)
    uncertain: str = ""


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

    def provenance_gaps(self) -> list[str]:
        """What lacks a citation: rules, lists and personality knobs (a bundled profile has none)."""
        gaps = [f"rule {r.id}: no cite" for r in self.policy.rules if not r.cite]
        gaps += [f"list {n}: no cite" for n, d in self.policy.lists.items() if not d.cite]
        gaps += [f"knob {k.path}: no cite" for k in self.knobs if not k.cite]
        if not self.meta.cite:
            gaps.append("profile: no cite")
        return gaps


def list_profiles() -> list[str]:
    """Names of the bundled profiles (``src/chokepoint/profiles/<name>.yaml``)."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


def load_profile(name_or_path: str) -> Profile:
    """A bundled profile by name (``"gfw"``), or a profile file by path (anything with a ``/`` or a
    ``.yaml``/``.yml`` suffix). The file must have a ``profile:`` block. An unknown name or an
    unreadable file is a ``PolicyError`` too (at line 1, column 1)."""
    looks_like_path = "/" in name_or_path or name_or_path.endswith((".yaml", ".yml"))
    if looks_like_path:
        path = Path(name_or_path)
    else:
        names = list_profiles()
        if name_or_path not in names:
            raise PolicyError(name_or_path, 1, 1, f"no bundled profile {name_or_path!r}; "
                                                  f"bundled: {', '.join(names)}")
        path = BUNDLED_DIR / f"{name_or_path}.yaml"
    return _load_file(path, require_profile=True)


def load_rules_file(path: str | Path) -> Profile:
    """A rule file: the profile format with ``profile:`` optional (the name is then the file's stem)."""
    return _load_file(Path(path), require_profile=False)


def load_rules_text(text: str, source: str = "<rules>", base_dir: str | Path = ".", *,
                    require_profile: bool = False) -> Profile:
    """The same from a string; list files resolve against ``base_dir``."""
    return _load(text, source, Path(base_dir), Path(source), require_profile)


def _load_file(path: Path, *, require_profile: bool) -> Profile:
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(shown, 1, 1, f"not UTF-8: {exc.reason}") from None
    except OSError as exc:
        raise PolicyError(shown, 1, 1, f"cannot read: {exc.strerror or exc}") from None
    return _load(text, shown, path.parent, path, require_profile)


def _load(text: str, shown: str, base_dir: Path, source: Path, require_profile: bool) -> Profile:
    data, marks = load_yaml(text, shown)
    validate(data, marks, build_schema(require_profile=require_profile))
    meta, name = _meta(data.get("profile"), source)
    engine = _engine(data.get("engine") or {})
    lists = {name_: load_list(name_, spec, marks, ("lists", name_), base_dir)
             for name_, spec in (data.get("lists") or {}).items()}
    rules = [_rule(raw, marks, ("rules", i)) for i, raw in enumerate(data["rules"])]
    policy = compile_policy(rules, lists)
    personality, knobs, also = _personality(data.get("personality"), marks, shown)
    for i, rule in enumerate(policy.rules):
        _check_params(rule, personality, marks, ("rules", i))
    examples = parse_examples(data.get("examples"), marks, {r.id: r for r in policy.rules})
    if meta.timezone:
        meta = replace(meta, utc_offset_s=utc_offset(meta.timezone, marks.value(("profile", "timezone"))))
    knobs = _engine_knobs(data.get("engine") or {}, marks) + knobs
    return Profile(name=name, meta=meta, engine=engine, policy=policy, source=source, personality=personality,
                   knobs=knobs, also_observed=also, examples=examples)


def _personality(raw: Any, marks: Marks, shown: str) -> tuple[Any, tuple[Knob, ...], tuple[AlsoObserved, ...]]:
    from chokepoint.enforce.personality import DEFAULT, parse_personality

    clean, knobs, also = split_personality(raw, marks)
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
    except PolicyError as exc:   # at the offending value (e.g. an unknown injector preset)
        raise PolicyError(exc.file, exc.line, exc.column, f"rule {rule.id!r}: {exc.message}") from None


def _meta(raw: dict[str, Any] | None, source: Path) -> tuple[ProfileMeta, str]:
    if raw is None:
        return ProfileMeta(title=source.stem), source.stem
    return ProfileMeta(title=raw["title"], country=raw["country"], operator=raw.get("operator", ""),
                       observed=raw["observed"], description=raw["description"],
                       cite=tuple(raw["cite"]), timezone=raw.get("timezone", ""),
                       uncertain=raw.get("uncertain", "")), raw["name"]


def _engine(raw: dict[str, Any]) -> EngineSettings:
    types = EngineSettings.field_types()
    return EngineSettings(**{key: types[key](value) for key, value in raw.items() if key in types})


def _engine_knobs(raw: dict[str, Any], marks: Marks) -> tuple[Knob, ...]:
    """The ``engine:`` settings a profile writes, as knobs (``engine.<name>``) citing the section's cite."""
    cite = cite_text(raw.get("cite"))
    why = raw.get("uncertain")
    whys = why if isinstance(why, dict) else {}
    return tuple(Knob(f"engine.{key}", value, cite, whys.get(key, why if isinstance(why, str) else ""),
                      marks.key(("engine", key)))
                 for key, value in raw.items() if key in EngineSettings.field_types())


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
            raise PolicyError.at(marks.key(path + ("uncertain", knob)),
                                 f"uncertain names {knob!r}: not a param of this rule, nor when/action")
    return Rule(
        id=raw["id"],
        action=Action(raw["action"]),
        when=parse_condition_data(raw["when"], marks, path + ("when",)),
        params=tuple((k, freeze(v)) for k, v in params.items()),
        reason=raw.get("reason", ""),
        cite=cite_text(raw.get("cite")),
        observed=raw.get("observed", ""),
        pos=marks.value(path + ("id",)),
        uncertain=uncertain,
        mechanism=raw.get("mechanism", ""),
    )


__all__ = ["Profile", "ProfileMeta", "list_profiles", "load_profile", "load_rules_file",
           "load_rules_text"]
