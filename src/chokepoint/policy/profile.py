"""Loading a profile: YAML -> schema check -> lists -> rules -> compiled policy, or ``PolicyError``.

A profile is policy + provenance: ``profile:`` (who, where, when, citations), ``engine:``
(``EngineSettings``), ``lists:`` and ``rules:``. A rule file is the same format with ``profile:`` optional.
Nothing is half-loaded: every function returns a new immutable ``Profile`` or raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chokepoint import profiles as _bundled
from chokepoint.policy.compiler import CompiledPolicy, Rule, compile_policy
from chokepoint.policy.conditions import parse_condition_data
from chokepoint.policy.errors import PolicyError
from chokepoint.policy.lists import load_list
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


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    meta: ProfileMeta
    engine: EngineSettings
    policy: CompiledPolicy
    source: Path


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
    return Profile(name=name, meta=meta, engine=engine, policy=policy, source=source)


def _meta(raw: dict[str, Any] | None, source: Path) -> tuple[ProfileMeta, str]:
    if raw is None:
        return ProfileMeta(title=source.stem), source.stem
    return ProfileMeta(title=raw["title"], country=raw["country"], operator=raw.get("operator", ""),
                       observed=raw["observed"], description=raw["description"],
                       cite=tuple(raw["cite"])), raw["name"]


def _engine(raw: dict[str, Any]) -> EngineSettings:
    types = EngineSettings.field_types()
    return EngineSettings(**{key: types[key](value) for key, value in raw.items()})


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _freeze(v)) for k, v in value.items())
    return value


def _cite(raw: str | list[str] | None) -> str:
    if raw is None:
        return ""
    return "; ".join(raw) if isinstance(raw, list) else raw


def _rule(raw: dict[str, Any], marks: Marks, path: tuple[str | int, ...]) -> Rule:
    return Rule(
        id=raw["id"],
        action=Action(raw["action"]),
        when=parse_condition_data(raw["when"], marks, path + ("when",)),
        params=tuple((k, _freeze(v)) for k, v in (raw.get("params") or {}).items()),
        reason=raw.get("reason", ""),
        cite=_cite(raw.get("cite")),
        observed=raw.get("observed", ""),
        pos=marks.value(path + ("id",)),
    )


__all__ = ["Profile", "ProfileMeta", "list_profiles", "load_profile", "load_rules_file",
           "load_rules_text"]
