"""kazakhstan-2019: the SNI-triggered interception as a ``tls-intercept`` verdict: what is intercepted, and that
the packet path plans no packets for it (the intercepting proxy enforces it: tests/backends/test_intercept.py,
tests/lab/test_e2e_intercept.py)."""

from __future__ import annotations

from pathlib import Path

from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.profile import load_profile
from tests.profiles._scenarios import CLIENT, SERVER, analyze, decide, outcome, tcp_flow

PROFILE = load_profile("kazakhstan-2019")


def test_listed_snis_are_marked_for_interception_exactly(tmp_path: Path) -> None:
    names = {
        41000: "www.facebook.com",
        41001: "google.com",
        41002: "mail.google.com",
        41003: "www.google.com",
        41004: "accounts.google.com",
        41005: "facebook.com.example.org",
        41006: "www.example.org",
    }
    packets = [
        p
        for port, name in names.items()
        for p in tcp_flow(CLIENT, SERVER, port, 443, [tls_client_hello(name)], float(port))
    ]
    results = {r["src_port"]: outcome(r) for r in analyze(PROFILE, packets, tmp_path)}
    for port in (41000, 41001, 41002, 41003):
        assert results[port] == ("tls-intercept", "kz-tls-intercept", []), names[port]
    for port in (41004, 41005, 41006):
        assert results[port] == ("allow", None, []), names[port]


def test_interception_is_an_action_the_packet_path_leaves_to_the_proxy() -> None:
    rule = PROFILE.policy.rule("kz-tls-intercept")
    assert rule.action.value == "tls-intercept" and rule.mechanism == ""
    assert rule.observed == "2019-07-17/2019-08-07" and "Qaznet Trust Network" in rule.reason
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41010, 443, [tls_client_hello("www.facebook.com")], 1.0))
    assert decision is not None and decision.verdict.rule_id == "kz-tls-intercept"
    plan = decision.plan(PROFILE.personality)
    # nothing injected, nothing dropped: a flow that reaches the packet path was not redirected to the proxy
    assert (plan.flow_action, plan.injections, plan.drop_trigger) == ("intercept", (), False)
