"""belarus-2020: resets during the TLS handshake, per-ISP redirects and DNS forwarding, with the fields measured
in Belarus (Qurium 2020: Business Network's RST/ACK with window 502 and IP ID 0, Beltelecom's redirect with window
32678 and IP ID 1), not the PacketLogic fingerprint inferred from the vendor; Tor blocked by address by date."""

from __future__ import annotations

from chokepoint.packet.record import ACK, FIN, RST
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.profile import load_profile
from tests.profiles._scenarios import (
    CLIENT,
    SERVER,
    decide,
    dns_query,
    fingerprint_patterns,
    http_request,
    read,
    tcp_flow,
    udp_flow,
)

PROFILE = load_profile("belarus-2020")


def test_rst_carries_the_fields_measured_in_belarus() -> None:
    """Qurium 2020 (net4people/bbs#46): Business Network's injected RST/ACK, TCP window 502, IP ID 0 - not
    PacketLogic's 13330/32120 (Citizen Lab's Bad Traffic test, measured in Turkey and Egypt)."""
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41000, 443, [tls_client_hello("intimby.net")], 1.0))
    rsts = [read(i.packet) for i in decision.plan(PROFILE.personality).injections]
    assert rsts and all(p.ip_id == 0 and p.tcp_flags == RST | ACK and p.window == 502 for p in rsts)
    assert [a.preset for a in PROFILE.also_observed] == ["packetlogic"]


def test_redirect_to_the_isp_notice_closed_with_fin() -> None:
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41001, 80, [http_request("intimby.net")], 1.0))
    plan = decision.plan(PROFILE.personality)
    to_client = [read(i.packet) for i in plan.injections if i.to == "client"]
    response = b"".join(p.payload for p in to_client)
    assert response.startswith(b"HTTP/1.1 302 ")
    location = fingerprint_patterns("http", "ooni.by_1")  # Beltelecom: http://82.209.230.23 (prefix)
    assert f"Location: {location}".encode() in response
    assert to_client[-1].tcp_flags & FIN and to_client[-1].tcp_flags & ACK
    assert all((p.ip_id, p.window) == (1, 32678) for p in to_client)  # Qurium 2020, Beltelecom


def test_mts_dns_forward_address_is_oonis() -> None:
    decision = decide(PROFILE, udp_flow(CLIENT, "198.51.100.53", 53000, 53, [dns_query("intimby.net")], 1.0))
    (injection,) = decision.plan(PROFILE.personality).injections
    import dns.message

    (rrset,) = dns.message.from_wire(read(injection.packet).payload).answer
    assert rrset[0].address == fingerprint_patterns("dns", "ooni.by_4")


def test_tor_blocked_by_address_in_august_2020_again_from_october_and_bridges_from_february_2021() -> None:
    """Tor Project, 2021-04-21 (net4people/bbs#72)."""
    relay = tcp_flow(CLIENT, "86.59.21.38", 41010, 443, [tls_client_hello("www.example.org")], 1.0)
    bridge = tcp_flow(CLIENT, "198.19.0.27", 41011, 443, [bytes(range(256))], 1.0)
    expected = {
        "2020-08-01": (None, None),
        "2020-08-10": ("by-tor-ip-drop", None),
        "2020-09-15": (None, None),
        "2020-10-01": ("by-tor-ip-drop", None),
        "2021-02-01": ("by-tor-ip-drop", "by-tor-bridge-drop"),
    }
    for day, rules in expected.items():
        profile = load_profile("belarus-2020", as_of=day)
        got = tuple(d.verdict.rule_id if (d := decide(profile, flow)) else None for flow in (relay, bridge))
        assert got == rules, day
