"""List feeds: the public formats researchers publish blocklists in, read into list entries.

Every reader returns a :class:`Feed`: the entries (list syntax, deduplicated, in first-seen order), what was
skipped and why (counted, with the first few lines), and what the file itself says of its provenance. Nothing
is guessed: the source, date and licence recorded on the list version are what the importer gives
(``chokepoint lists import --source --date --licence``) or what the file states.

Formats (``FORMATS``):

- ``citizenlab``: Citizen Lab test lists (github.com/citizenlab/test-lists, ``lists/<cc>.csv``; the format
  is documented there: ``url,category_code,category_description,date_added,source,notes``). The host of each
  URL becomes a ``domain`` entry (an IP host becomes a ``cidr`` entry instead); ``--category`` keeps only some
  category codes.
- ``plain``: one name, address or network per line, ``#`` comments: the GFW and Henan blocklists published
  with Wu et al., "A Wall Behind A Wall: Emerging Regional Censorship in China", IEEE S&P 2025, are in this form.
- ``rkn-dump``: the dump of Russia's registry of blocked resources as mirrored publicly (``dump.csv``):
  a first line ``Updated: <date>``, then ``;``-separated rows ``ips;domain;url;organisation;decision;date``
  where ``ips`` holds addresses/networks separated by `` | ``; Windows-1251 text (UTF-8 is accepted too).
  ``domain`` lists take the domain column (``*.example.ru`` stays a wildcard), ``cidr`` lists the addresses.

The entries are then checked by the policy's own list syntax (:func:`chokepoint.manager.bundle.check_list`).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

FORMATS = ("citizenlab", "plain", "rkn-dump")
CITIZENLAB_COLUMNS = ("url", "category_code", "category_description", "date_added", "source", "notes")
#: Skipped lines kept verbatim for the report.
SAMPLES = 5


class FeedError(ValueError):
    """The file is not in the format named (a clear message with the line)."""


@dataclass(slots=True)
class Feed:
    format: str
    kind: str
    entries: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    stated_date: str = ""  # a date the file states about itself (the registry dump's "Updated:")
    rows: int = 0

    def add(self, entry: str, seen: set[str]) -> None:
        if entry not in seen:
            seen.add(entry)
            self.entries.append(entry)
        else:
            self.skipped["duplicate"] += 1

    def skip(self, reason: str, line: str) -> None:
        self.skipped[reason] += 1
        if len(self.samples) < SAMPLES:
            self.samples.append(f"{reason}: {line[:200]}")

    def text(self) -> str:
        return "".join(f"{e}\n" for e in self.entries)

    def summary(self) -> dict:
        return {
            "format": self.format,
            "kind": self.kind,
            "rows": self.rows,
            "entries": len(self.entries),
            "skipped": dict(self.skipped),
            "samples": self.samples,
            "stated_date": self.stated_date,
        }


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _host_entry(host: str, kind: str) -> tuple[str | None, str]:
    """(entry, why not) for a URL host in a list of ``kind``."""
    host = host.strip().rstrip(".").lower()
    if not host:
        return None, "no host"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    ip = _is_ip(host)
    if kind == "cidr":
        return (host, "") if ip else (None, "not an address")
    if kind == "domain":
        return (None, "an address in a domain list") if ip else (host, "")
    return host, ""


def read_citizenlab(text: str, kind: str = "domain", categories: Iterable[str] = ()) -> Feed:
    feed = Feed("citizenlab", kind)
    wanted = {c.strip().upper() for c in categories if c.strip()}
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("url", "category_code") if c not in (reader.fieldnames or [])]
    if missing:
        raise FeedError(
            f"not a Citizen Lab test list: line 1 lacks the columns {', '.join(missing)} "
            f"(expected {','.join(CITIZENLAB_COLUMNS)})"
        )
    seen: set[str] = set()
    for row in reader:
        feed.rows += 1
        url = (row.get("url") or "").strip()
        line = f"line {reader.line_num}: {url}"
        if wanted and (row.get("category_code") or "").strip().upper() not in wanted:
            feed.skipped["other category"] += 1
            continue
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            feed.skip("bad URL", line)
            continue
        entry, why = _host_entry(host, kind)
        if entry is None:
            feed.skip(why, line)
            continue
        feed.add(entry, seen)
    return feed


def read_plain(text: str, kind: str = "domain") -> Feed:
    feed = Feed("plain", kind)
    seen: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        entry = re.split(r"\s#", entry, maxsplit=1)[0].strip()  # a comment after the entry
        feed.rows += 1
        if kind in ("domain", "cidr"):
            syntax = kind == "domain" and entry.startswith(("*", "=", "~"))  # domain-list syntax, checked later
            value, why = (entry, "") if syntax else _host_entry(entry, kind)
            if value is None:
                feed.skip(why, f"line {lineno}: {raw}")
                continue
            entry = value
        feed.add(entry, seen)
    return feed


_UPDATED = re.compile(r"^\s*Updated:\s*(.+?)\s*$")


def decode_rkn(data: bytes) -> str:
    """The registry dump's text: UTF-8 when it is, else Windows-1251 (as the public mirror publishes it)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1251")


def read_rkn_dump(text: str, kind: str = "domain") -> Feed:
    feed = Feed("rkn-dump", kind)
    lines = text.splitlines()
    if not lines or not _UPDATED.match(lines[0]):
        raise FeedError("not a registry dump: line 1 should read 'Updated: <date>'")
    feed.stated_date = _UPDATED.match(lines[0]).group(1)  # type: ignore[union-attr]
    seen: set[str] = set()
    for lineno, raw in enumerate(lines[1:], 2):
        if not raw.strip():
            continue
        feed.rows += 1
        columns = raw.split(";")
        if len(columns) < 3:
            feed.skip("fewer than 3 columns", f"line {lineno}: {raw}")
            continue
        if kind == "cidr":
            for part in columns[0].split("|"):
                part = part.strip()
                if not part:
                    continue
                if not _is_ip(part):
                    feed.skip("not an address", f"line {lineno}: {part}")
                    continue
                feed.add(part, seen)
            continue
        domain = columns[1].strip().lower().rstrip(".")
        if not domain:
            feed.skipped["no domain (address-only row)"] += 1
            continue
        entry, why = _host_entry(domain, kind) if not domain.startswith("*.") else (domain, "")
        if entry is None:
            feed.skip(why, f"line {lineno}: {domain}")
            continue
        feed.add(entry, seen)
    return feed


def read(format: str, data: bytes, kind: str = "domain", categories: Iterable[str] = ()) -> Feed:
    """Read ``data`` in ``format`` (``FeedError`` for an unknown format or a file not in it)."""
    if format == "rkn-dump":
        return read_rkn_dump(decode_rkn(data), kind)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FeedError(f"not UTF-8 text (byte {exc.start}): {format} files are UTF-8") from None
    if format == "citizenlab":
        return read_citizenlab(text, kind, categories)
    if format == "plain":
        return read_plain(text, kind)
    raise FeedError(f"unknown format {format!r}; formats: {', '.join(FORMATS)}")


__all__ = ["FORMATS", "Feed", "FeedError", "read", "read_citizenlab", "read_plain", "read_rkn_dump"]
