"""From what a run measured to an outcome, and from runs to a cell (I/O-free).

A run is **blocked** when the transport could not come up or its downloads fail at the end of the run;
**degraded** when downloads failed and then recovered (a share of connections blocked), or all arrived but at
under :data:`THROTTLE_RATIO` of the unblocked baseline's rate while the censor throttled; **works** when every
download arrived intact; **error** when the transport itself failed (a program missing or crashing) with no sign
of the censor. ``how`` says what the client saw and what the censor's own events name (rule, action, residual,
active probes). A cell of several runs that were blocked in some and not in others is **degraded**, with the
fraction blocked. Expected outcomes (``policy.outcomes``) are compared here: every difference is flagged.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from chokepoint.matrix.model import Cell, RunResult

#: Below this share of the baseline rate a working transport counts as throttled (with a throttle event).
THROTTLE_RATIO = 0.5

_CURL = {
    7: "connection refused or unreachable",
    28: "timeout",
    35: "TLS handshake failed",
    52: "empty reply",
    56: "connection reset",
    97: "proxy handshake failed",
}


def symptom(transfer: dict[str, Any]) -> str:
    """What the client saw in one failed download."""
    code = int(transfer.get("curl_exit", 0))
    error = str(transfer.get("error", "")).lower()
    if code == 0:
        return "corrupted body" if not transfer.get("ok") else "ok"
    if "reset" in error:
        return "connection reset"
    if "timed out" in error or code == 28:
        return "timeout"
    return _CURL.get(code, f"curl exit {code}")


def _rules(events: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(e["rule"] for e in events if e.get("kind") == "action"))


def _censor_phrase(events: list[dict[str, Any]]) -> str:
    actions = [e for e in events if e.get("kind") == "action"]
    if not actions:
        return ""
    parts = []
    for rule in _rules(events):
        first = next(e for e in actions if e["rule"] == rule)
        text = f"{first['action']} by {rule}"
        if first.get("residual_s"):
            text += f", residual {first['residual_s']:g} s ({first.get('residual_scope', '')})"
        if first.get("throttle_kbps"):
            text += f", {first['throttle_kbps']} kbit/s"
        if first.get("confirmed_by"):
            text += f", confirmed by {first['confirmed_by']}"
        if first.get("not_enforced"):
            text += f" (not enforced: {first['not_enforced']})"
        parts.append(text)
    return "; ".join(parts)


def classify_run(run: RunResult, *, baseline_kbps: float | None = None, censored_before: bool = False) -> None:
    """Set ``run.outcome``, ``how``, ``symptom``, ``time_to_first_failure_s``, ``kbps``, ``block_lasts_s``."""
    actions = [e for e in run.events if e.get("kind") == "action"]
    censor = _censor_phrase(run.events)
    lasts = [e["residual_s"] for e in actions if e.get("residual_s")]
    run.block_lasts_s = max(lasts) if lasts else None
    probe_block = next((e for e in actions if e.get("confirmed_by")), None)
    if run.start_error is not None:
        kind = run.start_error.get("kind", "")
        run.symptom = f"{kind}: {run.start_error.get('message', '')}"
        run.time_to_first_failure_s = 0.0
        if kind == "missing":
            run.outcome, run.how = "error", run.symptom
        elif actions or censored_before:
            what = "could not connect" if kind == "not-ready" else f"client {kind}"
            run.outcome = "blocked"
            run.how = f"{what} ({censor or 'no new censor event: a block from an earlier run still holds'})"
        else:
            run.outcome, run.how = "error", run.symptom
        return
    ok = [t for t in run.transfers if t.get("ok")]
    failed = [t for t in run.transfers if not t.get("ok")]
    if ok:
        run.kbps = round(sum(t["kbps"] for t in ok) / len(ok), 1)
    if failed:
        first = next(t for t in run.transfers if not t.get("ok"))
        run.time_to_first_failure_s = first.get("at_s")
        run.symptom = Counter(symptom(t) for t in failed).most_common(1)[0][0]
    if not run.transfers:
        run.outcome, run.how = "error", "no download was attempted"
        return
    last_ok = run.transfers[-1].get("ok")
    if not failed:
        throttled = any(e.get("action") == "throttle" for e in actions)
        if baseline_kbps and run.kbps is not None and run.kbps < THROTTLE_RATIO * baseline_kbps and throttled:
            run.outcome = "degraded"
            run.how = f"throttled to {run.kbps:.0f} kbit/s (baseline {baseline_kbps:.0f} kbit/s; {censor})"
        else:
            run.outcome = "works"
            run.how = "every download arrived" + (f" (censor acted: {censor})" if censor else "")
        return
    share = f"{len(failed)}/{len(run.transfers)} downloads failed"
    if probe_block is not None and not last_ok:
        run.outcome = "blocked"
        run.how = f"blocked after an active probe at {probe_block['t']:.1f} s: {run.symptom} ({censor}; {share})"
    elif not last_ok:
        run.outcome = "blocked"
        residual = "residual" if run.block_lasts_s else ""
        after = f" after {run.time_to_first_failure_s:.1f} s" if run.time_to_first_failure_s else ""
        run.how = (
            f"{run.symptom}{after}"
            + (f", {residual}" if residual else "")
            + (f" ({censor}; {share})" if censor else f" ({share}; no censor event in this run)")
        )
    else:
        run.outcome = "degraded"
        run.how = f"intermittent: {share}, then recovered ({run.symptom}; {censor or 'no censor event'})"


def summarize_cell(cell: Cell, expectations: list[Any]) -> None:
    """Cell outcome from its runs, evidence, and the comparison with the profile's published outcome."""
    runs = cell.runs
    counted = [r for r in runs if r.outcome != "error"] or runs
    outcomes = Counter(r.outcome for r in counted)
    if len(outcomes) == 1:
        cell.outcome = counted[0].outcome
        cell.how = counted[0].how
    elif outcomes["blocked"] and (outcomes["works"] or outcomes["degraded"]):
        cell.outcome = "degraded"
        blocked = outcomes["blocked"]
        first_blocked = next(r for r in counted if r.outcome == "blocked")
        cell.how = f"blocked in {blocked}/{len(counted)} runs ({blocked / len(counted):.0%}): {first_blocked.how}"
    else:
        cell.outcome = outcomes.most_common(1)[0][0]
        cell.how = next(r.how for r in counted if r.outcome == cell.outcome)
    events = [e for r in runs for e in r.events if e.get("kind") == "action"]
    probes = [p for r in runs for p in r.probes]
    failures = [r.time_to_first_failure_s for r in runs if r.time_to_first_failure_s is not None]
    lasts = [r.block_lasts_s for r in runs if r.block_lasts_s]
    cell.evidence = {
        "rules": list(dict.fromkeys(e["rule"] for e in events)),
        "censor_events": events[:50],
        "client_symptom": next((r.symptom for r in runs if r.symptom), ""),
        "time_to_first_failure_s": min(failures) if failures else None,
        "block_lasts_s": max(lasts) if lasts else None,
        "throughput_kbps": [r.kbps for r in runs],
        "active_probes": {
            "count": len(probes),
            "by_type": dict(Counter(p.get("type", "?") for p in probes)),
            "reactions": dict(Counter(p.get("reaction", "?") for p in probes)),
        },
        "runs": len(runs),
    }
    if cell.outcome == "error":
        cell.evidence["log"] = next((r.start_error.get("log", "") for r in runs if r.start_error), "")[-4000:]
    if expectations:
        exp = expectations[0]
        cell.expected = exp.to_json()
        cell.agrees = None if cell.outcome == "error" else cell.outcome == exp.outcome
    else:
        cell.expected, cell.agrees = None, None


__all__ = ["THROTTLE_RATIO", "classify_run", "summarize_cell", "symptom"]
