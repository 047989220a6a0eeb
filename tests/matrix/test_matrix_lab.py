"""The reduced matrix through the real CLI, real transports and the real censor (root; lab tests group).

Run 1 (both modes): the GFW's active prober alone against shadowsocks-libev with a stream cipher (identifiable:
blocked after probing), with an AEAD cipher (hardened since 3.3.1/3.3.3: never confirmed) and Trojan (TLS: not
flagged; a deliberately contrary expectation is flagged), with tcpdump on the VPS checking the probes on the wire
against the censor's events. Run 2 (inline): the bundled gfw profile as of 2022-11-01, whose published outcomes
for that day (Wu et al. 2023; net4people/bbs#129) are asserted. Run 4: the matrix through time, gfw at four
days (before, in and after the fully-encrypted-traffic era; one day reused), with its change points and chart.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from chokepoint.lab import system
from chokepoint.lab.instance import namespace
from chokepoint.matrix.model import OUTCOMES
from chokepoint.probe.activeprobes import find_active_probes
from tests.lab._lab import CLI, lab_guard, tools_reason  # noqa: F401
from tests.matrix._png import square_rows
from tests.matrix.probing import write_probing_profile

pytestmark = pytest.mark.skipif(
    bool(tools_reason(["curl", "tcpdump", "ss-server", "ss-local", "trojan"], "the matrix tests")),
    reason=str(tools_reason(["curl", "tcpdump", "ss-server", "ss-local", "trojan"], "the matrix tests")),
)


def _matrix(args: list[str], timeout: float = 900) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "matrix", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cells(doc: dict, **match) -> list[dict]:
    return [c for c in doc["cells"] if all(c[k] == v for k, v in match.items())]


def _start_tcpdump(pcap: Path, proc: subprocess.Popen[str]) -> subprocess.Popen[bytes] | None:
    """tcpdump on the VPS as soon as the matrix's lab has it (None if the matrix ended first)."""
    vps = namespace("vps")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        link = system.run(["ip", "link", "show", "vp0"], netns=vps, check=False) if vps in system.netns_list() else None
        if link is not None and b"state UP" in link.stdout:
            dump = subprocess.Popen(
                system.in_netns(
                    ["tcpdump", "-Z", "root", "-i", "vp0", "-U", "-s", "400", "-w", str(pcap), "tcp port 443"], vps
                ),
                stdout=subprocess.DEVNULL,
                stderr=open(pcap.with_suffix(".log"), "wb"),  # noqa: SIM115 - tcpdump's, closed with it
            )
            time.sleep(1.0)
            assert dump.poll() is None, pcap.with_suffix(".log").read_text()
            return dump
        time.sleep(0.1)
    return None


def test_reduced_matrix_prober_contrast_on_the_wire(lab_guard, tmp_path):  # noqa: F811
    profile = write_probing_profile(tmp_path)
    out = tmp_path / "m1"
    pcap = tmp_path / "vps.pcap"
    proc = _matrix(
        [
            "-p",
            str(profile),
            "-t",
            "shadowsocks-stream,shadowsocks-aead,trojan",
            "-m",
            "inline",
            "-m",
            "mirror",
            "--attempts",
            "3",
            "--probe-time-scale",
            "0.002",
            "--probe-max-delay",
            "6",
            "-o",
            str(out),
        ]
    )
    dump = _start_tcpdump(pcap, proc)
    try:
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        if dump is not None:
            dump.send_signal(signal.SIGINT)
            dump.wait(timeout=10)
    assert proc.returncode == 0, stderr[-3000:]
    assert dump is not None
    doc = json.loads((out / "matrix.json").read_text())
    for name in ("matrix.html", "matrix.png", "matrix.md"):
        assert (out / name).stat().st_size > 0
    assert len(doc["cells"]) == 3 + 3 * 2
    for cell in doc["cells"]:
        assert cell["outcome"] in OUTCOMES and {"profile", "transport", "mode", "how", "expected", "evidence"} <= set(
            cell
        )
    assert {c["outcome"] for c in _cells(doc, profile="baseline")} == {"works"}
    assert doc["transports"]["shadowsocks-stream"]["version"].startswith("3.3.")

    stream = _cells(doc, profile="gfw-prober-test", transport="shadowsocks-stream", mode="inline")[0]
    aead = _cells(doc, profile="gfw-prober-test", transport="shadowsocks-aead", mode="inline")[0]
    trojan = _cells(doc, profile="gfw-prober-test", transport="trojan", mode="inline")[0]
    # identifiable (stream cipher: some probes closed at once, others timed out) -> blocked after probing
    assert stream["outcome"] == "blocked", stream["how"]
    assert "active probe" in stream["how"]
    assert stream["evidence"]["rules"] == ["gfw-ap-block-shadowsocks"]
    block = stream["evidence"]["censor_events"][0]
    assert block["confirmed_by"] == "content-dependent-close" and block["residual_scope"] == "server-port"
    reactions = stream["evidence"]["active_probes"]["reactions"]
    assert reactions.get("fin", 0) + reactions.get("rst", 0) >= 1 and reactions.get("timeout", 0) >= 1
    # hardened (AEAD, shadowsocks-libev >= 3.3.1): probed, every probe timed out, never confirmed
    assert aead["outcome"] == "works", aead["how"]
    assert aead["evidence"]["active_probes"]["count"] >= 4
    assert set(aead["evidence"]["active_probes"]["reactions"]) == {"timeout"}
    assert aead["evidence"]["rules"] == []
    assert stream["agrees"] is True and aead["agrees"] is True  # Alice et al.'s contrast, reproduced
    # TLS first packet: not flagged, not probed; the contrary expectation is flagged
    assert trojan["outcome"] == "works" and trojan["evidence"]["active_probes"]["count"] == 0
    assert trojan["agrees"] is False and "≠" in (out / "matrix.md").read_text()
    # mirror mode: the same confirmation, but a copy of the traffic cannot drop: recorded, not enforced
    mirror_stream = _cells(doc, profile="gfw-prober-test", transport="shadowsocks-stream", mode="mirror")[0]
    if mirror_stream["evidence"]["rules"]:
        assert mirror_stream["outcome"] == "works"
        assert "not enforced" in json.dumps(mirror_stream["evidence"]["censor_events"])

    # the probes on the wire (tcpdump at the VPS) are the ones the censor's events report
    events = [p for c in doc["cells"] for r in c["runs"] for p in r["probes"]]
    servers = {p["flagged_flow"].split(" -> ")[1].split(":")[0] for p in events}
    wire = find_active_probes([pcap], servers=servers)
    sent = Counter(p["type"] for p in events if p["type"] in ("R1", "R2", "NR1", "NR2"))
    seen = Counter(p.type for p in wire.probes)
    assert sent and seen == sent, (seen, sent)
    summary = wire.summary()
    assert 46 <= summary["ttl_range"][0] and summary["ttl_range"][1] <= 50  # Alice et al. 3.4: TTL 46-50
    assert summary["ports_in_32768_60999"] == 1.0
    clock = summary["tsval_clock"]
    assert clock["shared"] is True and clock["sources"] > 3 and 900 < clock["rate_hz"] < 1100, clock
    # and `chokepoint detect` reports them
    detected = subprocess.run(
        [*CLI, "detect", str(pcap), "--format", "json"], capture_output=True, text=True, timeout=120
    )
    assert json.loads(detected.stdout)["active_probes"]["summary"]["probes"] == len(wire.probes)


def test_reduced_matrix_gfw_published_outcomes(lab_guard, tmp_path):  # noqa: F811
    out = tmp_path / "m2"
    proc = _matrix(
        [
            "-p",
            "gfw",
            "--as-of",
            "2022-11-01",
            "-t",
            "shadowsocks-aead,trojan",
            "--attempts",
            "6",
            "--seed",
            "3",
            "--probe-time-scale",
            "0.002",
            "--probe-max-delay",
            "6",
            "-o",
            str(out),
        ]
    )
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    doc = json.loads((out / "matrix.json").read_text())
    aead = _cells(doc, profile="gfw", transport="shadowsocks-aead")[0]
    trojan = _cells(doc, profile="gfw", transport="trojan")[0]
    # Wu et al. 2023: fully encrypted traffic blocked (dropped, residual on the server port)
    assert aead["expected"]["outcome"] == "blocked" and "Wu et al." in aead["expected"]["cite"]
    assert aead["outcome"] == "blocked" and aead["agrees"] is True, aead["how"]
    assert "gfw-fet-drop" in aead["evidence"]["rules"]
    assert any(e.get("residual_s") == 180 for e in aead["evidence"]["censor_events"])
    # net4people/bbs#129: TLS-based proxies blocked by port from October 2022
    assert trojan["expected"]["outcome"] == "blocked" and "net4people/bbs#129" in trojan["expected"]["cite"]
    assert trojan["outcome"] == "blocked" and trojan["agrees"] is True, trojan["how"]
    assert "gfw-tls-proxy-port-block" in trojan["evidence"]["rules"]
    assert doc["config"]["as_of"] == "2022-11-01"


CRASHING = """\
name: crashing
title: a transport whose server exits at once
programs: [sh]
proto: tcp
server:
  run:
    - {name: server, argv: [sh, -c, "echo 'fatal: cannot bind' >&2; exit 3"], grace: 0.5}
fetch: {via: socks5h, proxy: "$server_ip:$port"}
"""


def test_crash_is_an_error_cell_with_its_log_and_ctrl_c_keeps_the_measured_cells(lab_guard, tmp_path):  # noqa: F811
    spec = tmp_path / "crashing.yaml"
    spec.write_text(CRASHING)
    out = tmp_path / "m3"
    proc = _matrix(["-p", "demo,iran", "-t", f"{spec},socks5,http-connect", "-o", str(out)])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # interrupt once the first profile's cells are in
        try:
            if len(json.loads((out / "matrix.json").read_text())["cells"]) >= 4:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr
    doc = json.loads((out / "matrix.json").read_text())
    assert doc["interrupted"] is True and 4 <= len(doc["cells"]) < 9
    crash = _cells(doc, profile="baseline", transport="crashing")[0]
    assert crash["outcome"] == "error" and "exited" in crash["how"]
    assert "fatal: cannot bind" in crash["evidence"]["log"]
    assert (out / "matrix.html").stat().st_size > 0 and (out / "matrix.png").stat().st_size > 0
    assert not [ns for ns in system.netns_list() if ns.startswith(namespace(""))]  # the lab is down


def test_reduced_matrix_through_time_gfw_fully_encrypted_era(lab_guard, tmp_path):  # noqa: F811
    """gfw at four days through the real CLI: Shadowsocks (AEAD: not confirmed by the prober) works before the
    fully-encrypted-traffic block (2021-11-01..2023-03-07, on the VPS range), is blocked in it and works after
    it; HTTP CONNECT works throughout; 2021-09-01 loads the same profile as 2021-06-01, so it is not run."""
    out = tmp_path / "m4"
    proc = _matrix(
        [
            "-p",
            "gfw",
            "--as-of",
            "2021-06-01,2021-09-01,2022-06-01,2023-06-01",
            "-t",
            "shadowsocks-aead,http-connect",
            "--attempts",
            "3",
            "--probe-time-scale",
            "0.002",
            "--probe-max-delay",
            "6",
            "-o",
            str(out),
        ]
    )
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    doc = json.loads((out / "matrix.json").read_text())
    assert doc["version"] == 2 and doc["config"]["days"] == {
        "gfw": ["2021-06-01", "2021-09-01", "2022-06-01", "2023-06-01"]
    }
    by_day = {(c["transport"], c["as_of"]): c for c in _cells(doc, profile="gfw")}
    aead = [
        by_day[("shadowsocks-aead", d)]["outcome"] for d in ("2021-06-01", "2021-09-01", "2022-06-01", "2023-06-01")
    ]
    assert aead == ["works", "works", "blocked", "works"], [c["how"] for c in _cells(doc, transport="shadowsocks-aead")]
    assert "gfw-fet-drop" in by_day[("shadowsocks-aead", "2022-06-01")]["evidence"]["rules"]
    assert by_day[("shadowsocks-aead", "2022-06-01")]["agrees"] is True
    assert {by_day[("http-connect", d)]["outcome"] for d in ("2021-06-01", "2022-06-01", "2023-06-01")} == {"works"}
    reused = [c for c in doc["cells"] if c.get("reused_from")]
    assert {(c["transport"], c["as_of"], c["reused_from"]) for c in reused} == {
        ("shadowsocks-aead", "2021-09-01", "2021-06-01"),
        ("http-connect", "2021-09-01", "2021-06-01"),
    }
    assert all(c["runs"] == [] for c in reused)
    assert "2 cells not run" in stderr
    md = (out / "matrix.md").read_text()
    assert "shadowsocks-aead stopped working (works → blocked) between 2021-09-01 and 2022-06-01" in md
    assert "2021-11-01 rule gfw-fet-drop starts" in md
    assert "shadowsocks-aead started working (blocked → works) between 2022-06-01 and 2023-06-01" in md
    assert "2021-09-01 copies 2021-06-01" in md
    chart = out / "matrix-timeline-gfw.png"
    assert square_rows(chart) == 2
    assert "<h2>gfw through time</h2>" in (out / "matrix.html").read_text()
    assert not [ns for ns in system.netns_list() if ns.startswith(namespace(""))]  # the lab is down
