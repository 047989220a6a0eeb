"""The gfw timeline (one file, 2020-08 to 2025-08): what is in force on which day, and the dated blocks the
single snapshots lacked, reproduced offline from real bytes (Debian's trojan and v2ray clients, OpenSSL's and
aioquic's handshakes, nDPI's WireGuard capture)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chokepoint.dissect.tls import parse_client_hello_records
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy import PolicyError
from chokepoint.policy.profile import era_starts, load_profile
from tests._real_clients import trojan_hello, v2ray_hello
from tests.profiles._scenarios import (
    CLIENT,
    SERVER,
    analyze,
    decide,
    outcome,
    quic_initials,
    tcp_flow,
    udp_flow,
)

VPS, ELSEWHERE = "198.19.64.10", "198.19.128.10"


def _rules(day: str) -> set[str]:
    return {r.id for r in load_profile("gfw", as_of=day).policy.rules}


def test_the_eras_follow_the_sources() -> None:
    always = {"gfw-dns-inject", "gfw-sni-reset", "gfw-http-host-reset", "gfw-tor-relay-ip-drop"}
    assert always | {"gfw-esni-drop"} <= _rules("2020-08-01")  # ESNI since 2020-07-29, before the coverage
    assert "gfw-fet-drop" not in _rules("2021-10-31") and "gfw-fet-drop" in _rules("2021-11-01")
    assert "gfw-fet-drop" in _rules("2023-03-07") and "gfw-fet-drop" not in _rules("2023-03-08")  # inclusive
    assert "gfw-static-ip-block" not in _rules("2022-08-18") and "gfw-static-ip-block" in _rules("2022-08-19")
    assert "gfw-tls-proxy-port-block" in _rules("2022-10-03") and "gfw-tls-proxy-port-block" not in _rules("2022-10-02")
    assert "gfw-quic-sni-drop" not in _rules("2024-04-06") and "gfw-quic-sni-drop" in _rules("2024-04-07")
    starts = [str(d) for d in era_starts(load_profile("gfw"))]
    for day in ("2020-08-01", "2021-11-01", "2023-03-08", "2024-04-07", "2025-03-13"):
        assert day in starts


def test_out_of_coverage_and_malformed_days_are_refused() -> None:
    with pytest.raises(PolicyError, match="outside the dates profile 'gfw' covers"):
        load_profile("gfw", as_of="2019-06-01")
    with pytest.raises(PolicyError, match="not a day"):
        load_profile("gfw", as_of="2023-03")
    with pytest.raises(PolicyError, match="gfw-2023 is gfw as of 2022-06-01"):
        load_profile("gfw-2023", as_of="2024-01-01")


def test_the_injected_ttl_changes_with_the_year() -> None:
    """geedge.report: the type II injector's TTL matched the TSG range 48-247 in December 2023, a fixed 255
    since; the personality loaded for each day carries the one in force."""
    assert load_profile("gfw", as_of="2022-06-01").personality.reset.ip.ttl.kind == "range"
    ttl = load_profile("gfw", as_of="2024-06-01").personality.reset.ip.ttl
    assert (ttl.kind, ttl.lo) == ("fixed", 255)


def test_quic_triggers_in_both_directions_until_2025_03_12_then_outbound_only(tmp_path: Path) -> None:
    """USENIX Security 2025: bidirectional triggering until 2025-03-13; a client outside China (203.0.113.77)
    reaching a server inside (192.0.2.80) is blocked on 2024-06-01 and spared on 2025-06-01."""
    inbound = udp_flow("203.0.113.77", "192.0.2.80", 50003, 443, quic_initials("www.google.com", "192.0.2.80"), 1.0)
    for day, expected in (("2024-06-01", ("drop", "gfw-quic-sni-drop")), ("2025-06-01", ("allow", None))):
        (record,) = analyze(load_profile("gfw", as_of=day), inbound, tmp_path, day)
        assert outcome(record)[:2] == expected, day


def test_static_blocking_drops_what_the_server_sends_on_every_protocol() -> None:
    """net4people/bbs#69: from 2022-08-19, a picked server's address is blocked by dropping server-to-client
    packets: the client's SYN still reaches it (the server sits in SYN_RECV), TCP and UDP alike."""
    profile = load_profile("gfw", as_of="2022-09-01")
    decision = decide(profile, tcp_flow(CLIENT, "198.19.64.109", 41100, 8388, [b"x"], 1.0))
    assert decision.verdict.rule_id == "gfw-static-ip-block"
    assert decision.pkt.tcp_flags & 0x02  # decided on the client's SYN
    plan = decision.plan(profile.personality)
    assert plan.flow_action == "drop" and plan.drop_direction == "s2c" and not plan.drop_trigger
    udp = decide(profile, udp_flow(CLIENT, "198.19.64.109", 41101, 8388, [b"hello"], 1.0))
    assert udp.verdict.rule_id == "gfw-static-ip-block"
    assert (
        decide(load_profile("gfw", as_of="2022-08-18"), tcp_flow(CLIENT, "198.19.64.109", 41102, 80, [b"x"], 1.0))
        is None
    )


@pytest.mark.parametrize("client", [trojan_hello, v2ray_hello], ids=["trojan", "v2ray"])
def test_tls_proxy_clients_fingerprints_block_the_server_port(client, tmp_path: Path) -> None:
    """net4people/bbs#129: from 2022-10-03, the ClientHello fingerprints of TLS-based proxy clients to VPS
    servers got the server's port blocked (for every client, for weeks). The real ClientHellos of Debian's
    trojan and v2ray clients are on the list; OpenSSL's default ClientHello (Python ssl, as curl) is not; a
    server outside the data-centre ranges is spared; nothing before 2022-10-03."""
    hello = client()
    assert parse_client_hello_records(hello).ja4 in load_profile("gfw").policy.lists["gfw_proxy_client_ja4"].entries
    profile = load_profile("gfw", as_of="2022-11-01")
    decision = decide(profile, tcp_flow(CLIENT, VPS, 41200, 443, [hello], 1.0))
    assert decision.verdict.rule_id == "gfw-tls-proxy-port-block"
    plan = decision.plan(profile.personality)
    assert (plan.residual.scope, plan.residual.seconds) == ("server", 604800)
    assert (plan.residual.client_ip, plan.residual.server_ip, plan.residual.server_port) == (None, VPS, 443)
    assert decide(profile, tcp_flow(CLIENT, ELSEWHERE, 41201, 443, [hello], 1.0)) is None
    browserless = tls_client_hello("proxy.example.com")
    assert decide(profile, tcp_flow(CLIENT, VPS, 41202, 443, [browserless], 1.0)) is None
    assert decide(load_profile("gfw", as_of="2022-10-02"), tcp_flow(CLIENT, VPS, 41203, 443, [hello], 1.0)) is None


def test_tor_relays_and_directory_authorities_are_blocked_by_address() -> None:
    profile = load_profile("gfw")
    for address, port in (("198.19.0.28", 9001), ("128.31.0.39", 9131), ("171.25.193.9", 443)):
        decision = decide(profile, tcp_flow(CLIENT, address, 41300, port, [b"\x16\x03\x01"], 1.0))
        assert decision.verdict.rule_id == "gfw-tor-relay-ip-drop", address
    assert decide(profile, tcp_flow(CLIENT, SERVER, 41301, 9001, [b"\x16\x03\x01"], 1.0)) is None


def test_a_wireguard_peer_used_for_a_week_has_its_port_blocked() -> None:
    """net4people/bbs#117: after about a week of continuous use, the remote peer's UDP port is blocked for a
    few days (IPv4 only). A deferred rule: the flow is flagged at the handshake and blocked a week later. Real
    WireGuard messages from nDPI's capture."""
    from tests._corpus import UDP, read_flows

    (flow, *_rest) = [f for f in read_flows("wireguard.pcap") if f.proto == UDP]
    initiation, response = flow.payloads(True)[0], flow.payloads(False)[0]
    assert (initiation[0], response[0]) == (1, 2)  # a handshake initiation and its response

    def session(client: str, server: str, port: int, seconds: int) -> list:
        """The handshake, then a datagram from the client every 30 s (a peer keeps the flow alive)."""
        out = udp_flow(client, server, port, 51820, [initiation], 1000.0)
        out += udp_flow(server, client, 51820, port, [response], 1000.01)
        for i in range(1, seconds // 30 + 1):
            out += udp_flow(client, server, port, 51820, [initiation], 1000.0 + 30 * i)
        return out

    week = load_profile("gfw", as_of="2023-01-01").policy.rule("gfw-wireguard-port-block").defer
    assert (week.after_s, week.min_bytes) == (604800, 0)
    # the same rule with two minutes instead of a week (a peer keeps the UDP flow alive: a datagram every 30 s)
    profile = load_profile("gfw", as_of="2023-01-01", params={"gfw-wireguard-port-block.after_s": "120"})
    packets = session(CLIENT, VPS, 51820, 150)
    decision = decide(profile, packets)
    assert decision is not None and decision.verdict.rule_id == "gfw-wireguard-port-block"
    assert decision.pkt.ts >= 1000.0 + 120  # not before the flow is two minutes old
    plan = decision.plan(profile.personality)
    assert (plan.residual.scope, plan.residual.seconds) == ("server", 259200)
    assert decide(profile, session(CLIENT, VPS, 51821, 90)) is None  # flagged, not yet blocked
    assert decide(profile, session("2001:db8:0:1::2", "2001:db8:0:64::10", 51822, 150)) is None  # IPv6 peers
