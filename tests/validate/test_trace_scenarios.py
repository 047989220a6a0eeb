"""Trace scenarios (``kind: trace``): the catalogue format, the ground truth from the topology and the censor's
event log (``truth.trace_truth``, over real events from the censor's core), the score and the report section."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from chokepoint.policy import load_profile
from chokepoint.validate.report import build_report, load_report, render_html, render_terminal, write_json
from chokepoint.validate.runner import plan_groups
from chokepoint.validate.scenarios import CatalogueError, load_catalogue, parse_catalogue, select
from chokepoint.validate.scoring import ScenarioResult, score_trace
from chokepoint.validate.truth import trace_truth

from .test_truth import client_hello, conversation, events_for, http_request

CENSOR_IP, NEXT_IP = "198.18.102.2", "198.19.201.2"

CATALOGUE = """\
scenarios:
  - name: probe-one
    profile: gfw
    target: https://www.google.com/
    expected: {technique: tls-reset, blocking: http-failure, accessible: false}
  - name: t1
    kind: trace
    profile: gfw
    mode: mirror
    target: zh.wikipedia.org
    protocol: http
    hops_client: 2
    hops_server: 1
    params: {gfw-http-host-reset.probability: "1"}
    tcp_timestamps: false
    quick: true
    rule: gfw-http-host-reset
    expected: {outcome: censor-identified}
  - name: t2
    kind: trace
    profile: gfw
    target: zh.wikipedia.org
    protocol: tls
    hops_client: 2
    hops_server: 1
    delay_ms: 0
    expected: {outcome: no-censorship}
"""


def trace_scenario(text: str = CATALOGUE, name: str = "t1"):
    return next(s for s in parse_catalogue(text, "cat.yaml") if s.name == name)


def test_a_trace_scenario_parses():
    s = trace_scenario()
    assert (s.kind, s.profile, s.mode, s.target, s.tests, s.quick) == (
        "trace",
        "gfw",
        "mirror",
        "zh.wikipedia.org",
        (),
        True,
    )
    assert s.trace is not None
    assert (s.trace.protocol, s.trace.hops_client, s.trace.hops_server, s.trace.delay_ms) == ("http", 2, 1, 10.0)
    assert s.trace.params == (("gfw-http-host-reset.probability", "1"),) and s.trace.tcp_timestamps is False
    assert s.trace.censor_hop == 3 and s.trace.outcome == "censor-identified" and s.host == "zh.wikipedia.org"
    data = s.to_json()
    assert data["kind"] == "trace" and data["expected"] == {"outcome": "censor-identified"}
    assert data["trace"]["params"] == {"gfw-http-host-reset.probability": "1"}
    t2 = trace_scenario(name="t2")
    assert t2.mode == "inline" and t2.trace.delay_ms == 0 and t2.trace.outcome == "no-censorship"
    assert trace_scenario(name="probe-one").kind == "probe" and trace_scenario(name="probe-one").trace is None


def test_every_trace_scenario_gets_a_lab_of_its_own():
    scenarios = parse_catalogue(CATALOGUE, "cat.yaml")
    groups = [[s.name for s in members] for _key, members, _hosts in plan_groups(scenarios)]
    assert groups == [["probe-one"], ["t1"], ["t2"]]


@pytest.mark.parametrize(
    "change, words",
    [
        (("hops_server: 1", "hops_server: 0"), "hops_server must be an integer from 1"),
        (("hops_client: 2", "hops_client: -1"), "hops_client must be an integer from 0"),
        (("protocol: http", "protocol: quic"), "protocol must be one of"),
        (("target: zh.wikipedia.org", "target: http://zh.wikipedia.org/"), "blocked domain name"),
        (("expected: {outcome: censor-identified}", "expected: {outcome: found}"), "outcome must be one of"),
        (("expected: {outcome: censor-identified}", "expected: {technique: none}"), "unknown key 'technique'"),
        (
            ("kind: trace\n    profile: gfw\n    mode: mirror", "kind: trace\n    profile: null\n    mode: mirror"),
            "needs a censor",
        ),
        (("    protocol: http\n", "    tests: [tcp]\n    protocol: http\n"), "'tests' does not apply to a trace"),
        (
            ("kind: trace\n    profile: gfw\n    mode: mirror", "kind: traceroute\n    profile: gfw\n    mode: mirror"),
            "kind must be",
        ),
    ],
)
def test_trace_scenario_errors(change, words):
    old, new = change
    assert old in CATALOGUE
    with pytest.raises(CatalogueError) as exc:
        parse_catalogue(CATALOGUE.replace(old, new, 1), "cat.yaml")
    assert words in str(exc.value) and str(exc.value).startswith("cat.yaml:")


def test_a_probe_scenario_takes_no_trace_keys():
    text = CATALOGUE.replace(
        "    target: https://www.google.com/\n", "    target: https://www.google.com/\n    hops_client: 1\n"
    )
    with pytest.raises(CatalogueError, match="'hops_client' does not apply to a probe scenario"):
        parse_catalogue(text, "cat.yaml")


# ------------------------------------------------------------------------------------------------ ground truth


def dropped(lines: list[str]) -> bool:
    """The censor's record of its first enforced verdict: did it drop the trigger?"""
    events = [json.loads(line) for line in lines]
    return next(e["chokepoint"]["trigger"]["dropped"] for e in events if e.get("event_type") == "chokepoint")


def truth(mode: str, lines: list[str]) -> dict:
    return trace_truth(mode, 3, NEXT_IP, lines)


def test_mirror_mode_is_on_path_at_the_censor_hop(tmp_path):
    # the transparent censor (lab/geometry.py): its hop is the TTL that first gets past it, named by the router
    # beyond it, as CenTrace names a device
    lines = events_for("gfw", conversation(client_hello("www.youtube.com"), 443), tmp_path, mode="mirror")
    got = truth("mirror", lines)
    assert {k: got[k] for k in ("outcome", "censor", "path")} == {
        "outcome": "censor-identified",
        "censor": {"ttl": 3, "ip": NEXT_IP},
        "path": "on-path",
    }
    assert "gfw-sni-reset" in got["basis"]


def test_inline_a_withheld_trigger_is_in_path_at_the_censor_hop(tmp_path):
    # iran's block page answers the request in place of the server: the request is dropped
    lines = events_for("iran", conversation(http_request("queerquotes.blogspot.com"), 80), tmp_path)
    assert dropped(lines) is True
    got = truth("inline", lines)
    assert (got["outcome"], got["censor"], got["path"]) == ("censor-identified", {"ttl": 3, "ip": NEXT_IP}, "in-path")


def test_inline_a_forwarded_trigger_is_on_path_at_the_censor_hop(tmp_path):
    # gfw's SNI reset lets the ClientHello through (its RSTs race the server): the request that triggers it goes
    # on and expires at the router beyond the censor, which answers beside the injection
    lines = events_for("gfw", conversation(client_hello("www.youtube.com"), 443), tmp_path)
    assert dropped(lines) is False
    got = truth("inline", lines)
    assert (got["outcome"], got["censor"], got["path"]) == ("censor-identified", {"ttl": 3, "ip": NEXT_IP}, "on-path")


def test_no_interference_is_no_censorship(tmp_path):
    lines = events_for("gfw", conversation(client_hello("www.example.org"), 443), tmp_path)
    assert truth("inline", lines)["outcome"] == "no-censorship"
    assert truth("inline", [])["censor"] is None
    # a drop rule on a mirrored copy does nothing (nothing injected), nor do other event sources
    dropped = events_for("russia-tspu", conversation(client_hello("bluesystem.ru"), 443), tmp_path / "m", mode="mirror")
    assert truth("mirror", dropped)["outcome"] == "no-censorship"
    assert truth("inline", ['{"event_type": "flow"}', "not json", ""])["outcome"] == "no-censorship"


def test_the_first_interference_decides(tmp_path):
    forwarded = events_for("gfw", conversation(client_hello("www.youtube.com"), 443), tmp_path / "a")
    dropped = events_for("iran", conversation(http_request("queerquotes.blogspot.com"), 80), tmp_path / "b")
    assert truth("inline", [*dropped, *forwarded])["path"] == "in-path"
    assert truth("inline", [*forwarded, *dropped])["path"] == "on-path"


# ------------------------------------------------------------------------------------------------ score, report


def scored(got: dict, expected: dict, name: str = "t1", error: str | None = None) -> ScenarioResult:
    result = ScenarioResult(trace_scenario(name=name))
    result.trace_expected, result.trace_got = expected, got
    if error:
        result.error = error
        result.misses.append(f"error: {error}")
    score_trace(result)
    return result


FOUND = {"outcome": "censor-identified", "censor": {"ttl": 3, "ip": CENSOR_IP}, "path": "on-path", "basis": "x"}


def test_score_outcome_hop_and_path():
    right = scored(dict(FOUND), FOUND)
    assert right.passed and right.checks == {
        "trace_outcome": True,
        "trace_hop": True,
        "trace_path": True,
        "trace_expectation": True,
    }
    wrong_hop = scored({**FOUND, "censor": {"ttl": 4, "ip": NEXT_IP}}, FOUND)
    assert wrong_hop.checks["trace_hop"] is False and wrong_hop.checks["trace_path"] is True
    assert any("hop 4 (198.19.201.2), ground truth hop 3" in m for m in wrong_hop.misses)
    wrong_path = scored({**FOUND, "path": "in-path"}, FOUND)
    assert wrong_path.checks["trace_path"] is False and not wrong_path.passed
    # nothing to find: hop and path do not apply; the catalogue expected a censor here
    none = {"outcome": "no-censorship", "censor": None, "path": "unknown", "basis": "y"}
    quiet = scored(dict(none), none)
    assert quiet.checks["trace_hop"] is None and quiet.checks["trace_path"] is None
    assert quiet.checks["trace_outcome"] is True and quiet.checks["trace_expectation"] is False
    assert scored(dict(none), none, name="t2").passed


def test_report_keeps_traces_out_of_the_matrix_with_their_own_accuracy(tmp_path):
    probe = ScenarioResult(trace_scenario(name="probe-one"))
    probe.truth_class = probe.classified_class = "tls-reset"
    probe.checks = {"technique": True, "expectation": True, "ooni": True, "attribution": None}
    results = [
        probe,
        scored(dict(FOUND), FOUND),
        scored({**FOUND, "path": "in-path"}, FOUND),
        scored({}, FOUND, error="ValidationError: trace exited with 3"),
    ]
    report = build_report(results)
    assert report.matrix.total == 1 and report.accuracy == 1.0
    acc = report.accuracies()
    assert acc["trace"] == {"ok": 1, "total": 3, "accuracy": 1 / 3}
    assert acc["trace_path"]["ok"] == 1 and acc["scenarios"]["total"] == 1
    assert report.trace_accuracy == pytest.approx(1 / 3) and not report.met()
    assert build_report(results[:2]).met()
    path = write_json(report, tmp_path / "report.json")
    assert json.loads(path.read_text())["trace_accuracy"] == pytest.approx(1 / 3)
    back = load_report(path)
    assert back.results == report.results and back.trace_accuracy == report.trace_accuracy
    html = render_html(report)
    assert 'id="traces"' in html and 'id="trace-accuracy"' in html and "33.3%" in html
    console = Console(record=True, width=250)
    render_terminal(report, console)
    text = console.export_text()
    assert "censor location (trace)" in text and "trace accuracy (outcome, hop and path right) 33.3%" in text


def test_a_run_of_traces_only_shows_no_empty_matrix():
    report = build_report([scored(dict(FOUND), FOUND)])
    console = Console(record=True, width=250)
    render_terminal(report, console)
    text = console.export_text()
    assert "confusion matrix" not in text and "technique accuracy" not in text and report.met()


# ------------------------------------------------------------------------------------------------ the catalogue


def test_the_bundled_trace_scenarios():
    scenarios = load_catalogue()
    traces = [s for s in scenarios if s.kind == "trace"]
    assert len(traces) >= 40
    cells: dict[tuple[str, str], dict[str, set[tuple[int, int]]]] = {}
    for s in traces:
        assert s.trace is not None and s.rule is not None, s.name
        profile = load_profile(s.profile)
        assert s.rule in {r.id for r in profile.policy.rules}, s.name
        # the rule's own example: the name and protocol the trace sends
        assert any(
            e.rule == s.rule and e.target == s.target and e.protocol == s.trace.protocol for e in profile.examples
        ), s.name
        cells.setdefault((s.profile, s.trace.protocol), {}).setdefault(s.mode, set()).add(
            (s.trace.hops_client, s.trace.hops_server)
        )
    # every profile but kazakhstan-2019 (a TLS interception only; docs/validation.md) is traced, in both modes
    from chokepoint.policy import list_profiles

    assert {p for p, _ in cells} == set(list_profiles()) - {"kazakhstan-2019"}
    for (profile, _protocol), modes in cells.items():
        assert set(modes) == {"inline", "mirror"}, profile
    # each profile's traces put the censor at two or more positions in each mode
    for profile in {p for p, _ in cells}:
        for mode in ("inline", "mirror"):
            positions = set().union(*(m.get(mode, set()) for (p, _), m in cells.items() if p == profile))
            assert len(positions) >= 2, (profile, mode)
    quick = [s for s in select(scenarios, quick=True) if s.kind == "trace"]
    assert 1 <= len(quick) <= 3


def test_docs_describe_trace_scenarios_and_the_profile_left_out():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "validation.md").read_text()
    assert "kind: trace" in doc and "kazakhstan-2019" in doc
    assert "trace accuracy" in doc.lower()
