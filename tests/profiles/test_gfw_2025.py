"""gfw-2025: QUIC SNI blocking as Zohaib et al. (USENIX Security 2025) measured it, and the SNI/HTTP/DNS
behaviours of 2024-2025, reproduced offline on aioquic's and OpenSSL's real handshakes."""

from __future__ import annotations

import random
from pathlib import Path

from chokepoint.packet.record import ACK, RST
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.profile import load_profile
from tests.profiles._scenarios import (
    CLIENT,
    SERVER,
    analyze,
    decide,
    outcome,
    protect_initials,
    quic_client_hello,
    quic_initials,
    read,
    tcp_flow,
    tsg_generated,
    udp_flow,
)

PROFILE = load_profile("gfw-2025")
V2 = 0x6B3343CF


def _quic(tmp_path: Path, flows: dict[str, list[tuple[float, bytes]]]) -> dict[str, tuple]:
    """Outcome of each named flow (all in one capture), keyed by name via the client port."""
    ports = {}
    packets = []
    for name, flow in flows.items():
        packets += flow
        ports[read(flow[0][1]).sport] = name
    return {ports[r["src_port"]]: outcome(r)[:2] for r in analyze(PROFILE, packets, tmp_path)}


def test_quic_block_rule_claims(tmp_path: Path) -> None:
    """C2: blocked only when the source port exceeds the destination port; C4: a datagram sent first on the
    4-tuple bypasses it; QUIC v2 is not blocked; only clients inside (outbound since 2025-03-13)."""
    initial = quic_initials("www.google.com", SERVER)
    v2 = quic_initials("www.google.com", SERVER, V2)
    dummy = random.Random(3).randbytes(40)
    results = _quic(
        tmp_path,
        {
            "high-sport": udp_flow(CLIENT, SERVER, 50000, 443, initial, 1000.0),
            "low-sport": udp_flow(CLIENT, SERVER, 400, 443, initial, 1001.0),
            "equal-ports": udp_flow(CLIENT, SERVER, 443, 443, initial, 1002.0),
            "dummy-first": udp_flow(CLIENT, SERVER, 50001, 443, [dummy, *initial], 1003.0),
            "version-2": udp_flow(CLIENT, SERVER, 50002, 443, v2, 1004.0),
            "inbound": udp_flow("203.0.113.77", "192.0.2.80", 50003, 443, initial, 1005.0),
            "high-port-server": udp_flow(CLIENT, SERVER, 50004, 60000, initial, 1006.0),
        },
    )
    assert results["high-sport"] == ("drop", "gfw-quic-sni-drop")
    # the artifact's rule is "Source Port >= Destination Port" (README, section 3.3): equal ports are blocked
    assert results["equal-ports"] == ("drop", "gfw-quic-sni-drop")
    assert results["low-sport"] == results["high-port-server"] == ("allow", None)
    assert results["dummy-first"] == results["version-2"] == results["inbound"] == ("allow", None)


def test_sub_1200_byte_and_crypto_split_initials_are_still_blocked(tmp_path: Path) -> None:
    """The GFW blocks Initials below 1200 bytes (unlike TSG, geedge.report QUIC table) and reassembles a
    ClientHello whose CRYPTO frames span several datagrams."""
    hello, dcid, scid = quic_client_hello("www.youtube.com", SERVER)
    (small,) = protect_initials(hello, dcid, scid)
    split = protect_initials(hello, dcid, scid, pieces=3)
    assert len(small) < 1200 and len(split) == 3
    results = _quic(
        tmp_path,
        {
            "small": udp_flow(CLIENT, SERVER, 50010, 443, [small], 1000.0),
            "split": udp_flow(CLIENT, SERVER, 50011, 443, split, 1001.0),
        },
    )
    assert results == {"small": ("drop", "gfw-quic-sni-drop"), "split": ("drop", "gfw-quic-sni-drop")}


def test_quic_block_holds_180_s_on_the_3_tuple_and_the_dummy_expires_after_60_s(tmp_path: Path) -> None:
    initial = quic_initials("www.google.com", SERVER)
    decision = decide(PROFILE, udp_flow(CLIENT, SERVER, 50020, 443, initial, 1000.0))
    plan = decision.plan(PROFILE.personality)
    assert plan.flow_action == "drop" and plan.drop_trigger and plan.injections == ()
    residual = plan.residual
    assert (residual.scope, residual.seconds, residual.action) == ("3-tuple", 180, "drop")
    assert (residual.client_ip, residual.client_port, residual.server_ip, residual.server_port) == (
        CLIENT,
        None,
        SERVER,
        443,
    ), "a new source port is blocked too"
    # the GFW tracks a 4-tuple for 60 s: a dummy datagram protects a later Initial only within that time
    dummy = random.Random(4).randbytes(40)
    within = udp_flow(CLIENT, SERVER, 50021, 443, [dummy], 2000.0) + udp_flow(
        CLIENT, SERVER, 50021, 443, initial, 2059.0
    )
    after = udp_flow(CLIENT, SERVER, 50022, 443, [dummy], 3000.0) + udp_flow(
        CLIENT, SERVER, 50022, 443, initial, 3061.5
    )
    assert decide(PROFILE, within) is None
    assert decide(PROFILE, after).verdict.rule_id == "gfw-quic-sni-drop"


def test_sni_reset_ttl_is_fixed_at_255_now() -> None:
    """geedge.report: GFW II and III now fix TTL = 255; still three identical RST+ACK with DF and k = 13."""
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41000, 443, [tls_client_hello("www.youtube.com")], 1.0))
    plan = decision.plan(PROFILE.personality, seed=11)
    packets = [read(i.packet) for i in plan.injections if not i.injector]  # type II (I and III run beside it)
    assert len(packets) == 6 and {p.ttl for p in packets} == {255}
    assert all(p.tcp_flags == RST | ACK and p.df for p in packets)
    assert all(tsg_generated(p.ip_id, p.window, decision.flow.client_ip, decision.flow.server_ip) for p in packets)


def test_no_fully_encrypted_blocking_any_more(tmp_path: Path) -> None:
    assert all(r.id != "gfw-fet-drop" for r in PROFILE.policy.rules)
    noise = random.Random(5).randbytes(500)
    (record,) = analyze(PROFILE, tcp_flow(CLIENT, SERVER, 41001, 8388, [noise], 1.0), tmp_path)
    assert record["app_proto"] == "fully-encrypted" and outcome(record)[0] == "allow"


def _fragmented_hello_flow(hello: bytes, mtu: int, port: int) -> tuple[list, int]:
    """The handshake and a ClientHello segment cut into IPv4 fragments of ``mtu`` bytes; (packets, count)."""
    from chokepoint.packet import build

    packets = tcp_flow(CLIENT, SERVER, port, 443, [hello], 1.0)
    at = next(i for i, (_ts, raw) in enumerate(packets) if len(raw) > 100)  # the ClientHello segment
    raw = bytearray(packets[at][1])
    raw[6] &= ~0x40  # clear DF: a client that lets the hello be fragmented
    raw[10:12] = b"\0\0"
    raw[10:12] = build.checksum(bytes(raw[:20])).to_bytes(2, "big")
    fragments = build.fragment_ipv4(bytes(raw), mtu)
    ts = packets[at][0]
    return packets[:at] + [(ts + k * 1e-5, f) for k, f in enumerate(fragments)] + packets[at + 1 :], len(fragments)


def test_each_injector_acts_only_on_hellos_within_its_own_fragment_limit() -> None:
    """geedge.report, IP fragmentation reassembly: GFW I reassembles >= 500 fragments, GFW II 102, GFW III none.
    The engine reassembles up to 500; then each injector acts only on triggers within its own limit."""
    small = tls_client_hello("www.youtube.com")
    big = tls_client_hello("www.youtube.com", alpn=tuple("x" * 200 + str(i) for i in range(4)))
    sent = {}
    for label, hello, mtu, port in (
        ("whole", small, 1500, 42000),
        ("two", small, 300, 42001),
        ("many", small, 28, 42002),
        ("too-many", big, 28, 42003),
    ):
        packets, count = _fragmented_hello_flow(hello, mtu, port)
        decision = decide(PROFILE, packets)
        assert decision is not None and decision.verdict.rule_id == "gfw-sni-reset", label
        assert decision.pkt.reassembled_from == count
        plan = decision.plan(PROFILE.personality)
        sent[label] = (count, sorted({i.injector or "gfw-type-ii" for i in plan.injections}))
    assert sent["whole"] == (1, ["gfw-type-i", "gfw-type-ii", "gfw-type-iii"])
    assert sent["two"][0] == 2 and sent["two"][1] == ["gfw-type-i", "gfw-type-ii"]
    assert 2 < sent["many"][0] <= 102 and sent["many"][1] == ["gfw-type-i", "gfw-type-ii"]
    assert 102 < sent["too-many"][0] <= 500 and sent["too-many"][1] == ["gfw-type-i"]
