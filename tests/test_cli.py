"""The `chokepoint` command as a user runs it: real console script, real captures, exit codes."""

import json
import subprocess
import sys

import pytest

from chokepoint.packet.samples import write_demo_capture

CLI = [sys.executable, "-m", "chokepoint.cli"]


def run(*args, cwd=None):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def demo_pcap(tmp_path_factory):
    return write_demo_capture(tmp_path_factory.mktemp("demo") / "demo.pcap")


def eve(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_demo_capture_table_names_every_blocking_rule(demo_pcap):
    proc = run("analyze", demo_pcap, "--profile", "demo")
    assert proc.returncode == 0, proc.stderr
    for rule in (
        "demo-dns-forge",
        "demo-sni-reset",
        "demo-quic-drop",
        "demo-http-host-blockpage",
        "demo-http-keyword-reset",
        "demo-net-drop",
        "demo-log-tunnel",
    ):
        assert rule in proc.stdout
    assert "Summary" in proc.stdout and "frames skipped, by reason" in proc.stdout


def test_eve_output_has_suricata_fields_and_the_verdict(demo_pcap, tmp_path):
    out = tmp_path / "flows.json"
    proc = run("analyze", demo_pcap, "--profile", "demo", "--format", "eve", "-o", out)
    assert proc.returncode == 0, proc.stderr
    records = eve(out.read_text())
    assert len(records) == 12
    for r in records:
        for key in ("timestamp", "flow_id", "event_type", "src_ip", "dest_ip", "proto", "app_proto", "chokepoint"):
            assert key in r
        assert r["event_type"] == "flow" and r["chokepoint"]["profile"] == "demo"
    by_name = {
        (
            r["app_proto"],
            (r.get("tls") or r.get("quic") or r.get("http") or r.get("dns") or {}).get("sni")
            or (r.get("http") or {}).get("hostname")
            or (r.get("dns") or {}).get("rrname"),
        ): r
        for r in records
    }
    quic = by_name[("quic", "example-blocked.test")]
    assert quic["chokepoint"]["verdict"] == "drop" and quic["quic"]["version"] == "V-1"
    tls = by_name[("tls", "example-blocked.test")]
    assert tls["chokepoint"]["rule"] == "demo-sni-reset"
    assert tls["tls"]["ja3"]["hash"] and tls["tls"]["ja4"].startswith("t13d")
    evidence = tls["chokepoint"]["evidence"]
    assert {
        "field": "tls.sni",
        "value": "example-blocked.test",
        "matched": "demo_blocked: example-blocked.test",
    } in evidence
    assert by_name[("tls", "www.example.org")]["chokepoint"]["verdict"] == "allow"


def flow_id(record):
    return record["flow_id"]


def test_workers_give_the_same_flows(demo_pcap, tmp_path):
    one = eve(run("analyze", demo_pcap, "-p", "demo", "-f", "eve").stdout)
    two = eve(run("analyze", demo_pcap, "-p", "demo", "-f", "eve", "--workers", "2").stdout)
    assert sorted(one, key=flow_id) == sorted(two, key=flow_id)


def test_not_a_capture_is_a_one_line_error(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("this is not a capture\n")
    proc = run("analyze", bogus)
    assert proc.returncode == 2
    assert str(bogus) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_missing_file(tmp_path):
    proc = run("analyze", tmp_path / "absent.pcap")
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_truncated_capture_is_processed_up_to_the_damage(demo_pcap, tmp_path):
    data = demo_pcap.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 2 // 3])
    proc = run("analyze", cut, "-p", "demo", "-f", "eve")
    assert proc.returncode == 3
    assert "processed" in proc.stderr and "Traceback" not in proc.stderr
    records = eve(proc.stdout)
    full = eve(run("analyze", demo_pcap, "-p", "demo", "-f", "eve").stdout)
    assert 0 < len(records) <= len(full)


def test_a_bad_profile_names_file_line_and_column_and_nothing_is_analysed(demo_pcap, tmp_path):
    rules = tmp_path / "bad.yaml"
    rules.write_text(
        "rules:\n  - id: r1\n    action: reset\n    when:\n      tls.sni: {suffix: [ok.test]}\n"
        "  - id: r2\n    action: explode\n    when: {transport: tcp}\n"
    )
    proc = run("analyze", demo_pcap, "--rules", rules, "-f", "eve")
    assert proc.returncode == 1
    assert f"{rules}:7:" in proc.stderr
    assert proc.stdout == ""


def test_unknown_profile_name(demo_pcap):
    proc = run("analyze", demo_pcap, "--profile", "atlantis")
    assert proc.returncode == 1 and "atlantis" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_command(tmp_path):
    proc = run("demo", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "demo.pcap").exists() and "demo-sni-reset" in proc.stdout
