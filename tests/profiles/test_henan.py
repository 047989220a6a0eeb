"""henan: the regional firewall's parsing logic and injector (Wu et al., IEEE S&P 2025), offline."""

from __future__ import annotations

from pathlib import Path

from chokepoint.packet import build
from chokepoint.packet.record import ACK, PSH, RST
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.profile import load_profile
from tests.profiles._scenarios import CLIENT, SERVER, TIMESTAMPS, analyze, cut, decide, outcome, read, tcp_flow

PROFILE = load_profile("henan")


def test_only_20_byte_tcp_headers_trigger(tmp_path: Path) -> None:
    hello = tls_client_hello("www.163.com")
    plain = tcp_flow(CLIENT, SERVER, 41000, 443, [hello], 1.0)
    with_options = tcp_flow(CLIENT, SERVER, 41001, 443, [hello], 2.0, options=TIMESTAMPS)
    assert read(plain[3][1]).tcp_header_len == 20 and read(with_options[3][1]).tcp_header_len == 32
    results = {r["src_port"]: outcome(r)[:2] for r in analyze(PROFILE, plain + with_options, tmp_path)}
    assert results == {41000: ("reset", "henan-sni-reset"), 41001: ("allow", None)}


def test_no_reassembly_and_no_handshake_needed(tmp_path: Path) -> None:
    """Stateless: a lone data segment with a blocked SNI triggers; a ClientHello split over two segments
    does not (each segment is judged alone)."""
    hello = tls_client_hello("www.163.com")
    lone = [(1.0, build.ipv4_tcp(CLIENT, SERVER, 41002, 443, 7000, 9000, PSH | ACK, hello))]
    split = tcp_flow(CLIENT, SERVER, 41003, 443, cut(hello, 2), 2.0)
    results = {r["src_port"]: outcome(r)[:2] for r in analyze(PROFILE, lone + split, tmp_path)}
    assert results == {41002: ("reset", "henan-sni-reset"), 41003: ("allow", None)}


def test_one_rst_ack_with_the_ten_byte_payload_to_the_client_only() -> None:
    """IEEE S&P 2025 table fingerprint: RST+ACK x1, DF 0, IP ID 0x0001, TTL 58 (as seen), payload
    01 02 03 04 05 06 07 08 09 00, client only, no residual."""
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41004, 443, [tls_client_hello("www.163.com")], 1.0))
    plan = decision.plan(PROFILE.personality)
    (injection,) = plan.injections
    pkt = read(injection.packet)
    assert injection.to == "client" and pkt.tcp_flags == RST | ACK
    assert (pkt.df, pkt.ip_id, pkt.ttl) == (False, 1, 58)
    assert pkt.payload == bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
    assert plan.residual is None and not plan.drop_trigger
    assert pkt.seq == decision.pkt.ack, "at the client's RCV.NXT (RFC 5961 3.2)"
