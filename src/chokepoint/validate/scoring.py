"""One scenario's result and its score: technique, expectation, OONI keys and attribution checked against the
ground truth and the catalogue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from chokepoint.validate.scenarios import NOT_CENSORSHIP, Scenario
from chokepoint.validate.truth import TruthAction


@dataclass(slots=True)
class ScenarioResult:
    """What one scenario measured, the ground truth and the score."""

    scenario: Scenario
    truth: list[TruthAction] = field(default_factory=list)
    truth_class: str = NOT_CENSORSHIP
    classified_class: str = NOT_CENSORSHIP
    techniques: list[dict[str, Any]] = field(default_factory=list)
    blocking: str | bool | None = None
    accessible: bool | None = None
    attribution: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, bool | None] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0
    measurement: str | None = None  # file with the measurement JSON
    capture: str | None = None
    trace_expected: dict[str, Any] | None = None  # a trace scenario: truth.trace_truth
    trace_got: dict[str, Any] | None = None  # ... and what chokepoint trace reported (TRACE_KEYS)

    @property
    def passed(self) -> bool:
        return self.error is None and all(v is not False for v in self.checks.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.to_json(),
            "truth": [t.to_json() for t in self.truth],
            "truth_class": self.truth_class,
            "classified_class": self.classified_class,
            "techniques": self.techniques,
            "blocking": self.blocking,
            "accessible": self.accessible,
            "attribution": self.attribution,
            "checks": self.checks,
            "misses": self.misses,
            "error": self.error,
            "passed": self.passed,
            "duration_s": round(self.duration_s, 3),
            "measurement": self.measurement,
            "capture": self.capture,
            "kind": self.scenario.kind,
            "trace": None
            if self.scenario.kind != "trace"
            else {"expected": self.trace_expected, "got": self.trace_got},
        }


def score(result: ScenarioResult) -> None:
    """Fill ``checks`` and ``misses`` from the truth, the measurement and detect's findings."""
    exp = result.scenario.expected
    truth_text = "; ".join(t.describe() for t in result.truth) or "no enforced verdict in the event log"
    found = (
        ", ".join(f"{t.get('technique')} ({t.get('target')}: {t.get('evidence')})" for t in result.techniques)
        or "no technique"
    )
    ok = result.classified_class == result.truth_class
    result.checks["technique"] = ok
    if not ok:
        result.misses.append(
            f"technique: classified {result.classified_class}, ground truth {result.truth_class} "
            f"[censor: {truth_text}] [probe: {found}]"
        )
    as_expected = result.truth_class == exp.technique
    result.checks["expectation"] = as_expected
    if not as_expected:
        result.misses.append(
            f"expectation: the censor's action was {result.truth_class}, the catalogue expects "
            f"{exp.technique} [censor: {truth_text}]"
        )
    if as_expected:
        ooni_ok = result.blocking == exp.blocking and result.accessible == exp.accessible
        result.checks["ooni"] = ooni_ok
        if not ooni_ok:
            result.misses.append(
                f"ooni: blocking={_j(result.blocking)} accessible={_j(result.accessible)}, expected "
                f"blocking={_j(exp.blocking)} accessible={_j(exp.accessible)} [probe: {found}]"
            )
    else:
        result.checks["ooni"] = None
    injected = sum(t.injected for t in result.truth)
    if exp.attribution is not None and as_expected:
        top = {name for f in result.attribution for name in f.get("top", ())}
        attr_ok = exp.attribution in top
        result.checks["attribution"] = attr_ok
        if not attr_ok:
            if not result.attribution:
                why = f"detect found no injected packet ({injected} injected by the censor)"
            else:
                why = "; ".join(
                    f"{f['kind']} finding ({f['summary']}): best {f['best']}"
                    + (f", mismatched {', '.join(f['mismatched'])}" if f.get("mismatched") else "")
                    + (
                        f"; {exp.attribution}: {', '.join(f['expected_mismatched'])}"
                        if f.get("expected_mismatched")
                        else ""
                    )
                    for f in result.attribution
                )
            result.misses.append(f"attribution: expected {exp.attribution}: {why}")
    else:
        result.checks["attribution"] = None


#: The keys of trace's JSON report a trace scenario keeps.
TRACE_KEYS = ("outcome", "censor", "path", "interference", "interference_ttl", "detail")
#: The checks of a trace scenario (its own section of the report, apart from the technique matrix).
TRACE_CHECKS = ("trace_outcome", "trace_hop", "trace_path", "trace_expectation")


def score_trace(result: ScenarioResult) -> None:
    """A trace scenario's checks: the outcome, the censor's hop (TTL and address) and the path trace reported
    against the ground truth (``trace_expected``); hop and path only where a censor is to be found. And
    ``trace_expectation``: the censor did what the catalogue expects (a rule that did not fire)."""
    exp, got = result.trace_expected or {}, result.trace_got or {}
    spec = result.scenario.trace
    found = (
        f"[trace: {got.get('outcome')}, censor {_hop(got.get('censor'))}, {got.get('path')}, "
        f"interference {got.get('interference')} at TTL {got.get('interference_ttl')}: {got.get('detail')}]"
    )
    truth = f"[truth: {exp.get('basis')}]"
    ok = got.get("outcome") == exp.get("outcome")
    result.checks["trace_outcome"] = ok
    if not ok:
        result.misses.append(f"trace outcome: {got.get('outcome')}, ground truth {exp.get('outcome')} {truth} {found}")
    if exp.get("outcome") == "censor-identified":
        hop_ok = got.get("censor") == exp.get("censor")
        result.checks["trace_hop"] = hop_ok
        if not hop_ok:
            result.misses.append(
                f"trace hop: {_hop(got.get('censor'))}, ground truth {_hop(exp.get('censor'))} {found}"
            )
        path_ok = got.get("path") == exp.get("path")
        result.checks["trace_path"] = path_ok
        if not path_ok:
            result.misses.append(f"trace path: {got.get('path')}, ground truth {exp.get('path')} {truth} {found}")
    else:
        result.checks["trace_hop"] = result.checks["trace_path"] = None
    as_expected = spec is None or exp.get("outcome") == spec.outcome
    result.checks["trace_expectation"] = as_expected
    if not as_expected:
        result.misses.append(
            f"expectation: the ground truth is {exp.get('outcome')}, the catalogue expects "
            f"{spec.outcome if spec else None} {truth}"
        )


def _hop(censor: Any) -> str:
    if not isinstance(censor, dict):
        return "none"
    return f"hop {censor.get('ttl')} ({censor.get('ip')})"


def _j(value: Any) -> str:
    return json.dumps(value)
