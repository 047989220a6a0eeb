"""russia-tspu as a timeline: Twitter throttling (Xue et al., IMC 2021) then its block (2022-03), Tor and
Snowflake (2021-12; Bocovich et al., USENIX Security 2024), the QUIC v1 rule (IETF QUIC list, 2022), VPN and
fully encrypted proxies (2023-08, 2024-04; community reports), the ECH block and SNI/IP blocking, offline."""

from __future__ import annotations

import random
from pathlib import Path

from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.profile import load_profile
from tests import _dtls
from tests.profiles._scenarios import CLIENT, SERVER, analyze, client_hellos, decide, outcome, tcp_flow, udp_flow

PROFILE = load_profile("russia-tspu")
THROTTLE_ERA = load_profile("russia-tspu", as_of="2021-04-01")


def test_throttling_on_sni_substrings_at_130_to_150_kbps(tmp_path: Path) -> None:
    names = {
        41000: "twitter.com",
        41001: "pbs.twimg.com",
        41002: "www.reddit.com",
        41003: "www.microsoft.com",
        41004: "t.co",
        41005: "mobile.twitter.com",
        41006: "www.example.org",
        41007: "twimg.com",
    }
    packets = [
        p
        for port, name in names.items()
        for p in tcp_flow(CLIENT, SERVER, port, 443, [tls_client_hello(name)], float(port))
    ]
    results = {r["src_port"]: outcome(r)[:2] for r in analyze(THROTTLE_ERA, packets, tmp_path)}
    throttled = ("throttle", "tspu-twitter-throttle")
    assert all(results[p] == throttled for p in (41000, 41001, 41002, 41003, 41004, 41005))
    assert results[41006] == ("allow", None)
    assert results[41007] == ("allow", None), "*.twimg.com: subdomains only"
    decision = decide(THROTTLE_ERA, tcp_flow(CLIENT, SERVER, 41008, 443, [tls_client_hello("twitter.com")], 1.0))
    plan = decision.plan(THROTTLE_ERA.personality)
    assert plan.flow_action == "throttle" and 130 <= plan.throttle_kbps <= 150 and plan.injections == ()


def test_twitter_throttled_until_2022_03_03_then_blocked() -> None:
    hello = tls_client_hello("twitter.com")
    for day, rule, action in (
        ("2022-03-03", "tspu-twitter-throttle", "throttle"),
        ("2022-03-04", "tspu-twitter-block", "drop"),
    ):
        decision = decide(load_profile("russia-tspu", as_of=day), tcp_flow(CLIENT, SERVER, 41009, 443, [hello], 1.0))
        assert (decision.verdict.rule_id, decision.verdict.action.value) == (rule, action), day
    assert (
        decide(load_profile("russia-tspu", as_of="2021-03-09"), tcp_flow(CLIENT, SERVER, 41009, 443, [hello], 1.0))
        is None
    )


def test_quic_rule_is_size_port_and_version_at_offset_1(tmp_path: Path) -> None:
    """filesize > 1000 and dport == 443 and int32be(1) == 0x00000001, source port ignored."""
    rng = random.Random(1)

    def datagram(size: int) -> bytes:
        return b"\xc3" + (1).to_bytes(4, "big") + rng.randbytes(size - 5)

    flows = {
        41010: udp_flow(CLIENT, SERVER, 41010, 443, [datagram(1001)], 1.0),
        41011: udp_flow(CLIENT, SERVER, 41011, 443, [datagram(1000)], 2.0),
        41012: udp_flow(CLIENT, SERVER, 41012, 8443, [datagram(1300)], 3.0),
        41013: udp_flow(CLIENT, SERVER, 41013, 443, [b"\xc3" + (2).to_bytes(4, "big") + rng.randbytes(1200)], 4.0),
        300: udp_flow(CLIENT, SERVER, 300, 443, [datagram(1200)], 5.0),  # source port below 443
        41014: udp_flow(CLIENT, SERVER, 41014, 443, [datagram(40), datagram(1200)], 6.0),  # per datagram
    }
    results = {
        r["src_port"]: outcome(r)[:2] for r in analyze(PROFILE, [p for f in flows.values() for p in f], tmp_path)
    }
    dropped = ("drop", "tspu-quic-v1-drop")
    assert results[41010] == results[300] == dropped
    assert results[41011] == results[41012] == results[41013] == ("allow", None)
    assert results[41014] == dropped, "every datagram is judged, not only the first"


def test_real_ech_client_hello_is_blocked(tmp_path: Path) -> None:
    """A real ECH ClientHello (nDPI's tls_ech.pcapng, Cloudflare's outer SNI)."""
    ech = client_hellos("tls_ech.pcapng")
    assert ech
    (record,) = analyze(PROFILE, tcp_flow(CLIENT, SERVER, 41020, 443, [ech[0]], 1.0), tmp_path)
    assert outcome(record)[:2] == ("drop", "tspu-ech-drop")


def test_sni_and_ip_blocking(tmp_path: Path) -> None:
    packets = tcp_flow(CLIENT, SERVER, 41030, 443, [tls_client_hello("bluesystem.ru")], 1.0)
    packets += tcp_flow(CLIENT, "198.51.100.40", 41031, 443, [tls_client_hello("www.example.org")], 2.0)
    results = {r["src_port"]: outcome(r)[:2] for r in analyze(PROFILE, packets, tmp_path)}
    assert results == {41030: ("drop", "tspu-sni-drop"), 41031: ("drop", "tspu-ip-drop")}


def test_tor_blocked_by_address_and_by_its_handshake_from_2021_12_01(tmp_path: Path) -> None:
    """net4people/bbs#97: directory authorities and default bridges unreachable from 2021-12-01; Tor's own
    ClientHello (a real one from nDPI's tor.pcap) blocked by DPI whatever the address."""
    before, after = load_profile("russia-tspu", as_of="2021-11-30"), load_profile("russia-tspu", as_of="2021-12-01")
    for address in ("131.188.40.189", "198.19.0.27", "198.19.0.28"):  # gabelmoo, the lab's bridge and relay
        packets = tcp_flow(CLIENT, address, 41040, 443, [tls_client_hello("www.example.org")], 1.0)
        assert decide(before, packets) is None
        assert decide(after, packets).verdict.rule_id == "tspu-tor-ip-drop", address
    (tor_hello, *_rest) = client_hellos("tor.pcap")
    packets = tcp_flow(CLIENT, SERVER, 41041, 9001, [tor_hello], 1.0)
    (record,) = analyze(after, packets, tmp_path)
    assert record["app_proto"] == "tor" and outcome(record)[:2] == ("drop", "tspu-tor-protocol-drop")
    assert decide(before, packets) is None


def _dtls_flow(port: int, *datagrams: bytes) -> list:
    return udp_flow(CLIENT, SERVER, port, 3478, list(datagrams), 1.0)


def test_snowflake_dtls_rules_follow_the_three_reported_signatures() -> None:
    """Bocovich et al. 2024, Blocking in Russia: Pion's ServerHello with supported_groups (1d 00 17 00 18 at
    0x5a) from 2021-12-01; Pion's ClientHello groups at 0x59 / 0x6e from 2022-05-16 to mid-July 2022; the
    HelloVerifyRequest from July 2022. Records built byte by byte (tests/_dtls.py)."""
    buggy, fixed = _dtls.server_hello(pion_2021=True), _dtls.server_hello(pion_2021=False)
    first, hvr = _dtls.client_hello(), _dtls.hello_verify_request()
    # in this layout Pion's first ClientHello carries the groups at 0x59..0x5e, so "1d 00 17 00 18" also sits at
    # 0x5a: the 2021 rule (no handshake type checked) matches it too (see the rule's uncertain note); and the
    # 2022 rule's 0x59 is where the buggy ServerHello's groups start, so it matches that too (listed first)
    expected = {  # day: rule that blocks (buggy ServerHello, first ClientHello, HelloVerifyRequest)
        "2021-11-30": (None, None, None),
        "2021-12-01": ("tspu-snowflake-dtls-serverhello", "tspu-snowflake-dtls-serverhello", None),
        "2022-05-16": ("tspu-snowflake-dtls-clienthello", "tspu-snowflake-dtls-clienthello", None),
        "2022-07-16": ("tspu-snowflake-dtls-serverhello", "tspu-snowflake-dtls-serverhello", "tspu-snowflake-dtls-hvr"),
    }
    for day, rules in expected.items():
        profile = load_profile("russia-tspu", as_of=day)
        hits = []
        for datagram in (buggy, first, hvr, fixed):
            decision = decide(profile, _dtls_flow(41050, datagram))
            hits.append(decision.verdict.rule_id if decision else None)
        assert tuple(hits) == (*rules, None), day  # the fix (pion/dtls v2.0.12) is never matched
    # the ClientHello rule's second offset: a second ClientHello whose groups sit at 0x6e (a 21-byte cookie)
    second = _dtls.client_hello(cookie=bytes(21))
    assert second[0x6E:0x74] == bytes.fromhex("001d00170018")
    decision = decide(load_profile("russia-tspu", as_of="2022-06-01"), _dtls_flow(41051, second))
    assert decision.verdict.rule_id == "tspu-snowflake-dtls-clienthello"


def test_vpn_protocols_to_foreign_servers_from_2023_08_07() -> None:
    """net4people/bbs#274 (community reports): OpenVPN and WireGuard to foreign servers from 2023-08-07."""
    reset = bytes.fromhex("3811223344556677880000000000")
    foreign = udp_flow(CLIENT, SERVER, 41060, 1194, [reset, reset], 1.0)
    domestic = udp_flow(CLIENT, "192.0.2.99", 41061, 1194, [reset, reset], 1.0)  # inside (emulated-inside.txt)
    assert decide(load_profile("russia-tspu", as_of="2023-08-06"), foreign) is None
    after = load_profile("russia-tspu", as_of="2023-08-07")
    assert decide(after, foreign).verdict.rule_id == "tspu-vpn-drop"
    assert decide(after, domestic) is None


def test_fully_encrypted_proxies_from_2024_04_25() -> None:
    noise = random.Random(9).randbytes(600)
    packets = tcp_flow(CLIENT, SERVER, 41070, 8388, [noise], 1.0)
    assert decide(load_profile("russia-tspu", as_of="2024-04-24"), packets) is None
    assert decide(load_profile("russia-tspu", as_of="2024-04-25"), packets).verdict.rule_id == (
        "tspu-fully-encrypted-proxy-drop"
    )
