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
