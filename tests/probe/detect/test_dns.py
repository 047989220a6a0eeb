"""The DNS finder (:mod:`chokepoint.probe.detect.dns`): races, known forged answers, several injectors."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rrset
import pytest

from chokepoint.enforce.personality import PRESETS, parse_personality, preset
from chokepoint.packet import build
from chokepoint.probe.detect import detect_captures
from tests.probe._shared import fingerprint_db
from tests.probe.detect._censored import CLIENT, RESOLVER, _dns_behaviour, _dns_capture, _only, _write


@pytest.mark.parametrize("rd", [True, False])
@pytest.mark.parametrize("name", list(PRESETS))
def test_dns_race_of_every_preset_is_found_and_named_first(tmp_path, name, rd):
    path, the_plan = _dns_capture(tmp_path / "dns.pcap", preset(name), rd=rd)
    finding = _only(detect_captures([path]), "dns")
    (forged,) = finding.packets
    assert forged.index == 2 and "race" in forged.signals
    query_flags = 0x0100 if rd else 0
    expected = {
        n for n in PRESETS if _dns_behaviour(preset(n), query_flags) == _dns_behaviour(preset(name), query_flags)
    }
    assert set(finding.candidates[0].personalities) == expected
    assert finding.candidates[0].consistent
    if not rd:  # a fixed 0x8180 (TSG, GFW injector 2) sets RD although the query did not
        assert ("gfw-type-ii" in expected) == (name in ("gfw-type-ii", "tsg"))


@pytest.mark.parametrize("name", ["iran", "turkmenistan"])
def test_a_lone_forged_answer_from_a_known_pool_is_found(tmp_path, name):
    path, the_plan = _dns_capture(tmp_path / "dns.pcap", preset(name), mode="inline")
    assert the_plan.drop_trigger  # replace mode: the query never reaches the resolver
    finding = _only(detect_captures([path]), "dns")
    assert finding.packets[0].signals == ("bogus-answer",)
    assert finding.candidates[0].personalities == (name,)


def test_a_lone_plausible_forged_answer_is_out_of_reach(tmp_path):
    """An inline censor that replaces the query and answers NOERROR without records leaves one well-formed
    answer: nothing in the capture tells it from the resolver's (a control measurement would)."""
    path, _ = _dns_capture(tmp_path / "dns.pcap", preset("linux"), mode="inline")
    report = detect_captures([path])
    assert report.findings == () and dict(report.counters)["dns_responses"] == 1


def test_retransmitted_identical_answers_are_no_race(tmp_path):
    query = dns.message.make_query("www.example.org", "A", id=9)
    answer = dns.message.make_response(query)
    answer.answer.append(dns.rrset.from_text("www.example.org.", 300, "IN", "A", "93.184.216.34"))
    packets = [
        (1.0, build.ipv4_udp(CLIENT, RESOLVER, 5300, 53, query.to_wire())),
        (1.5, build.ipv4_udp(CLIENT, RESOLVER, 5300, 53, query.to_wire())),
    ]
    packets += [
        (t, build.ipv4_udp(RESOLVER, CLIENT, 53, 5300, answer.to_wire(), ttl=57, ip_id=i))
        for i, t in enumerate((1.6, 1.7))
    ]
    assert detect_captures([_write(tmp_path / "dup.pcap", packets)]).findings == ()


@pytest.mark.shared_data
def test_a_known_gfw_poison_address_is_named_by_its_fingerprint(tmp_path):
    db = fingerprint_db()
    censor = parse_personality({"based_on": "linux", "dns": {"answers": ["8.7.198.45"]}})
    path, _ = _dns_capture(tmp_path / "dns.pcap", censor, mode="inline")
    finding = _only(detect_captures([path], fingerprints=db), "dns")
    assert any("8.7.198.45 is a known forged answer (ooni.cn_0, CN)" in e for e in finding.evidence)
    assert detect_captures([path]).findings == ()  # without the fingerprints: a plausible lone answer


def test_three_dns_injectors_answering_one_query_are_three_findings(tmp_path):
    """gfw-2023's Injectors 2, 1 and 3 race the resolver with different flags: one finding each, each named
    by its own flags and compression. The pool is known to the detector through the fingerprint database or a
    preset; here through a preset-like pool given to the personality under test."""
    from chokepoint.policy import load_profile

    personality = load_profile("gfw-2023").personality
    path, the_plan = _dns_capture(tmp_path / "dns.pcap", personality)
    assert len(the_plan.injections) == 3
    found = [f for f in detect_captures([path]).findings if f.kind == "dns"]
    assert len(found) == 3, [f.summary for f in found]
    assert [f.packets[0].index for f in found] == [2, 3, 4]
    tops = [set(f.candidates[0].personalities) for f in found]
    assert "gfw-type-ii" in tops[0] and "gfw-dns-1" in tops[1] and "gfw-dns-3" in tops[2]
    assert all(any("3 injectors answered" in e for e in f.evidence) for f in found)
