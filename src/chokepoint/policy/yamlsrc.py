"""YAML in, plain data out, with the source position of every key and value kept on the side.

Scalars are typed by a deliberately small set of implicit rules (close to YAML 1.2's core schema):
``null``/``~``/empty, ``true``/``false``, decimal (no leading zero) or ``0x`` integers, decimal floats with a
point; everything else is a string. So ``NO`` (Norway), ``on``, ``2023-03-07`` or ``1:30`` stay strings instead of YAML 1.1's booleans,
dates and base-60 integers. Duplicate keys, non-string keys and non-standard tags are errors; ``<<`` is an
ordinary key (no merge), which the schema then rejects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from chokepoint.policy.errors import PolicyError, SourcePos

_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"

# Each rule is a subset of YAML 1.1's (PyYAML's dumper), so whatever ``yaml.safe_dump`` leaves unquoted as
# a string is read back as a string: printed conditions round-trip.
_INT_RE = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)$")


def _implicit_resolvers() -> dict[str, list[tuple[str, re.Pattern[str]]]]:
    table: dict[str, list[tuple[str, re.Pattern[str]]]] = {}

    def add(tag: str, regexp: re.Pattern[str], first: str | list[str]) -> None:
        for ch in first:
            table.setdefault(ch, []).append((tag, regexp))

    add(_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
    add(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF")
    add(_INT, _INT_RE, "-+0123456789")
    add(_FLOAT, _FLOAT_RE, "-+0123456789.")
    return table


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Composes nodes only; the implicit typing rules above replace YAML 1.1's."""

    yaml_implicit_resolvers = _implicit_resolvers()


Path = tuple[str | int, ...]

#: Deepest nesting of mappings and lists accepted (conditions rarely need 10).
MAX_DEPTH = 100


@dataclass(frozen=True, slots=True)
class Marks:
    """Source positions by data path: ``values[path]`` for every node, ``keys[path]`` for mapping keys."""

    file: str
    values: dict[Path, SourcePos]
    keys: dict[Path, SourcePos]

    def value(self, path: Path) -> SourcePos:
        """Position of the value at ``path`` (or of its closest recorded ancestor)."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, SourcePos(self.file, 1, 1))

    def key(self, path: Path) -> SourcePos:
        """Position of the key that introduces ``path`` (falls back to the value)."""
        pos = self.keys.get(path)
        return pos if pos is not None else self.value(path)


def _pos(file: str, node: yaml.Node | yaml.Event) -> SourcePos:
    mark = node.start_mark
    return SourcePos(file, mark.line + 1, mark.column + 1)


def load_yaml(text: str, file: str) -> tuple[Any, Marks]:
    """Parse one YAML document into dicts/lists/scalars and the marks of every node.

    Raises ``PolicyError`` at the offending position for YAML syntax errors, duplicate keys, non-string
    keys, non-standard tags, an empty document and multi-document files.
    """
    try:
        _check_depth(text, file)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        raise PolicyError(file, line, col, f"YAML syntax error: {problem}{context}") from None
    except yaml.YAMLError as exc:  # e.g. a reader error for a non-printable character
        raise PolicyError(file, 1, 1, f"YAML error: {exc}") from None
    if node is None:
        raise PolicyError(file, 1, 1, "empty document")
    values: dict[Path, SourcePos] = {}
    keys: dict[Path, SourcePos] = {}
    data = _convert(node, (), file, values, keys)
    return data, Marks(file, values, keys)


def _check_depth(text: str, file: str) -> None:
    """Reject deep nesting from the (flat) event stream, before the recursive composer sees it: deep
    enough nesting crashes it (RecursionError, or a segfault in libyaml's composer)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise PolicyError.at(_pos(file, event), f"nesting deeper than {MAX_DEPTH} levels")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def _convert(node: yaml.Node, path: Path, file: str, values: dict[Path, SourcePos], keys: dict[Path, SourcePos]) -> Any:
    values[path] = _pos(file, node)
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node, file)
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _SEQ:
            raise PolicyError.at(_pos(file, node), f"unsupported YAML tag {node.tag!r}")
        return [_convert(item, path + (i,), file, values, keys) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        if node.tag != _MAP:
            raise PolicyError.at(_pos(file, node), f"unsupported YAML tag {node.tag!r}")
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, file) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise PolicyError.at(_pos(file, key_node), "mapping keys must be strings")
            if key in out:
                raise PolicyError.at(_pos(file, key_node), f"duplicate key {key!r}")
            keys[path + (key,)] = _pos(file, key_node)
            out[key] = _convert(value_node, path + (key,), file, values, keys)
        return out
    raise PolicyError.at(_pos(file, node), "unsupported YAML node")  # pragma: no cover - composer yields only these


def _scalar(node: yaml.ScalarNode, file: str) -> Any:
    tag, text = node.tag, node.value
    if tag == _STR:
        return text
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return text.lower() == "true"
    if tag == _INT:
        return int(text, 16) if text.startswith("0x") else int(text, 10)
    if tag == _FLOAT:
        return float(text)
    raise PolicyError.at(_pos(file, node), f"unsupported YAML tag {tag!r}")
