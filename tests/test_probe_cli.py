"""`chokepoint probe` as a real process against the lab services on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chokepoint.cli import probe as probe_cli
from chokepoint.probe.measurement import Failure, parse_measurement
from tests.lab._lab import lab_guard, run_cli  # noqa: F401 - the lab tests' guard (root, serialised, cleaned up)
from tests.probe.probes._fixtures import lab, servers  # noqa: F401 - pytest fixtures
from tests.probe.probes._servers import LOOPBACK, CensorProxy

RUN_TIMEOUT = 180


def probe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chokepoint.cli", "probe", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=cwd,
    )


def loopback_args(lab, *extra: str) -> list[str]:
    resolver = f"127.0.0.1:{lab.dns[1]}"
    return [
        "--resolver",
        resolver,
        "--control-resolver",
        resolver,
        "--cafile",
        lab.ca_file,
        "--control-host",
        "control.test",
        "--timeout",
        "5",
        *extra,
    ]


def test_two_targets_to_a_file(lab, servers, tmp_path):
    censor = servers(CensorProxy(lab.http_port, {"blocked.test": "reset"}))
    out = tmp_path / "report.jsonl"
    result = probe(
        f"https://site.test:{lab.https_port}/",
        f"http://blocked.test:{censor.port}/",
        *loopback_args(lab, "--tests", "dns,tcp,tls,http", "-o", str(out)),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    first, second = [parse_measurement(line) for line in out.read_text().splitlines()]
    assert first.web_connectivity.blocking is False and first.web_connectivity.accessible is True
    assert second.web_connectivity.blocking == "http-failure"
    assert second.web_connectivity.http_experiment_failure == Failure.CONNECTION_RESET
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"https://site.test:{lab.https_port}/: blocking=False accessible=True")
    assert "blocking=http-failure" in lines[1] and "http-reset" in lines[1]


def test_stdout_and_unreachable_target(lab):
    import socket

    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
    result = probe(f"http://site.test:{port}/", *loopback_args(lab, "--tests", "dns,http", "--timeout", "1"))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    measurement = json.loads(line)
    assert measurement["test_keys"]["tcp_connect"][0]["status"]["failure"] == Failure.CONNECTION_REFUSED
    assert "accessible=False" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["ftp://example.com/"], "only http and https"),
        (["https://site.test/", "--tests", "dns,smtp"], "unknown test 'smtp'"),
        (["https://site.test/", "--resolver", "resolver.example"], "is not an IP address"),
        (["https://site.test/", "--cafile", "/nonexistent/ca.pem"], "no such CA file"),
        (["https://site.test/", "--fingerprints", "/nonexistent"], "cannot load fingerprints"),
        (["https://site.test/", "--timeout", "0"], "timeout must be positive"),
    ],
)
def test_bad_usage_measures_nothing(args, message):
    result = probe(*args)
    assert result.returncode == probe_cli.EXIT_USAGE
    assert message in result.stderr and "nothing was measured" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_lab_needs_a_lab(tmp_path):
    result = probe("https://site.test/", "--lab", "--lab-state-dir", str(tmp_path))
    if os.geteuid() == 0:
        assert result.returncode == probe_cli.EXIT_NO_LAB and "no lab is up" in result.stderr
    else:
        assert result.returncode == probe_cli.EXIT_SYSTEM and "needs root" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_child_argv_for_the_lab(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv", ["chokepoint", "probe", "--lab", "https://a.test/", "-o", "out.jsonl", "--tests", "dns"]
    )
    argv = probe_cli._child_argv(Path("out.jsonl"))
    assert argv[:3] == [sys.executable, "-m", "chokepoint.cli"]
    assert argv[3:] == ["probe", "https://a.test/", "-o", str(tmp_path / "out.jsonl"), "--tests", "dns", "--in-lab"]


# -- the real lab (root): `--lab` re-executes the probe inside cpk-client, behind the demo censor --


def test_probe_inside_the_real_lab(lab_guard, tmp_path):
    up = run_cli("lab", "up", "--profile", "demo", timeout=120)
    assert up.returncode == 0, up.stderr
    out = tmp_path / "lab.jsonl"
    result = run_cli(
        "probe",
        "--lab",
        "https://site.example/",
        "https://example-blocked.test/",
        "http://example-blocked.test/",
        "--tests",
        "dns,tcp,tls,http,quic",
        "--timeout",
        "3",
        "-o",
        str(out),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    clean, sni, host = [parse_measurement(line) for line in out.read_text().splitlines()]

    tk = clean.web_connectivity
    assert (tk.blocking, tk.accessible) == (False, True)
    system = next(q for q in tk.queries if "classic" in q.tags)
    assert system.engine == "getaddrinfo" and "198.19.0.10" in system.addresses  # resolv.conf of cpk-client
    assert clean.annotations["chokepoint_lab"] == "true"
    assert clean.test_helpers["backend"] == {"address": "http://198.18.9.1:8080/", "type": "http"}  # the helper
    assert tk.extra["quic_handshakes"][0]["failure"] is None  # the lab CA is trusted in the namespace

    tk = sni.web_connectivity
    found = {t["technique"] for t in tk.x_chokepoint.techniques}
    assert tk.blocking == "dns" and tk.accessible is False
    assert {"dns-bogon", "tls-reset", "quic-dropped"} <= found
    forged = next(q for q in tk.queries if q.engine == "udp" and q.query_type == "A")
    assert forged.addresses == ("192.0.2.1",)  # the demo profile's forged answer, through the censor
    assert "198.19.0.10" in tk.control.dns.addrs  # the control resolver is outside the censor's path

    tk = host.web_connectivity
    assert "http-diff" in {t["technique"] for t in tk.x_chokepoint.techniques}
    blockpage = next(r for r in tk.requests if r.response is not None and r.response.code == 403)
    assert blockpage.response.body_bytes == b"Blocked by the demo censor."


def test_a_closed_pipe_is_not_a_traceback(lab):
    """`chokepoint probe A B | true`: the reader is gone (closed before the interpreter has even started, so
    before the first write); the probe stops quietly."""
    args = [
        sys.executable,
        "-m",
        "chokepoint.cli",
        "probe",
        f"http://site.test:{lab.http_port}/",
        f"http://site.test:{lab.http_port}/x",
        *loopback_args(lab, "--tests", "dns,http"),
    ]
    producer = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    producer.stdout.close()
    _, stderr = producer.communicate(timeout=RUN_TIMEOUT)
    assert producer.returncode == 0 and b"Traceback" not in stderr and b"BrokenPipe" not in stderr
