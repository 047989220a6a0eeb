"""The confusion matrix math and the report writers (terminal, JSON round trip, HTML heatmap)."""

from __future__ import annotations

import html
import io
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from chokepoint.validate.report import (
    ConfusionMatrix,
    build_report,
    load_report,
    render_html,
    render_terminal,
    write_html,
    write_json,
)
from chokepoint.validate.scenarios import TECHNIQUES, parse_catalogue
from chokepoint.validate.scoring import ScenarioResult, score

PAIRS = [
    ("tls-reset", "tls-reset"),
    ("tls-reset", "tls-reset"),
    ("tls-reset", "http-failure"),
    ("dns-forged", "dns-forged"),
    ("none", "none"),
    ("none", "http-blockpage"),
]


def test_matrix_counts_accuracy_precision_recall():
    m = ConfusionMatrix.from_pairs(PAIRS)
    assert m.labels == ("none", "dns-forged", "tls-reset", "http-failure", "http-blockpage")  # TECHNIQUES order
    assert (m.total, m.correct) == (6, 4) and m.accuracy == pytest.approx(4 / 6)
    assert m.count("tls-reset", "tls-reset") == 2 and m.count("tls-reset", "http-failure") == 1
    assert m.recall("tls-reset") == pytest.approx(2 / 3) and m.precision("tls-reset") == 1.0
    assert m.recall("none") == 0.5 and m.precision("http-blockpage") == 0.0
    assert m.recall("http-failure") is None  # never the truth
    assert m.max_cell == 2 and m.row_total("none") == 2 and m.column_total("none") == 1
    assert ConfusionMatrix.from_pairs([]).accuracy is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(TECHNIQUES[:8]), st.sampled_from(TECHNIQUES[:8])), max_size=40))
def test_matrix_invariants_and_json_round_trip(pairs):
    m = ConfusionMatrix.from_pairs(pairs)
    assert m.total == len(pairs) == sum(m.row_total(t) for t in m.labels) == sum(m.column_total(c) for c in m.labels)
    assert m.correct == sum(1 for t, c in pairs if t == c)
    again = ConfusionMatrix.from_json(json.loads(json.dumps(m.to_json())))
    assert again == m


def _results():
    """Scored results of two scenarios: one right, one with a technique and an OONI miss."""
    a, b = parse_catalogue(
        """
scenarios:
  - name: right
    profile: gfw
    target: https://www.google.com/
    expected: {technique: tls-reset, blocking: http-failure, accessible: false}
  - name: wrong
    profile: iran
    target: http://queerquotes.blogspot.com/
    expected: {technique: http-blockpage, blocking: http-diff, accessible: false}
""",
        "c.yaml",
    )
    from chokepoint.validate.truth import TruthAction

    right = ScenarioResult(
        a,
        truth=[TruthAction("tls-reset", "reset", "gfw-sni-reset", "tls", "TCP", "198.19.0.11:443", 6)],
        truth_class="tls-reset",
        classified_class="tls-reset",
        blocking="http-failure",
        accessible=False,
        techniques=[{"technique": "tls-reset", "target": "x", "evidence": "e"}],
    )
    wrong = ScenarioResult(
        b,
        truth=[TruthAction("http-blockpage", "blockpage", "iran-http-blockpage", "http", "TCP", "198.19.0.12:80", 2)],
        truth_class="http-blockpage",
        classified_class="none",
        blocking=False,
        accessible=True,
    )
    for r in (right, wrong):
        score(r)
    return right, wrong


def test_score_and_report_accuracies():
    right, wrong = _results()
    assert right.passed and right.checks == {"technique": True, "expectation": True, "ooni": True, "attribution": None}
    assert not wrong.passed and wrong.checks["technique"] is False and wrong.checks["ooni"] is False
    assert any(
        m.startswith("technique: classified none, ground truth http-blockpage") and "iran-http-blockpage" in m
        for m in wrong.misses
    )
    report = build_report([right, wrong], {"seed": 1})
    acc = report.accuracies()
    assert acc["technique"] == {"ok": 1, "total": 2, "accuracy": 0.5}
    assert acc["ooni"]["ok"] == 1 and acc["scenarios"]["ok"] == 1 and acc["attribution"]["total"] == 0
    assert [n for n, _ in report.misses] == ["wrong", "wrong"]


def test_an_errored_scenario_is_a_miss_in_the_matrix():
    right, wrong = _results()
    wrong.error = "ValidationError: the probe exited with 2"
    report = build_report([right, wrong])
    assert report.matrix.count("http-blockpage", "error") == 1 and report.accuracy == 0.5


def test_json_round_trips(tmp_path):
    report = build_report(list(_results()), {"seed": 1, "quick": True})
    path = write_json(report, tmp_path / "report.json")
    back = load_report(path)
    assert back.matrix == report.matrix and back.results == report.results and back.meta == report.meta
    assert back.to_json() == report.to_json()
    data = json.loads(path.read_text())
    assert data["confusion_matrix"]["rows"] == [
        [report.matrix.count(t, c) for c in report.matrix.labels] for t in report.matrix.labels
    ]
    (tmp_path / "other.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(ValueError, match="not a validation report"):
        load_report(tmp_path / "other.json")


def _matrix_from_html(text: str) -> tuple[list[str], list[list[int]]]:
    """Read the heatmap table back with plain regular expressions (what a reader of the HTML sees)."""
    table = re.search(r'<table class="matrix" id="confusion-matrix">(.*?)</table>', text, re.S).group(1)
    columns = [html.unescape(c) for c in re.findall(r'<th class="col">([^<]*)</th>', table)][:-2]
    rows = []
    for row in re.findall(r'<tr><th class="row">([^<]*)</th>(.*?)</tr>', table, re.S):
        if row[0] == "precision":
            continue
        cells = [int(x) for x in re.findall(r"<td[^>]*title=[^>]*>(\d+)</td>", row[1])]
        rows.append((html.unescape(row[0]), cells))
    assert [r[0] for r in rows] == columns
    return columns, [r[1] for r in rows]


def test_html_contains_the_matrix_and_every_miss(tmp_path):
    report = build_report(list(_results()))
    path = write_html(report, tmp_path / "report.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text.lower()
    labels, rows = _matrix_from_html(text)
    assert labels == list(report.matrix.labels)
    assert rows == [[report.matrix.count(t, c) for c in labels] for t in labels]
    assert 'class="diag"' in text and "rgba(200,30,30" in text  # the heatmap colours a miss red
    for _, cause in report.misses:
        assert html.escape(cause, quote=True) in text
    assert "50.0%" in text


def test_html_escapes_what_it_shows():
    right, wrong = _results()
    wrong.misses.append("cause with <b>markup</b> & more")
    text = render_html(build_report([right, wrong], {"note": "<i>x</i>"}))
    assert "<b>markup</b>" not in text and "&lt;b&gt;markup&lt;/b&gt;" in text and "<i>x</i>" not in text


def test_terminal_table():
    buffer = io.StringIO()
    render_terminal(build_report(list(_results())), Console(file=buffer, width=250, color_system=None))
    out = buffer.getvalue()
    assert "confusion matrix" in out and "http-blockpage" in out and "misses (2)" in out
    assert "[censor: blockpage by rule iran-http-blockpage" in out  # causes are not taken for markup
    assert "technique accuracy 50.0% over 2 scenario(s)" in out and "not met" in out
