"""Compiled policy: verdict order, verdict contents, the prefilter, shared indexes, and scale."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest

from chokepoint.policy.compiler import CompiledPolicy
from chokepoint.policy.verdict import Action
from tests.policy.factories import flow, ids, rules

ORDERED = """
rules:
  - {id: log-tls, action: log, when: {app_proto: tls}, reason: tls seen, cite: demo}
  - {id: allow-a, action: allow, when: {tls.sni: {suffix: allowed.com}}}
  - {id: log-443, action: log, when: {server_port: 443}}
  - {id: reset-b, action: reset, when: {tls.sni: {suffix: b.com}}, params: {count: 3, flags: RA}}
  - {id: drop-any, action: drop, when: {transport: tcp}}
  - {id: log-late, action: log, when: {transport: tcp}}
"""


def test_logs_then_first_terminal_then_stop() -> None:
    profile = rules(ORDERED)
    assert ids(profile, flow(app_proto="tls", tls_sni="x.b.com")) == ["log-tls", "log-443", "reset-b"]
    assert ids(profile, flow(app_proto="tls", tls_sni="allowed.com")) == ["log-tls", "allow-a"]
    assert ids(profile, flow(server_port=80)) == ["drop-any"]
    assert ids(profile, flow(transport="udp", server_port=80)) == []
    verdicts = profile.policy.evaluate(flow(app_proto="tls", tls_sni="x.b.com", direction="s2c"))
    assert [v.action for v in verdicts] == [Action.LOG, Action.LOG, Action.RESET]
    assert all(v.direction == "s2c" for v in verdicts)


def test_verdict_carries_reason_cite_params_and_evidence() -> None:
    profile = rules("""
rules:
  - id: forge
    action: dns-forge
    reason: blocked name
    cite: [paper one, "paper two"]
    params: {answers: [192.0.2.1, "2001:db8::1"], ttl: 60, probability: 0.5}
    when: {all: [{app_proto: dns}, {dns.qname: {suffix: bad.test}}, {dns.qname: {suffix: bad.test}}]}
""")
    (verdict,) = profile.policy.evaluate(flow(transport="udp", app_proto="dns", dns_qname="www.bad.test"))
    assert verdict.action is Action.DNS_FORGE and verdict.rule_id == "forge"
    assert verdict.reason == "blocked name" and verdict.cite == "paper one; paper two"
    assert verdict.param("answers") == ("192.0.2.1", "2001:db8::1") and verdict.param("probability") == 0.5
    assert [(e.field, e.value, e.matched) for e in verdict.evidence] == [
        ("app_proto", "dns", "in dns"),
        ("dns.qname", "www.bad.test", "suffix bad.test"),
    ]  # deduplicated
    assert json.loads(json.dumps(verdict.to_json()))["params"]["answers"] == ["192.0.2.1", "2001:db8::1"]


def test_any_reports_every_true_branch_and_not_reports_what_did_not_hold() -> None:
    profile = rules("""
rules:
  - id: r
    action: drop
    when:
      all:
        - any: [{server_port: 443}, {transport: tcp}, {transport: udp}]
        - not: {any: [{tls.sni: {exact: a.com}}, {server_port: 80}]}
""")
    (verdict,) = profile.policy.evaluate(flow(tls_sni="b.com"))
    assert [(e.field, e.matched) for e in verdict.evidence] == [
        ("server_port", "in 443"),
        ("transport", "in tcp"),
        ("not", "not {any: [{tls.sni: {exact: a.com}}, {server_port: 80}]}"),
    ]


PREFILTER = """
lists:
  big: {kind: domain, items: [a.com, b.com, c.com]}
rules:
  - {id: r0, action: log, when: {all: [{transport: tcp}, {tls.sni: {in_list: big}}]}}
  - {id: r1, action: log, when: {http.path: {keyword: secret}}}
  - {id: r2, action: log, when: {any: [{quic.sni: {suffix: q.com}}, {server_ip: 198.51.100.0/24}]}}
  - {id: r3, action: log, when: {not: {transport: udp}}}
  - {id: r4, action: log, when: {all: [{server_port: 443}, {direction: c2s}]}}
  - {id: r5, action: log, when: {all: []}}
  - {id: r6, action: log, when: {any: [{dns.qname: {suffix: d.com}}, {not: {transport: tcp}}]}}
"""


def test_prefilter_only_passes_rules_whose_anchor_fired() -> None:
    policy = rules(PREFILTER).policy
    always = {3, 5, 6}  # top-level not, empty all, an any with a non-indexable branch
    assert set(policy.candidates(flow(server_port=80))) == always
    assert set(policy.candidates(flow(tls_sni="www.b.com", server_port=80))) == always | {0}
    assert set(policy.candidates(flow(http_path="/top/secret"))) == always | {1, 4}
    assert set(policy.candidates(flow(server_ip="198.51.100.9", server_port=1))) == always | {2}
    assert set(policy.candidates(flow(quic_sni="x.q.com", server_port=1))) == always | {2}
    # r0 is anchored on its SNI atom (more selective than transport), r4 on its port
    assert 0 not in policy.candidates(flow(tls_sni="other.org"))
    assert ids(rules(PREFILTER), flow(tls_sni="c.com", http_path="/secret")) == ["r0", "r1", "r3", "r4", "r5"]


def test_domain_fields_share_one_index_and_text_fields_have_their_own() -> None:
    policy = rules("""
lists:
  kw: {kind: keyword, items: [one, two, three]}
  doms: {kind: domain, items: [a.com, "*x*", "~^y"]}
rules:
  - {id: a, action: log, when: {tls.sni: {in_list: doms}}}
  - {id: b, action: log, when: {http.host: {in_list: doms}}}
  - {id: c, action: log, when: {domain: {in_list: doms}}}
  - {id: d, action: log, when: {http.path: {in_list: kw}}}
  - {id: e, action: log, when: {http.url: {in_list: kw}}}
  - {id: f, action: log, when: {http.url: {keyword: [one, four]}}}
""").policy
    stats = policy.index_stats()
    assert stats["domain"] == {"exact": 0, "suffix": 1, "sub": 0, "patterns": 2}  # one list, stored once
    assert stats["http.path"]["patterns"] == 3
    assert stats["http.url"]["patterns"] == 4  # "one" from the list and the inline keyword: compiled once
    assert not {"tls.sni", "http.host", "quic.sni", "dns.qname"} & set(stats)
    assert isinstance(policy, CompiledPolicy)
    with pytest.raises(AttributeError):
        policy.rules = ()


def _words(rnd: random.Random, n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(6, 12))))
    return sorted(out)


def test_compiles_100k_keywords_and_loads_100k_domains(tmp_path: Path) -> None:
    """Scale, not speed (timings are printed by bench/policy_compile.py, never asserted)."""
    rnd = random.Random(7)
    keywords = _words(rnd, 100_000)
    domains = [f"{w}.example" for w in _words(rnd, 100_000)]
    (tmp_path / "kw.txt").write_text("\n".join(keywords) + "\n", encoding="utf-8")
    (tmp_path / "dom.txt").write_text("# big list\n" + "\n".join(domains) + "\n", encoding="utf-8")
    profile = rules(
        """
lists:
  kw: {kind: keyword, file: kw.txt}
  dom: {kind: domain, file: dom.txt}
rules:
  - {id: sni, action: reset, when: {tls.sni: {in_list: dom}}}
  - {id: kw, action: reset, when: {http.url: {in_list: kw}}}
""",
        base_dir=tmp_path,
    )
    assert profile.policy.index_stats()["http.url"]["patterns"] == 100_000
    assert profile.policy.index_stats()["domain"]["suffix"] == 100_000
    last_kw, last_dom = keywords[-1], domains[-1]
    (verdict,) = profile.policy.evaluate(flow(http_path=f"/a/{last_kw}/b"))
    assert verdict.rule_id == "kw" and verdict.evidence[0].matched == f"kw: {last_kw}"
    (verdict,) = profile.policy.evaluate(flow(tls_sni=f"cdn.{last_dom}"))
    assert verdict.evidence[0].matched == f"dom: {last_dom}"
    assert profile.policy.evaluate(flow(tls_sni="cdn.unlisted.example", http_path="/nothing/here")) == ()
