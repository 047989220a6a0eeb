"""Profiles as policy + personality + provenance: the ``personality:`` section (parsed with the profile's marks,
so its errors carry file:line:col), a cite and uncertainty on every knob, ``examples:``, the profile's clock,
and the fields the country profiles added."""

from __future__ import annotations

from pathlib import Path

import pytest

from chokepoint.enforce.personality import DEFAULT, PRESET_CITES, RESIDUAL_SCOPES
from chokepoint.policy.errors import PolicyError
from chokepoint.policy.profile import load_profile, load_rules_file
from chokepoint.policy.schema import RESIDUAL_SCOPES as SCHEMA_SCOPES
from tests.policy.factories import flow, ids, one_rule, rules
from tests.policy.test_errors import _strip_marker

HEAD = "profile: {name: p, title: t, country: ZZ, observed: '2024', description: d, cite: [c]}\n"
RULE = "rules:\n  - id: r\n    action: reset\n    cite: c\n    when: {transport: tcp}\n"
LOGRULE = "  - id: l\n    action: log\n    cite: c\n    when: {transport: udp}\n"

# (case id, file text with the marker, message fragment)
CASES = [
    (
        "personality-bad-value",
        RULE + "personality:\n  reset:\n    flags: ⟦S\n",
        "personality.reset.flags: expected R or RA",
    ),
    ("personality-unknown-key", RULE + "personality:\n  reset:\n    colour: ⟦red\n", "unknown key 'colour'"),
    ("personality-bad-preset", RULE + "personality:\n  based_on: ⟦gfw-type-iv\n", "gfw-type-iv"),
    (
        "knob-uncertain-empty",
        RULE + "personality:\n  reset:\n    ttl: {value: 64, uncertain: ⟦''}\n",
        "uncertain: say why",
    ),
    (
        "also-observed-unknown",
        RULE + "personality:\n  also_observed:\n    - {preset: ⟦nope, cite: x}\n",
        "no personality preset 'nope'",
    ),
    (
        "section-uncertain-unknown-knob",
        RULE + "personality:\n  reset:\n    count: 2\n    uncertain: {⟦ttl: why}\n",
        "uncertain names 'ttl'",
    ),
    (
        "top-uncertain-unknown-knob",
        RULE + "personality:\n  reset: {count: 2}\n  uncertain: {⟦reset.ttl: why}\n",
        "uncertain names 'reset.ttl'",
    ),
    (
        "rule-uncertain-unknown-param",
        "rules:\n  - id: r\n    action: reset\n    params: {count: 2}\n    uncertain: {⟦rate: why}\n"
        "    when: {transport: tcp}\n",
        "uncertain names 'rate'",
    ),
    (
        "params-the-enforcer-rejects",
        "rules:\n  - id: r\n    action: blockpage\n    params: ⟦{status: 302}\n    when: {transport: tcp}\n",
        "needs a location",
    ),
    (
        "example-unknown-rule",
        RULE + "examples:\n  blocked:\n    - {id: e, protocol: tls, target: a.example, symptom: connection_reset, "
        "rule: ⟦nope}\n",
        "no rule 'nope'",
    ),
    (
        "example-blocked-without-rule",
        RULE + "examples:\n  blocked:\n    - ⟦{id: e, protocol: tls, target: a.example, symptom: connection_reset}\n",
        "names the rule that blocks it",
    ),
    (
        "example-blocked-but-ok",
        RULE + "examples:\n  blocked:\n    - {id: e, protocol: tls, target: a.example, symptom: ⟦ok, rule: r}\n",
        "symptom other than ok",
    ),
    (
        "example-allowed-with-blocking-rule",
        RULE + "examples:\n  allowed:\n    - {id: e, protocol: tls, target: a.example, symptom: ok, rule: ⟦r}\n",
        "names only a log rule",
    ),
    (
        "example-action-mismatch",
        RULE + "examples:\n  blocked:\n    - {id: e, protocol: tls, target: a.example, symptom: connection_reset, "
        "rule: r, action: ⟦drop}\n",
        "is a reset rule, not drop",
    ),
    (
        "example-needs-target",
        RULE + "examples:\n  allowed:\n    - ⟦{id: e, protocol: dns, symptom: ok}\n",
        "needs a target",
    ),
    (
        "example-duplicate-id",
        RULE + "examples:\n  allowed:\n    - {id: e, protocol: tcp, payload: '00', symptom: ok}\n"
        "    - {id: ⟦e, protocol: tcp, payload: '00', symptom: ok}\n",
        "duplicate example id 'e'",
    ),
    (
        "example-unknown-symptom",
        RULE + "examples:\n  allowed:\n    - {id: e, protocol: tcp, payload: '00', symptom: ⟦slow}\n",
        "'slow' is not one of",
    ),
    ("timezone-pattern", HEAD.replace("cite: [c]}", "cite: [c], timezone: ⟦'UTC+6'}") + RULE, "does not match"),
]


@pytest.mark.parametrize("case,text,fragment", CASES, ids=[c[0] for c in CASES])
def test_provenance_error_positions(tmp_path: Path, case: str, text: str, fragment: str) -> None:
    text, where = _strip_marker(text)
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_rules_file(path)
    err = info.value
    assert fragment in err.message, err.message
    assert (err.file, err.line, err.column) == (str(path), *where), str(err)


def test_knob_citations_inherit_from_their_section_only(tmp_path: Path) -> None:
    text = (
        HEAD
        + RULE
        + """personality:
  based_on: henan
  cite: top
  reset:
    cite: section
    count: 2
    ttl: {value: 64, cite: own, uncertain: "guessed"}
  dns:
    flags: 0x8180
  uncertain: {reset.count: "two is a guess", dns.flags: "unknown"}
engine:
  reassembly: false
  cite: engine-source
"""
    )
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    profile = load_profile(str(path))
    knobs = {k.path: (k.value, k.cite, k.uncertain) for k in profile.knobs}
    assert knobs["based_on"] == ("henan", "top", "")
    assert knobs["reset.count"] == (2, "section", "two is a guess")
    assert knobs["reset.ttl"] == (64, "own", "guessed")
    assert knobs["dns.flags"] == (0x8180, "", "unknown"), "no section cite: not inherited from the top"
    assert knobs["engine.reassembly"] == (False, "engine-source", "")
    assert profile.provenance_gaps() == ["knob dns.flags: no cite"]
    p = profile.personality
    assert (p.reset.count, p.reset.ip.ttl.lo, p.dns.flags, p.reset.payload) == (
        2,
        64,
        0x8180,
        bytes(range(1, 10)) + b"\0",
    )
    assert p.name == "henan" and "henan" in PRESET_CITES


def test_no_personality_section_is_the_neutral_default() -> None:
    profile = rules(RULE)
    assert profile.personality is DEFAULT and profile.knobs == () and profile.examples == ()


def test_rule_uncertainty_and_mechanism_are_kept() -> None:
    profile = rules(
        "rules:\n  - id: r\n    action: log\n    mechanism: tls-intercept\n"
        "    uncertain: 'not all paths'\n    when: {transport: tcp}\n"
        "  - id: s\n    action: drop\n    params: {probability: 0.5}\n"
        "    uncertain: {probability: 'secondary', when: 'guessed'}\n    when: {transport: udp}\n"
    )
    r, s = profile.policy.rules
    assert (r.mechanism, r.uncertain) == ("tls-intercept", (("", "not all paths"),))
    assert s.uncertain == (("probability", "secondary"), ("when", "guessed"))


def test_examples_parse_into_values(tmp_path: Path) -> None:
    text = (
        HEAD
        + RULE
        + LOGRULE
        + """examples:
  blocked:
    - {id: b, protocol: tls, target: a.example, port: 8443, symptom: connection_reset, rule: r,
       expect: {rst_per_target: 3}, tcp_options: false, tls_record_split: true}
  allowed:
    - {id: a, protocol: udp, payload: ["00 01", "0203"], symptom: ok, rule: l, local_time: "02:30"}
    - {id: c, protocol: tcp, payload: "ff", packets: 1, symptom: ok}
"""
    )
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    b, a, c = load_profile(str(path)).examples
    assert (b.outcome, b.action, b.port, b.expected("rst_per_target"), b.tcp_options, b.tls_record_split) == (
        "blocked",
        "reset",
        8443,
        3,
        False,
        True,
    )
    assert (a.outcome, a.payloads, a.rule, a.local_time) == ("allowed", (b"\x00\x01", b"\x02\x03"), "l", "02:30")
    assert c.payloads == (b"\xff",) and c.path == "/"


def test_timezone_gives_the_offset(tmp_path: Path) -> None:
    for zone, seconds in (("UTC+06:30", 23400), ("UTC-03:00", -10800), ("UTC+00:00", 0)):
        path = tmp_path / "p.yaml"
        path.write_text(HEAD.replace("cite: [c]}", f"cite: [c], timezone: '{zone}'}}") + RULE, encoding="utf-8")
        meta = load_profile(str(path)).meta
        assert (meta.timezone, meta.utc_offset_s) == (zone, seconds)


def test_schema_and_enforcer_agree_on_residual_scopes() -> None:
    assert SCHEMA_SCOPES == RESIDUAL_SCOPES
    profile = rules(
        "rules:\n  - id: r\n    action: drop\n    params: {residual_s: 60, residual_scope: server}\n"
        "    when: {transport: tcp}\n"
    )
    assert dict(profile.policy.rules[0].params)["residual_scope"] == "server"


# ------------------------------------------------------------------------------------ the profiles' new fields


def test_client_port_gt_server_port() -> None:
    profile = one_rule("{client_port_gt_server_port: true}")
    assert ids(profile, flow(client_port=50000, server_port=443)) == ["r"]
    assert ids(profile, flow(client_port=400, server_port=443)) == []
    assert ids(profile, flow(client_port=443, server_port=443)) == []


def test_payload_fields() -> None:
    at = one_rule("{all: [{payload_len: {ge: 1001}}, {payload: {at: {offset: 1, hex: '00000001'}}}]}")
    quic = b"\xc3\x00\x00\x00\x01" + bytes(996)
    assert ids(at, flow(payload=quic)) == ["r"]
    assert ids(at, flow(payload=quic[:-1])) == []
    assert ids(at, flow(payload=b"\xc3\x00\x00\x00\x02" + bytes(996))) == []
    first = one_rule("{first_payload_c2s_len: 54}")
    assert ids(first, flow(first_payload_c2s=bytes(54))) == ["r"]
    assert ids(first, flow(first_payload_c2s=bytes(53))) == [] and ids(first, flow()) == []


def test_data_packet_index_and_local_hour() -> None:
    second = one_rule("{data_packet_index_c2s: 2}")
    assert ids(second, flow(data_packet_index_c2s=2)) == ["r"] and ids(second, flow(data_packet_index_c2s=3)) == []
    assert "data_packet_index_c2s" in second.policy.fields_used
    night = one_rule("{local_hour: {in: [1, 2, 3, 4, 5, 6, 7, 8]}}")
    assert ids(night, flow(local_hour=1)) == ["r"] and ids(night, flow(local_hour=9)) == []
    assert ids(night, flow()) == [], "no clock, no match"


def test_fields_used_expands_virtual_fields() -> None:
    assert {"domain", "dns.qname", "tls.sni", "http.host", "quic.sni"} <= one_rule(
        "{domain: {suffix: a.example}}"
    ).policy.fields_used
