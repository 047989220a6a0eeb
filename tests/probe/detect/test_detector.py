"""The detector over whole captures (:mod:`chokepoint.probe.detect.detector`): real captures without a censor,
damaged and irrelevant captures, the command line, and fuzzing.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from chokepoint.cli import app
from chokepoint.enforce.personality import parse_personality, preset
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import Frame
from chokepoint.packet.record import RST, TCP
from chokepoint.packet.samples import write_demo_capture
from chokepoint.policy.verdict import Action
from chokepoint.probe.detect import Detector, detect_captures
from tests._corpus import NDPI_PCAPS, capture_paths, frames_of, mutations, not_found, packets
from tests.probe._shared import FINGERPRINTS_DIR, fingerprint_db, require
from tests.probe.detect._censored import GET, LINKTYPE_RAW, OK, Censored, _dns_capture, _only


@pytest.mark.shared_data
def test_real_captures_give_no_findings():
    """The nDPI captures hold normal teardowns (bursts of client RSTs answering late segments, RSTs with DF and
    IP ID unlike the host's other packets, a server's three identical RSTs): weak signals only, no finding."""
    paths = capture_paths()
    if not paths:
        pytest.skip(not_found(NDPI_PCAPS))
    report = detect_captures(paths)
    assert report.findings == (), [f.summary for f in report.findings]
    rsts = sum(1 for path in paths for p in packets(path) if p.proto == TCP and p.tcp_flags & RST)
    assert rsts > 10 and dict(report.counters)["rst_examined"] == rsts
    with_fingerprints = detect_captures(paths, fingerprints=fingerprint_db())
    assert with_fingerprints.findings == ()


@pytest.mark.shared_data
def test_http_manipulated_capture_has_no_injection():
    """Its client sends obfuscated requests with odd TTLs (143, 190); the server's answers are its own."""
    path = NDPI_PCAPS / "http-manipulated.pcap"
    if not path.is_file():
        pytest.skip(not_found(path))
    report = detect_captures([path])
    assert report.findings == () and dict(report.counters)["http_responses"] >= 2


def test_capture_without_relevant_traffic_says_nothing_found(tmp_path):
    demo = write_demo_capture(tmp_path / "demo.pcap")
    result = CliRunner().invoke(app, ["detect", str(demo)])
    assert result.exit_code == 0, result.output
    assert "nothing found: no injected packets in 1 capture" in result.output
    report = detect_captures([demo])
    assert report.findings == () and dict(report.counters)["tcp_connections"] >= 5


def test_truncated_capture_is_read_up_to_the_damage(tmp_path):
    conn = Censored(preset("gfw-type-ii"))
    path = conn.write(tmp_path / "cut.pcap")
    data = path.read_bytes()
    path.write_bytes(data[:-30])  # the last record loses its tail
    report = detect_captures([path])
    assert report.truncated and "short record" in report.captures[0].error
    assert _only(report, "rst").candidates[0].personalities == ("gfw-type-ii",)
    result = CliRunner().invoke(app, ["detect", str(path)])
    assert result.exit_code == 3
    assert "processed" in result.output and "up to the damage" in result.output


def test_cli_json_has_one_object_per_finding(tmp_path):
    path = Censored(preset("henan")).write(tmp_path / "henan.pcap")
    result = CliRunner().invoke(app, ["detect", "--format", "json", str(path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (finding,) = doc["findings"]
    assert finding["kind"] == "rst" and finding["flow"]["server_port"] == 443
    assert finding["packets"][0]["payload_hex"] == "01020304050607080900"
    best = finding["candidates"][0]
    assert best["personalities"] == ["henan"] and best["consistent"] and best["score"] > 0
    assert "IEEE S&P 2025" in best["cite"][0]
    assert {c["result"] for c in best["checks"]} <= {"match", "n/a"}
    table = CliRunner().invoke(app, ["detect", str(path)])
    assert table.exit_code == 0 and "Injected packets" in table.output
    assert "henan: score" in table.output and "1 finding (1 rst) in 1 capture" in table.output


def test_cli_rejects_a_file_that_is_no_capture(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a capture\n")
    result = CliRunner().invoke(app, ["detect", str(bogus)])
    assert result.exit_code == 2 and "not a pcap or pcapng capture" in result.output
    assert CliRunner().invoke(app, ["detect", str(tmp_path / "missing.pcap")]).exit_code == 2


def _seed_packets() -> list[bytes]:
    out = []
    for name in ("gfw-type-ii", "henan", "packetlogic"):
        out += [raw for _ts, raw in Censored(preset(name)).packets]
    out += [
        raw
        for _ts, raw in Censored(
            preset("packetlogic"), Action.BLOCKPAGE, request=GET, response=OK, mode="mirror", port=80
        ).packets
    ]
    out += [raw for _ts, raw in Censored(preset("linux"), Action.ICMP_UNREACHABLE).packets]
    return out


_SEEDS = _seed_packets()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutations(_SEEDS), min_size=1, max_size=24))
def test_damaged_packets_never_raise(raws):
    detector = Detector()
    decoder = Decoder(settings_fragment_reassembly=True)
    for i, raw in enumerate(raws, 1):
        pkt = decoder.decode(Frame(1000.0 + i * 0.001, LINKTYPE_RAW, raw, len(raw), i))
        if pkt is not None:
            detector.feed(pkt)
    for finding in detector.finish():
        json.dumps(finding.to_json())


@pytest.mark.shared_data
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_real_frames_never_raise(data):
    paths = capture_paths()
    if not paths:
        pytest.skip(not_found(NDPI_PCAPS))
    frames = [f for path in paths[:40] for f in frames_of(path)[:30]]
    seeds = [f.data for f in frames if f.linktype == 1]
    chosen = data.draw(st.lists(mutations(seeds), min_size=1, max_size=16))
    detector = Detector()
    decoder = Decoder()
    for i, raw in enumerate(chosen, 1):
        pkt = decoder.decode(Frame(float(i), 1, raw, len(raw), i))
        if pkt is not None:
            detector.feed(pkt)
    detector.finish()


@pytest.mark.shared_data
def test_fingerprint_folder_is_used_by_the_cli(tmp_path):
    require(FINGERPRINTS_DIR)
    path, _ = _dns_capture(
        tmp_path / "dns.pcap",
        parse_personality({"based_on": "linux", "dns": {"answers": ["8.7.198.45"]}}),
        mode="inline",
    )
    without = CliRunner().invoke(app, ["detect", str(path)])
    with_db = CliRunner().invoke(
        app, ["detect", "--format", "json", "--fingerprints", str(FINGERPRINTS_DIR), str(path)]
    )
    assert "nothing found" in without.output
    assert json.loads(with_db.stdout)["findings"][0]["kind"] == "dns"
