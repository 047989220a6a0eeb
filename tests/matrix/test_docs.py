"""docs/matrix.md's generated section."""

from __future__ import annotations

import json

import pytest

from chokepoint.matrix.docs import BEGIN, END, main, replace_section
from tests.matrix._doc import document


def test_the_section_between_the_markers_is_replaced_and_nothing_else(tmp_path):
    doc = document() | {"config": document()["config"] | {"attempts": 4, "size": 1024, "seed": 1, "repeat": 1}}
    (tmp_path / "matrix.json").write_text(json.dumps(doc))
    target = tmp_path / "matrix.md"
    target.write_text(f"# Title\n\nintro\n\n{BEGIN}\nold\n{END}\n\ntail\n")
    assert main([str(tmp_path / "matrix.json"), str(target)]) == 0
    text = target.read_text()
    assert text.startswith("# Title\n\nintro\n\n") and text.endswith(f"{END}\n\ntail\n")
    assert "old" not in text and "| trojan | works | works ≠ |" in text and "shadowsocks-aead 3.3.5" in text


def test_a_document_without_markers_is_refused():
    with pytest.raises(ValueError, match="section"):
        replace_section("# no markers\n", "x")


def test_a_matrix_at_several_days_replaces_the_timeline_section_and_copies_the_charts(tmp_path):
    from chokepoint.matrix.docs import TL_BEGIN, TL_END
    from chokepoint.matrix.report import render
    from tests.matrix._timeline_doc import document as dated_document

    doc = dated_document()
    doc["config"] |= {"attempts": 3, "size": 1024, "seed": 1, "repeat": 1}
    run = tmp_path / "run"
    render(doc, run)
    (run / "matrix.json").write_text(json.dumps(doc))
    target = tmp_path / "docs" / "matrix.md"
    target.parent.mkdir()
    target.write_text(f"# T\n\n{BEGIN}\nkept\n{END}\n\n{TL_BEGIN}\nold\n{TL_END}\n")
    assert main([str(run / "matrix.json"), str(target)]) == 0
    text = target.read_text()
    assert "kept" in text and "old" not in text
    assert "### gfw through time\n\n![gfw: transports over time](matrix-timeline-gfw.png)" in text
    assert "3 of them not run" in text and "gfw: 2021-06-01, 2021-09-01" in text
    assert "- trojan stopped working (works → blocked) between 2022-06-01 and 2022-11-01" in text
    assert (tmp_path / "docs" / "matrix-timeline-gfw.png").read_bytes()[:4] == b"\x89PNG"
