"""Rule-param overrides (``params={"RULE_ID.PARAM": "VALUE"}``, the CLI's ``--param``), set into a profile's data
before its schema check.

Each value is a YAML scalar or flow collection as text (``"5"``, ``"1e6"``, ``"[1, 2]"``), set into the rule's
``params:`` before the schema check, so it is validated exactly like the file; a mistake is a ``PolicyError``
naming the override (``--param RULE.PARAM=VALUE: message``). ``Profile.overrides`` records what was applied.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from chokepoint.policy.errors import PolicyError, SourcePos
from chokepoint.policy.yamlsrc import Marks, load_yaml


def override_label(key: str, text: str) -> str:
    """How an override is named in errors: as the CLI option that set it."""
    return f"--param {key}={text}"


#: YAML 1.2 core floats with an exponent ("1e6", "2.5E-3"), which the file format reads as strings
#: (``yamlsrc``) but a value typed on a command line means as a number.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$")


def _override_value(text: str, label: str) -> Any:
    if _EXPONENT_FLOAT.match(text.strip()):
        return float(text)
    try:
        value, _ = load_yaml(text, label)
    except PolicyError as exc:
        raise PolicyError(label, 0, 0, exc.message) from None
    return value


def apply_overrides(
    data: Any, marks: Marks, params: Mapping[str, str], shown: str
) -> tuple[Any, Marks, tuple[tuple[str, Any], ...]]:
    """``data`` with each ``"RULE_ID.PARAM": "VALUE"`` set into that rule's ``params`` (a copy: ``data`` is
    not changed), and marks that place each value at its override (line 0: no file position), so the schema
    and the enforcer's check report a bad value as ``--param RULE.PARAM=VALUE: why``. Raises ``PolicyError``
    for a malformed key, an unknown rule id or a value that is not YAML. Rule ids may contain dots, so the
    param is what follows the last one."""
    rules = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(rules, list):
        return data, marks, ()  # the schema check reports the missing/odd rules: section
    by_id: dict[Any, list[int]] = {}
    for i, r in enumerate(rules):
        if isinstance(r, dict):
            by_id.setdefault(r.get("id"), []).append(i)
    rules = list(rules)
    values, keys = dict(marks.values), dict(marks.keys)
    applied: list[tuple[str, Any]] = []
    for key, text in params.items():
        text = str(text)
        label = override_label(key, text)
        rule_id, dot, param = key.rpartition(".")
        if not dot or not rule_id or not param:
            raise PolicyError(label, 0, 0, "expected RULE_ID.PARAM=VALUE")
        indexes = by_id.get(rule_id)
        if indexes is None:
            close = difflib.get_close_matches(rule_id, [str(k) for k in by_id], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PolicyError(label, 0, 0, f"no rule {rule_id!r} in {shown}{hint}")
        value = _override_value(text, label)
        here = SourcePos(label, 0, 0)
        for index in indexes:  # rules sharing an id are one rule on different dates
            rule = dict(rules[index])
            rule["params"] = {**(rule.get("params") or {}), param: value}
            rules[index] = rule
            path = ("rules", index, "params", param)
            for known in [p for p in values if p[: len(path)] == path]:
                del values[known]  # the file's value (and its items) is gone
            values[path] = keys[path] = here
            values.setdefault(path[:-1], here)
        applied.append((key, value))
    return {**data, "rules": rules}, Marks(marks.file, values, keys), tuple(applied)


__all__ = ["apply_overrides", "override_label"]
