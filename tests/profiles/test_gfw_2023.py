"""gfw-2023: every documented behaviour reproduced offline, and the injected packets checked against the
papers' fingerprints (Wu et al. USENIX Security 2023 and IEEE S&P 2025; Triplet Censors FOCI 2020;
geedge.report)."""

from __future__ import annotations

import random
from pathlib import Path

import dns.flags
import dns.message
import pytest

from chokepoint.packet.record import ACK, RST
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.profile import load_profile
from chokepoint.policy.verdict import Action
from tests.profiles._scenarios import (
    CLIENT,
    SERVER,
    AlwaysRng,
    analyze,
    client_hellos,
    decide,
    dns_query,
    http_request,
    outcome,
    read,
    tcp_flow,
    tsg_generated,
    udp_flow,
)

PROFILE = load_profile("gfw-2023")


def test_profile_is_dated_to_the_fet_era() -> None:
    """gfw-2023 is the gfw timeline as of 2022-06-01, inside the fully-encrypted-traffic era."""
    assert (PROFILE.name, PROFILE.base, str(PROFILE.as_of)) == ("gfw-2023", "gfw", "2022-06-01")
    assert PROFILE.meta.observed == "2020-08/2025-08" and PROFILE.meta.timezone == "UTC+08:00"
    fet = PROFILE.policy.rule("gfw-fet-drop")
    assert (str(fet.active.start), str(fet.active.end)) == ("2021-11-01", "2023-03-07")
    assert "probability" in dict(fet.uncertain) and "when" in dict(fet.uncertain)
    assert {r.id for r in PROFILE.policy.rules}.isdisjoint({"gfw-quic-sni-drop", "gfw-tls-proxy-port-block"})


def test_sni_reset_injects_three_identical_type_ii_rst_acks_to_each_end() -> None:
    """IEEE S&P 2025 table fingerprint, type II: RST+ACK x3 (identical), DF set, both ends, residual 180 s;
    IP ID and window from the TSG generator with k = 13 (geedge.report); TTL 48-247 (Dec 2023). Types I and
    III follow as parallel injectors (see the next test)."""
    packets = tcp_flow(CLIENT, SERVER, 41000, 443, [tls_client_hello("www.google.com")], 1000.0)
    decision = decide(PROFILE, packets)
    assert decision.verdict.rule_id == "gfw-sni-reset"
    plan = decision.plan(PROFILE.personality, seed=3)
    type_ii = plan.injections[:6]
    assert [i.to for i in type_ii] == ["client"] * 3 + ["server"] * 3
    to_client = [i.packet for i in type_ii if i.to == "client"]
    assert len(set(to_client)) == 1, "type II sends three identical copies"
    for injection in type_ii:
        pkt = read(injection.packet)
        assert pkt.tcp_flags == RST | ACK and pkt.df and 48 <= pkt.ttl <= 247
        assert tsg_generated(pkt.ip_id, pkt.window, decision.flow.client_ip, decision.flow.server_ip, k=13)
        assert not tsg_generated(pkt.ip_id, pkt.window, decision.flow.client_ip, decision.flow.server_ip, k=12)
    assert (plan.residual.scope, plan.residual.seconds, plan.residual.client_port) == ("3-tuple", 180, None)
    assert not plan.drop_trigger, "an on-path injector: the ClientHello still reaches the server"


@pytest.mark.parametrize(
    ("name", "count", "flags", "df", "ip_id", "ttl"),
    [
        ("gfw-type-i", 1, RST, False, (0, 0), (55, 118)),
        ("gfw-type-iii", 1, RST | ACK, True, None, (255, 255)),
    ],
)
def test_the_other_observed_injectors(name, count, flags, df, ip_id, ttl) -> None:
    """Types I and III reset the same connections beside type II (the personality's ``parallel`` injectors)
    and produce their table rows: after type II's three copies, each sends its own RSTs to each end."""
    assert name in {p.name for p in PROFILE.personality.parallel}
    packets = tcp_flow(CLIENT, SERVER, 41001, 443, [tls_client_hello("www.youtube.com")], 1000.0)
    decision = decide(PROFILE, packets)
    plan = decision.plan(PROFILE.personality, seed=5)
    after_type_ii = list(plan.injections[6:])
    first = next(k for k, p in enumerate(PROFILE.personality.parallel) if p.name == name)
    mine = after_type_ii[2 * count * first : 2 * count * (first + 1)]
    to_client = [read(i.packet) for i in mine if i.to == "client"]
    assert len(to_client) == count and len(mine) == 2 * count
    for pkt in to_client:
        assert pkt.tcp_flags == flags and pkt.df == df and ttl[0] <= pkt.ttl <= ttl[1]
        if ip_id:
            assert ip_id[0] <= pkt.ip_id <= ip_id[1]


def test_sni_filter_ignores_client_hellos_cut_into_tls_records(tmp_path: Path) -> None:
    from tests.profiles._scenarios import split_tls_records

    hello = tls_client_hello("www.google.com")
    whole = tcp_flow(CLIENT, SERVER, 41002, 443, [hello], 1000.0)
    split = tcp_flow(CLIENT, SERVER, 41003, 443, [split_tls_records(hello)], 1001.0)
    records = {r["src_port"]: outcome(r) for r in analyze(PROFILE, whole + split, tmp_path)}
    assert records[41002][:2] == ("reset", "gfw-sni-reset")
    assert records[41003][:2] == ("allow", None)


def test_dns_injection_answers_from_the_forged_pool_with_injector_2_flags() -> None:
    """Triplet Censors / geedge.report: Injector 2 answers with flags 0x8180 and a compression pointer for the
    answer name; the address is one of the published poison IPs; it races the real answer (nothing dropped)."""
    query = dns_query("www.youtube.com", qid=0x4242)
    decision = decide(PROFILE, udp_flow(CLIENT, "198.51.100.53", 53000, 53, [query], 1000.0))
    assert decision.verdict.action is Action.DNS_FORGE
    plan = decision.plan(PROFILE.personality)
    injection, *others = plan.injections  # Injectors 1 and 3 answer after it (the personality's parallel list)
    assert [o.injector for o in others] == ["gfw-dns-1", "gfw-dns-3"]
    assert [int.from_bytes(read(o.packet).payload[2:4], "big") for o in others] == [0x8580, 0x8400]
    assert injection.to == "client" and not plan.drop_trigger and not injection.injector
    pkt = read(injection.packet)
    assert (pkt.sport, pkt.dport) == (53, 53000)
    payload = pkt.payload
    assert int.from_bytes(payload[2:4], "big") == 0x8180
    assert payload[len(query) : len(query) + 2] == b"\xc0\x0c", "the answer name points at the question"
    answer = dns.message.from_wire(payload)
    assert answer.id == 0x4242 and answer.flags & dns.flags.QR
    (rrset,) = answer.answer
    assert rrset[0].address in dict(decision.verdict.params)["answers"]


def test_http_keyword_needs_search_for_the_conditional_list() -> None:
    def verdict(path: str):
        packets = tcp_flow(CLIENT, SERVER, 41004, 80, [http_request("news.example.com", path)], 1000.0)
        decision = decide(PROFILE, packets, rng=AlwaysRng())
        return decision.verdict.rule_id if decision else None

    assert verdict("/search?q=tiananmen") == "gfw-http-search-keyword-reset"
    assert verdict("/news?q=tiananmen") is None
    assert verdict("/news?q=falun") == "gfw-http-keyword-reset"


def test_http_resets_leave_a_90_second_penalty_box() -> None:
    packets = tcp_flow(CLIENT, SERVER, 41005, 80, [http_request("zh.wikipedia.org")], 1000.0)
    decision = decide(PROFILE, packets, rng=AlwaysRng())
    plan = decision.plan(PROFILE.personality)
    assert decision.verdict.rule_id == "gfw-http-host-reset"
    assert (plan.residual.scope, plan.residual.seconds) == ("3-tuple", 90)
    assert (plan.residual.client_ip, plan.residual.server_ip, plan.residual.server_port) == (CLIENT, SERVER, 80)


def test_fet_looks_at_the_first_client_data_packet_only() -> None:
    """A printable first packet (Ex2/Ex3) then random bytes: spared; random bytes first to a server in a
    data-centre range (the lab's "vps" range): dropped client to server on that packet, with a 180 s residual
    block of the server port; the same bytes to a server elsewhere: spared."""
    rng = random.Random(1)
    noise = rng.randbytes(300)
    vps, elsewhere = "198.19.64.10", "198.19.128.10"
    spared = tcp_flow(CLIENT, vps, 41006, 8388, [b"hello, server\r\n", noise], 1000.0)
    assert decide(PROFILE, spared, rng=AlwaysRng()) is None
    assert decide(PROFILE, tcp_flow(CLIENT, elsewhere, 41009, 8388, [noise], 1000.0), rng=AlwaysRng()) is None
    hit = tcp_flow(CLIENT, vps, 41007, 8388, [noise, b"hello, server\r\n"], 1000.0)
    decision = decide(PROFILE, hit, rng=AlwaysRng())
    assert decision.verdict.rule_id == "gfw-fet-drop" and decision.pkt.payload == noise
    plan = decision.plan(PROFILE.personality)
    assert plan.drop_trigger and plan.flow_action == "drop" and plan.drop_direction == "c2s"
    assert (plan.residual.scope, plan.residual.seconds, plan.residual.server_port) == ("3-tuple", 180, 8388)


def test_real_esni_client_hello_is_dropped_client_to_server(tmp_path: Path) -> None:
    """A real Firefox ESNI ClientHello (nDPI's encrypted_sni.pcap): dropped client to server, no RST,
    residual 180 s (GFW Report / iYouPort / Geneva, August 2020)."""
    (hello, *_rest) = client_hellos("encrypted_sni.pcap")
    packets = tcp_flow(CLIENT, SERVER, 41008, 443, [hello], 1000.0)
    (record,) = analyze(PROFILE, packets, tmp_path)
    assert outcome(record)[:2] == ("drop", "gfw-esni-drop")
    decision = decide(PROFILE, packets)
    plan = decision.plan(PROFILE.personality)
    assert plan.injections == () and plan.drop_direction == "c2s" and plan.drop_trigger
    assert (plan.residual.scope, plan.residual.seconds) == ("3-tuple", 180)
