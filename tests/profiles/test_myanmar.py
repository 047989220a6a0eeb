"""myanmar as a timeline: the nightly shutdown on the profile's clock (2021-02-15 to late April 2021), IP and DNS
blocking since the coup, Tor reset except from 2022-07 to 2023-06, VPN/circumvention blocking of 2024 with the
measured RST personality (geedge.report), offline."""

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
    DAY,
    SERVER,
    analyze,
    decide,
    outcome,
    read,
    start_time,
    tcp_flow,
)

PROFILE = load_profile("myanmar")
SHUTDOWNS = load_profile("myanmar", as_of="2021-03-01")
HELLO = tls_client_hello("www.example.org")


def test_clock_is_myanmar_time() -> None:
    assert PROFILE.meta.timezone == "UTC+06:30" and PROFILE.meta.utc_offset_s == 6 * 3600 + 1800
    assert start_time("01:00", PROFILE.meta.utc_offset_s) == DAY + 18 * 3600 + 1800  # 18:30 UTC


def test_nightly_shutdown_from_01_00_to_09_00_local(tmp_path: Path) -> None:
    times = {41000: "00:59", 41001: "01:00", 41002: "04:30", 41003: "08:59", 41004: "09:00", 41005: "13:00"}
    packets = [
        p
        for port, hhmm in times.items()
        for p in tcp_flow(CLIENT, SERVER, port, 443, [HELLO], start_time(hhmm, PROFILE.meta.utc_offset_s))
    ]
    results = {r["src_port"]: outcome(r)[:2] for r in analyze(SHUTDOWNS, packets, tmp_path)}
    shut = ("drop", "mm-nightly-shutdown")
    assert results[41001] == results[41002] == results[41003] == shut
    assert results[41000] == results[41004] == results[41005] == ("allow", None)
    later = {r["src_port"]: outcome(r)[:2] for r in analyze(PROFILE, packets, tmp_path, "later")}
    assert set(later.values()) == {("allow", None)}, "the nightly shutdowns ended in April 2021"


def test_tor_is_reset_except_from_2022_07_to_2023_06(tmp_path: Path) -> None:
    """A real Tor link-handshake ClientHello (nDPI's tor.pcap): reset after the coup, through June 2022 and
    again from July 2023 (the eras of the project's issue 13; the source of those dates was not retrieved)."""
    from tests.profiles._scenarios import client_hellos

    (tor_hello, *_rest) = client_hellos("tor.pcap")
    noon = start_time("12:00", PROFILE.meta.utc_offset_s)
    packets = tcp_flow(CLIENT, SERVER, 41030, 9001, [tor_hello], noon)
    for day, expected in (
        ("2021-03-01", "mm-tor-reset"),
        ("2022-06-30", "mm-tor-reset"),
        ("2022-07-01", None),
        ("2023-06-30", None),
        ("2023-07-01", "mm-tor-reset"),
        ("2024-11-30", "mm-tor-reset"),
    ):
        decision = decide(load_profile("myanmar", as_of=day), packets)
        assert (decision.verdict.rule_id if decision else None) == expected, day


def test_openvpn_over_tcp_gets_one_rst_ack_with_df() -> None:
    """geedge.report: Myanmar's injector sends one RST+ACK with DF set and no stable TSG key."""
    client_sid, server_sid = bytes(range(1, 9)), bytes(range(11, 19))
    hard_reset = bytes([0x38]) + client_sid + b"\x00" + b"\x00" * 4
    answer = bytes([0x40]) + server_sid + b"\x01" + b"\x00" * 4 + client_sid + b"\x00" * 4
    framed = [len(hard_reset).to_bytes(2, "big") + hard_reset]
    noon = start_time("12:00", PROFILE.meta.utc_offset_s)
    decision = decide(
        PROFILE, tcp_flow(CLIENT, SERVER, 41010, 1194, framed, noon, s2c=[len(answer).to_bytes(2, "big") + answer])
    )
    assert decision.verdict.rule_id == "mm-vpn-tcp-reset" and decision.flow.facts.app_proto == "openvpn"
    plan = decision.plan(PROFILE.personality)
    rsts = [read(i.packet) for i in plan.injections]
    assert [i.to for i in plan.injections] == ["client", "server"]
    assert all(p.tcp_flags == RST | ACK and p.df and 48 <= p.ttl <= 247 for p in rsts)


def test_ip_blocking_of_the_collateral_google_address(tmp_path: Path) -> None:
    noon = start_time("12:00", PROFILE.meta.utc_offset_s)
    packets = tcp_flow(CLIENT, "172.217.194.121", 41020, 443, [tls_client_hello("getoutline.org")], noon)
    packets += tcp_flow(CLIENT, "172.217.194.122", 41021, 443, [tls_client_hello("www.google.com")], noon + 1)
    results = {r["src_port"]: outcome(r)[:2] for r in analyze(PROFILE, packets, tmp_path)}
    assert results == {41020: ("drop", "mm-ip-block"), 41021: ("allow", None)}


def test_fragments_up_to_500_are_reassembled() -> None:
    """geedge.report: Myanmar reassembles 500 or more IPv4 fragments (a DNS query in ~120 fragments here)."""
    noon = start_time("12:00", PROFILE.meta.utc_offset_s)
    query = dns.message.make_query(
        "www.facebook.com", "A", use_edns=0, options=[dns.edns.GenericOption(12, b"\x00" * 900)]
    ).to_wire()
    fragments = build.fragment_ipv4(build.ipv4_udp(CLIENT, "198.51.100.53", 53001, 53, query, ip_id=77), 28)
    assert 100 < len(fragments) <= 500
    decision = decide(PROFILE, [(noon + i * 1e-4, f) for i, f in enumerate(fragments)])
    assert decision is not None and decision.verdict.rule_id == "mm-dns-forge"
