"""A parsed condition prints back what it parsed: parse(str(c)) == c and parse(c.to_yaml()) == c."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.policy.conditions import AllOf, AnyOf, Atom, Not, atoms, parse_condition
from chokepoint.policy.profile import load_profile
from tests.policy.test_reference import conditions as random_conditions


def test_canonical_print_of_a_mixed_condition() -> None:
    text = """
all:
  - transport: [tcp]
  - tls.sni: {in_list: blocked}
  - not: {server_port: [80, "8000-8100"]}
  - domain: {suffix: [Google.COM., x.com]}
  - first_payload_c2s: {at: {offset: 1, hex: "03 01"}}
  - client_ip: [10.0.0.0/8, "2001:db8::/32"]
  - quic.version: {in: 0x1}
  - fully_encrypted: {is: true}
  - http.url: {regex: '^/a\\.b'}
"""
    cond = parse_condition(text)
    assert str(cond) == (
        "{all: [{transport: tcp}, {tls.sni: {in_list: blocked}}, {not: {server_port: [80, 8000-8100]}}, "
        "{domain: {suffix: [google.com, x.com]}}, {first_payload_c2s: {at: {offset: 1, hex: '0301'}}}, "
        "{client_ip: [10.0.0.0/8, '2001:db8::/32']}, {quic.version: 1}, {fully_encrypted: true}, "
        "{http.url: {regex: ^/a\\.b}}]}"
    )
    assert parse_condition(str(cond)) == cond
    assert parse_condition(cond.to_yaml()) == cond
    assert str(parse_condition(str(cond))) == str(cond)
    assert isinstance(cond, AllOf) and isinstance(cond.children[2], Not)
    assert cond.children[3] == Atom("domain", "suffix", ("google.com", "x.com"))
    assert [a.field for a in atoms(cond)][:3] == ["transport", "tls.sni", "server_port"]


def test_values_that_look_like_other_types_survive_printing() -> None:
    cond = parse_condition(
        "{any: [{http.path: {exact: ['123', 'true', 'null', '0x10', '1.5', 'NO', '~']}}, "
        "{ja3: ['08']}, {tls.alpn: ['h2', 'yes']}]}"
    )
    assert isinstance(cond, AnyOf)
    assert cond.children[0].value == ("123", "true", "null", "0x10", "1.5", "NO", "~")
    assert parse_condition(str(cond)) == cond
    assert parse_condition(cond.to_yaml()) == cond


def test_positions_are_kept_but_not_compared() -> None:
    a = parse_condition("{tls.sni: {exact: a.com}}", "one.yaml")
    b = parse_condition("\n\n   {tls.sni: {exact: a.com}}", "two.yaml")
    assert a == b and a.pos != b.pos
    assert (a.pos.file, a.pos.line, a.pos.column) == ("one.yaml", 1, 2)
    assert b.value_pos[0].line == 3


def test_every_bundled_rule_round_trips() -> None:
    for name in ("gfw", "demo"):
        for rule in load_profile(name).policy.rules:
            assert parse_condition(str(rule.when)) == rule.when
            assert parse_condition(rule.when.to_yaml()) == rule.when


@settings(max_examples=300, deadline=None)
@given(random_conditions)
def test_random_conditions_round_trip(data: dict) -> None:
    cond = parse_condition(yaml.safe_dump(data, allow_unicode=True))
    flow_text, block_text = str(cond), cond.to_yaml()
    assert "\n" not in flow_text
    assert parse_condition(flow_text) == cond
    assert parse_condition(block_text) == cond
    assert str(parse_condition(flow_text)) == flow_text


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12),
        min_size=1,
        max_size=3,
    )
)
def test_arbitrary_strings_round_trip(values: list[str]) -> None:
    """Any printable string an exact/keyword operator holds prints back to itself."""
    cond = AnyOf((Atom("http.path", "exact", tuple(values)), Atom("http.user_agent", "keyword", tuple(values))))
    data = yaml.safe_load(str(cond))
    assert data == cond.to_data()
    assert parse_condition(str(cond)) == cond
