"""Runs to outcomes and cells (I/O-free)."""

from __future__ import annotations

from chokepoint.matrix.classify import classify_run, summarize_cell, symptom
from chokepoint.matrix.model import Cell, RunResult
from chokepoint.policy import load_profile
from chokepoint.policy.outcomes import expected_for


def t(ok, at, code=0, error="", kbps=8000.0):
    return {"ok": ok, "at_s": at, "curl_exit": code, "error": error, "kbps": kbps, "bytes": 1 if ok else 0}


DROP = {
    "kind": "action",
    "t": 0.8,
    "rule": "gfw-fet-drop",
    "action": "drop",
    "residual_s": 180,
    "residual_scope": "3-tuple",
}


def test_symptoms():
    assert symptom(t(False, 0, 28, "Connection timed out")) == "timeout"
    assert symptom(t(False, 0, 56, "Recv failure: Connection reset by peer")) == "connection reset"
    assert symptom(t(False, 0, 97, "Can't complete SOCKS5 connection")) == "proxy handshake failed"


def test_works_blocked_degraded_and_error():
    run = RunResult(0, transfers=[t(True, 0.1), t(True, 0.2)])
    classify_run(run)
    assert run.outcome == "works"
    run = RunResult(0, transfers=[t(True, 0.1), t(False, 0.8, 28), t(False, 6.8, 28)], events=[DROP])
    classify_run(run)
    assert run.outcome == "blocked" and "timeout after 0.8 s" in run.how and "gfw-fet-drop" in run.how
    assert run.time_to_first_failure_s == 0.8 and run.block_lasts_s == 180
    run = RunResult(0, transfers=[t(False, 0.1, 56, "reset"), t(True, 1.0)], events=[DROP])
    classify_run(run)
    assert run.outcome == "degraded" and "1/2" in run.how
    run = RunResult(0, start_error={"kind": "crashed", "message": "server x exited", "log": "boom"})
    classify_run(run)
    assert run.outcome == "error"
    run = RunResult(0, start_error={"kind": "not-ready", "message": "client not ready", "log": ""}, events=[DROP])
    classify_run(run)
    assert run.outcome == "blocked" and "could not connect" in run.how


def test_throttle_against_the_baseline():
    events = [{"kind": "action", "t": 0.1, "rule": "tspu-throttle", "action": "throttle", "throttle_kbps": 150}]
    run = RunResult(0, transfers=[t(True, 0.1, kbps=140.0)], events=events)
    classify_run(run, baseline_kbps=900000.0)
    assert run.outcome == "degraded" and "throttled to 140 kbit/s" in run.how


def test_a_cell_blocked_in_some_runs_is_degraded_and_disagreements_are_flagged():
    cell = Cell("gfw", "shadowsocks-aead", "inline")
    for blocked in (True, False, True, False):
        run = RunResult(0, transfers=[t(True, 0.1), t(not blocked, 0.5, 28)], events=[DROP] if blocked else [])
        classify_run(run)
        cell.runs.append(run)
    expected = expected_for(load_profile("gfw").outcomes, "shadowsocks-aead", "inline")
    summarize_cell(cell, expected)
    assert cell.outcome == "degraded" and "blocked in 2/4 runs (50%)" in cell.how
    assert cell.expected["outcome"] == "blocked" and cell.agrees is False
    assert cell.evidence["rules"] == ["gfw-fet-drop"] and cell.evidence["block_lasts_s"] == 180
