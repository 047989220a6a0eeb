"""The RST finder (:mod:`chokepoint.probe.detect.rst`): every preset's resets found and named, several injectors
resetting one connection told apart.
"""

from __future__ import annotations

import pytest

from chokepoint.enforce.personality import PRESETS, parse_personality, preset
from chokepoint.packet import build
from chokepoint.packet.record import RST
from chokepoint.probe.detect import detect_captures, tsg_relation
from tests.probe.detect._censored import (
    CLIENT,
    SERVER,
    SERVER_TTL,
    Censored,
    _decode,
    _hello,
    _only,
    _same,
    _with_ttl,
    _write,
)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", list(PRESETS))
def test_reset_of_every_preset_is_found_and_named_first(tmp_path, name, seed):
    conn = Censored(preset(name), seed=seed)
    finding = _only(conn.detect(tmp_path), "rst")
    assert {p.index for p in finding.packets} == conn.injected  # every injected RST, nothing else
    best = finding.candidates[0]
    assert best.consistent
    assert set(best.personalities) == _same(name, lambda p: (p.reset, p.drop_trigger))
    assert all(other.mismatches > 0 for other in finding.candidates[1:])  # every other preset is ruled out
    assert (finding.client, finding.client_port, finding.server, finding.server_port) == (CLIENT, 40000, SERVER, 443)
    trigger = conn.trigger + 1
    assert any(f"TLS ClientHello, SNI blocked.example (#{trigger})" in e for e in finding.evidence)


def test_gfw_type_ii_fingerprint_names_the_burst_and_the_tsg_key(tmp_path):
    conn = Censored(preset("gfw-type-ii"))
    finding = _only(conn.detect(tmp_path), "rst")
    fp = dict(finding.fingerprint)
    assert fp["count"] == "3 to the client (identical), 3 to the server (identical)"
    assert fp["flags"] == "RA" and fp["df"] == "DF" and fp["ttl"] == "255 (initial 255, 0 hops)"
    assert fp["tsg_keys"].startswith("k = 13 fits 2 distinct")
    for p in finding.packets:
        assert {"ttl", "continued", "tsg"} <= set(p.signals)  # on-path: both ends went on talking
        assert tsg_relation(p.ip_id, p.window, build.address(CLIENT), build.address(SERVER))
    assert "burst of 3 identical RSTs toward the client within 0.2 ms" in finding.evidence
    checks = {c.field: c for c in finding.candidates[0].checks}
    assert checks["ip_id+window"].ok and checks["count"].ok and checks["trigger"].observed == "delivered"


def test_henan_payload_and_packetlogic_constants_are_reported(tmp_path):
    henan = _only(Censored(preset("henan")).detect(tmp_path), "rst")
    (rst,) = henan.packets
    assert (rst.flags, rst.ip_id, rst.df, rst.ttl, rst.payload) == ("RA", 1, False, 58, bytes(range(1, 10)) + b"\0")
    assert "payload" in rst.signals and henan.candidates[0].personalities == ("henan",)
    pl = _only(Censored(preset("packetlogic")).detect(tmp_path), "rst")
    assert {(p.ip_id, p.window) for p in pl.packets} == {(13330, 32120)}
    assert all("constant" in p.signals for p in pl.packets)
    assert any("IP ID 13330 (0x3412), an injector constant" in e for e in pl.evidence)


def test_an_inline_censor_is_told_from_an_on_path_one_by_where_the_rst_lands(tmp_path):
    inline = _only(Censored(preset("tsg")).detect(tmp_path), "rst")  # TSG preset: inline
    on_path = _only(Censored(parse_personality({"based_on": "tsg", "drop_trigger": False})).detect(tmp_path), "rst")
    observed = {f: {c.field: c for c in f.candidates[0].checks}["trigger"].observed for f in (inline, on_path)}
    assert observed == {inline: "dropped", on_path: "delivered"}
    assert not any("continued" in p.signals for p in inline.packets)  # nothing follows an inline drop
    assert all("continued" in p.signals for p in on_path.packets)


def test_ipv6_reset_is_found_by_hop_limit(tmp_path):
    conn = Censored(preset("gfw-type-iii"), v6=True)
    finding = _only(conn.detect(tmp_path), "rst")
    assert {p.index for p in finding.packets} == conn.injected
    assert all(p.ip_id is None and p.df is None and p.ttl == 255 for p in finding.packets)
    assert "gfw-type-iii" in finding.candidates[0].personalities


def test_residual_reset_on_a_new_connection_over_the_same_ports_is_its_own_finding(tmp_path):
    first = Censored(preset("gfw-type-i"))
    again = Censored(preset("gfw-type-i"), seed=9, client_isn=123_456)
    later = [(ts + 5.0, raw) for ts, raw in again.packets]  # well within the flow's idle timeout
    report = detect_captures([_write(tmp_path / "two.pcap", first.packets + later)])
    assert [f.kind for f in report.findings] == ["rst", "rst"]
    assert dict(report.counters)["tcp_connections"] == 2


def test_a_clean_connection_and_a_normal_reset_are_not_findings(tmp_path):
    conv = build.tcp_conversation(CLIENT, SERVER, 40000, 443, [_hello()], [b"\x16\x03\x03\x00\x02hi"], 1.0)
    conv = [(ts, _with_ttl(raw, SERVER_TTL) if raw[12:16] == build.address(SERVER) else raw) for ts, raw in conv]
    last = _decode(conv[-2][1])  # the server's FIN: the client answers a late segment with a plain RST
    reset = build.ipv4_tcp(CLIENT, SERVER, 40000, 443, last.ack, 0, RST, window=0, ttl=64, ip_id=0)
    report = detect_captures([_write(tmp_path / "clean.pcap", conv + [(9.0, reset)])])
    assert report.findings == ()
    assert report.message().startswith("nothing found: no injected packets in 1 capture")
    assert dict(report.counters)["rst_examined"] == 1


def test_gfw_types_i_ii_iii_resetting_one_connection_are_three_findings(tmp_path):
    """gfw-2023 runs types I and III beside type II (IEEE S&P 2025, table fingerprint): the detector splits the
    RSTs by injector and names each type among the best candidates of its own finding."""
    from chokepoint.policy import load_profile

    conn = Censored(load_profile("gfw-2023").personality)
    report = conn.detect(tmp_path)
    found = [f for f in report.findings if f.kind == "rst"]
    assert len(found) == 3, [f.summary for f in report.findings]
    assert set().union(*({p.index for p in f.packets} for f in found)) == conn.injected
    tops = [set(f.candidates[0].personalities) for f in found]
    assert "gfw-type-ii" in tops[0] and "gfw-type-i" in tops[1] and "gfw-type-iii" in tops[2]
    assert [len(f.packets) for f in found] == [6, 2, 2]
    assert all(any("one of 3 injectors" in e for e in f.evidence) for f in found)


def test_one_injector_with_fresh_copies_stays_one_finding(tmp_path):
    personality = parse_personality(
        {"reset": {"flags": "RA", "count": 3, "identical": False, "ttl": [40, 60], "ip_id": "random"}}
    )
    conn = Censored(personality, seed=4)
    found = [f for f in conn.detect(tmp_path).findings if f.kind == "rst"]
    assert len(found) == 1 and {p.index for p in found[0].packets} == conn.injected
