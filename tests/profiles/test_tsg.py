"""tsg: the leaked gateway's defaults (geedge.report): DNS 0x8180 with a compression pointer, one RST+ACK with
DF and the k = 13 generator, the 101-fragment limit, QUIC parsed only from 1200 bytes, the HideMe signature."""

from __future__ import annotations

from pathlib import Path

import dns.edns
import dns.message

from chokepoint.packet import build
from chokepoint.packet.record import ACK, RST
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.profile import load_profile
from tests.profiles._scenarios import (
    CLIENT,
    SERVER,
    analyze,
    decide,
    dns_query,
    outcome,
    protect_initials,
    quic_client_hello,
    quic_initials,
    read,
    tcp_flow,
    tsg_generated,
    udp_flow,
)

PROFILE = load_profile("tsg")


def test_dns_forgery_flags_and_compression() -> None:
    query = dns_query("blocked.com", qid=99)
    decision = decide(PROFILE, udp_flow(CLIENT, "198.51.100.53", 53000, 53, [query], 1.0))
    (injection,) = decision.plan(PROFILE.personality).injections
    payload = read(injection.packet).payload
    assert int.from_bytes(payload[2:4], "big") == 0x8180
    assert payload[len(query) : len(query) + 2] == b"\xc0\x0c", "the answer's name is a pointer to the question"


def test_one_rst_ack_with_df_and_the_k13_generator() -> None:
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41000, 443, [tls_client_hello("blocked.com")], 1.0))
    plan = decision.plan(PROFILE.personality, seed=21)
    rsts = [read(i.packet) for i in plan.injections]
    assert [i.to for i in plan.injections] == ["client", "server"]
    for pkt in rsts:
        assert pkt.tcp_flags == RST | ACK and pkt.df and 48 <= pkt.ttl <= 247
        assert tsg_generated(pkt.ip_id, pkt.window, decision.flow.client_ip, decision.flow.server_ip, k=13)


def _padded_query(udp_length: int) -> bytes:
    """A DNS query for blocked.com padded (EDNS padding, RFC 7830) to a UDP datagram of ``udp_length``."""
    bare = dns.message.make_query("blocked.com", "A", use_edns=0, options=[dns.edns.GenericOption(12, b"")]).to_wire()
    pad = udp_length - 8 - len(bare)
    return dns.message.make_query(
        "blocked.com", "A", use_edns=0, options=[dns.edns.GenericOption(12, b"\x00" * pad)]
    ).to_wire()


def test_101_fragments_are_reassembled_102_are_not() -> None:
    """IPV4_FRAG_NUM_PER_IPQ = 100 with an off-by-one: 101 fragments pass per queue (geedge.report)."""
    results = {}
    for count in (101, 102):
        query = _padded_query(8 * count)
        fragments = build.fragment_ipv4(
            build.ipv4_udp(CLIENT, "198.51.100.53", 53000 + count, 53, query, ip_id=count), 28
        )
        assert len(fragments) == count
        decision = decide(PROFILE, [(1.0 + i * 1e-4, f) for i, f in enumerate(fragments)])
        results[count] = decision.verdict.rule_id if decision else None
    assert results == {101: "tsg-dns-forge", 102: None}


def test_quic_parsed_only_from_1200_bytes(tmp_path: Path) -> None:
    """Sub-1200-byte Initials bypass TSG (but not the GFW); v1 at 1200 is blocked."""
    hello, dcid, scid = quic_client_hello("blocked.com", SERVER)
    (small,) = protect_initials(hello, dcid, scid)
    packets = udp_flow(CLIENT, SERVER, 50000, 443, [small], 1.0)
    packets += udp_flow(CLIENT, SERVER, 50001, 443, quic_initials("blocked.com", SERVER), 2.0)
    results = {r["src_port"]: outcome(r)[:2] for r in analyze(PROFILE, packets, tmp_path)}
    assert len(small) < 1200
    assert results == {50000: ("allow", None), 50001: ("drop", "tsg-quic-drop")}


def test_hideme_signature_is_length_and_prefix(tmp_path: Path) -> None:
    prefix = bytes.fromhex("000000016628")
    packets = []
    for port, payload in (
        (41001, prefix + bytes(48)),
        (41002, prefix + bytes(47)),
        (41003, prefix + bytes(49)),
        (41004, bytes(6) + bytes(48)),
    ):
        packets += udp_flow(CLIENT, SERVER, port, 1194, [payload], float(port))
    results = {r["src_port"]: outcome(r)[:2] for r in analyze(PROFILE, packets, tmp_path)}
    assert results[41001] == ("drop", "tsg-hideme-openvpn-udp")
    assert results[41002] == results[41003] == results[41004] == ("allow", None)
