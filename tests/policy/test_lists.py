"""List entries: canonical forms, file syntax (comments), and errors at the entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from chokepoint.policy import values
from chokepoint.policy.errors import PolicyError
from chokepoint.policy.lists import domain_entry, keyword_entry
from tests.policy.factories import rules


@pytest.mark.parametrize(
    "raw,canonical",
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("=WWW.Example.com", "=www.example.com"),
        ("*.Sub.net", "*.sub.net"),
        ("*T.CO*", "*t.co*"),
        ("~^ad[0-9]+", "~^ad[0-9]+"),
        ("_dmarc.x.org", "_dmarc.x.org"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
    ],
)
def test_domain_entries(raw: str, canonical: str) -> None:
    assert domain_entry(raw) == canonical


@pytest.mark.parametrize(
    "raw,fragment",
    [
        ("bad name.com", "bad domain name"),
        ("a..b", "bad domain name"),
        ("münchen.de", "punycode"),
        ("a*b.com", "'*' only"),
        ("*a*b*", "'*' only"),
        ("~(", "bad regex"),
        ("a" * 64 + ".com", "63"),
        ("=", "bad domain name"),
        ("*.", "bad domain name"),
    ],
)
def test_bad_domain_entries(raw: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        domain_entry(raw)


def test_keyword_entries_and_values() -> None:
    assert keyword_entry("Falun Gong") == "Falun Gong" and keyword_entry("~a.b") == "~a.b"
    assert values.cidr("10.0.0.1") == "10.0.0.1/32" and values.cidr(" 2001:DB8::/32 ") == "2001:db8::/32"
    assert values.port_range("10-20") == (10, 20) and values.port_range(7) == (7, 7)
    assert values.hex_bytes("16 03 0A") == "16030a"
    assert values.escape_literal(b"a.b*") == b"a\\x2eb\\x2a"
    for bad, call in [("1.2.3.4/8", values.cidr), ("20-10", values.port_range), ("abc", values.hex_bytes)]:
        with pytest.raises(ValueError):
            call(bad)


def test_list_file_comments_blank_lines_and_positions(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text(
        "# header\n\nexample.com   # trailing comment\n  =exact.org\t# tab\n", encoding="utf-8"
    )
    profile = rules("lists:\n  d: {kind: domain, file: d.txt}\nrules: []\n", base_dir=tmp_path)
    listdef = profile.policy.lists["d"]
    assert listdef.entries == ("example.com", "=exact.org")
    assert listdef.file == str(tmp_path / "d.txt")


def test_hash_inside_an_entry_is_not_a_comment(tmp_path: Path) -> None:
    (tmp_path / "k.txt").write_text("c#\nsharp #comment\n", encoding="utf-8")
    profile = rules("lists:\n  k: {kind: keyword, file: k.txt, cite: x}\nrules: []\n", base_dir=tmp_path)
    assert profile.policy.lists["k"].entries == ("c#", "sharp")
    assert profile.policy.lists["k"].cite == "x"


def test_bad_entry_in_a_file_is_reported_at_its_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "n.txt").write_text("10.0.0.0/8\n\n   not-a-network\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        rules("lists:\n  n: {kind: cidr, file: n.txt}\nrules: []\n", base_dir=tmp_path)
    assert (info.value.file, info.value.line, info.value.column) == (str(tmp_path / "n.txt"), 3, 4)
