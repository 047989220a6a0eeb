"""Personalities: parsing from YAML (with positions), validation errors, presets, per-verdict overrides."""

from __future__ import annotations

import pytest

from chokepoint.enforce.personality import (
    DEFAULT,
    PRESET_CITES,
    PRESETS,
    Field16,
    Personality,
    TsgSeed,
    Ttl,
    effective,
    parse_personality,
    preset,
)
from chokepoint.policy import load_profile
from chokepoint.policy.errors import PolicyError
from chokepoint.policy.profile import list_profiles
from chokepoint.policy.verdict import Action, Verdict
from chokepoint.policy.yamlsrc import load_yaml


def _yaml(text: str):
    data, marks = load_yaml(text, "p.yaml")
    return data["personality"], marks


def test_default_is_the_documented_neutral_linux_like_personality():
    assert parse_personality(None) is DEFAULT
    assert parse_personality({}) == DEFAULT
    r = DEFAULT.reset
    assert (r.flags, r.count, r.targets, r.seq) == ("RA", 1, "both", "in-window")
    assert r.ip.ttl == Ttl("fixed", 64, 64)
    assert r.ip.ip_id == Field16("random", 0, 0xFFFF)
    assert r.ip.df is True and r.ip.window == Field16("fixed", 0)
    assert DEFAULT.drop_trigger is True and DEFAULT.residual.seconds == 0
    assert DEFAULT.icmp.code == 13 and DEFAULT.icmp.code6 == 1


def test_full_personality_from_yaml():
    raw, marks = _yaml("""
personality:
  name: gfw-like
  ip: {ttl: 250, df: false}
  reset:
    flags: R
    count: 3
    targets: client
    seq: ack-based
    ttl: [40, 60]
    ip_id: {increment: 1000, step: 7}
    window: tsg
    tsg: {seed_key: 11, seed_max: 60000, val: [10, 20]}
    payload: "01 02 03 04 05 06 07 08 09 00"
    identical: false
  dns:
    flags: 0x8180
    answer_ttl: 300
    answers: [203.0.113.7, "2001:db8::7"]
    answers_per_response: 2
    compression: false
    copy_query_edns: true
    mode: race
    ttl: mirror
  blockpage:
    status: 302
    location: "http://warning.example/blocked"
    headers: {Server: censor, X-Blocked: "yes"}
    body: ""
    close: rst
    reset_server: false
    mss: 536
    window: 32120
  throttle: {rate_kbps: 130, burst_bytes: 3000}
  delay: {ms: 250, jitter_ms: 20}
  icmp: {code: 10, code6: 1, source: 198.18.0.1, ttl: 255}
  residual: {scope: client-server, seconds: 90, rearm: true, action: drop}
  drop_trigger: false
""")
    p = parse_personality(raw, file="p.yaml", marks=marks)
    assert p.name == "gfw-like"
    r = p.reset
    assert (r.flags, r.count, r.targets, r.seq, r.identical) == ("R", 3, "client", "ack-based", False)
    assert r.payload == bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
    assert r.ip.ttl == Ttl("range", 40, 60) and r.ip.df is False  # df from the shared ip section
    assert r.ip.ip_id == Field16("increment", 1000, 0, 7)
    assert r.ip.window == Field16("tsg") and r.ip.tsg == TsgSeed(11, 60000, 10, 20)
    d = p.dns
    assert (d.flags, d.answer_ttl, d.answers_per_response) == (0x8180, 300, 2)
    assert d.answers == ("203.0.113.7", "2001:db8::7")
    assert (d.compression, d.copy_query_edns, d.mode) == (False, True, "race")
    assert d.ip.ttl.kind == "mirror" and d.ip.df is False
    b = p.blockpage
    assert (b.status, b.location, b.body, b.close, b.reset_server, b.mss) == (
        302,
        "http://warning.example/blocked",
        b"",
        "rst",
        False,
        536,
    )
    assert b.headers == (("Server", "censor"), ("X-Blocked", "yes"))
    assert b.ip.window == Field16("fixed", 32120) and b.ip.ttl == Ttl("fixed", 250, 250)
    assert (p.throttle.rate_kbps, p.throttle.burst_bytes) == (130.0, 3000)
    assert (p.delay.ms, p.delay.jitter_ms) == (250.0, 20.0)
    assert (p.icmp.code, p.icmp.source, p.icmp.ip.ttl.lo) == (10, "198.18.0.1", 255)
    assert (p.residual.scope, p.residual.seconds, p.residual.rearm, p.residual.action) == (
        "client-server",
        90.0,
        True,
        "drop",
    )
    assert p.drop_trigger is False


@pytest.mark.parametrize(
    ("snippet", "where", "message"),
    [
        ("reset: {flags: RST}", "reset.flags", "expected R or RA"),
        ("reset: {count: 0}", "reset.count", "out of range"),
        ("reset: {count: 17}", "reset.count", "out of range"),
        ("reset: {count: true}", "reset.count", "expected an integer"),
        ("reset: {targets: everyone}", "reset.targets", "expected one of"),
        ("reset: {seq: exact}", "reset.seq", "in-window, ack-based"),
        ("reset: {ttl: 0}", "reset.ttl", "out of range"),
        ("reset: {ttl: [60, 40]}", "reset.ttl", "above high"),
        ("reset: {ttl: copy}", "reset.ttl", "mirror"),
        ("reset: {ip_id: 65536}", "reset.ip_id", "out of range"),
        ("reset: {ip_id: {increment: 5, stride: 2}}", "reset.ip_id.stride", "unknown key"),
        ("reset: {window: -1}", "reset.window", "out of range"),
        ("reset: {df: 1}", "reset.df", "true or false"),
        ("reset: {payload: 'zz'}", "reset.payload", "hex bytes"),
        ("reset: {payload: [1, 256]}", "reset.payload.1", "out of range"),
        ("reset: {tsg: {seed_key: 13, val: [1, 6000]}}", "reset.tsg.val.1", "out of range"),
        ("reset: {bogus: 1}", "reset.bogus", "unknown key"),
        ("dns: {flags: 0x18180}", "dns.flags", "out of range"),
        ("dns: {flags: 'eighty'}", "dns.flags", "16-bit number"),
        ("dns: {flags: 0x0180}", "dns.flags", "lacks the QR bit"),
        ("dns: {answers: []}", "dns.answers", "non-empty list"),
        ("dns: {answers: [1.2.3.999]}", "dns.answers.0", "not an IPv4 or IPv6"),
        ("dns: {mode: both}", "dns.mode", "race, replace"),
        ("dns: {window: 5}", "dns.window", "unknown key"),
        ("blockpage: {status: 302}", "blockpage", "needs a location"),
        ("blockpage: {status: 99}", "blockpage.status", "out of range"),
        ("blockpage: {headers: {Content-Length: '5'}}", "blockpage.headers", "set by the enforcer"),
        ("blockpage: {headers: {'Bad Name': x}}", "blockpage.headers", "header name"),
        ("blockpage: {location: 'http://a b'}", "blockpage.location", "without spaces"),
        ("blockpage: {close: never}", "blockpage.close", "fin, rst"),
        ("throttle: {rate_kbps: 0}", "throttle.rate_kbps", "> 0"),
        ("delay: {ms: -5}", "delay.ms", ">= 0"),
        ("icmp: {code: 16}", "icmp.code", "out of range"),
        ("icmp: {source: router}", "icmp.source", "IP address"),
        ("residual: {scope: 5-tuple}", "residual.scope", "3-tuple, 4-tuple, server, client-server"),
        ("residual: {seconds: -1}", "residual.seconds", ">= 0"),
        ("residual: {action: blackhole}", "residual.action", "drop, reset, auto"),
        ("drop_trigger: yes", "drop_trigger", "true or false"),
        ("based_on: gfw-type-iv", "based_on", "gfw-type-ii"),
        ("colour: red", "colour", "unknown key"),
        ("reset: [1, 2]", "reset", "expected a mapping"),
    ],
)
def test_bad_values_are_policy_errors_at_their_position(snippet, where, message):
    text = "personality:\n  name: x\n  " + snippet + "\n"
    raw, marks = _yaml(text)
    with pytest.raises(PolicyError) as info:
        parse_personality(raw, file="p.yaml", marks=marks)
    err = info.value
    assert err.file == "p.yaml" and err.line == 3, str(err)  # every snippet sits on line 3
    assert f"personality.{where}:" in err.message and message in err.message, str(err)


def test_errors_without_marks_still_name_the_key():
    with pytest.raises(PolicyError, match=r"personality\.reset\.count: 0 is out of range"):
        parse_personality({"reset": {"count": 0}})


def test_presets_parse_and_carry_citations():
    assert set(PRESETS) == set(PRESET_CITES)
    for name in PRESETS:
        p = preset(name)
        assert isinstance(p, Personality) and p.name == name
    ii = preset("gfw-type-ii")
    assert (ii.reset.flags, ii.reset.count, ii.reset.ip.df, ii.reset.ip.ttl.lo) == ("RA", 3, True, 255)
    assert ii.reset.ip.ip_id.kind == ii.reset.ip.window.kind == "tsg" and ii.reset.ip.tsg.seed_key == 13
    assert ii.dns.flags == 0x8180 and ii.residual.seconds == 180
    henan = preset("henan")
    assert henan.reset.payload == bytes.fromhex("01020304050607080900") and henan.reset.targets == "client"
    assert henan.reset.ip.ip_id == Field16("fixed", 1) and henan.reset.ip.df is False
    pl = preset("packetlogic")
    assert pl.reset.ip.ip_id.lo == pl.blockpage.ip.ip_id.lo == pl.dns.ip.ip_id.lo == 13330
    assert pl.reset.ip.window.lo == pl.blockpage.ip.window.lo == 32120
    with pytest.raises(PolicyError, match="no personality preset"):
        preset("nope")


def test_based_on_a_preset_then_overridden():
    p = parse_personality({"based_on": "gfw-type-ii", "reset": {"count": 2}})
    assert p.name == "gfw-type-ii" and p.reset.count == 2 and p.reset.ip.ttl.lo == 255
    assert p.reset.flags == "RA" and p.residual.seconds == 180


def test_effective_applies_rule_params():
    params = {"count": 3, "flags": "RA", "targets": "both", "residual_seconds": 180, "rate_kbps": 140}
    p = effective(DEFAULT, params)
    assert (p.reset.count, p.reset.flags, p.reset.targets) == (3, "RA", "both")
    assert p.residual.seconds == 180 and p.throttle.rate_kbps == 140
    assert p.reset.ip == DEFAULT.reset.ip and p.dns == DEFAULT.dns
    # Verdict.params is a tuple of pairs, values frozen (lists as tuples) by the profile loader
    verdict = Verdict(
        Action.DNS_FORGE,
        "r",
        params=(
            ("answers", ("192.0.2.1", "2001:db8::1")),
            ("ttl", 5),
            ("probability", 0.5),
            ("residual_s", 60),
            ("residual_scope", "4-tuple"),
        ),
    )
    q = effective(DEFAULT, verdict.params)
    assert q.dns.answers == ("192.0.2.1", "2001:db8::1") and q.dns.answer_ttl == 5
    assert (q.residual.seconds, q.residual.scope) == (60, "4-tuple")
    assert effective(DEFAULT, ()) is DEFAULT
    icmp = effective(DEFAULT, {"code": 3})
    assert (icmp.icmp.code, icmp.icmp.code6) == (3, 4)  # port unreachable in both families
    page = effective(DEFAULT, {"status": 302, "location": "http://x.example/"})
    assert page.blockpage.status == 302


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"count": 0}, "count: 0 is out of range"),
        ({"flags": "S"}, "flags: expected R or RA"),
        ({"answers": ["not-an-ip"]}, "not an IPv4 or IPv6 address"),
        ({"status": 301}, "needs a location"),
        ({"rate_kbps": -1}, "rate_kbps"),
        ({"code": 99}, "code: 99 is out of range"),
        ({"residual_scope": "5-tuple"}, "residual_scope"),
        ({"colour": "red"}, "unknown rule parameter"),
    ],
)
def test_effective_rejects_bad_params(params, message):
    with pytest.raises(PolicyError, match=message):
        effective(DEFAULT, params)


@pytest.mark.parametrize("name", list_profiles())
def test_every_bundled_rule_has_enforceable_params(name):
    """The rule-param vocabulary of the profile schema and of ``effective`` agree, for every bundled rule."""
    profile = load_profile(name)
    for rule in profile.policy.rules:
        p = effective(DEFAULT, rule.params)
        for key, value in rule.params:
            if key == "count":
                assert p.reset.count == value
            if key == "residual_s":
                assert p.residual.seconds == value
            if key == "answers":
                assert p.dns.answers == tuple(value)


# ----------------------------------------------------------------- extra TCP flag bits and parallel injectors


@pytest.mark.parametrize(
    ("text", "flags", "extra"),
    [
        ("R", "R", 0),
        ("RA", "RA", 0),
        ("R+AE", "R", 0x100),
        ("R+AE+RE", "R", 0x300),
        ("RA+RE", "RA", 0x200),
    ],
)
def test_reset_flags_take_ae_and_reserved_bits(text, flags, extra):
    p = parse_personality({"reset": {"flags": text}})
    assert (p.reset.flags, p.reset.extra_flags) == (flags, extra)
    assert p.reset.flags_text == text
    assert effective(DEFAULT, {"flags": text}).reset.flags_text == text


@pytest.mark.parametrize("bad", ["R+XX", "R+AE+AE", "A", "+AE", "R+", 3])
def test_reset_flags_reject_anything_else(bad):
    with pytest.raises(PolicyError, match="expected R or RA"):
        parse_personality({"reset": {"flags": bad}})


def test_parallel_injectors_take_their_preset_reset_style():
    p = parse_personality(
        {
            "based_on": "gfw-type-ii",
            "parallel": [{"preset": "gfw-type-i"}, {"preset": "gfw-type-iii", "probability": 0.5}],
        }
    )
    assert [(o.name, o.probability) for o in p.parallel] == [("gfw-type-i", 1.0), ("gfw-type-iii", 0.5)]
    assert p.parallel[0].reset == preset("gfw-type-i").reset and p.parallel[1].reset == preset("gfw-type-iii").reset
    assert preset("gfw-type-ii").parallel == ()
    assert effective(p, {"injector": "henan"}).parallel == ()  # a rule's own injector acts alone


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"parallel": {"preset": "gfw-type-i"}}, "expected a list"),
        ({"parallel": [{"probability": 1}]}, "names a preset"),
        ({"parallel": [{"preset": "nope"}]}, "expected one of"),
        ({"parallel": [{"preset": "gfw-type-i", "probability": 1.5}]}, "above 1"),
        ({"parallel": [{"preset": "gfw-type-i", "colour": "red"}]}, "unknown key"),
    ],
)
def test_parallel_injector_errors(raw, message):
    with pytest.raises(PolicyError, match=message):
        parse_personality(raw)


def test_bundled_profiles_use_the_new_fields():
    from chokepoint.policy import load_profile

    pk = load_profile("pakistan").personality.reset
    assert (pk.flags_text, pk.ip.df, pk.count) == ("R+AE+RE", False, 1)
    gfw = load_profile("gfw-2023").personality
    assert [o.name for o in gfw.parallel] == ["gfw-type-i", "gfw-type-iii", "gfw-dns-1", "gfw-dns-3"]
    assert [o.reset is not None for o in gfw.parallel] == [True, True, False, False]
    assert [o.dns.flags if o.dns else None for o in gfw.parallel] == [None, None, 0x8580, 0x8400]


def test_injector_fragment_limits():
    """geedge.report, IP fragmentation reassembly: GFW I >= 500 (no limit of its own), II 102, III and Henan 0,
    TSG 101."""
    from chokepoint.enforce.personality import fits_fragments

    limits = {
        name: preset(name).max_fragments for name in ("gfw-type-i", "gfw-type-ii", "gfw-type-iii", "henan", "tsg")
    }
    assert limits == {"gfw-type-i": None, "gfw-type-ii": 102, "gfw-type-iii": 0, "henan": 0, "tsg": 101}
    assert fits_fragments(0, 1) and not fits_fragments(0, 2) and fits_fragments(102, 102)
    assert not fits_fragments(102, 103) and fits_fragments(None, 10_000)
    p = parse_personality({"based_on": "gfw-type-ii", "parallel": [{"preset": "gfw-type-iii"}]})
    assert p.max_fragments == 102 and p.parallel[0].max_fragments == 0
    assert parse_personality({"based_on": "tsg", "max_fragments": None}).max_fragments is None
    with pytest.raises(PolicyError, match="max_fragments"):
        parse_personality({"max_fragments": -1})
