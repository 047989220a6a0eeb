"""Rule conditions: a small tree of ``all`` / ``any`` / ``not`` over atoms ``field: {operator: value}``.

Written in YAML::

    when:
      all:
        - transport: tcp                          # bare value = the field's default operator
        - tls.sni: {in_list: blocked_domains}
        - not: {server_port: [80, "8000-8100"]}

A parsed condition prints back what it parsed (as Geneva's rule language does): ``str(c)`` is one line
of flow-style YAML, ``c.to_yaml()`` block-style YAML, and ``parse_condition(str(c)) == c``. The printed
form is canonical (bare values where the field has a default operator, one item unwrapped from its list,
names lowercased, CIDRs and hex normalised).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import yaml

from chokepoint.policy import values
from chokepoint.policy.errors import PolicyError, SourcePos
from chokepoint.policy.fields import FIELDS, OPERATORS, SHORTHAND, Kind
from chokepoint.policy.schema import condition_schema, validate
from chokepoint.policy.yamlsrc import Marks, load_yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Atom:
    """One test of one field. ``value`` is canonical: a tuple of items, a list name, an int or a bool."""

    field: str
    op: str
    value: Any
    pos: SourcePos | None = dc_field(default=None, compare=False, repr=False)
    #: position of each item of ``value`` (for errors found when compiling, e.g. by hyperscan)
    value_pos: tuple[SourcePos, ...] = dc_field(default=(), compare=False, repr=False)

    def to_data(self) -> dict[str, Any]:
        kind = FIELDS[self.field].kind
        if self.op == "in_list" or self.op in ("lt", "le", "gt", "ge", "is"):
            operand: Any = self.value
        elif kind is Kind.PORT:
            operand = _unwrap([lo if lo == hi else f"{lo}-{hi}" for lo, hi in self.value])
        elif self.op == "at":
            operand = _unwrap([{"offset": off, "hex": hx} for off, hx in self.value])
        else:
            operand = _unwrap(list(self.value))
        if SHORTHAND[kind] == self.op:
            return {self.field: operand}
        return {self.field: {self.op: operand}}

    def __str__(self) -> str:
        return _flow(self.to_data())

    def to_yaml(self) -> str:
        return _block(self.to_data())


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[Condition, ...]
    pos: SourcePos | None = dc_field(default=None, compare=False, repr=False)

    def to_data(self) -> dict[str, Any]:
        return {"all": [c.to_data() for c in self.children]}

    def __str__(self) -> str:
        return _flow(self.to_data())

    def to_yaml(self) -> str:
        return _block(self.to_data())


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Condition, ...]
    pos: SourcePos | None = dc_field(default=None, compare=False, repr=False)

    def to_data(self) -> dict[str, Any]:
        return {"any": [c.to_data() for c in self.children]}

    def __str__(self) -> str:
        return _flow(self.to_data())

    def to_yaml(self) -> str:
        return _block(self.to_data())


@dataclass(frozen=True, slots=True)
class Not:
    child: Condition
    pos: SourcePos | None = dc_field(default=None, compare=False, repr=False)

    def to_data(self) -> dict[str, Any]:
        return {"not": self.child.to_data()}

    def __str__(self) -> str:
        return _flow(self.to_data())

    def to_yaml(self) -> str:
        return _block(self.to_data())


Condition = Atom | AllOf | AnyOf | Not


def atoms(cond: Condition) -> list[Atom]:
    """Every atom of ``cond``, depth first, in written order."""
    if isinstance(cond, Atom):
        return [cond]
    if isinstance(cond, Not):
        return atoms(cond.child)
    return [a for child in cond.children for a in atoms(child)]


def _unwrap(items: list[Any]) -> Any:
    return items[0] if len(items) == 1 else items


def _flow(data: Any) -> str:
    text: str = yaml.safe_dump(data, default_flow_style=True, sort_keys=False, allow_unicode=True, width=1 << 30)
    return text.strip()


def _block(data: Any) -> str:
    text: str = yaml.safe_dump(data, default_flow_style=False, sort_keys=False, allow_unicode=True)
    return text


# -- parsing ------------------------------------------------------------------------------------------


def parse_condition_data(data: Any, marks: Marks, path: Path) -> Condition:
    """Build a condition from schema-checked data at ``path`` (positions come from ``marks``)."""
    if not isinstance(data, dict) or len(data) != 1:
        raise PolicyError.at(marks.value(path), "a condition has exactly one key: a field, or all/any/not")
    ((key, operand),) = data.items()
    here = path + (key,)
    if key in ("all", "any"):
        if not isinstance(operand, list):
            raise PolicyError.at(marks.value(here), f"{key} takes a list of conditions")
        children = tuple(parse_condition_data(c, marks, here + (i,)) for i, c in enumerate(operand))
        return (AllOf if key == "all" else AnyOf)(children, marks.key(here))
    if key == "not":
        return Not(parse_condition_data(operand, marks, here), marks.key(here))
    spec = FIELDS.get(key)
    if spec is None:
        raise PolicyError.at(marks.key(here), f"unknown field {key!r}")
    short = SHORTHAND[spec.kind]
    if isinstance(operand, dict):
        if len(operand) != 1:
            raise PolicyError.at(marks.value(here), f"give exactly one operator for {key}")
        ((op, raw),) = operand.items()
        vpath = here + (op,)
    elif short is not None:
        op, raw, vpath = short, operand, here
    else:
        raise PolicyError.at(marks.value(here), f"{key} needs an operator, e.g. {{{_first_op(key)}: ...}}")
    try:
        value, value_pos = _operand(spec.kind, key, op, raw, marks, vpath)
    except _BadItem as bad:
        raise PolicyError.at(bad.pos, bad.message) from None
    return Atom(key, op, value, marks.key(here), value_pos)


def _first_op(field: str) -> str:
    return OPERATORS[FIELDS[field].kind][0]


class _BadItem(Exception):
    def __init__(self, pos: SourcePos, message: str) -> None:
        super().__init__(message)
        self.pos, self.message = pos, message


def _operand(kind: Kind, field: str, op: str, raw: Any, marks: Marks, vpath: Path) -> tuple[Any, tuple[SourcePos, ...]]:
    if op not in OPERATORS[kind]:
        raise _BadItem(
            marks.key(vpath), f"unknown operator {op!r} for {field}; expected one of: {', '.join(OPERATORS[kind])}"
        )
    if op == "in_list":
        if not isinstance(raw, str):
            raise _BadItem(marks.value(vpath), "in_list takes a list name")
        return raw, (marks.value(vpath),)
    if op in ("lt", "le", "gt", "ge"):
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise _BadItem(marks.value(vpath), f"{op} takes an integer")
        return raw, (marks.value(vpath),)
    if op == "is":
        if not isinstance(raw, bool):
            raise _BadItem(marks.value(vpath), "expected true or false")
        return raw, (marks.value(vpath),)
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise _BadItem(marks.value(vpath), f"{op} needs at least one value")
    paths = [vpath + (i,) for i in range(len(items))] if isinstance(raw, list) else [vpath]
    check = _item_checker(kind, field, op)
    out = []
    for item, ipath in zip(items, paths):
        try:
            out.append(check(item))
        except (ValueError, TypeError) as exc:
            raise _BadItem(marks.value(ipath), str(exc)) from None
    return tuple(out), tuple(marks.value(p) for p in paths)


def _want_str(item: Any) -> str:
    if not isinstance(item, str) or not item:
        raise TypeError(f"expected a non-empty string, got {item!r}")
    return item


def _want_int(item: Any) -> int:
    if not isinstance(item, int) or isinstance(item, bool):
        raise TypeError(f"expected an integer, got {item!r}")
    return item


def _item_checker(kind: Kind, field: str, op: str) -> Callable[[Any], Any]:
    if kind is Kind.DOMAIN:
        if op in ("exact", "suffix"):
            return lambda item: values.domain(_want_str(item))
        if op == "keyword":
            return lambda item: _want_str(item).lower()  # names are lowercase: so are their keywords
        return lambda item: values.text_regex(_want_str(item))
    if kind is Kind.TEXT:
        if op == "regex":
            return lambda item: values.text_regex(_want_str(item))
        return _want_str
    if kind is Kind.BYTES:
        if op == "prefix":
            return lambda item: values.hex_bytes(_want_str(item))
        if op == "at":
            return _at_item
        return lambda item: values.bytes_regex(_want_str(item))
    if kind is Kind.ENUM:
        vocab = FIELDS[field].values

        def enum_item(item: Any) -> str:
            if item not in vocab:
                raise ValueError(f"{item!r} is not one of: {', '.join(vocab)}")
            known: str = item
            return known

        return enum_item
    if kind is Kind.STRING:
        check = FIELDS[field].check
        if check is not None:
            return lambda item: check(_want_str(item))
        return _want_str
    if kind is Kind.IP:
        return lambda item: values.cidr(_want_str(item))
    if kind is Kind.PORT:
        return _port_item
    if kind is Kind.INT:
        return _want_int
    raise TypeError(f"no items for {kind}")  # pragma: no cover - BOOL has no list operators


def _port_item(item: Any) -> tuple[int, int]:
    if not isinstance(item, (int, str)) or isinstance(item, bool):
        raise TypeError(f"expected a port or 'lo-hi', got {item!r}")
    return values.port_range(item)


def _at_item(item: Any) -> tuple[int, str]:
    if not isinstance(item, dict) or set(item) != {"offset", "hex"}:
        raise TypeError(f"expected {{offset: N, hex: ...}}, got {item!r}")
    offset = _want_int(item["offset"])
    if offset < 0:
        raise ValueError("offset must be >= 0")
    return offset, values.hex_bytes(_want_str(item["hex"]))


def parse_condition(text: str, file: str = "<condition>") -> Condition:
    """Parse one condition written in YAML (block or flow style), checked against the schema."""
    data, marks = load_yaml(text, file)
    validate(data, marks, condition_schema())
    return parse_condition_data(data, marks, ())
