"""A rule picks the injector that acts for it: ``params: {injector: <preset>}`` (``effective`` resolves the
preset, the profile loader rejects an unknown name at its file:line:col), so one profile can model several
injectors (e.g. GFW types I/II/III, IEEE S&P 2025 table fingerprint) as separate rules."""

from __future__ import annotations

import random

import pytest

from chokepoint.backends.censor import check_params
from chokepoint.enforce import DEFAULT, Stamper, plan
from chokepoint.enforce.personality import PRESETS, effective, parse_personality, preset
from chokepoint.engine import Engine
from chokepoint.packet import build
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import Frame
from chokepoint.packet.record import ACK, RST
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy import PolicyError, load_rules_text

RULES = """\
rules:
  - id: type-i
    action: reset
    params: {injector: gfw-type-i}
    when: {tls.sni: {exact: one.test}}
  - id: type-ii
    action: reset
    params: {injector: gfw-type-ii, targets: client}
    when: {tls.sni: {exact: two.test}}
  - id: own
    action: reset
    when: {tls.sni: {exact: own.test}}
personality:
  name: profile-own
  reset: {count: 2, ttl: 77}
"""


def test_injector_replaces_the_personality_and_other_params_apply_on_top():
    p = effective(DEFAULT, {"injector": "gfw-type-iii"})
    assert p == preset("gfw-type-iii")
    mine = parse_personality({"name": "mine", "reset": {"count": 5, "ttl": 9}})
    q = effective(mine, (("injector", "gfw-type-ii"), ("targets", "server"), ("probability", 0.5)))
    assert q.name == "gfw-type-ii" and q.reset.count == 3 and q.reset.targets == "server"
    assert q.reset.ip.ttl.lo == 255 and q.residual.seconds == 180 and q.drop_trigger is False
    assert effective(mine, {"count": 4}).name == "mine"  # without an injector the profile's own acts
    for name in PRESETS:  # every preset name is accepted
        assert effective(DEFAULT, {"injector": name}).name == name


def test_unknown_injector_is_rejected_at_load_time_where_it_is_written():
    with pytest.raises(PolicyError) as err:
        load_rules_text(RULES.replace("injector: gfw-type-i}", "injector: gfw-type-iv}"), "p.yaml")
    e = err.value
    assert (e.file, e.line, e.column) == ("p.yaml", 4, 24), str(e)  # the value after "injector: "
    assert "rule 'type-i'" in e.message and "params.injector" in e.message and "gfw-type-iii" in e.message


@pytest.mark.parametrize("value", ["42", "[gfw-type-i]", "GFW Type I"])
def test_injector_must_be_a_preset_name(value):
    with pytest.raises(PolicyError) as err:
        load_rules_text(RULES.replace("injector: gfw-type-i}", f"injector: {value}}}"), "p.yaml")
    assert (err.value.line, err.value.column) == (4, 24), str(err.value)


def _decide(profile, sni: str, port: int):
    engine = Engine(profile)
    packets = build.tcp_conversation("198.18.0.2", "198.19.0.10", port, 443, [tls_client_hello(sni)], [], 1.0)
    for index, (ts, raw) in enumerate(packets, 1):
        pkt = Decoder().decode(Frame(ts, 101, raw, len(raw), index))
        step = engine.step(pkt)
        if step.decided_now:
            return step, pkt, raw
    raise AssertionError(f"no verdict for {sni}")


def _resets(profile, sni: str, port: int) -> list:
    step, pkt, raw = _decide(profile, sni, port)
    p = plan(
        step.flow.verdict, step.flow, pkt, raw, step.direction, profile.personality, Stamper(random.Random(5)), 1.0
    )
    out = []
    for injection in p.injections:
        got = Decoder().decode(Frame(0.0, 101, injection.packet, len(injection.packet), 0))
        assert got.tcp_flags & RST
        out.append((injection.to, got.tcp_flags & ACK, got.ttl, got.df, got.ip_id, injection.packet))
    return out, p


def test_each_rule_injects_with_its_own_injector_on_the_wire():
    profile = load_rules_text(RULES, "p.yaml")
    check_params(profile, profile.personality)  # the daemon's load-time check passes too
    one, p1 = _resets(profile, "one.test", 40001)
    # type I: one RST (no ACK) to each end, DF 0, IP ID 0, TTL 55-118; on-path: the trigger is not dropped
    assert [(to, ack, df, ip_id) for to, ack, _, df, ip_id, _ in one] == [
        ("client", 0, False, 0),
        ("server", 0, False, 0),
    ]
    assert all(55 <= ttl <= 118 for _, _, ttl, *_ in one) and p1.drop_trigger is False
    assert p1.residual is not None and p1.residual.seconds == 180
    two, p2 = _resets(profile, "two.test", 40002)
    # type II: three identical RST+ACKs, TTL 255, DF; the rule's own targets param narrows it to the client
    assert [to for to, *_ in two] == ["client"] * 3 and len({pkt for *_, pkt in two}) == 1
    assert all(ack and ttl == 255 and df for _, ack, ttl, df, _, _ in two)
    own, _ = _resets(profile, "own.test", 40003)
    # a rule without an injector: the profile's personality (2 RSTs per end, TTL 77)
    assert [(to, ttl) for to, _, ttl, *_ in own] == [("client", 77)] * 2 + [("server", 77)] * 2
