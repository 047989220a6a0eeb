"""The matrix through time without a lab: the days asked for (``--as-of D1,D2`` / ``--timeline``), the run at
several days with a stand-in session (reuse of a day with the same loaded profile), and the chart, HTML and
Markdown drawn from a fixture matrix.json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chokepoint.cli.matrix import _days
from chokepoint.matrix import report, timeline
from chokepoint.matrix.model import MatrixConfig
from chokepoint.matrix.run import Matrix, loaded_signature
from chokepoint.policy import PolicyError, load_profile
from tests.matrix._png import square_rows
from tests.matrix._timeline_doc import DAYS, OUTCOMES, document
from tests.matrix.test_run import FakeSession

CLI = [sys.executable, "-m", "chokepoint.cli", "matrix"]


# -- the days asked for ---------------------------------------------------------------------------------------
def test_one_day_or_none_keeps_the_single_day_matrix() -> None:
    assert _days(["gfw"], None, None, None) == {}
    assert _days(["gfw"], "2022-06-01", None, None) == {}


def test_several_days_sorted_without_repeats_and_the_coverage_edges_inclusive() -> None:
    # gfw covers 2020-08-01..2025-08-31, iran 2020-02-01..2023-09-30
    days = _days(["gfw", "iran"], "2023-09-30, 2020-08-01,2022-06-01,2022-06-01", None, None)
    assert days == {
        "gfw": ("2020-08-01", "2022-06-01", "2023-09-30"),
        "iran": ("2020-08-01", "2022-06-01", "2023-09-30"),
    }
    assert _days(["gfw"], "2025-08-31,2025-08-30", None, None)["gfw"] == ("2025-08-30", "2025-08-31")


def test_timeline_steps_include_both_ends_and_clamp_month_ends() -> None:
    assert _days(["gfw"], None, "2021-01-31..2021-04-30", "1m")["gfw"] == (
        "2021-01-31",
        "2021-02-28",
        "2021-03-31",
        "2021-04-30",
    )
    assert _days(["gfw"], None, "2021-01-01..2021-01-15", "2w")["gfw"] == ("2021-01-01", "2021-01-15")
    assert _days(["gfw"], None, "2021-01-01..2023-01-01", "1y")["gfw"] == ("2021-01-01", "2022-01-01", "2023-01-01")
    assert _days(["gfw"], None, "2021-06-01..2021-08-01", None)["gfw"] == ("2021-06-01", "2021-07-01", "2021-08-01")
    assert _days(["gfw"], "eras", None, None)["gfw"][:2] == ("2020-08-01", "2021-11-01")


@pytest.mark.parametrize(
    ("as_of", "span", "step", "message"),
    [
        ("2020-07-31,2021-01-01", None, None, "gfw: 2020-07-31 is outside its coverage 2020-08-01..2025-08-31"),
        ("2021-01-01,2025-09-01", None, None, "2025-09-01 is outside its coverage"),
        ("2021-13-01,2022-01-01", None, None, "not a date: '2021-13-01'"),
        ("2021-02-30,2022-01-01", None, None, "no such day: '2021-02-30'"),
        ("2021-01,2022-01-01", None, None, "expected YYYY-MM-DD"),
        (None, "2021-01-01", None, "expected FROM..TO"),
        (None, "2022-01-01..2021-01-01", None, "ends (2021-01-01) before it starts"),
        (None, "2021-01-01..2022-01-01", "3q", "bad step '3q'"),
        (None, "2021-01-01..2022-01-01", "0m", "bad step '0m'"),
        ("2021-01-01,2022-01-01", "2021-01-01..2022-01-01", None, "either --as-of or --timeline"),
        ("2021-01-01,2022-01-01", None, "1m", "--step needs --timeline"),
        (None, "2019-01-01..2019-12-31", None, "no day asked for is within gfw's coverage"),
    ],
)
def test_bad_days_are_one_error_before_anything_runs(as_of, span, step, message) -> None:
    with pytest.raises(PolicyError) as caught:
        _days(["gfw"], as_of, span, step)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_bad_days_through_the_cli_are_a_one_line_usage_error(tmp_path) -> None:
    for args in (
        ["--as-of", "2021-06-01,2026-01-01"],
        ["--timeline", "2021-06-01..2021-02-01"],
        ["--timeline", "2021-01-01..2021-06-01", "--step", "fortnight"],
    ):
        bad = subprocess.run(
            [*CLI, "-p", "gfw", "-t", "http-connect", *args, "-o", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), bad.stderr
    assert not (tmp_path / "matrix.json").exists()


# -- the run at several days ----------------------------------------------------------------------------------
def test_loaded_signature_changes_only_where_a_dated_element_does() -> None:
    def sig(day: str) -> frozenset:
        return loaded_signature(load_profile("gfw", as_of=day))

    assert sig("2021-06-01") == sig("2021-10-31") != sig("2021-11-01") == sig("2022-05-27")
    assert sig("2023-03-07") != sig("2023-03-08")  # gfw-fet-drop until 2023-03-07, inclusive


def test_several_days_run_each_day_once_and_reuse_says_so(tmp_path) -> None:
    days = ("2021-06-01", "2021-09-01", "2022-06-01")  # the first two: the same loaded profile
    config = MatrixConfig(profiles=("gfw",), transports=("snowflake",), days={"gfw": days}, out_dir=tmp_path)
    session = FakeSession()
    matrix = Matrix(config, session)
    assert matrix.total == 4
    cells = matrix.run()
    assert [(c.profile, c.as_of, c.reused_from) for c in cells] == [
        ("baseline", None, None),
        ("gfw", "2021-06-01", None),
        ("gfw", "2021-09-01", "2021-06-01"),
        ("gfw", "2022-06-01", None),
    ]
    assert session.censors == [(None, "inline"), ("gfw", "inline"), ("gfw", "inline")]  # 2021-09-01 not run
    assert cells[2].runs == [] and cells[2].outcome == cells[1].outcome
    doc = json.loads((tmp_path / "matrix.json").read_text())
    assert doc["version"] == 2 and doc["config"]["days"] == {"gfw": list(days)}
    assert doc["cells"][2]["reused_from"] == "2021-06-01" and doc["cells"][1]["as_of"] == "2021-06-01"

    every = MatrixConfig(
        profiles=("gfw",), transports=("snowflake",), days={"gfw": days}, reuse=False, out_dir=tmp_path
    )
    session = FakeSession()
    cells = Matrix(every, session).run()
    assert not any(c.reused_from for c in cells) and len(session.censors) == 4


def test_a_single_day_matrix_json_keeps_version_1(tmp_path) -> None:
    config = MatrixConfig(profiles=("gfw",), transports=("snowflake",), as_of="2022-06-01", out_dir=tmp_path)
    Matrix(config, FakeSession()).run()
    doc = json.loads((tmp_path / "matrix.json").read_text())
    assert doc["version"] == 1 and "days" not in doc["config"] and doc["config"]["as_of"] == "2022-06-01"
    assert not any("as_of" in c or "reused_from" in c for c in doc["cells"])
    assert report.columns(doc) == [("baseline", "inline"), ("gfw", "inline")]


# -- chart, HTML and Markdown from a fixture ------------------------------------------------------------------
def test_change_points_name_the_days_and_the_events_between() -> None:
    points = {(p.transport, p.day): p for p in timeline.change_points(document())}
    assert set(points) == {
        ("shadowsocks-stream", "2022-06-01"),
        ("shadowsocks-stream", "2023-06-01"),
        ("trojan", "2022-11-01"),
    }
    fet_on = points[("shadowsocks-stream", "2022-06-01")]
    assert fet_on.verb == "stopped working" and fet_on.last_day == "2021-09-01"
    assert "2021-11-01 rule gfw-fet-drop starts" in fet_on.events
    assert points[("shadowsocks-stream", "2023-06-01")].verb == "started working"
    assert "2023-03-08 rule gfw-fet-drop ends" in points[("shadowsocks-stream", "2023-06-01")].events
    assert "2022-10-03 rule gfw-tls-proxy-port-block starts" in points[("trojan", "2022-11-01")].events


def test_render_writes_the_chart_with_one_row_per_transport_and_the_sections(tmp_path) -> None:
    paths = report.render(document(), tmp_path)
    chart = tmp_path / "matrix-timeline-gfw.png"
    assert paths["timelines"] == [chart]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 20000
    assert square_rows(chart) == len(OUTCOMES)
    assert square_rows(paths["png"]) == len(OUTCOMES)

    md = paths["md"].read_text()
    assert "| transport | baseline | gfw 2021-06-01 | gfw 2021-09-01 |" in md
    assert "## gfw through time" in md and "| transport | 2021-06-01 | 2021-09-01 ↺ | 2022-06-01 |" in md
    assert "2021-09-01 copies 2021-06-01 (the same loaded profile)" in md
    assert (
        "- shadowsocks-stream stopped working (works → blocked) between 2021-09-01 and 2022-06-01; "
        "events in between: 2021-11-01 rule gfw-fet-drop starts" in md
    )
    assert "- trojan stopped working (works → blocked) between 2022-06-01 and 2022-11-01" in md
    assert "2021-11-01: in force: rule gfw-fet-drop — Wu et al. 2023" in md
    assert "http-connect" not in md.split("Change points:")[1].split("The profile's")[0]  # it never changed

    page = paths["html"].read_text()
    assert "<h2>gfw through time</h2>" in page and "data:image/png;base64," in page
    for day in DAYS:
        assert f'data-key="trojan|gfw {day}|inline"' in page
    assert "not run: the cell of 2021-06-01" in page and "Change points" in page


def test_profiles_chart_reads_a_matrix_at_several_days(tmp_path) -> None:
    from chokepoint.output import timechart

    chart = timechart.build(load_profile("gfw"), [document()])
    assert [d.isoformat() for d in chart.days] == list(DAYS)
    assert chart.transports == list(OUTCOMES)


def test_a_change_no_dated_rule_explains_is_said_so() -> None:
    doc = document()
    for c in doc["cells"]:
        if c["transport"] == "trojan" and c.get("as_of") == "2022-11-01":
            c["evidence"]["rules"] = ["gfw-ap-block-shadowsocks"]  # in force on every day: not a dated change
    points = {(p.transport, p.day): p for p in timeline.change_points(doc)}
    assert points[("shadowsocks-stream", "2022-06-01")].explained is True
    unexplained = points[("trojan", "2022-11-01")]
    assert unexplained.explained is False and "the profile's dates do not explain this change" in unexplained.text()
    assert points[("shadowsocks-stream", "2023-06-01")].rules == ("gfw-fet-drop",)  # the blocked side's rules
