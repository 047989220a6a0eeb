"""Blocking fingerprints: the real ooni/blocking-fingerprints CSVs, each match type, false positives first."""

from __future__ import annotations

import csv

import pytest

from chokepoint.probe.fingerprints import FingerprintDB, MalformedFingerprint
from tests.probe._shared import FINGERPRINTS_DIR, fingerprint_db, require

pytestmark = pytest.mark.shared_data


def _row(name: str):
    return next(fp for fp in (*fingerprint_db().dns, *fingerprint_db().http) if fp.name == name)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_loads_every_row():
    require(FINGERPRINTS_DIR)
    db = fingerprint_db()
    assert len(db.dns) == len(_rows(FINGERPRINTS_DIR / "fingerprints_dns.csv"))
    assert len(db.http) == len(_rows(FINGERPRINTS_DIR / "fingerprints_http.csv"))
    assert {fp.pattern_type for fp in db.http} == {"full", "prefix", "contains", "regexp"}
    assert sum(fp.is_false_positive for fp in db.http) > 400


def test_full_match_on_dns_answers():
    db = fingerprint_db()
    match = db.match_dns("8.7.198.45")
    assert (match.name, match.scope, match.countries) == ("ooni.cn_0", "nat", ("CN",))
    assert db.match_dns("8.7.198.46") is None
    for fp in db.dns:  # every published answer is recognised, by a row with that very answer
        assert db.match_dns(fp.pattern).fingerprint.pattern == fp.pattern


def test_full_match_on_a_header():
    db = fingerprint_db()
    fp = _row("ooni.br_1")
    assert (fp.location, fp.pattern_type) == ("header.server", "full")
    assert db.match_http(b"", {"Server": fp.pattern}).name == "ooni.br_1"
    assert db.match_http(b"", {"server": fp.pattern + " 2"}) is None


def test_prefix_match_on_a_location_header_case_insensitively():
    db = fingerprint_db()
    fp = _row("ooni.ae_1")
    assert (fp.location, fp.pattern_type) == ("header.location", "prefix")
    match = db.match_http(None, [("LOCATION", fp.pattern + "?url=blocked.example")])
    assert (match.name, match.location, match.countries) == ("ooni.ae_1", "header.location", ("AE",))
    assert db.match_http(None, [("Location", "http://x/?next=" + fp.pattern)]) is None
    assert db.match_http(fp.pattern.encode(), {}) is None  # a header pattern never matches the body


def test_contains_match_on_the_body():
    db = fingerprint_db()
    fp = _row("cl.prod_netsweeper_blockpage")
    assert (fp.location, fp.pattern_type, fp.scope) == ("body", "contains", "prod")
    match = db.match_http(b"<html><a href='http://" + fp.pattern.encode() + b"/'>x</a></html>")
    assert (match.name, match.scope) == ("cl.prod_netsweeper_blockpage", "prod")


def test_regexp_match_spans_lines():
    db = fingerprint_db()
    fp = _row("cp.f_gen_blocked_23")
    assert fp.pattern_type == "regexp"
    assert db.match_http(b"<p>Sorry, but the URL you\n are requesting is prohibited!</p>").name == fp.name
    assert db.match_http(b"<p>Sorry, but the URL is prohibited!</p>") is None


def test_every_literal_http_signature_recognises_its_own_pattern():
    db = fingerprint_db()
    for fp in db.http:
        if fp.pattern_type == "regexp":
            continue
        if fp.location == "body":
            match = db.match_http(fp.pattern.encode())
        else:
            match = db.match_http(None, {fp.location[len("header.") :]: fp.pattern})
        assert match is not None, fp.name
        assert match.is_false_positive or not any(
            other.is_false_positive and other.location == fp.location and other.pattern in fp.pattern
            for other in db.http
            if other.pattern_type == "contains"
        ), fp.name


@pytest.mark.parametrize("blockpage_first", [True, False])
def test_false_positive_signatures_win(blockpage_first):
    db = fingerprint_db()
    block, benign = _row("cl.prod_netsweeper_blockpage"), _row("cp.fp_x_fpru_nginx")
    assert benign.is_false_positive and not block.is_false_positive
    parts = [block.pattern.encode(), benign.pattern.encode()]
    body = b"\n".join(parts if blockpage_first else parts[::-1])
    match = db.match_http(body)
    assert match.name == "cp.fp_x_fpru_nginx" and match.is_false_positive
    # also across locations: a blockpage Location header does not beat a benign body
    match = db.match_http(benign.pattern.encode(), {"Location": _row("ooni.ae_1").pattern})
    assert match.is_false_positive


def test_fingerprints_are_checked_in_file_order_within_a_group(tmp_path):
    header = "name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries\n"
    (tmp_path / "fingerprints_dns.csv").write_text(header)
    (tmp_path / "fingerprints_http.csv").write_text(
        header + 'first,isp,,body,contains,Blocked,5,"IT, IR"\nsecond,nat,,body,contains,Blocked,5,IR\n'
        "benign,fp,,body,full,Blocked by nothing,5,\n"
    )
    db = FingerprintDB.load(tmp_path)
    assert db.match_http(b"Blocked by nothing").name == "benign"
    match = db.match_http(b"Site Blocked")
    assert (match.name, match.countries) == ("first", ("IT", "IR"))


@pytest.mark.parametrize(
    "row, message",
    [
        ("x,isp,,body,wildcard,a,5,", "unknown pattern_type"),
        ("x,isp,,cookie,contains,a,5,", "unknown location_found"),
        ("x,isp,,body,regexp,(unclosed,5,", "invalid regexp"),
        ("x,isp,,body,contains,a,high,", "not an integer"),
        (",isp,,body,contains,a,5,", "empty name"),
    ],
)
def test_malformed_rows_are_rejected_with_their_line(tmp_path, row, message):
    header = "name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries\n"
    (tmp_path / "fingerprints_dns.csv").write_text(header)
    (tmp_path / "fingerprints_http.csv").write_text(header + row + "\n")
    with pytest.raises(MalformedFingerprint, match=message) as info:
        FingerprintDB.load(tmp_path)
    assert "fingerprints_http.csv:2" in str(info.value) or "http row 0" in str(info.value)


def test_missing_columns_are_rejected(tmp_path):
    (tmp_path / "fingerprints_dns.csv").write_text("name,scope\nx,isp\n")
    (tmp_path / "fingerprints_http.csv").write_text("name,scope\n")
    with pytest.raises(MalformedFingerprint, match="missing columns"):
        FingerprintDB.load(tmp_path)
