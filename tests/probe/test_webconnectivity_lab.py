"""Classifier rules the lab validation (chokepoint validate) needed: bogon answers in a private deployment,
and a specific blockpage signature over a generic false-positive one. Real inputs: OONI's QA measurements
edited into new scenarios (as tests/probe/test_webconnectivity.py does), the real ooni/blocking-fingerprints,
the bundled profiles' own blockpage bodies and the lab services' CAPTCHA page."""

from __future__ import annotations

import pytest

from chokepoint.lab.services.app import Request, _captcha, respond
from chokepoint.policy import load_profile
from chokepoint.probe.webconnectivity import TechniqueKind
from chokepoint.probe.webconnectivity.addresses import _telling_bogon
from chokepoint.probe.webconnectivity.techniques import _more_specific_blockpage
from tests.probe._shared import fingerprint_db
from tests.probe.test_webconnectivity import _baseline, _replace_body, _run

LAB_CONTROL = frozenset({"198.19.0.12"})
PUBLIC_CONTROL = frozenset({"93.184.216.34"})


@pytest.mark.parametrize(
    "answer, control, telling",
    [
        ("198.19.0.10", LAB_CONTROL, False),  # the lab's own range (RFC 2544): how the lab resolves
        ("2001:db8:0:2::10", LAB_CONTROL, False),  # no IPv6 address in the control to compare with
        ("198.19.0.12", LAB_CONTROL, False),  # the control's own answer
        ("127.0.0.1", LAB_CONTROL, True),  # loopback always tells (Turkmenistan's forged answer)
        ("0.0.0.0", LAB_CONTROL, True),
        ("10.10.34.34", LAB_CONTROL, True),  # another private range (Iran's forged answer)
        ("192.0.2.1", LAB_CONTROL, True),  # documentation range (the demo/TSG forged answer)
        ("198.19.0.10", PUBLIC_CONTROL, True),  # on the Internet any bogon answer tells
        ("2001:db8::1", PUBLIC_CONTROL, True),
        ("8.7.198.45", LAB_CONTROL, False),  # not a bogon at all (dns-forged decides)
        ("198.19.0.10", frozenset(), True),  # no control answers: a bogon is suspicious
    ],
)
def test_telling_bogon(answer, control, telling):
    assert _telling_bogon(answer, control) is telling


def _profile_blockpage(profile: str, rule: str) -> bytes:
    (params,) = [dict(r.params) for r in load_profile(profile).policy.rules if r.id == rule]
    return params["body"].encode()


@pytest.mark.shared_data
def test_a_specific_blockpage_signature_beats_a_bare_word_false_positive():
    db = fingerprint_db()
    body = _profile_blockpage("pakistan", "pk-http-blockpage")
    first = db.match_http(body, ())
    assert first.is_false_positive and len(first.fingerprint.pattern) < 12  # e.g. "redirect"
    specific = _more_specific_blockpage(db, body, (), first)
    assert specific is not None and specific.name == "ooni.pk_1" and not specific.is_false_positive


@pytest.mark.shared_data
def test_the_captcha_page_stays_benign():
    db = fingerprint_db()
    page = _captcha()
    first = db.match_http(page.body, page.headers)
    assert first is not None and first.is_false_positive
    assert _more_specific_blockpage(db, page.body, page.headers, first) is None


@pytest.mark.shared_data
def test_classify_reports_the_blockpage_a_generic_fp_would_hide():
    doc = _baseline("http")
    _replace_body(doc, _profile_blockpage("pakistan", "pk-http-blockpage").decode())
    result = _run(doc)
    (technique,) = [t for t in result.techniques if t.kind == TechniqueKind.HTTP_BLOCKPAGE]
    assert technique.fingerprint.name == "ooni.pk_1"
    names = {m.name for m in result.fingerprint_matches}
    assert "ooni.pk_1" in names and any(m.is_false_positive for m in result.fingerprint_matches)


@pytest.mark.shared_data
def test_classify_keeps_the_captcha_benign():
    import asyncio

    doc = _baseline("http")
    page = asyncio.run(respond(Request("GET", "/", "www.captcha.test", "HTTP/1.1")))
    assert page.status == 503 and b"Checking your browser" in page.body
    for host in ("captcha.test:80", "notcaptcha.test", "www.example.org"):  # the zone only, port ignored
        other = asyncio.run(respond(Request("GET", "/", host, "HTTP/1.1")))
        assert other.status == (503 if host.startswith("captcha.test") else 200), host
    _replace_body(doc, page.body.decode())
    result = _run(doc)
    assert result.techniques == () and result.false_positives
