"""The reduced matrix through the real CLI, real transports and the real censor (root; lab tests group).

Run 1 (both modes): the GFW's active prober alone against shadowsocks-libev with a stream cipher (identifiable:
blocked after probing), with an AEAD cipher (hardened since 3.3.1/3.3.3: never confirmed) and Trojan (TLS: not
flagged), with tcpdump on the VPS checking the probes on the wire against the censor's events. Run 2 (inline):
the bundled gfw profile, whose published outcomes are asserted (and its documented gap, TLS proxies after
October 2022, flagged as a disagreement).
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
        if vps in system.netns_list() and b"vp0" in system.run(["ip", "link"], netns=vps, check=False).stdout:
            dump = subprocess.Popen(
                system.in_netns(
                    ["tcpdump", "-Z", "root", "-i", "vp0", "-U", "-s", "400", "-w", str(pcap), "tcp port 443"], vps
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
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
    # TLS first packet: not flagged, not probed
    assert trojan["outcome"] == "works" and trojan["evidence"]["active_probes"]["count"] == 0
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
    # the TLS-proxy blocking of October 2022 is not in the gfw profile: the matrix flags the disagreement
    assert trojan["expected"]["outcome"] == "blocked" and trojan["outcome"] == "works"
    assert trojan["agrees"] is False and trojan["evidence"]["rules"] == []
    assert "≠" in (out / "matrix.md").read_text()
