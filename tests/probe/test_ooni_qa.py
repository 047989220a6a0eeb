"""The CHECK: OONI's own 50 Web Connectivity QA measurements, classified from their raw observations.

Each `../shared/data/ooni-webconnectivity-qa/<case>/measurement.json` was produced by ooni/probe-cli
(Web Connectivity 0.5.28, its netem censorship scenarios) and carries OONI's verdict. We delete every
classification key (`CLASSIFICATION_KEYS`: blocking, accessible, dns_consistency, the *_match keys,
body_proportion, dns/http_experiment_failure, the x_*_flags) before parsing, so the classifier sees only
`queries`, `tcp_connect`, `tls_handshakes`, `requests`, `control`, `x_control_request`, ... and must
reproduce OONI's `blocking` and `accessible` on at least 48 of 50.

Misses: none. All 50 agree on `blocking` and `accessible`, and on the 11 other classification keys as
well. Where OONI's snapshot of the code and its output disagreed, the output won (documented in
`chokepoint.probe.webconnectivity`): a redirect's failed DNS lookup is judged against the control's
successful fetch (else "redirect then NXDOMAIN" reads as accessible), DNS successes carry an empty
failure (else the loopback rules never fire and "localhost" reads as null), and a bogon alone sets
`x_dns_flags` but not the DNS bit of `x_blocking_flags`.
Nothing here is keyed on case names: the names are only test ids.
"""

from __future__ import annotations

import math

import pytest

from chokepoint.probe.measurement import CLASSIFICATION_KEYS, parse_measurement
from chokepoint.probe.webconnectivity import TechniqueKind, annotate, classify
from tests.probe._shared import QA_DIR, fingerprint_db, qa_cases, qa_json, require

pytestmark = pytest.mark.shared_data

REQUIRED_AGREEMENT = 48
OTHER_KEYS = (
    "dns_consistency",
    "dns_experiment_failure",
    "http_experiment_failure",
    "body_proportion",
    "body_length_match",
    "headers_match",
    "status_code_match",
    "title_match",
    "x_blocking_flags",
    "x_dns_flags",
    "x_null_null_flags",
)
CASES = qa_cases()


def _observations_only(case: str):
    raw = qa_json(case)
    expected = {k: raw["test_keys"][k] for k in CLASSIFICATION_KEYS}
    raw["test_keys"] = {k: v for k, v in raw["test_keys"].items() if k not in CLASSIFICATION_KEYS}
    return parse_measurement(raw), expected


def _same(got, want) -> bool:
    """JSON equality that keeps false apart from 0 / null and compares floats numerically."""
    if isinstance(want, bool) or want is None or isinstance(got, bool) or got is None:
        return got is want or (type(got) is type(want) and got == want)
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(got, want, rel_tol=0, abs_tol=1e-12)
    return got == want


def test_there_are_fifty_measurements():
    require(QA_DIR)
    assert len(CASES) == 50, CASES


def test_reproduces_ooni_blocking_and_accessible(capsys):
    """>= 48 of 50 agree on (blocking, accessible); prints the comparison table."""
    require(QA_DIR)
    db = fingerprint_db()
    rows, agree = [], 0
    for case in CASES:
        measurement, want = _observations_only(case)
        got = classify(measurement.web_connectivity, fingerprints=db)
        ok = _same(got.blocking, want["blocking"]) and _same(got.accessible, want["accessible"])
        agree += ok
        rows.append(
            f"{'ok ' if ok else 'MISS'} {case:<58} ooni=({want['blocking']!s:<12} {want['accessible']!s:<5}) "
            f"ours=({got.blocking!s:<12} {got.accessible!s:<5}) "
            f"{','.join(t.kind.value for t in got.techniques) or '-'}"
        )
    with capsys.disabled():
        print("\n" + "\n".join(rows) + f"\nagreement on blocking+accessible: {agree}/{len(CASES)}")
    assert agree >= REQUIRED_AGREEMENT


@pytest.mark.parametrize("case", CASES)
def test_case_matches_every_classification_key(case):
    measurement, want = _observations_only(case)
    tk = measurement.web_connectivity
    assert tk.blocking is None and tk.accessible is None and tk.x_blocking_flags is None  # nothing leaked in
    got = classify(tk, fingerprints=fingerprint_db())
    mismatches = {
        key: (getattr(got, key), want[key])
        for key in ("blocking", "accessible", *OTHER_KEYS)
        if not _same(getattr(got, key), want[key])
    }
    assert not mismatches


@pytest.mark.parametrize("case", CASES)
def test_classification_ignores_the_verdict_already_in_the_measurement(case):
    """Planting a wrong verdict in the input changes nothing: only observations are read."""
    clean, _ = _observations_only(case)
    raw = qa_json(case)
    raw["test_keys"].update(
        blocking="tcp_ip",
        accessible=True,
        dns_consistency="reverse_match",
        x_blocking_flags=63,
        x_dns_flags=7,
        body_proportion=0.5,
        status_code_match=False,
    )
    planted = parse_measurement(raw)
    assert classify(planted.web_connectivity) == classify(clean.web_connectivity)


@pytest.mark.parametrize("case", CASES)
def test_annotate_writes_back_oonis_own_test_keys(case):
    """annotate() fills the keys so that, apart from x_chokepoint, the JSON equals what OONI wrote."""
    measurement, _ = _observations_only(case)
    annotated = annotate(measurement, fingerprints=fingerprint_db()).to_json()
    original = qa_json(case)
    techniques = annotated["test_keys"].pop("x_chokepoint")["techniques"]
    assert annotated == original
    assert all(TechniqueKind(t["technique"]) for t in techniques)


def test_techniques_agree_with_oonis_blocking_layers():
    """Every OONI string verdict has a technique at a layer it covers ("http-failure" also covers a connect
    failing after a redirect, where the control has no per-endpoint data; "dns" absorbs every layer), and
    a measurement OONI finds accessible gets at most DNS techniques."""
    require(QA_DIR)
    layer_of = {"tcp_ip": {"tcp"}, "http-failure": {"tcp", "tls", "http"}, "http-diff": {"http"}}
    for case in CASES:
        measurement, want = _observations_only(case)
        got = classify(measurement.web_connectivity, fingerprints=fingerprint_db())
        layers = {t.layer for t in got.techniques}
        if want["blocking"] in layer_of:
            assert layers & layer_of[want["blocking"]] or got.false_positives, case
        if want["blocking"] == "dns":
            assert layers, case
        if want["accessible"] is True:
            assert layers <= {"dns"}, case
