"""Blocking fingerprints from ooni/blocking-fingerprints (`fingerprints_dns.csv`, `fingerprints_http.csv`).

Row schema (the repository's Readme): `name, scope, other_names, location_found, pattern_type, pattern,
confidence_no_fp, expected_countries, source, exp_url, notes`. `location_found` is `dns`, `body` or
`header.<lowercase name>`; `pattern_type` is `full` (==), `prefix` (startswith), `contains` (in) or `regexp`
(a Python regex from Censored Planet's signatures, matched with re.DOTALL as CP's `blockpage.py` does).
`scope` is Citizen Lab's vocabulary: `nat`, `isp`, `prod`, `inst`, `vbw`, and `fp` for known
*false positives*, which are checked before every blockpage signature (censoredplanet-analysis
`pipeline/metadata/blockpage.py` does the same) so a known benign page is never reported as a block.

Bodies are matched as bytes (patterns UTF-8 encoded); header values and DNS answers as text.
"""

from __future__ import annotations

import csv
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from chokepoint.dissect.errors import Malformed

__all__ = ["Fingerprint", "FingerprintDB", "FingerprintMatch", "MalformedFingerprint", "FALSE_POSITIVE_SCOPE"]

FALSE_POSITIVE_SCOPE = "fp"
PATTERN_TYPES = frozenset({"full", "prefix", "contains", "regexp"})
_COLUMNS = ("name", "scope", "location_found", "pattern_type", "pattern")


class MalformedFingerprint(Malformed):
    """A fingerprint CSV row that breaks the documented schema."""


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """One signature row."""

    name: str
    scope: str
    location: str
    pattern_type: str
    pattern: str
    countries: tuple[str, ...] = ()
    confidence_no_fp: int | None = None
    other_names: tuple[str, ...] = ()
    source: str = ""
    notes: str = ""

    @property
    def is_false_positive(self) -> bool:
        return self.scope == FALSE_POSITIVE_SCOPE


@dataclass(frozen=True, slots=True)
class FingerprintMatch:
    """Which signature matched, where, and what it says (a `fp` scope means: known benign page)."""

    name: str
    scope: str
    countries: tuple[str, ...]
    location: str
    matched: str
    fingerprint: Fingerprint

    @property
    def is_false_positive(self) -> bool:
        return self.scope == FALSE_POSITIVE_SCOPE

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "scope": self.scope, "countries": list(self.countries), "location": self.location}


class _Compiled:
    """A fingerprint with its pattern prepared for the haystack type of its location."""

    __slots__ = ("fingerprint", "kind", "needle", "regex", "header")

    def __init__(self, fingerprint: Fingerprint, where: str) -> None:
        self.fingerprint = fingerprint
        self.kind = fingerprint.pattern_type
        self.header = fingerprint.location[len("header.") :] if fingerprint.location.startswith("header.") else None
        self.regex: re.Pattern[bytes] | re.Pattern[str] | None = None
        pattern = fingerprint.pattern
        self.needle: bytes | str = pattern.encode("utf-8") if fingerprint.location == "body" else pattern
        if self.kind == "regexp":
            try:
                self.regex = re.compile(self.needle, re.DOTALL)
            except re.error as exc:
                raise MalformedFingerprint(f"{where}: invalid regexp {pattern!r}: {exc}") from None

    def matches(self, haystack: bytes | str) -> bool:
        needle = self.needle
        if self.kind == "contains":
            return needle in haystack  # type: ignore[operator]
        if self.kind == "prefix":
            return haystack.startswith(needle)  # type: ignore[arg-type]
        if self.kind == "full":
            return haystack == needle
        assert self.regex is not None
        return self.regex.search(haystack) is not None  # type: ignore[arg-type]


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _read_csv(path: Path) -> list[Fingerprint]:
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise MalformedFingerprint(f"{path}: missing columns {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            if any(row.get(c) is None for c in _COLUMNS):
                raise MalformedFingerprint(f"{where}: short row")
            location = row["location_found"].strip()
            if (
                location != "dns"
                and location != "body"
                and not (location.startswith("header.") and len(location) > len("header."))
            ):
                raise MalformedFingerprint(f"{where}: unknown location_found {location!r}")
            pattern_type = row["pattern_type"].strip()
            if pattern_type not in PATTERN_TYPES:
                raise MalformedFingerprint(f"{where}: unknown pattern_type {pattern_type!r}")
            if not row["name"].strip() or row["pattern"] == "":
                raise MalformedFingerprint(f"{where}: empty name or pattern")
            confidence = (row.get("confidence_no_fp") or "").strip()
            try:
                confidence_value = int(confidence) if confidence else None
            except ValueError:
                raise MalformedFingerprint(f"{where}: confidence_no_fp {confidence!r} is not an integer") from None
            rows.append(
                Fingerprint(
                    name=row["name"].strip(),
                    scope=row["scope"].strip(),
                    location=location.lower(),
                    pattern_type=pattern_type,
                    pattern=row["pattern"],
                    countries=_split_list(row.get("expected_countries") or ""),
                    confidence_no_fp=confidence_value,
                    other_names=_split_list(row.get("other_names") or ""),
                    source=(row.get("source") or "").strip(),
                    notes=row.get("notes") or "",
                )
            )
    return rows


def _normalise_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value.strip().lower().rstrip(".")


class FingerprintDB:
    """The DNS and HTTP signature sets; `match_*` return the first match, false positives first."""

    __slots__ = ("dns", "http", "_dns_exact", "_dns_other", "_http_fp", "_http_block")

    def __init__(self, dns: Iterable[Fingerprint], http: Iterable[Fingerprint]) -> None:
        self.dns = tuple(dns)
        self.http = tuple(http)
        self._dns_exact: dict[str, list[Fingerprint]] = {}
        self._dns_other: list[_Compiled] = []
        for index, fp in enumerate(self.dns):
            if fp.location != "dns":
                raise MalformedFingerprint(f"dns fingerprint {fp.name}: location {fp.location!r} is not dns")
            if fp.pattern_type == "full":
                self._dns_exact.setdefault(_normalise_address(fp.pattern), []).append(fp)
            else:
                self._dns_other.append(_Compiled(fp, f"dns row {index}"))
        compiled = []
        for index, fp in enumerate(self.http):
            if fp.location == "dns":
                raise MalformedFingerprint(f"http fingerprint {fp.name}: location dns in the HTTP set")
            compiled.append(_Compiled(fp, f"http row {index}"))
        # False positives first, then blockpages; each group keeps file order.
        self._http_fp = tuple(c for c in compiled if c.fingerprint.is_false_positive)
        self._http_block = tuple(c for c in compiled if not c.fingerprint.is_false_positive)

    @classmethod
    def load(cls, directory: Path | str) -> FingerprintDB:
        """Load `fingerprints_dns.csv` and `fingerprints_http.csv` from a directory."""
        base = Path(directory)
        return cls(_read_csv(base / "fingerprints_dns.csv"), _read_csv(base / "fingerprints_http.csv"))

    def match_dns(self, answer: str) -> FingerprintMatch | None:
        """Match one DNS answer (an IP address or a name) against the DNS signatures."""
        exact = self._dns_exact.get(_normalise_address(answer))
        candidates = list(exact or ())
        candidates.sort(key=lambda fp: not fp.is_false_positive)
        if candidates:
            fp = candidates[0]
            return FingerprintMatch(fp.name, fp.scope, fp.countries, "dns", answer, fp)
        for group_fp in (True, False):
            for compiled in self._dns_other:
                if compiled.fingerprint.is_false_positive == group_fp and compiled.matches(answer):
                    fp = compiled.fingerprint
                    return FingerprintMatch(fp.name, fp.scope, fp.countries, "dns", answer, fp)
        return None

    def match_http(
        self, body: bytes | str | None, headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]] = ()
    ) -> FingerprintMatch | None:
        """Match an HTTP response body and headers; a false-positive signature wins over any blockpage."""
        body_bytes = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else (body or b"")
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        header_values: dict[str, list[str]] = {}
        for name, value in pairs:
            text = value if isinstance(value, str) else value.decode("latin-1")
            header_values.setdefault(name.lower(), []).append(text)
        for group in (self._http_fp, self._http_block):
            for compiled in group:
                if compiled.header is None:
                    if compiled.matches(body_bytes):
                        return self._match(compiled, "body", compiled.fingerprint.pattern)
                    continue
                for value in header_values.get(compiled.header, ()):
                    if compiled.matches(value):
                        return self._match(compiled, compiled.fingerprint.location, value)
        return None

    @staticmethod
    def _match(compiled: _Compiled, location: str, matched: str) -> FingerprintMatch:
        fp = compiled.fingerprint
        return FingerprintMatch(fp.name, fp.scope, fp.countries, location, matched, fp)
