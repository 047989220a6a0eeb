"""TSG's delayed block of unknown high-volume flows, offline: a capture built here (a TCP flow of real AEAD
ciphertext, ChaCha20-Poly1305 from ``cryptography``) analysed by ``chokepoint analyze`` with the tsg profile
shows the flow flagged at its first data packet and dropped at the first packet at which it is 24 h old and
has carried 50 MB - with the bundled values, so the capture spans a day of packet time (the frames are cut
to a snap length, as ``tcpdump -s`` does: the IP total length still counts), and with ``--param`` overrides."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from chokepoint.packet import build
from chokepoint.packet.pcap import CaptureWriter
from chokepoint.packet.record import ACK, PSH, SYN

CLI = [sys.executable, "-m", "chokepoint.cli"]
C, S, CPORT, SPORT = "192.0.2.10", "203.0.113.10", 41000, 9000
T0 = 1_717_372_800.0
RULE = "tsg-unknown-high-volume"


def _flow(path: Path, *, gap: float, size: int, count: int, snaplen: int) -> list[tuple[float, int]]:
    """SYN, SYN+ACK, ACK, then ``count`` client segments of ``size`` ciphertext bytes every ``gap`` s; the
    capture keeps ``snaplen`` bytes of each frame. Returns (ts, IP length) per packet."""
    aead = ChaCha20Poly1305(bytes(32))
    chunk = aead.encrypt(bytes(12), bytes(size - 16), None)
    packets = [
        (T0, build.ipv4_tcp(C, S, CPORT, SPORT, 1000, 0, SYN)),
        (T0 + 0.01, build.ipv4_tcp(S, C, SPORT, CPORT, 5000, 1001, SYN | ACK)),
        (T0 + 0.02, build.ipv4_tcp(C, S, CPORT, SPORT, 1001, 5001, ACK)),
    ]
    seq = 1001
    for k in range(count):
        packets.append((T0 + 1 + k * gap, build.ipv4_tcp(C, S, CPORT, SPORT, seq, 5001, PSH | ACK, chunk)))
        seq += size
    with CaptureWriter(path, linktype=101, snaplen=snaplen) as writer:
        for ts, data in packets:
            writer.write(ts, data)
    return [(ts, len(data)) for ts, data in packets]


def _expected(packets: list[tuple[float, int]], after_s: float, min_bytes: int) -> int:
    total = 0
    for i, (ts, length) in enumerate(packets, 1):
        total += length
        if ts - packets[0][0] >= after_s and total >= min_bytes:
            return i
    raise AssertionError("the capture never meets the thresholds")


def _analyze(path: Path, *params: str) -> dict:
    args = [*CLI, "analyze", str(path), "--profile", "tsg", "--format", "eve"]
    for p in params:
        args += ["--param", p]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(line) for line in proc.stdout.splitlines()]
    return record


def test_bundled_tsg_drops_a_day_old_50mb_flow_at_the_right_packet(tmp_path: Path) -> None:
    # 60000-byte segments every 100 s: 50 MB after ~833 of them, 24 h after the SYN at the 865th
    packets = _flow(tmp_path / "day.pcap", gap=100, size=60_000, count=900, snaplen=2048)
    assert packets[-1][0] - T0 > 86_400
    want = _expected(packets, 86_400, 50_000_000)
    record = _analyze(tmp_path / "day.pcap")
    cp = record["chokepoint"]
    (flag,) = cp["logs"]
    assert (flag["verdict"], flag["rule"], flag["then"], flag["packet"]) == ("flagged", RULE, "drop", 4)
    assert (cp["verdict"], cp["rule"], cp["packet"]) == ("drop", RULE, want)
    evidence = {e["field"]: e for e in cp["evidence"]}
    assert float(evidence["flow.age_s"]["value"]) >= 86_400 and int(evidence["flow.bytes"]["value"]) >= 50_000_000
    assert record["flow"]["age"] >= 86_400  # the flow record still covers the whole capture


def test_the_same_flow_one_packet_short_of_a_day_is_only_flagged(tmp_path: Path) -> None:
    packets = _flow(tmp_path / "short.pcap", gap=100, size=60_000, count=864, snaplen=2048)
    assert packets[-1][0] - T0 < 86_400 and sum(n for _, n in packets) > 50_000_000
    cp = _analyze(tmp_path / "short.pcap")["chokepoint"]
    assert cp["verdict"] == "allow" and cp["logs"][0]["verdict"] == "flagged"


def test_param_overrides_shorten_the_delay(tmp_path: Path) -> None:
    packets = _flow(tmp_path / "fast.pcap", gap=0.1, size=1400, count=100, snaplen=65535)
    want = _expected(packets, 3, 100_000)
    cp = _analyze(tmp_path / "fast.pcap", f"{RULE}.after_s=3", f"{RULE}.min_bytes=1e5")["chokepoint"]
    assert (cp["verdict"], cp["rule"], cp["packet"]) == ("drop", RULE, want)
    assert sum(n for _, n in packets[: want - 1]) < 100_000 <= sum(n for _, n in packets[:want])  # volume decided


def test_a_bad_param_is_rejected_naming_it(tmp_path: Path) -> None:
    _flow(tmp_path / "x.pcap", gap=1, size=100, count=1, snaplen=65535)
    proc = subprocess.run(
        [*CLI, "analyze", str(tmp_path / "x.pcap"), "--profile", "tsg", "--param", f"{RULE}.after_s=-1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert f"--param {RULE}.after_s=-1: -1 is less than the minimum of 0" in proc.stderr
    proc = subprocess.run(
        [*CLI, "analyze", str(tmp_path / "x.pcap"), "--profile", "tsg", "--param", "oops"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "expected RULE_ID.PARAM=VALUE" in proc.stderr
