"""The transport x time chart as a person sees it: the HTML in real headless Chromium, the PNG, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chokepoint.output import timechart
from chokepoint.policy import load_profile
from tests.output._matrix_docs import doc, gfw_series

CHROMIUM = shutil.which("chromium")
CLI = Path(sys.executable).with_name("chokepoint")


def test_build_places_each_cell_at_its_day_and_keeps_the_rules_doubts() -> None:
    chart = timechart.build(load_profile("gfw"), gfw_series())
    assert chart.transports == ["shadowsocks-aead", "trojan"]
    assert chart.days == [dt.date(2021, 6, 1), dt.date(2022, 6, 1), dt.date(2023, 6, 1)]
    assert chart.cells[("shadowsocks-aead", dt.date(2022, 6, 1))]["outcome"] == "blocked"
    assert all(c["profile"] == "gfw" for c in chart.cells.values())  # not the baseline column
    # the rule that acted in 2022 carries its uncertain notes as loaded that day
    assert "residual" in chart.rule_notes[(dt.date(2022, 6, 1), "gfw-fet-drop")]
    assert chart.span == (dt.date(2020, 8, 1), dt.date(2025, 8, 31))
    numbered = chart.event_days()
    assert numbered[0][0] == 1 and numbered[0][1] == dt.date(2021, 11, 1)
    assert 0 < chart.frac(dt.date(2022, 6, 1)) < 1


def test_a_matrix_without_a_day_is_refused() -> None:
    undated = doc("2022-06-01", [])
    del undated["config"]["as_of"]
    with pytest.raises(ValueError, match="without config.as_of"):
        timechart.build(load_profile("gfw"), [undated])


def test_png_is_drawn_with_and_without_measurements(tmp_path) -> None:
    for docs, name in ((gfw_series(), "m.png"), ((), "t.png")):
        path = timechart.png(timechart.build(load_profile("gfw"), docs), tmp_path / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20000


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_html_in_headless_chromium_shows_cells_events_and_sources(tmp_path) -> None:
    paths = timechart.render(load_profile("gfw"), gfw_series(), tmp_path)
    assert paths["html"].name == "timeline-gfw.html" and paths["png"].is_file()
    url = paths["html"].as_uri()
    dom = _chromium("--virtual-time-budget=3000", "--dump-dom", url).stdout
    assert dom.count('class="pt') == 6 and dom.count('class="pt x"') == 1  # trojan 2023 disagrees
    assert "net4people/bbs#129" in dom and "disagrees" in dom
    assert 'id="cell-shadowsocks-aead-2022-06-01"' in dom and "gfw-fet-drop" in dom
    assert "no longer in force" in dom and "uncertain: the onset day within early November 2021" in dom
    assert 'class="bar u"' in dom  # uncertain dates are striped
    shot = tmp_path / "shot.png"
    _chromium("--window-size=1200,900", "--virtual-time-budget=3000", f"--screenshot={shot}", url)
    assert shot.stat().st_size > 20000


def test_cli_draws_a_chart_from_matrix_directories(tmp_path) -> None:
    for d in gfw_series():
        day = tmp_path / "m" / d["config"]["as_of"]
        day.mkdir(parents=True)
        (day / "matrix.json").write_text(json.dumps(d))
    out = tmp_path / "out"
    done = subprocess.run(
        [str(CLI), "profiles", "chart", "gfw", str(tmp_path / "m"), "-o", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (out / "timeline-gfw.html").is_file() and (out / "timeline-gfw.png").is_file()
    assert "shadowsocks-aead" in (out / "timeline-gfw.html").read_text()
    bad = subprocess.run(
        [str(CLI), "profiles", "chart", "gfw", str(tmp_path / "nothing"), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "nothing" in bad.stderr
