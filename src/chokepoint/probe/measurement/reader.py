"""Reading and writing measurement JSON: typed access to one object with the keys it did not name kept as
`extra`, the error that names the offending key, and the helpers for binary bodies and headers.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from chokepoint.dissect.errors import Malformed


class MalformedMeasurement(Malformed):
    """A measurement document that breaks the OONI data format; `path` names the offending key."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '<root>'}: {message}")
        self.path = path


_MISSING = object()


class _Reader:
    """Typed access to one JSON object; remembers which keys were consumed so the rest go to `extra`."""

    __slots__ = ("obj", "path", "used")

    def __init__(self, obj: Any, path: str) -> None:
        if not isinstance(obj, dict):
            raise MalformedMeasurement(path, f"expected an object, got {type(obj).__name__}")
        self.obj = obj
        self.path = path
        self.used: set[str] = set()

    def _get(self, key: str) -> Any:
        self.used.add(key)
        return self.obj.get(key, _MISSING)

    def _key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        value = self._get(key)
        return None if value is _MISSING else value

    def text(self, key: str) -> str | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, str):
            raise MalformedMeasurement(self._key_path(key), f"expected a string, got {type(value).__name__}")
        return value

    def integer(self, key: str) -> int | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedMeasurement(self._key_path(key), f"expected an integer, got {type(value).__name__}")
        return value

    def number(self, key: str) -> int | float | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MalformedMeasurement(self._key_path(key), f"expected a number, got {type(value).__name__}")
        return value

    def flag(self, key: str) -> bool | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, bool):
            raise MalformedMeasurement(self._key_path(key), f"expected a boolean, got {type(value).__name__}")
        return value

    def array(self, key: str) -> list[Any] | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, list):
            raise MalformedMeasurement(self._key_path(key), f"expected a list, got {type(value).__name__}")
        return value

    def dictionary(self, key: str) -> dict[str, Any] | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, dict):
            raise MalformedMeasurement(self._key_path(key), f"expected an object, got {type(value).__name__}")
        return value

    def strings(self, key: str) -> tuple[str, ...] | None:
        items = self.array(key)
        if items is None:
            return None
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise MalformedMeasurement(f"{self._key_path(key)}[{index}]", "expected a string")
        return tuple(items)

    def objects(self, key: str, parse: Any) -> tuple[Any, ...] | None:
        items = self.array(key)
        if items is None:
            return None
        return tuple(parse(item, f"{self._key_path(key)}[{index}]") for index, item in enumerate(items))

    def mapping(self, key: str, parse: Any) -> dict[str, Any] | None:
        items = self.dictionary(key)
        if items is None:
            return None
        return {name: parse(value, f"{self._key_path(key)}.{name}") for name, value in items.items()}

    def maybe_binary(self, key: str) -> str | bytes | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        return _maybe_binary_in(value, self._key_path(key))

    def extra(self) -> dict[str, Any]:
        return {key: value for key, value in self.obj.items() if key not in self.used}


def _maybe_binary_in(value: Any, path: str) -> str | bytes:
    """df-001 MaybeBinaryValue: a UTF-8 string, or {"format": "base64", "data": "..."}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("format") == "base64" and isinstance(value.get("data"), str):
        try:
            return base64.b64decode(value["data"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedMeasurement(path, f"invalid base64: {exc}") from None
    raise MalformedMeasurement(path, "expected a string or a base64 binary object")


def _maybe_binary_out(value: str | bytes) -> Any:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"format": "base64", "data": base64.b64encode(value).decode("ascii")}


def _as_bytes(value: str | bytes | None) -> bytes:
    """The bytes a df-001 body stood for (strings are UTF-8, as OONI writes them)."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogatepass")


def _header_pairs(value: Any, path: str) -> tuple[tuple[str, str | bytes], ...]:
    if not isinstance(value, list):
        raise MalformedMeasurement(path, "expected a list of [name, value] pairs")
    pairs = []
    for index, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
            raise MalformedMeasurement(f"{path}[{index}]", "expected a [name, value] pair")
        pairs.append((pair[0], _maybe_binary_in(pair[1], f"{path}[{index}][1]")))
    return tuple(pairs)


def _header_map(value: Any, path: str) -> dict[str, str | bytes]:
    if not isinstance(value, dict):
        raise MalformedMeasurement(path, "expected an object of headers")
    return {name: _maybe_binary_in(item, f"{path}.{name}") for name, item in value.items()}


def _emit(known: Mapping[str, Any], omit_if_none: Iterable[str], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Known keys (dropping the omitempty ones that are None) followed by the preserved unknown keys."""
    skip = frozenset(omit_if_none)
    out = {key: value for key, value in known.items() if not (value is None and key in skip)}
    for key, value in extra.items():
        out.setdefault(key, value)
    return out


def _tags_out(tags: tuple[str, ...] | None) -> list[str] | None:
    return None if tags is None else list(tags)


def _tuple_out(items: tuple[Any, ...] | None) -> list[Any] | None:
    return None if items is None else [item.to_json() for item in items]
