"""Published outcomes of real transports under a censor: a profile's ``outcomes:`` section.

The censor's behaviour is what a profile's rules encode; ``outcomes:`` records, beside it, what the literature
reports happened to named circumvention transports under that censor, each with its citation, so the matrix
(``chokepoint matrix``) can show expected next to observed and flag every disagreement. An entry never
drives the censor: a disagreement means the rules (or the lab) miss something, never that a cell is adjusted.

::

    outcomes:
      - transports: [shadowsocks-aead, shadowsocks-stream, vmess-tcp, obfs4]   # names or globs (shadowsocks-*)
        outcome: blocked                       # works | blocked | degraded
        how: "first data packet looks fully encrypted: dropped, 180 s residual"
        cite: "Wu et al., USENIX Security 2023, abstract and section 4"
        observed: "2021-11/2023-03"            # when it held: A/B, or A (from A on); the matrix compares
                                               # only on days in it (a profile's --as-of day)
        modes: [inline]                        # only in these lab modes (optional)
        uncertain: "..."                       # what the source does not settle (optional)

Errors carry ``file:line:column`` (the schema check, and :func:`parse_outcomes` for a glob that names no
known transport when a catalogue is given).
"""

from __future__ import annotations

import calendar
import datetime as dt
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chokepoint.policy.errors import PolicyError
from chokepoint.policy.yamlsrc import Marks

OUTCOMES = ("works", "blocked", "degraded")
MODES = ("inline", "mirror")
_OBSERVED = r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?(/([0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?)?)?$"
_STR: dict[str, Any] = {"type": "string", "minLength": 1}


def outcomes_schema() -> dict[str, Any]:
    """JSON Schema of the ``outcomes:`` section (included by ``policy.schema``)."""
    return {
        "type": "array",
        "description": "published outcomes of named transports under this censor (the matrix compares them)",
        "items": {
            "title": "key in outcome",
            "type": "object",
            "additionalProperties": False,
            "required": ["transports", "outcome", "cite"],
            "properties": {
                "transports": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "pattern": r"^[a-z0-9*?\[\]-]+$"},
                    "description": "transport names or shell-style globs",
                },
                "outcome": {"enum": list(OUTCOMES)},
                "how": _STR,
                "cite": {"anyOf": [_STR, {"type": "array", "minItems": 1, "items": _STR}]},
                "observed": {"type": "string", "pattern": _OBSERVED},
                "modes": {"type": "array", "minItems": 1, "items": {"enum": list(MODES)}},
                "uncertain": _STR,
                "note": _STR,
            },
        },
    }


@dataclass(frozen=True, slots=True)
class ExpectedOutcome:
    transports: tuple[str, ...]
    outcome: str
    cite: str
    how: str = ""
    observed: str = ""
    modes: tuple[str, ...] = MODES
    uncertain: str = ""
    note: str = ""
    pos: Any = None

    def applies(self, transport: str, mode: str, day: dt.date | None = None) -> bool:
        """Whether this entry speaks about ``transport`` in ``mode`` on ``day`` (None: any day)."""
        if mode not in self.modes or not any(fnmatch.fnmatchcase(transport, pat) for pat in self.transports):
            return False
        return day is None or in_period(self.observed, day)

    def to_json(self) -> dict[str, Any]:
        out = {"outcome": self.outcome, "cite": self.cite}
        for key in ("how", "observed", "uncertain", "note"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.pos is not None:
            out["source"] = str(self.pos)
        return out


def parse_outcomes(
    raw: list[dict[str, Any]] | None, marks: Marks, known: Iterable[str] = ()
) -> tuple[ExpectedOutcome, ...]:
    """The (schema-checked) ``outcomes:`` section; with ``known`` transport names, a pattern that matches
    none of them is a ``PolicyError`` at that pattern."""
    names = list(known)
    out = []
    for i, entry in enumerate(raw or ()):
        for j, pattern in enumerate(entry["transports"]):
            if names and not fnmatch.filter(names, pattern):
                raise PolicyError.at(
                    marks.value(("outcomes", i, "transports", j)), f"{pattern!r} names no known transport"
                )
        cite = entry["cite"]
        out.append(
            ExpectedOutcome(
                transports=tuple(entry["transports"]),
                outcome=entry["outcome"],
                cite=cite if isinstance(cite, str) else "; ".join(cite),
                how=entry.get("how", ""),
                observed=entry.get("observed", ""),
                modes=tuple(entry.get("modes") or MODES),
                uncertain=entry.get("uncertain", ""),
                note=entry.get("note", ""),
                pos=marks.value(("outcomes", i)),
            )
        )
    return tuple(out)


def _bound(text: str, *, end: bool) -> dt.date:
    parts = [int(p) for p in text.split("-")]
    year, month = parts[0], parts[1] if len(parts) > 1 else (12 if end else 1)
    day = parts[2] if len(parts) > 2 else (calendar.monthrange(year, month)[1] if end else 1)
    return dt.date(year, month, day)


def in_period(observed: str, day: dt.date) -> bool:
    """Whether ``day`` falls in an ``observed`` period: ``A/B`` from the start of A to the end of B (both
    inclusive), ``A/`` or ``A`` from A on (a reported outcome holds until a later report says otherwise), empty:
    always."""
    if not observed:
        return True
    start, _, end = observed.partition("/")
    if day < _bound(start, end=False):
        return False
    return not end or day <= _bound(end, end=True)


def expected_for(
    outcomes: Iterable[ExpectedOutcome], transport: str, mode: str, day: dt.date | None = None
) -> list[ExpectedOutcome]:
    """The entries that speak about ``transport`` in ``mode`` on ``day``, in file order."""
    return [o for o in outcomes if o.applies(transport, mode, day)]


__all__ = ["ExpectedOutcome", "OUTCOMES", "expected_for", "in_period", "outcomes_schema", "parse_outcomes"]
