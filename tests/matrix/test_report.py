"""The matrix as a person sees it: the HTML in real headless Chromium, the PNG, the Markdown table."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from chokepoint.matrix import report
from tests.matrix._doc import document

CHROMIUM = shutil.which("chromium")


def test_markdown_marks_the_disagreement_and_lists_it():
    text = report.markdown(document())
    assert "| shadowsocks-aead | works | blocked |" in text
    assert "| trojan | works | works ≠ |" in text
    assert "trojan under gfw (inline): observed works" in text and "net4people/bbs#129" in text


def test_png_is_drawn(tmp_path):
    path = report.png(document(), tmp_path / "m.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_html_in_headless_chromium_shows_the_grid_and_a_cells_evidence(tmp_path):
    paths = report.render(document(), tmp_path)
    url = paths["html"].as_uri()
    dom = _chromium("--virtual-time-budget=3000", "--dump-dom", url).stdout
    assert dom.count('class="c') == 4 and "blocked" in dom and "works ≠" in dom
    assert "1 disagree with the literature" in dom
    # a cell opens its evidence (the address names the cell, as a click does)
    dom = _chromium("--virtual-time-budget=3000", "--dump-dom", url + "#cell=shadowsocks-aead%7Cgfw%7Cinline").stdout
    assert "<dialog" in dom and " open" in dom.split("<dialog", 1)[1].split(">", 1)[0]
    assert "Wu et al., USENIX Security 2023" in dom and "gfw-fet-drop" in dom and "Time to first failure" in dom
    shot = tmp_path / "shot.png"
    _chromium("--window-size=1000,600", "--virtual-time-budget=3000", f"--screenshot={shot}", url)
    assert shot.stat().st_size > 5000
