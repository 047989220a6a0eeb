"""belarus-2020: resets during the TLS handshake, per-ISP redirects and DNS forwarding, with the PacketLogic
fingerprint (Citizen Lab, Bad Traffic: IP ID 13330, window 32120) on every injected packet."""

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


def test_rst_matches_the_badtraffic_detection_test() -> None:
    """Citizen Lab's parse-pcap-results.py flags ``ip.id == 13330 and tcp_flags == "RA"``."""
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41000, 443, [tls_client_hello("intimby.net")], 1.0))
    rsts = [read(i.packet) for i in decision.plan(PROFILE.personality).injections]
    assert rsts and all(p.ip_id == 13330 and p.tcp_flags == RST | ACK and p.window == 32120 for p in rsts)


def test_redirect_to_the_isp_notice_closed_with_fin() -> None:
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41001, 80, [http_request("intimby.net")], 1.0))
    plan = decision.plan(PROFILE.personality)
    to_client = [read(i.packet) for i in plan.injections if i.to == "client"]
    response = b"".join(p.payload for p in to_client)
    assert response.startswith(b"HTTP/1.1 302 ")
    location = fingerprint_patterns("http", "ooni.by_0")  # https://www.a1.by/mininfo/ (prefix)
    assert f"Location: {location}".encode() in response
    assert to_client[-1].tcp_flags & FIN and to_client[-1].tcp_flags & ACK
    assert all((p.ip_id, p.window) == (13330, 32120) for p in to_client)


def test_mts_dns_forward_address_is_oonis() -> None:
    decision = decide(PROFILE, udp_flow(CLIENT, "198.51.100.53", 53000, 53, [dns_query("intimby.net")], 1.0))
    (injection,) = decision.plan(PROFILE.personality).injections
    import dns.message

    (rrset,) = dns.message.from_wire(read(injection.packet).payload).answer
    assert rrset[0].address == fingerprint_patterns("dns", "ooni.by_4")
