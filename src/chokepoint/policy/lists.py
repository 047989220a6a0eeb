"""Named lists a profile declares (inline ``items`` or a ``file``, one entry per line), checked entry by entry.

Entry syntax by kind:

- ``domain``: ``example.com`` the name and its subdomains; ``=example.com`` that name only;
  ``*.example.com`` subdomains only; ``*substr*`` any name containing ``substr`` (Russia throttled
  ``*t.co*``, which also hit reddit.com and microsoft.com: Xue et al., IMC 2021); ``~regex`` a regex
  searched in the name (write ``^...$`` to anchor).
- ``keyword``: a literal substring; ``~regex`` a regex. ``nocase: true`` makes the list case-insensitive.
- ``cidr``: an IPv4/IPv6 network or address.
- ``string``: an exact token (JA3/JA4 fingerprints, methods, ...).

In files, blank lines and lines starting with ``#`` are skipped, and a ``#`` after whitespace starts a
comment; an entry is the rest of the line without surrounding whitespace. Errors point at the entry's
``file:line:column``. On domain fields, keyword entries are compared lowercase (names are lowercase).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

from chokepoint.policy import values
from chokepoint.policy.dates import parse_active
from chokepoint.policy.errors import PolicyError, SourcePos
from chokepoint.policy.yamlsrc import Marks

LIST_KINDS = ("domain", "keyword", "cidr", "string")
_LABELS_FULLMATCH = values._LABELS.fullmatch


@dataclass(frozen=True, slots=True)
class ListDef:
    name: str
    kind: str
    entries: tuple[str, ...]  # canonical entries, in list syntax, in file order
    cite: str = ""
    description: str = ""
    nocase: bool = False  # keyword lists: match regardless of ASCII case
    file: str = ""  # the list file, when the entries came from one
    uncertain: str = ""  # what is not verified about the entries (shown by ``profiles show``)
    active: Any = None  # when the list was in force (``chokepoint.policy.dates.Active``); None: always
    pos: SourcePos | None = field(default=None, compare=False)
    #: positions of ``~regex`` entries by index (for errors the regex engine reports at compile time)
    regex_pos: Mapping[int, SourcePos] = field(default_factory=lambda: MappingProxyType({}), compare=False, hash=False)


def domain_entry(text: str) -> str:
    """Canonical form of one domain-list entry (see the module docstring)."""
    if text.startswith("~"):
        return "~" + values.text_regex(text[1:])
    if len(text) > 2 and text.startswith("*") and text.endswith("*"):
        inner = text[1:-1].lower()
        if "*" in inner:
            raise ValueError(f"bad entry {text!r}: '*' only around a substring ('*substr*') or as '*.name'")
        return f"*{inner}*"
    if text.startswith("*."):
        return "*." + values.domain(text[2:])
    if text.startswith("="):
        return "=" + values.domain(text[1:])
    if "*" in text:
        raise ValueError(f"bad entry {text!r}: '*' only around a substring ('*substr*') or as '*.name'")
    lowered = text.lower()
    if len(lowered) <= 63 and _LABELS_FULLMATCH(lowered):
        return lowered  # fast path for the common plain name (no label can exceed 63)
    return values.domain(text)


def keyword_entry(text: str) -> str:
    if text.startswith("~"):
        return "~" + values.text_regex(text[1:])
    return text


def string_entry(text: str) -> str:
    return text


_ENTRY: dict[str, Callable[[str], str]] = {
    "domain": domain_entry,
    "keyword": keyword_entry,
    "cidr": values.cidr,
    "string": string_entry,
}


def parse_entries(
    kind: str, items: Iterable[tuple[str, SourcePos | Callable[[], SourcePos]]]
) -> tuple[tuple[str, ...], dict[int, SourcePos]]:
    """Check and canonicalise ``(text, position)`` pairs; raise PolicyError at the first bad entry."""
    parse = _ENTRY[kind]
    out: list[str] = []
    regex_pos: dict[int, SourcePos] = {}
    for text, pos in items:
        try:
            entry = parse(text)
        except ValueError as exc:
            raise PolicyError.at(pos() if callable(pos) else pos, str(exc)) from None
        if entry.startswith("~") and kind in ("domain", "keyword"):
            regex_pos[len(out)] = pos() if callable(pos) else pos
        out.append(entry)
    return tuple(out), regex_pos


def _file_items(path: Path, shown: str) -> Iterable[tuple[str, Callable[[], SourcePos]]]:
    with path.open(encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, 1):
            text = raw.strip()
            if not text or text[0] == "#":
                continue
            hash_at = text.find("#")
            while hash_at > 0:  # a comment after an entry: "#" preceded by whitespace
                if text[hash_at - 1] in " \t":
                    text = text[:hash_at].rstrip()
                    break
                hash_at = text.find("#", hash_at + 1)
            column = len(raw) - len(raw.lstrip()) + 1
            yield text, partial(SourcePos, shown, lineno, column)


def load_list(name: str, spec: Mapping[str, Any], marks: Marks, path: tuple[str | int, ...], base_dir: Path) -> ListDef:
    """Build one list from its (schema-checked) definition at ``path`` in the profile."""
    kind = spec["kind"]
    cite = spec.get("cite", "")
    cite = "; ".join(cite) if isinstance(cite, list) else cite
    nocase = bool(spec.get("nocase", False))
    if nocase and kind != "keyword":
        raise PolicyError.at(marks.key(path + ("nocase",)), "nocase applies to keyword lists only")
    if "file" in spec:
        file_path = base_dir / spec["file"]
        shown = str(file_path)
        try:
            entries, regex_pos = parse_entries(kind, _file_items(file_path, shown))
        except OSError as exc:
            raise PolicyError.at(
                marks.value(path + ("file",)), f"cannot read list file {shown!r}: {exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError as exc:
            raise PolicyError.at(
                marks.value(path + ("file",)), f"list file {shown!r} is not UTF-8: {exc.reason}"
            ) from None
    else:
        shown = ""
        items = spec["items"]
        entries, regex_pos = parse_entries(
            kind, ((text, marks.value(path + ("items", i))) for i, text in enumerate(items))
        )
    return ListDef(
        name=name,
        kind=kind,
        entries=entries,
        cite=cite,
        description=spec.get("description", ""),
        nocase=nocase,
        file=shown,
        uncertain=spec.get("uncertain", ""),
        active=parse_active(spec.get("active"), marks, path + ("active",)),
        pos=marks.key(path),
        regex_pos=MappingProxyType(regex_pos),
    )
