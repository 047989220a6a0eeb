"""turkmenistan: bidirectional censorship on every port with the injector measured in the WWW 2023 artifact
(IP ID 30000, initial TTL 128), the 127.0.0.1/TTL 300 DNS answer, the 30 s residual on the 4-tuple."""

from __future__ import annotations

from pathlib import Path

import dns.message

from chokepoint.packet.record import RST
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.profile import load_profile
from tests.profiles._scenarios import (
    CLIENT,
    SERVER,
    analyze,
    decide,
    dns_query,
    http_request,
    outcome,
    read,
    tcp_flow,
    udp_flow,
)

PROFILE = load_profile("turkmenistan")


def test_rst_fingerprint_and_4_tuple_residual() -> None:
    """Artifact README: Flags [R], id 30000, no DF, TTL 128 at the censor, win 0; WWW 2023: every packet on
    the same 4-tuple in the next 30 s gets another RST."""
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41000, 8383, [tls_client_hello("twitter.com")], 1.0))
    plan = decision.plan(PROFILE.personality)
    assert {i.to for i in plan.injections} == {"client", "server"}
    for injection in plan.injections:
        pkt = read(injection.packet)
        assert (pkt.tcp_flags, pkt.ip_id, pkt.ttl, pkt.df, pkt.window) == (RST, 30000, 128, False, 0)
    r = plan.residual
    assert (r.scope, r.seconds, r.action, r.client_port) == ("4-tuple", 30, "reset", 41000)


def test_dns_answer_is_the_published_bytes() -> None:
    """net4people/bbs#80: the answer ends ``00 00 01 2C 00 04 7F 00 00 01`` (TTL 300, RDLENGTH 4, 127.0.0.1)."""
    query = dns_query("twitter.com", qid=13698)
    decision = decide(PROFILE, udp_flow(CLIENT, "95.85.117.12", 38202, 53, [query], 1.0))
    (injection,) = decision.plan(PROFILE.personality).injections
    pkt = read(injection.packet)
    assert pkt.payload.endswith(bytes.fromhex("0000012c00047f000001"))
    assert (pkt.ip_id, pkt.ttl, pkt.df) == (30000, 128, False)
    answer = dns.message.from_wire(pkt.payload)
    assert answer.id == 13698 and answer.answer[0].ttl == 300


def test_bidirectional_and_any_port(tmp_path: Path) -> None:
    flows = tcp_flow("203.0.113.9", "192.0.2.20", 41001, 5656, [http_request("twitter.com")], 1.0)  # into TM
    flows += tcp_flow(CLIENT, SERVER, 41002, 9377, [tls_client_hello("twitter.com")], 2.0)
    flows += tcp_flow(CLIENT, SERVER, 41003, 443, [tls_client_hello("www.example.org")], 3.0)
    results = {r["src_port"]: outcome(r)[:2] for r in analyze(PROFILE, flows, tmp_path)}
    assert results == {41001: ("reset", "tm-http-reset"), 41002: ("reset", "tm-tls-reset"), 41003: ("allow", None)}


def test_separate_lists_per_protocol() -> None:
    lists = PROFILE.policy.lists
    assert {"tm_dns", "tm_http", "tm_tls", "tm_overblock"} <= set(lists)
    rules = {r.id: str(r.when) for r in PROFILE.policy.rules}
    assert "tm_dns" in rules["tm-dns-inject"] and "tm_http" in rules["tm-http-reset"]
    assert "tm_tls" in rules["tm-tls-reset"] and "tm_dns" not in rules["tm-tls-reset"]


def test_whole_ranges_are_blocked_until_july_2024(tmp_path: Path) -> None:
    """Bocovich et al. 2024: large swaths of the address space, data centres included, outright blocked;
    net4people/bbs#378: lifted in early July 2024. The lab's "vps" range stands for a data centre."""
    hello = tls_client_hello("www.example.org")
    vps = tcp_flow(CLIENT, "198.19.64.12", 41100, 443, [hello], 1.0)
    elsewhere = tcp_flow(CLIENT, "198.19.128.12", 41101, 443, [hello], 2.0)
    during, after = load_profile("turkmenistan", as_of="2023-06-01"), load_profile("turkmenistan", as_of="2024-07-01")
    decision = decide(during, vps)
    assert decision.verdict.rule_id == "tm-ip-range-drop" and decision.pkt.tcp_flags & 0x02  # at the SYN
    assert decide(during, elsewhere) is None
    assert decide(after, vps) is None


def test_snowflake_broker_front_and_stun_port(tmp_path: Path) -> None:
    """Bocovich et al. 2024, Blocking in Turkmenistan: the front domain cdn.sstatic.net by DNS injection and RST
    from 2021-10-24 (DNS injection gone by 2022-08-18), UDP port 3478 from about 2022-08-03. Real bytes:
    dnspython's query, OpenSSL's ClientHello, an RFC 5389 Binding request."""
    stun = bytes.fromhex("000100002112a442") + bytes(range(12))
    flows = {
        "dns": udp_flow(CLIENT, "198.19.0.53", 41110, 53, [dns_query("cdn.sstatic.net")], 1.0),
        "tls": tcp_flow(CLIENT, SERVER, 41111, 443, [tls_client_hello("cdn.sstatic.net")], 2.0),
        "stun": udp_flow(CLIENT, SERVER, 41112, 3478, [stun], 3.0),
        "stun-3479": udp_flow(CLIENT, SERVER, 41113, 3479, [stun], 4.0),
    }
    expected = {
        "2021-10-23": {"dns": None, "tls": None, "stun": None, "stun-3479": None},
        "2021-10-24": {
            "dns": "tm-snowflake-front-dns",
            "tls": "tm-snowflake-front-reset",
            "stun": None,
            "stun-3479": None,
        },
        "2022-08-03": {
            "dns": "tm-snowflake-front-dns",
            "tls": "tm-snowflake-front-reset",
            "stun": "tm-stun-port-drop",
            "stun-3479": None,
        },
        "2022-08-18": {"dns": None, "tls": "tm-snowflake-front-reset", "stun": "tm-stun-port-drop", "stun-3479": None},
    }
    for day, rules in expected.items():
        profile = load_profile("turkmenistan", as_of=day)
        got = {}
        for name, packets in flows.items():
            decision = decide(profile, packets)
            got[name] = decision.verdict.rule_id if decision else None
        assert got == rules, day
    decision = decide(load_profile("turkmenistan", as_of="2022-01-01"), flows["dns"])
    plan = decision.plan(PROFILE.personality)
    answer = dns.message.from_wire(read(plan.injections[0].packet).payload)
    assert [str(rr) for rr in answer.answer[0]] == ["127.0.0.1"] and answer.answer[0].ttl == 300


def test_tor_directory_authorities_from_2021_10_29() -> None:
    packets = tcp_flow(CLIENT, "128.31.0.39", 41120, 9131, [b"GET /tor/ HTTP/1.0\r\n\r\n"], 1.0)
    assert decide(load_profile("turkmenistan", as_of="2021-10-28"), packets) is None
    assert decide(load_profile("turkmenistan", as_of="2021-10-29"), packets).verdict.rule_id == "tm-tor-ip-drop"
