"""russia-tspu: Twitter throttling (Xue et al., IMC 2021), the QUIC v1 rule (IETF QUIC list, 2022), the ECH
block and SNI/IP blocking, offline."""

from __future__ import annotations

import random
from pathlib import Path

from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.profile import load_profile
from tests.profiles._scenarios import CLIENT, SERVER, analyze, client_hellos, decide, outcome, tcp_flow, udp_flow

PROFILE = load_profile("russia-tspu")


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
    results = {r["src_port"]: outcome(r)[:2] for r in analyze(PROFILE, packets, tmp_path)}
    throttled = ("throttle", "tspu-twitter-throttle")
    assert all(results[p] == throttled for p in (41000, 41001, 41002, 41003, 41004, 41005))
    assert results[41006] == ("allow", None)
    assert results[41007] == ("allow", None), "*.twimg.com: subdomains only"
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41008, 443, [tls_client_hello("twitter.com")], 1.0))
    plan = decision.plan(PROFILE.personality)
    assert plan.flow_action == "throttle" and 130 <= plan.throttle_kbps <= 150 and plan.injections == ()


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
