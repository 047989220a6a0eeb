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
        observed: "2021-11/2023-03"            # when it was reported (optional)
        modes: [inline]                        # only in these lab modes (optional)
        uncertain: "..."                       # what the source does not settle (optional)

Errors carry ``file:line:column`` (the schema check, and :func:`parse_outcomes` for a glob that names no
known transport when a catalogue is given).
"""

from __future__ import annotations

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

    def applies(self, transport: str, mode: str) -> bool:
        return mode in self.modes and any(fnmatch.fnmatchcase(transport, pat) for pat in self.transports)

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


def expected_for(outcomes: Iterable[ExpectedOutcome], transport: str, mode: str) -> list[ExpectedOutcome]:
    """The entries that speak about ``transport`` in ``mode``, in file order."""
    return [o for o in outcomes if o.applies(transport, mode)]


__all__ = ["ExpectedOutcome", "OUTCOMES", "expected_for", "outcomes_schema", "parse_outcomes"]
