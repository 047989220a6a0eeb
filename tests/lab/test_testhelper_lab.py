"""The test helper in the real lab (root): `lab up` starts it in the control namespace, `probe --lab` takes its
control from it, and because its path to the server does not cross the censor, censorship that hits everything
the probe sends (a keyword in the URL path, an address block) reads as blocking, not as a site that is down."""

from __future__ import annotations

from chokepoint.lab.instance import PREFIX
from chokepoint.probe.measurement import parse_measurement
from tests.lab._lab import forwarded, lab_guard, run_cli  # noqa: F401 - the lab tests' guard

PROBE = ("probe", "--lab", "--resolver", "198.18.9.1", "--timeout", "3")


def _probe(tmp_path, *args: str):
    out = tmp_path / "probe.jsonl"
    result = run_cli(*PROBE, *args, "-o", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return [parse_measurement(line).web_connectivity for line in out.read_text().splitlines()]


def test_keyword_in_the_path_resets_the_probe_not_the_helper(lab_guard, tmp_path):
    up = run_cli("lab", "up", "--profile", "demo", timeout=120)
    assert up.returncode == 0, up.stderr
    status = run_cli("lab", "status")
    assert "testhelper" in status.stdout and f"{PREFIX}control" in status.stdout

    before = forwarded(f"{PREFIX}censor")
    (tk,) = _probe(tmp_path, "--tests", "tcp,http", "http://www.example.org/search?q=forbidden-keyword")
    after = forwarded(f"{PREFIX}censor")
    assert tk.control is not None and tk.control_failure is None
    assert tk.control.http_request.status_code == 200 and tk.control.http_request.failure is None
    assert tk.control.tcp_connect["198.19.0.10:80"].status is True
    assert tk.control_request.tcp_connect == ("198.19.0.10:80", "[2001:db8:0:2::10]:80")
    assert tk.requests[0].failure == "connection_reset"  # the demo censor's RST for the keyword in the path
    assert (tk.blocking, tk.accessible) == ("http-failure", False)  # OONI's verdict: the control got the page
    assert tk.dns_consistency == "consistent"
    assert "http-reset" in {t["technique"] for t in tk.x_chokepoint.techniques}
    assert after[0] - before[0] < 40  # the probe's own few packets; the helper's fetch went around the censor

    # the older in-path control, still available: its fetch is reset too, so the probe sees a broken site
    (old,) = _probe(
        tmp_path, "--in-path-control", "--tests", "tcp,http", "http://www.example.org/search?q=forbidden-keyword"
    )
    assert old.control.http_request.failure == "connection_reset"
    assert old.blocking is False


def test_an_ip_block_classifies_as_tcp_ip(lab_guard, tmp_path):
    up = run_cli("lab", "up", "--profile", "turkmenistan", "--as-of", "2023-06-01", timeout=120)
    assert up.returncode == 0, up.stderr
    blocked, allowed = _probe(tmp_path, "--tests", "tcp,tls,http", "https://198.19.64.101/", "https://www.example.org/")
    # the data-centre range is dropped by the censor; the helper connects and fetches around it
    assert blocked.control.tcp_connect["198.19.64.101:443"].status is True
    assert blocked.control.http_request.status_code == 200
    assert blocked.tcp_connect[0].failure == "generic_timeout_error"
    assert (blocked.blocking, blocked.accessible) == ("tcp_ip", False)
    assert "tcp-dropped" in {t["technique"] for t in blocked.x_chokepoint.techniques}
    # an open site: every OONI comparison agrees with the helper's view
    assert (allowed.blocking, allowed.accessible) == (False, True)
    assert (allowed.body_length_match, allowed.status_code_match, allowed.headers_match, allowed.title_match) == (
        True,
        True,
        True,
        True,
    )


def test_quic_control_comes_from_the_helper(lab_guard, tmp_path):
    """russia-tspu drops every QUIC v1 Initial to port 443, whatever the SNI: the in-path control SNI would be
    dropped too; the helper's own QUIC handshake (``x_quic_enabled``, around the censor) succeeds, so the probe's
    timeout reads as QUIC blocking (validate's tspu-quic-v1-drop)."""
    up = run_cli("lab", "up", "--profile", "russia-tspu", timeout=120)
    assert up.returncode == 0, up.stderr
    (tk,) = _probe(tmp_path, "--tests", "tcp,tls,http,quic", "https://www.example.org/")
    assert tk.control_request.extra["x_quic_enabled"] is True
    helper_quic = tk.control.extra["quic_handshake"]
    assert helper_quic["198.19.0.10:443"] == {"server_name": "www.example.org", "status": True, "failure": None}
    assert tk.extra["quic_handshakes"][0]["failure"] == "generic_timeout_error"
    assert tk.x_chokepoint.extra["quic"]["control_requests"] == []  # no in-path control through the censor
    assert "quic-dropped" in {t["technique"] for t in tk.x_chokepoint.techniques}
    assert (tk.blocking, tk.accessible) == (False, True)  # TCP and TLS pass: OONI's verdict ignores QUIC
