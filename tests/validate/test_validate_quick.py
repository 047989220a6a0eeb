"""The reduced scenario set (`chokepoint validate --quick`) in the real lab: accuracy >= 95%.

Root only; holds the lab session lock (``chokepoint.lab.state.session_lock``) like the other lab suites, so
it waits for them instead of tearing their lab down. The probes use the ooni/blocking-fingerprints CSVs of
``../shared/data`` beside the checkout when present (the CAPTCHA scenario needs them to know the page is
benign) and skip with a clear message otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chokepoint.lab import state as st
from chokepoint.lab import topology as topo
from chokepoint.validate.report import TARGET_ACCURACY, build_report, load_report, write_html, write_json
from chokepoint.validate.runner import RunOptions, ValidationError, run_scenarios
from chokepoint.validate.scenarios import load_catalogue, select

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
FINGERPRINTS = SHARED / "fingerprints"
LAB = frozenset(topo.default_topology().namespaces())


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the validation brings the lab up: it needs root (network namespaces)"
    for tool in ("ip", "nft", "tcpdump"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    if not (FINGERPRINTS / "fingerprints_http.csv").is_file():
        return f"../shared/data not found: {FINGERPRINTS} (ooni/blocking-fingerprints beside the checkout)"
    return None


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from chokepoint import lab

    workdir = tmp_path_factory.mktemp("validate")
    scenarios = select(load_catalogue(), quick=True)
    with st.session_lock(timeout=1800):
        foreign = [ns for ns in topo.lab_namespaces() if ns not in LAB]
        lab.down(keep=foreign)  # a lab left by a crashed session (the lock is ours now)
        try:
            results = run_scenarios(
                scenarios, RunOptions(fingerprints=FINGERPRINTS, workdir=workdir / "artifacts", lock=False)
            )
        except ValidationError as exc:
            pytest.fail(f"the validation could not run: {exc}")
        finally:
            report_down = lab.down(keep=foreign)
    assert not report_down.errors, report_down.errors
    assert not any(ns in LAB for ns in topo.lab_namespaces()), "the lab was not taken down"
    report = build_report(results, {"quick": True})
    write_json(report, workdir / "report.json")
    write_html(report, workdir / "report.html")
    return scenarios, report, workdir


def test_quick_accuracy_meets_the_target(quick_report):
    scenarios, report, _ = quick_report
    assert [r["scenario"]["name"] for r in report.results] == [s.name for s in scenarios]
    misses = "\n".join(f"{name}: {cause}" for name, cause in report.misses)
    assert report.accuracy >= TARGET_ACCURACY, f"technique accuracy {report.accuracy:.1%}; misses:\n{misses}"
    ooni = report.accuracies()["ooni"]
    assert ooni["total"] and ooni["accuracy"] >= TARGET_ACCURACY, misses
    # the quick trace scenarios: trace names the censor's hop and path (their own accuracy, apart from the matrix)
    assert report.traces and report.trace_accuracy >= TARGET_ACCURACY, misses
    # the quick set exercises censorship and its absence: both rows of the matrix are populated
    labels = set(report.matrix.labels)
    assert "none" in labels and len(labels - {"none"}) >= 3


def test_quick_ground_truth_and_attribution(quick_report):
    _, report, _ = quick_report
    censored = [r for r in report.results if r["truth_class"] != "none" and r.get("kind") != "trace"]
    assert censored and all(r["truth"] for r in censored)  # the censor's log explains each one
    for r in report.results:
        if r["scenario"]["profile"] is None:
            assert r["truth"] == [] and r["truth_class"] == "none"  # no censor, no event
    attributed = [r for r in report.results if r["checks"].get("attribution") is not None]
    assert attributed, "no scenario checked attribution"
    ok = sum(1 for r in attributed if r["checks"]["attribution"])
    assert ok / len(attributed) >= TARGET_ACCURACY, [m for r in attributed for m in r["misses"]]


def test_quick_report_files(quick_report):
    _, report, workdir = quick_report
    back = load_report(workdir / "report.json")
    assert back.matrix == report.matrix and back.results == report.results
    html = (workdir / "report.html").read_text()
    assert 'id="confusion-matrix"' in html and all(r["scenario"]["name"] in html for r in report.results)
    for r in report.results:
        assert Path(r["capture"]).stat().st_size > 24  # tcpdump captured the scenario's packets


def test_cli_refuses_while_the_session_lock_is_held():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    with st.session_lock(timeout=1800):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "chokepoint.cli",
                "validate",
                "--quick",
                "--scenarios",
                "none-https-ok",
                "--wait",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 4, proc.stderr
    assert "session lock" in proc.stderr
