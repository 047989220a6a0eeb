"""iran: the protocol filter (Bock et al., FOCI 2020) and the standard DPI's DNS, blockpage, SNI and QUIC
blocking, offline, with the injected packets checked against OONI's fingerprints of the real ones; the era after
September 2022 (the blanket QUIC block, the Go TLS fingerprint block) on real bytes."""

from __future__ import annotations

import random
from pathlib import Path

import dns.message

from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.profile import load_profile
from tests.profiles._scenarios import (
    CLIENT,
    SERVER,
    analyze,
    decide,
    dns_query,
    fingerprint_patterns,
    http_request,
    outcome,
    read,
    tcp_flow,
    udp_flow,
)

PROFILE = load_profile("iran", as_of="2021-07-31")  # the protocol filter's measured era (FOCI 2020 to 2021)


def test_protocol_filter_decides_on_the_second_data_packet(tmp_path: Path) -> None:
    rng = random.Random(1)
    first, second = rng.randbytes(200), rng.randbytes(200)
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41000, 443, [first, second], 1.0))
    assert decision.verdict.rule_id == "iran-protocol-filter"
    assert decision.pkt.payload == second, "the first data packet passes; every packet after it is dropped"
    plan = decision.plan(PROFILE.personality)
    assert plan.drop_trigger and plan.drop_direction == "both"
    r = plan.residual
    assert (r.scope, r.seconds, r.rearm, r.action) == ("3-tuple", 60, True, "drop")


def test_protocol_filter_ports_protocols_and_direction(tmp_path: Path) -> None:
    rng = random.Random(2)
    noise = [rng.randbytes(150), rng.randbytes(150)]
    flows = {
        41001: tcp_flow(CLIENT, SERVER, 41001, 80, noise, 1.0),  # watched port
        41002: tcp_flow(CLIENT, SERVER, 41002, 53, noise, 2.0),  # watched port
        41003: tcp_flow(CLIENT, SERVER, 41003, 8443, noise, 3.0),  # not watched
        41004: tcp_flow(CLIENT, SERVER, 41004, 443, [tls_client_hello("www.example.org")], 4.0),
        41005: tcp_flow(CLIENT, SERVER, 41005, 443, [http_request("www.example.org")], 5.0),  # HTTP on 443
        41006: tcp_flow(CLIENT, SERVER, 41006, 80, [b"GET / HT", b"TP/1.1\r\nHost: a.example\r\n\r\n"], 6.0),
        41007: tcp_flow(
            CLIENT,
            SERVER,
            41007,
            53,
            [len(q := dns_query("www.example.org")).to_bytes(2, "big") + q, rng.randbytes(30)],
            7.0,
        ),
        41008: tcp_flow("203.0.113.77", "192.0.2.80", 41008, 443, noise, 8.0),  # entering Iran
        41009: tcp_flow(CLIENT, SERVER, 41009, 443, [b"GET"], 9.0),  # one packet only
    }
    results = {
        r["src_port"]: outcome(r)[:2] for r in analyze(PROFILE, [p for f in flows.values() for p in f], tmp_path)
    }
    dropped = ("drop", "iran-protocol-filter")
    assert results[41001] == results[41002] == dropped
    assert all(results[port] == ("allow", None) for port in (41003, 41004, 41005, 41006, 41007, 41008, 41009))


def test_http_fingerprint_needs_eight_bytes_and_a_method(tmp_path: Path) -> None:
    """FOCI 2020 section 4.3: the combined first two payloads are >= 8 bytes and start with a method and a
    space. 'GET /' + 2 bytes = 7 bytes: blocked; 8 bytes: allowed."""
    short = tcp_flow(CLIENT, SERVER, 41010, 80, [b"GET ", b"/x\x00"], 1.0)
    enough = tcp_flow(CLIENT, SERVER, 41011, 80, [b"GET ", b"/x\x00\x00"], 2.0)
    results = {r["src_port"]: outcome(r)[:2] for r in analyze(PROFILE, short + enough, tmp_path)}
    assert results == {41010: ("drop", "iran-protocol-filter"), 41011: ("allow", None)}


def test_dns_poisoning_matches_ooni_fingerprints() -> None:
    """Forged A answers are 10.10.34.34-36 and AAAA answers d0::11 (OONI ooni.ir_4, ir_5, ir_10dot10_ipv4_1,
    ir_ipv6_1), flags 0x81a0 and no compression pointer (geedge.report)."""
    known = {
        fingerprint_patterns("dns", n) for n in ("ooni.ir_4", "ooni.ir_5", "ooni.ir_10dot10_ipv4_1", "ooni.ir_ipv6_1")
    }
    for qtype, qid in (("A", 7), ("AAAA", 8)):
        query = dns.message.make_query("instagram.com", qtype, id=qid).to_wire()
        decision = decide(PROFILE, udp_flow(CLIENT, "198.51.100.53", 53000 + qid, 53, [query], 1.0))
        (injection,) = decision.plan(PROFILE.personality).injections
        payload = read(injection.packet).payload
        assert int.from_bytes(payload[2:4], "big") == 0x81A0
        assert b"\xc0\x0c" not in payload[len(query) :], "the answer repeats the name in full"
        (rrset,) = dns.message.from_wire(payload).answer
        assert rrset[0].address in known


def test_blockpage_is_the_iframe_page_ooni_fingerprints() -> None:
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41012, 80, [http_request("queerquotes.blogspot.com")], 1.0))
    plan = decision.plan(PROFILE.personality)
    response = b"".join(read(i.packet).payload for i in plan.injections if i.to == "client")
    assert response.startswith(b"HTTP/1.1 403 ")
    assert fingerprint_patterns("http", "ooni.ir_0").encode() in response  # 'iframe src="http://10.10'
    assert fingerprint_patterns("http", "cl.nat_ir_iframe_forward_ipv4").encode() in response


def test_sni_and_quic_endpoint_blocking(tmp_path: Path) -> None:
    from tests.profiles._scenarios import quic_initials

    flows = tcp_flow(CLIENT, SERVER, 41013, 443, [tls_client_hello("www.instagram.com")], 1.0)
    flows += udp_flow(CLIENT, "198.51.100.130", 41014, 443, quic_initials("www.example.org", "198.51.100.130"), 2.0)
    flows += udp_flow(CLIENT, SERVER, 41015, 443, quic_initials("www.instagram.com", SERVER), 3.0)
    results = {r["src_port"]: outcome(r)[:2] for r in analyze(PROFILE, flows, tmp_path)}
    assert results[41013] == ("drop", "iran-sni-drop")
    assert results[41014] == ("drop", "iran-quic-endpoint-drop")
    assert results[41015] == ("allow", None), "QUIC is blocked by endpoint, not by SNI"


def test_protocol_filter_lets_dns_over_tcp_through_on_any_of_its_ports(tmp_path: Path) -> None:
    """FOCI 2020: DNS, HTTP and TLS are each allowed on any of ports 53, 80 and 443 (dnspython's query)."""
    query = dns.message.make_query("www.example.org", "A", id=0x1234).to_wire()
    framed = len(query).to_bytes(2, "big") + query
    halves = [framed[:10], framed[10:]]
    for port in (53, 80, 443):
        assert decide(PROFILE, tcp_flow(CLIENT, SERVER, 41500 + port, port, halves, 1.0)) is None, port


def test_every_quic_initial_is_dropped_from_the_protests_to_august_2023(tmp_path: Path) -> None:
    from tests.profiles._scenarios import quic_initials

    initial = udp_flow(CLIENT, SERVER, 41600, 443, quic_initials("www.example.org", SERVER), 1.0)
    for day, expected in (
        ("2022-09-20", None),
        ("2022-09-21", "iran-quic-block"),
        ("2023-08-29", "iran-quic-block"),
        ("2023-08-30", None),
    ):
        decision = decide(load_profile("iran", as_of=day), initial)
        assert (decision.verdict.rule_id if decision else None) == expected, day


def _offering_tls10(hello: bytes) -> bytes:
    """``hello`` with supported_versions offering TLS 1.3 down to 1.0, as Go 1.17 sent it (Go 1.18 dropped 1.0
    and 1.1): the extension rewritten, and the extensions, handshake and record lengths grown to match."""
    old = bytes.fromhex("002b0005040304 0303".replace(" ", ""))
    new = bytes.fromhex("002b000908030403030302 0301".replace(" ", ""))
    at = hello.index(old)
    grow = len(new) - len(old)
    out = bytearray(hello[:at] + new + hello[at + len(old) :])
    out[3:5] = (int.from_bytes(out[3:5], "big") + grow).to_bytes(2, "big")  # record
    out[6:9] = (int.from_bytes(out[6:9], "big") + grow).to_bytes(3, "big")  # handshake
    pos = 9 + 2 + 32  # client_version, random
    pos += 1 + out[pos]  # session id
    pos += 2 + int.from_bytes(out[pos : pos + 2], "big")  # cipher suites
    pos += 1 + out[pos]  # compression methods
    out[pos : pos + 2] = (int.from_bytes(out[pos : pos + 2], "big") + grow).to_bytes(2, "big")  # extensions
    return bytes(out)


def test_only_the_go_1_17_no_aes_fingerprint_is_blocked_from_october_2022() -> None:
    """Bocovich et al., USENIX Security 2024: of Go's four crypto/tls fingerprints (Go 1.17 or 1.18+, with or
    without AES acceleration) only Go 1.17 without AES acceleration was blocked. Debian's v2ray (Go crypto/tls)
    gives the real ClientHellos with and without AES acceleration; Go 1.17's is the no-AES one offering TLS 1.0
    and 1.1 too."""
    from chokepoint.dissect.tls import parse_client_hello_records
    from tests._real_clients import v2ray_hello

    no_aes, aes = v2ray_hello(aes=False), v2ray_hello(aes=True)
    go117_no_aes, go117_aes = _offering_tls10(no_aes), _offering_tls10(aes)
    assert parse_client_hello_records(go117_no_aes).supported_versions == (0x0304, 0x0303, 0x0302, 0x0301)
    assert parse_client_hello_records(go117_no_aes).ja3_hash == parse_client_hello_records(no_aes).ja3_hash
    profile = load_profile("iran", as_of="2022-11-01")
    blocked = {}
    for name, hello in (
        ("1.17-no-aes", go117_no_aes),
        ("1.17-aes", go117_aes),
        ("1.18-no-aes", no_aes),
        ("1.18-aes", aes),
    ):
        decision = decide(profile, tcp_flow(CLIENT, SERVER, 41700, 443, [hello], 1.0))
        blocked[name] = decision.verdict.rule_id if decision else None
    assert blocked == {
        "1.17-no-aes": "iran-go-tls-fingerprint-drop",
        "1.17-aes": None,
        "1.18-no-aes": None,
        "1.18-aes": None,
    }
    before = load_profile("iran", as_of="2022-10-03")
    assert decide(before, tcp_flow(CLIENT, SERVER, 41701, 443, [go117_no_aes], 1.0)) is None
