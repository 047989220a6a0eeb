"""The runner end to end: real clients against the lab services on 127.0.0.1 behind real misbehaving
servers (a lying resolver, a Host/SNI-keyed censor, a QUIC dropper, a FET blocker), checking the OONI
measurement JSON and its classification."""

from __future__ import annotations

import json
import socket

import pytest

from chokepoint.probe.measurement import Failure, parse_measurement
from chokepoint.probe.probes.common import ProbeError
from chokepoint.probe.runner import DEFAULT_TESTS, TESTS, ProbeConfig, lab_config, parse_tests, run, run_many
from tests.probe import _shared
from tests.probe.probes._fixtures import DROP_TIMEOUT, OK_TIMEOUT, lab, servers  # noqa: F401 - fixtures
from tests.probe.probes._servers import LOOPBACK, CensorProxy, DnsBehaviour, FetCensor, LyingDns, QuicCensor, blockpage

WEB = frozenset({"dns", "tcp", "tls", "http"})


def config(lab, *, tests=WEB, resolver=None, timeout=OK_TIMEOUT, **overrides) -> ProbeConfig:
    settings = {
        "tests": frozenset(tests),
        "timeout": timeout,
        "cafile": lab.ca_file,
        "system_resolver": resolver or lab.dns,
        "control_resolver": lab.dns,
        "udp_resolver": lab.dns,
        "tcp_resolver": lab.dns,
        "control_host": "control.test",
        "echo_port": lab.echo_port,
        "quic_port": lab.https_port,
    }
    return ProbeConfig(**{**settings, **overrides})


def keys(measurement) -> dict:
    return measurement.to_json()["test_keys"]


def techniques(measurement) -> dict[str, dict]:
    return {t["technique"]: t for t in keys(measurement)["x_chokepoint"]["techniques"]}


def roundtrip(measurement) -> dict:
    """The JSON survives the OONI parser unchanged (and through text)."""
    as_json = measurement.to_json()
    assert parse_measurement(measurement.dumps()).to_json() == as_json
    return as_json


# --------------------------------------------------------------------------------------------------
# No censorship
# --------------------------------------------------------------------------------------------------


def test_success_over_https(lab):
    m = run(f"https://site.test:{lab.https_port}/", config(lab))
    tk = keys(m)
    assert (tk["blocking"], tk["accessible"], tk["dns_consistency"]) == (False, True, "consistent")
    assert tk["x_blocking_flags"] == 32 and techniques(m) == {}
    (system,) = [q for q in tk["queries"] if "classic" in q["tags"]]
    assert system["engine"] == "golang_net_resolver" and system["query_type"] == "ANY"
    assert {q["engine"] for q in tk["queries"]} == {"golang_net_resolver", "udp", "tcp"}
    (tcp,) = tk["tcp_connect"]
    assert tcp["tags"] == ["classic", "tcptls_experiment", "depth=0", "fetch_body=true"]
    (handshake,) = tk["tls_handshakes"]
    (request,) = tk["requests"]
    assert tcp["transaction_id"] == handshake["transaction_id"] == request["transaction_id"]
    assert handshake["server_name"] == "site.test" and request["response"]["code"] == 200
    control = tk["control"]
    endpoint = f"127.0.0.1:{lab.https_port}"
    assert control["dns"] == {"failure": None, "addrs": ["127.0.0.1"]}
    assert control["tcp_connect"][endpoint] == {"status": True, "failure": None}
    assert control["tls_handshake"][endpoint]["server_name"] == "control.test"  # the control SNI, honestly
    assert control["http_request"]["status_code"] == 200 and control["http_request"]["title"] == "chokepoint lab origin"
    assert tk["x_control_request"]["tcp_connect"] == [endpoint]
    assert tk["control_failure"] is None
    roundtrip(m)


def test_success_over_http_with_a_redirect(lab):
    m = run(f"http://site.test:{lab.http_port}/redirect?to=/landing", config(lab, tests={"dns", "tcp", "http"}))
    tk = keys(m)
    assert (tk["blocking"], tk["accessible"]) == (False, True)
    newest, first = tk["requests"]  # newest first, as OONI lists them
    assert newest["request"]["url"].endswith("/landing") and "depth=1" in newest["tags"]
    assert first["response"]["code"] == 302 and "depth=0" in first["tags"]
    assert [q["tags"] for q in tk["queries"] if "classic" in q["tags"]] == [
        ["classic", "depth=0"],
        ["classic", "depth=1"],
    ]
    assert tk["body_length_match"] is True and tk["status_code_match"] is True and tk["headers_match"] is True
    assert tk["tls_handshakes"] == []


# --------------------------------------------------------------------------------------------------
# DNS
# --------------------------------------------------------------------------------------------------


def test_dns_nxdomain(lab, servers):
    liar = servers(LyingDns({"blocked.test": DnsBehaviour(rcode=3)}))
    m = run(f"https://blocked.test:{lab.https_port}/", config(lab, resolver=liar.address))
    tk = keys(m)
    assert (tk["blocking"], tk["accessible"]) == ("dns", False)
    assert tk["dns_consistency"] == "inconsistent" and tk["dns_experiment_failure"] == Failure.DNS_NXDOMAIN_ERROR
    assert tk["x_blocking_flags"] & 1 and tk["x_dns_flags"] & 2
    assert techniques(m)["dns-nxdomain"]["failure"] == Failure.DNS_NXDOMAIN_ERROR
    # E005: the control's address, with the real SNI, works: the block is DNS only
    (tcp,) = tk["tcp_connect"]
    assert "classic" not in tcp["tags"] and tk["requests"][0]["response"]["code"] == 200
    roundtrip(m)


def test_dns_only_run(lab, servers):
    liar = servers(LyingDns({"blocked.test": DnsBehaviour(rcode=3)}))
    m = run(f"https://blocked.test:{lab.https_port}/", config(lab, tests={"dns"}, resolver=liar.address))
    tk = keys(m)
    assert (tk["blocking"], tk["accessible"]) == ("dns", False)
    assert tk["tcp_connect"] == [] and tk["control"]["tcp_connect"] == {}
    assert tk["control"]["http_request"]["failure"].startswith("unknown_failure: not measured")
    assert liar.queries == 2  # A and AAAA from the stub; nothing else touched the lying resolver


def test_dns_bogon(lab, servers):
    liar = servers(LyingDns({"blocked.test": DnsBehaviour(a=("127.0.0.2",))}))
    m = run(f"http://blocked.test:{lab.http_port}/", config(lab, tests={"dns", "tcp", "http"}, resolver=liar.address))
    tk = keys(m)
    assert (tk["blocking"], tk["accessible"], tk["dns_consistency"]) == ("dns", False, "inconsistent")
    assert tk["x_dns_flags"] & 1  # bogon
    assert "127.0.0.2" in techniques(m)["dns-bogon"]["evidence"]
    bogus = next(t for t in tk["tcp_connect"] if t["ip"] == "127.0.0.2")
    assert bogus["status"]["failure"] == Failure.CONNECTION_REFUSED and "classic" in bogus["tags"]
    assert tk["control"]["ip_info"]["127.0.0.2"]["flags"] == 1 | 4  # probe-resolved, bogon


# --------------------------------------------------------------------------------------------------
# TCP/TLS/HTTP through a name-keyed censor
# --------------------------------------------------------------------------------------------------


def test_http_host_reset(lab, servers):
    censor = servers(CensorProxy(lab.http_port, {"blocked.test": "reset"}))
    m = run(f"http://blocked.test:{censor.port}/", config(lab, tests={"dns", "tcp", "http"}))
    tk = keys(m)
    assert (tk["blocking"], tk["accessible"]) == ("http-failure", False)
    assert tk["http_experiment_failure"] == Failure.CONNECTION_RESET and tk["x_blocking_flags"] & 8
    assert tk["dns_consistency"] == "consistent"
    assert techniques(m)["http-reset"]["failure"] == Failure.CONNECTION_RESET
    assert censor.triggers == {"blocked.test": 1}  # the control (Host control.test) went through


def test_tls_sni_reset(lab, servers):
    censor = servers(CensorProxy(lab.https_port, {"blocked.test": "reset"}))
    m = run(f"https://blocked.test:{censor.port}/", config(lab))
    tk = keys(m)
    assert (tk["blocking"], tk["accessible"]) == ("http-failure", False)
    assert tk["http_experiment_failure"] == Failure.CONNECTION_RESET
    technique = techniques(m)["tls-reset"]
    assert technique["target"] == f"127.0.0.1:{censor.port} sni=blocked.test"
    assert tk["control"]["tls_handshake"][f"127.0.0.1:{censor.port}"]["status"] is True
    assert tk["requests"] == []


def test_tls_sni_drop(lab, servers):
    censor = servers(CensorProxy(lab.https_port, {"blocked.test": "drop"}))
    m = run(f"https://blocked.test:{censor.port}/", config(lab, timeout=DROP_TIMEOUT))
    tk = keys(m)
    assert (tk["blocking"], tk["accessible"]) == ("http-failure", False)
    assert techniques(m)["tls-dropped"]["failure"] == Failure.GENERIC_TIMEOUT_ERROR


def test_blockpage_with_real_fingerprints(lab, servers):
    page, row = blockpage()
    censor = servers(CensorProxy(lab.http_port, {"blocked.test": "blockpage"}, blockpage=page))
    db = _shared.fingerprint_db()
    m = run(f"http://blocked.test:{censor.port}/", config(lab, tests={"dns", "tcp", "http"}, fingerprints=db))
    tk = keys(m)
    assert (tk["blocking"], tk["accessible"]) == ("http-diff", False)
    assert tk["status_code_match"] is False and tk["x_blocking_flags"] & 16
    found = techniques(m)["http-blockpage"]
    assert found["fingerprint"]["name"] == row.name and "IR" in found["fingerprint"]["countries"]
    assert tk["requests"][0]["response"]["code"] == 403


def test_site_down_is_not_censorship(lab):
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
    m = run(f"http://site.test:{port}/", config(lab, tests={"dns", "tcp", "http"}, timeout=DROP_TIMEOUT))
    tk = keys(m)
    assert (tk["blocking"], tk["accessible"]) == (False, False)  # the control cannot connect either
    assert tk["tcp_connect"][0]["status"]["failure"] == Failure.CONNECTION_REFUSED
    assert tk["control"]["http_request"]["failure"] == Failure.CONNECTION_REFUSED
    assert techniques(m) == {}


def test_unreachable_control_resolver(lab):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
    cfg = config(lab, tests={"dns", "tcp", "http"}, timeout=DROP_TIMEOUT, control_resolver=(LOOPBACK, port))
    m = run(f"http://site.test:{lab.http_port}/", cfg)
    tk = keys(m)
    assert tk["control_failure"] == Failure.CONNECTION_REFUSED and tk["control"] is None
    assert (tk["blocking"], tk["accessible"]) == (None, None)  # no control: OONI cannot decide
    assert tk["requests"][0]["response"]["code"] == 200  # the probe itself still measured


# --------------------------------------------------------------------------------------------------
# Throughput, residual, FET, QUIC
# --------------------------------------------------------------------------------------------------


def test_throttling(lab, servers):
    censor = servers(CensorProxy(lab.http_port, {"slow.test": "throttle"}, throttle_chunk=512, throttle_delay=0.05))
    m = run(
        f"http://slow.test:{censor.port}/",
        config(lab, tests={"dns", "tcp", "http", "throughput"}, throughput_bytes=32 * 1024),
    )
    tk = keys(m)
    (observation,) = tk["x_chokepoint"]["throughput"]
    assert observation["bytes"] == observation["control_bytes"] == 32 * 1024
    found = techniques(m)["throttled"]
    assert found["throughput_ratio"] < 0.3 and found["target"] == f"127.0.0.1:{censor.port}"
    assert (tk["blocking"], tk["accessible"]) == (False, True)  # the page loads, slowly


def test_residual_blocking(lab, servers):
    censor = servers(CensorProxy(lab.http_port, {"blocked.test": "residual"}, residual_seconds=1.0))
    m = run(
        f"http://blocked.test:{censor.port}/",
        config(lab, tests={"dns", "tcp", "http", "residual"}, residual_interval=0.2, residual_seconds=20),
    )
    tk = keys(m)
    (observation,) = tk["x_chokepoint"]["residual"]
    assert observation["failure"] == Failure.CONNECTION_RESET and observation["ended"] is True
    found = techniques(m)
    assert found["residual"]["duration_s"] == observation["duration_s"] > 0
    assert "http-reset" in found and tk["blocking"] == "http-failure"


def test_fet_blocking(lab, servers):
    censor = servers(FetCensor(lab.echo_port))
    m = run(
        f"http://site.test:{lab.http_port}/",
        config(lab, tests={"dns", "fet"}, timeout=DROP_TIMEOUT, echo_port=censor.port, fet_seed=5),
    )
    tk = keys(m)
    fet = tk["x_chokepoint"]["fet"]
    assert fet["blocked"] is True and fet["control"]["echo_ok"] is True
    assert techniques(m)["fet-blocked"]["failure"] == Failure.GENERIC_TIMEOUT_ERROR
    assert tk["tcp_connect"] == []  # only the FET test ran against the server


def test_quic_sni_dropping(lab, servers):
    censor = servers(QuicCensor(lab.https_port, {"blocked.test"}))
    m = run(
        f"https://blocked.test:{lab.https_port}/",
        config(lab, tests={"dns", "quic"}, timeout=DROP_TIMEOUT * 2, quic_port=censor.port),
    )
    tk = keys(m)
    (handshake,) = tk["quic_handshakes"]
    assert handshake["network"] == "udp" and handshake["failure"] == Failure.GENERIC_TIMEOUT_ERROR
    control = tk["control"]["quic_handshake"][f"127.0.0.1:{censor.port}"]
    assert control == {"server_name": "control.test", "status": True, "failure": None}
    assert techniques(m)["quic-dropped"]["layer"] == "quic"
    assert tk["x_chokepoint"]["quic"]["control_requests"][0]["response"]["code"] == 200


def test_all_tests_clean(lab):
    m = run(
        f"https://site.test:{lab.https_port}/",
        config(lab, tests=TESTS, throughput_bytes=64 * 1024, residual_interval=0.2, residual_seconds=5),
    )
    tk = keys(m)
    assert (tk["blocking"], tk["accessible"]) == (False, True) and techniques(m) == {}
    x = tk["x_chokepoint"]
    assert x["fet"]["blocked"] is False and x["residual"][0]["duration_s"] == 0.0
    assert x["throughput"][0]["complete"] is True and tk["quic_handshakes"][0]["failure"] is None
    assert sorted(x["tests"]) == sorted(TESTS)
    roundtrip(m)


# --------------------------------------------------------------------------------------------------
# Shape: the same keys as OONI's own measurements
# --------------------------------------------------------------------------------------------------

# What OONI writes that Chokepoint does not (network_events and OONI-specific resolver probes).
_NOT_EMITTED = {"network_events", "x_dns_whoami", "x_doh", "x_do53", "x_dns_duplicate_responses", "x_conn_priority_log"}


@pytest.mark.shared_data
def test_keys_match_ooni_measurements(lab):
    ooni = _shared.qa_json("successWithHTTPS")
    ours = run(f"https://site.test:{lab.https_port}/", config(lab)).to_json()
    assert set(ooni) - {"test_keys"} <= set(ours)
    assert set(ooni["test_keys"]) - _NOT_EMITTED <= set(ours["test_keys"])
    for section in ("queries", "tcp_connect", "tls_handshakes", "requests"):
        ooni_keys = set(ooni["test_keys"][section][0])
        ours_keys = set(ours["test_keys"][section][0])
        assert ooni_keys - ours_keys == set(), section
    ours_request = set(ours["test_keys"]["requests"][0]["request"])
    assert set(ooni["test_keys"]["requests"][0]["request"]) - {"tor"} <= ours_request
    assert set(ooni["test_keys"]["control"]) - {"http3_request"} <= set(ours["test_keys"]["control"])
    ours_control_request = set(ours["test_keys"]["x_control_request"])
    assert set(ooni["test_keys"]["x_control_request"]) - {"x_quic_enabled"} <= ours_control_request
    for entry in ours["test_keys"]["tcp_connect"] + ours["test_keys"]["tls_handshakes"] + ours["test_keys"]["requests"]:
        assert any(t.startswith("depth=") for t in entry["tags"]) and any(
            t.startswith("fetch_body=") for t in entry["tags"]
        )
        assert 0 <= entry["t0"] <= entry["t"] <= ours["test_runtime"]
    json.dumps(ours)


# --------------------------------------------------------------------------------------------------
# Configuration and bad input
# --------------------------------------------------------------------------------------------------


def test_bad_targets_raise_probe_error(lab):
    for bad in ("ftp://x/", "http://", "http://exa mple/"):
        with pytest.raises(ProbeError):
            run(bad, config(lab))
    many = run_many([f"http://site.test:{lab.http_port}/", "ftp://nope/"], config(lab, tests={"dns"}))
    assert next(many).input.startswith("http://site.test")
    with pytest.raises(ProbeError):
        next(many)


def test_parse_tests_and_config_validation(lab):
    assert parse_tests("all") == frozenset(TESTS) and parse_tests("default") == DEFAULT_TESTS
    assert parse_tests("dns, http") == {"dns", "http"} and "residual" not in DEFAULT_TESTS
    for bad in ("", "dns,smtp"):
        with pytest.raises(ProbeError):
            parse_tests(bad)
    for kwargs in (
        {"tests": frozenset({"smtp"})},
        {"timeout": 0},
        {"echo_port": 0},
        {"control_host": "1.2.3.4"},
        {"control_host": "Control.Test"},
        {"control_host": "a b"},
    ):
        with pytest.raises(ProbeError):
            ProbeConfig(**kwargs)
    lab_defaults = lab_config()
    assert lab_defaults.control_resolver == ("198.18.9.1", 53) and lab_defaults.udp_resolver == ("198.19.0.53", 53)
    assert lab_defaults.lab and lab_defaults.system_resolver is None


def test_dns_only_for_an_ip_target(lab):
    m = run(f"http://127.0.0.1:{lab.http_port}/", config(lab, tests={"dns", "http"}))
    tk = keys(m)
    (lookup,) = tk["queries"]  # libc's numeric answer, no network: the classic analysis needs it
    assert (lookup["engine"], lookup["answers"][0]["ipv4"]) == ("getaddrinfo", "127.0.0.1")
    assert tk["control"]["dns"]["addrs"] == ["127.0.0.1"]
    assert (tk["blocking"], tk["accessible"]) == (False, True)
