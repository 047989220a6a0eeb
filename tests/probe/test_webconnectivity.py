"""Classifier and technique list, on OONI's real measurements turned into new scenarios by editing their
observations (the baselines are picked by content: OONI found them accessible, cleartext or TLS)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from chokepoint.probe.measurement import CLASSIFICATION_KEYS, parse_measurement
from chokepoint.probe.webconnectivity import TechniqueKind, WebConnectivityResult, classify, is_bogon
from chokepoint.probe.webconnectivity.analysis import _status_code_match, _title_different_long_words
from tests.probe._shared import QA_DIR, fingerprint_db, qa_cases, qa_json, require

# --------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, bogon",
    [
        ("10.10.34.35", True),
        ("127.0.0.1", True),
        ("198.19.0.10", True),
        ("100.64.1.1", True),
        ("93.184.216.34", False),
        ("8.7.198.45", False),
        ("::1", True),
        ("2001:db8::10", True),
        ("fe80::1", True),
        ("2606:2800:220:1::", False),
        ("not-an-address", True),
        ("", True),
    ],
)
def test_bogons_follow_ipinfo_list(address, bogon):
    assert is_bogon(address) is bogon


def test_title_words_count_bytes_not_characters():
    # "Вход" is 4 characters but 8 UTF-8 bytes: OONI (Go len) keeps it as a long word
    assert _title_different_long_words("Вход Default", "Вход Default") == frozenset()
    assert _title_different_long_words("Вход", "") == frozenset({"вход"})
    assert _title_different_long_words("Page here now", "") == frozenset()  # all words under 5 bytes


def test_status_code_comparison_skips_a_failing_control():
    assert _status_code_match(200, 200) is True
    assert _status_code_match(503, 200) is False
    assert _status_code_match(200, 404) is None
    assert _status_code_match(404, 404) is True


# --------------------------------------------------------------------------------------------------
# Scenarios derived from real measurements
# --------------------------------------------------------------------------------------------------


def _baseline(scheme: str) -> dict[str, Any]:
    """An accessible, DNS-consistent OONI measurement of a `scheme` URL with one complete response."""
    require(QA_DIR)
    for case in qa_cases():
        doc = qa_json(case)
        tk = doc["test_keys"]
        if (
            doc["input"].startswith(scheme + "://")
            and tk["accessible"] is True
            and tk["dns_consistency"] == "consistent"
            and len(tk["requests"]) == 1
            and not tk["requests"][0]["response"]["body_is_truncated"]
            and tk["control"]
        ):
            tk = {k: v for k, v in tk.items() if k not in CLASSIFICATION_KEYS}
            return {**doc, "test_keys": tk}
    raise AssertionError(f"no accessible {scheme} baseline among the QA measurements")


def _run(doc: dict[str, Any], **kwargs: Any) -> WebConnectivityResult:
    return classify(parse_measurement(doc).web_connectivity, fingerprints=fingerprint_db(), **kwargs)


def _kinds(result: WebConnectivityResult) -> set[TechniqueKind]:
    return {t.kind for t in result.techniques}


def _fetch(tk: dict[str, Any]) -> dict[str, Any]:
    """The TCP connect that fetched the body."""
    return next(t for t in tk["tcp_connect"] if "fetch_body=true" in t["tags"])


def _system_lookup(tk: dict[str, Any]) -> dict[str, Any]:
    return next(q for q in tk["queries"] if q["engine"] == "getaddrinfo")


def _fail_connect(tk: dict[str, Any], failure: str) -> None:
    fetch = _fetch(tk)
    fetch["status"] = {"failure": failure, "success": False}
    tk["requests"] = [r for r in tk["requests"] if r["transaction_id"] != fetch["transaction_id"]]
    tk["tls_handshakes"] = [h for h in tk["tls_handshakes"] if h["transaction_id"] != fetch["transaction_id"]]


@pytest.mark.shared_data
def test_baselines_are_accessible_without_techniques():
    for scheme in ("http", "https"):
        result = _run(_baseline(scheme))
        assert (result.blocking, result.accessible, result.techniques) == (False, True, ())


@pytest.mark.shared_data
def test_system_resolver_nxdomain():
    doc = _baseline("http")
    lookup = _system_lookup(doc["test_keys"])
    lookup.update(failure="dns_nxdomain_error", answers=None)
    result = _run(doc)
    assert (result.blocking, result.accessible, result.dns_experiment_failure) == ("dns", False, "dns_nxdomain_error")
    assert _kinds(result) == {TechniqueKind.DNS_NXDOMAIN}


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "answer, kind, fingerprint, country",
    [
        ("10.10.34.35", TechniqueKind.DNS_BOGON, "ooni.ir_5", "IR"),  # Iran's national blockpage address
        ("8.7.198.45", TechniqueKind.DNS_FORGED, "ooni.cn_0", "CN"),  # a published GFW poison answer
        ("5.9.162.7", TechniqueKind.DNS_FORGED, None, None),  # unknown, outside the control's ASN
    ],
)
def test_forged_system_answer_then_connect_timeout(answer, kind, fingerprint, country):
    doc = _baseline("https")
    tk = doc["test_keys"]
    _system_lookup(tk)["answers"] = [{"answer_type": "A", "ipv4": answer, "ttl": None}]
    _fail_connect(tk, "generic_timeout_error")
    _fetch(tk)["ip"] = answer
    result = _run(doc)
    assert (result.blocking, result.accessible, result.dns_consistency) == ("dns", False, "inconsistent")
    assert result.x_blocking_flags & 1
    (technique,) = [t for t in result.techniques if t.kind == kind]
    assert technique.layer == "dns"
    if fingerprint is None:
        assert technique.fingerprint is None
    else:
        assert (technique.fingerprint.name, technique.fingerprint.countries) == (fingerprint, (country,))
    assert not {t for t in result.techniques if t.layer == "tcp"}  # the DNS answer explains the timeout


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "failure, kind",
    [
        ("connection_refused", TechniqueKind.TCP_REFUSED),
        ("generic_timeout_error", TechniqueKind.TCP_DROPPED),
        ("connection_reset", TechniqueKind.TCP_RESET),
        ("host_unreachable", TechniqueKind.TCP_UNREACHABLE),
    ],
)
def test_connect_failures_where_the_control_connected(failure, kind):
    doc = _baseline("http")
    _fail_connect(doc["test_keys"], failure)
    result = _run(doc)
    assert (result.blocking, result.accessible, result.http_experiment_failure) == ("tcp_ip", False, failure)
    assert kind in _kinds(result)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "failure, kind",
    [
        ("connection_reset", TechniqueKind.TLS_RESET),
        ("generic_timeout_error", TechniqueKind.TLS_DROPPED),
        ("eof_error", TechniqueKind.TLS_EOF),
        ("ssl_unknown_authority", TechniqueKind.TLS_MITM),
        ("ssl_invalid_hostname", TechniqueKind.TLS_MITM),
        ("ssl_failed_handshake", TechniqueKind.TLS_FAILURE),
    ],
)
def test_tls_failures_where_the_control_handshook(failure, kind):
    doc = _baseline("https")
    tk = doc["test_keys"]
    fetch = _fetch(tk)
    next(h for h in tk["tls_handshakes"] if h["transaction_id"] == fetch["transaction_id"])["failure"] = failure
    tk["requests"] = [r for r in tk["requests"] if r["transaction_id"] != fetch["transaction_id"]]
    result = _run(doc)
    assert (result.blocking, result.accessible) == ("http-failure", False)
    assert result.x_blocking_flags & 4
    assert _kinds(result) == {kind}


@pytest.mark.shared_data
def test_tls_failure_the_control_shares_is_a_site_problem():
    doc = _baseline("https")
    tk = doc["test_keys"]
    fetch = _fetch(tk)
    handshake = next(h for h in tk["tls_handshakes"] if h["transaction_id"] == fetch["transaction_id"])
    handshake["failure"] = "ssl_invalid_certificate"
    tk["control"]["tls_handshake"][handshake["address"]].update(status=False, failure="ssl_invalid_certificate")
    tk["requests"] = []
    result = _run(doc)
    assert (result.blocking, result.accessible, result.techniques) == (False, False, ())
    assert result.x_null_null_flags & 4


def _replace_body(doc: dict[str, Any], body: str) -> None:
    """The response a blockpage server would send: another body and only common headers."""
    response = doc["test_keys"]["requests"][0]["response"]
    response["body"] = body
    response["headers_list"] = [["Content-Type", "text/html"], ["Server", "blockpage"]]
    response["headers"] = dict(response["headers_list"])


@pytest.mark.shared_data
def test_blockpage_with_a_product_fingerprint():
    doc = _baseline("http")
    pattern = next(fp.pattern for fp in fingerprint_db().http if fp.name == "cl.prod_netsweeper_blockpage")
    _replace_body(doc, f"<html><title>Denied</title><img src='http://{pattern}/logo.png'></html>")
    result = _run(doc)
    assert (result.blocking, result.accessible) == ("http-diff", False)
    (technique,) = result.techniques
    assert technique.kind == TechniqueKind.HTTP_BLOCKPAGE
    assert (technique.fingerprint.name, technique.fingerprint.scope) == ("cl.prod_netsweeper_blockpage", "prod")


@pytest.mark.shared_data
def test_known_benign_page_is_not_reported_although_ooni_says_http_diff():
    doc = _baseline("http")
    pattern = next(fp.pattern for fp in fingerprint_db().http if fp.name == "cp.fp_x_fpru_nginx")
    _replace_body(doc, f"<html><title>Welcome</title>{pattern}</html>")
    result = _run(doc)
    assert (result.blocking, result.accessible) == ("http-diff", False)
    assert result.techniques == ()
    assert [m.name for m in result.false_positives] == ["cp.fp_x_fpru_nginx"]


@pytest.mark.shared_data
def test_unfingerprinted_difference_is_http_diff():
    doc = _baseline("http")
    _replace_body(doc, "<html><title>Sorry</title>no</html>")
    result = _run(doc)
    assert (result.blocking, result.status_code_match, result.body_length_match) == ("http-diff", True, False)
    assert _kinds(result) == {TechniqueKind.HTTP_DIFF}


@pytest.mark.shared_data
def test_http_reset_and_stall():
    for failure, code, kind in (
        ("connection_reset", 0, TechniqueKind.HTTP_RESET),
        ("generic_timeout_error", 200, TechniqueKind.HTTP_DROPPED),
    ):
        doc = _baseline("http")
        transaction = doc["test_keys"]["requests"][0]
        transaction["failure"] = failure
        transaction["response"].update(code=code, body="")
        result = _run(doc)
        assert (result.blocking, result.http_experiment_failure) == ("http-failure", failure)
        (technique,) = result.techniques
        assert technique.kind == kind and technique.failure == failure
        assert ("throttling?" in technique.evidence) is (code == 200)


@pytest.mark.shared_data
@pytest.mark.parametrize("probe_bytes, techniques", [(100_000, {TechniqueKind.THROTTLED}), (900_000, set())])
def test_throughput_against_the_control(probe_bytes, techniques):
    doc = _baseline("https")
    doc["test_keys"]["x_chokepoint"] = {
        "throughput": [
            {
                "target": doc["input"],
                "bytes": probe_bytes,
                "seconds": 1.0,
                "control_bytes": 1_000_000,
                "control_seconds": 1.0,
            }
        ]
    }
    result = _run(doc)
    assert _kinds(result) == techniques
    if techniques:
        assert result.techniques[0].throughput_ratio == pytest.approx(0.1)
    assert (result.blocking, result.accessible) == (False, True)  # OONI's keys know nothing of rates


@pytest.mark.shared_data
def test_residual_block_keeps_its_duration():
    doc = _baseline("https")
    doc["test_keys"]["x_chokepoint"] = {
        "residual": [
            {
                "target": "93.184.216.34:443",
                "trigger": "sni=www.example.com",
                "duration_s": 90,
                "failure": "connection_reset",
            },
            {"target": "93.184.216.34:80", "trigger": "host=www.example.com", "duration_s": 0},
        ]
    }
    (technique,) = _run(doc).techniques
    assert (technique.kind, technique.target, technique.duration_s) == (
        TechniqueKind.RESIDUAL,
        "93.184.216.34:443",
        90.0,
    )
    assert technique.to_json()["technique"] == "residual"


@pytest.mark.shared_data
def test_missing_control_leaves_cleartext_undecided_but_https_accessible():
    for scheme, verdict in (("http", (None, None)), ("https", (False, True))):
        doc = _baseline(scheme)
        doc["test_keys"]["control"] = None
        doc["test_keys"]["control_failure"] = "connection_reset"
        result = _run(doc)
        assert (result.blocking, result.accessible) == verdict
        assert result.techniques == ()


@pytest.mark.shared_data
def test_classification_does_not_mutate_its_input():
    doc = _baseline("http")
    before = copy.deepcopy(doc)
    measurement = parse_measurement(doc)
    _run(doc)
    assert doc == before and parse_measurement(before) == measurement


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("nbytes", "seconds", "control_seconds", "throttled"),
    [
        (1 << 20, 10.0, 0.5, True),  # Russia-like: ~840 kbit/s vs ~17 Mbit/s on the control path
        (64 << 10, 0.0016, 0.0004, False),  # loopback noise: 4x slower, but by a millisecond
        (16 << 10, 0.95, 0.001, True),  # a 16 kB download at 140 kbit/s: ~0.9 s longer than the control
    ],
)
def test_throttling_needs_a_low_ratio_and_a_measurable_delay(nbytes, seconds, control_seconds, throttled):
    """rate < 0.3 x control's, and the download took >= THROTTLE_MIN_EXTRA_S longer than the control's rate
    allows: sub-millisecond transfers on a busy host are noise, not a censor."""
    doc = _baseline("http")
    doc["test_keys"]["x_chokepoint"] = {
        "throughput": [
            {
                "target": doc["input"],
                "bytes": nbytes,
                "seconds": seconds,
                "control_bytes": nbytes,
                "control_seconds": control_seconds,
            }
        ]
    }
    assert (TechniqueKind.THROTTLED in _kinds(_run(doc))) is throttled


def _lab_measurement(name: str) -> dict[str, Any]:
    import json
    from pathlib import Path

    return json.loads((Path(__file__).parent / "data" / name).read_text())


@pytest.mark.shared_data
def test_redirect_to_an_unreachable_blockpage_host_is_the_blockpage():
    """belarus-2020's injected 302 to Beltelecom's blockpage address (ooni.by_1), measured in the lab where that
    address is unreachable: the blockpage, not a TCP failure to a host the control's chain never visited."""
    doc = _lab_measurement("belarus-redirect-to-unreachable-blockpage.json")
    result = _run(doc)
    assert _kinds(result) == {TechniqueKind.HTTP_BLOCKPAGE}
    (technique,) = result.techniques
    assert technique.fingerprint.name == "ooni.by_1"
    # the same redirect, to an address and with a body no fingerprint knows, keeps the TCP failure after it
    tk = doc["test_keys"]
    tk["requests"][0]["response"]["body"] = "<html>moved</html>"
    headers = tk["requests"][0]["response"]["headers_list"]
    headers[:] = [[k, "http://93.184.215.14" if k == "Location" else v] for k, v in headers]
    tk["requests"][0]["response"]["headers"]["Location"] = "http://93.184.215.14"
    tk["tcp_connect"][1]["ip"] = tk["queries"][1]["hostname"] = tk["queries"][1]["answers"][0]["ipv4"] = "93.184.215.14"
    assert TechniqueKind.TCP_UNREACHABLE in _kinds(_run(doc))
