"""The bundled profiles: they load, cite every rule and list, and block what their sources say.

Facts come from real bytes where a dissector exists for them: TLS ClientHellos from Python's ssl
(OpenSSL), DNS queries from dnspython, parsed by chokepoint's own dissectors, and a real ESNI ClientHello
(Firefox, 2019) from the nDPI test captures in ../shared/data.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import dns.message
import pytest

from chokepoint.dissect.dns import parse_message
from chokepoint.dissect.errors import DissectError
from chokepoint.dissect.tls import ClientHello, parse_client_hello_records
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.input import MatchInput
from chokepoint.policy.profile import load_profile
from chokepoint.policy.verdict import Action

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def tls_flow(hello: ClientHello, **extra) -> MatchInput:
    return MatchInput(
        transport="tcp",
        client_ip="192.0.2.10",
        server_ip="203.0.113.10",
        client_port=50123,
        server_port=extra.pop("server_port", 443),
        direction="c2s",
        packet_index_in_flow=4,
        app_proto="tls",
        tls_sni=hello.sni,
        ja3=hello.ja3_hash,
        ja4=hello.ja4,
        tls_alpn=tuple(hello.alpn),
        tls_ech=hello.has_ech,
        tls_esni=hello.has_esni,
        tls_record_fragmented=hello.record_count > 1,
        **extra,
    )


def dns_flow(name: str) -> MatchInput:
    msg = parse_message(dns.message.make_query(name, "A", id=4242).to_wire())
    return MatchInput(
        transport="udp",
        client_ip="192.0.2.10",
        server_ip="192.0.2.53",
        client_port=53000,
        server_port=53,
        direction="c2s",
        packet_index_in_flow=1,
        app_proto="dns",
        dns_qname=msg.qname,
        dns_qtype=msg.qtype,
    )


def http_flow(host: str, path: str, query: str | None = None) -> MatchInput:
    return MatchInput(
        transport="tcp",
        client_ip="192.0.2.10",
        server_ip="203.0.113.20",
        client_port=50200,
        server_port=80,
        direction="c2s",
        packet_index_in_flow=4,
        app_proto="http",
        http_host=host,
        http_method="GET",
        http_path=path,
        http_query=query,
    )


def verdicts(profile_name: str, inp: MatchInput) -> list[tuple[str, str]]:
    return [(v.action.value, v.rule_id) for v in load_profile(profile_name).policy.evaluate(inp)]


# -- both profiles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gfw", "demo"])
def test_profile_loads_and_cites_everything(name: str) -> None:
    profile = load_profile(name)
    assert profile.meta.cite and profile.meta.observed and profile.meta.description
    assert profile.policy.rules
    for rule in profile.policy.rules:
        assert rule.cite, f"{rule.id} has no citation"
        assert rule.reason, f"{rule.id} has no reason"
    for listdef in profile.policy.lists.values():
        assert listdef.cite and listdef.entries


# -- gfw ---------------------------------------------------------------------------------------------


def test_gfw_resets_blocked_sni_with_the_type_ii_injector() -> None:
    hello = parse_client_hello_records(tls_client_hello("www.google.com"))
    (verdict,) = load_profile("gfw").policy.evaluate(tls_flow(hello, server_port=8443))  # any TCP port
    assert (verdict.action, verdict.rule_id) == (Action.RESET, "gfw-sni-reset")
    assert dict(verdict.params) == {}  # the injector (count, flags, targets, residual) is the personality's
    reset = load_profile("gfw").personality.reset
    assert (reset.count, reset.flags_text, reset.targets) == (3, "RA", "both")
    assert ("tls.sni", "www.google.com", "gfw_domains: google.com") in [
        (e.field, e.value, e.matched) for e in verdict.evidence
    ]
    assert "IEEE S&P 2025" in verdict.cite


def test_gfw_lets_unlisted_names_through() -> None:
    hello = parse_client_hello_records(tls_client_hello("www.example.org"))
    assert verdicts("gfw", tls_flow(hello)) == []
    assert verdicts("gfw", dns_flow("www.example.org")) == []
    assert verdicts("gfw", http_flow("www.example.org", "/index.html")) == []


def test_gfw_injects_dns_answers_from_the_known_forged_pool() -> None:
    (verdict,) = load_profile("gfw").policy.evaluate(dns_flow("WWW.YouTube.com."))
    assert (verdict.action, verdict.rule_id) == (Action.DNS_FORGE, "gfw-dns-inject")
    assert "8.7.198.45" in verdict.param("answers") and len(verdict.param("answers")) == 9


def test_gfw_http_host_and_keyword_resets() -> None:
    assert verdicts("gfw", http_flow("zh.wikipedia.org", "/")) == [("reset", "gfw-http-host-reset")]
    assert verdicts("gfw", http_flow("news.example", "/archive/六四/")) == [("reset", "gfw-http-keyword-reset")]
    assert verdicts("gfw", http_flow("news.example", "/", "q=falun")) == [("reset", "gfw-http-keyword-reset")]
    # "search"-conditional keywords need the word search too (the entries are examples)
    assert verdicts("gfw", http_flow("news.example", "/", "q=tiananmen")) == []
    assert verdicts("gfw", http_flow("news.example", "/search", "q=tiananmen")) == [
        ("reset", "gfw-http-search-keyword-reset")
    ]
    (verdict,) = load_profile("gfw").policy.evaluate(http_flow("a.example", "/x", "q=falun"))
    assert verdict.param("probability") == 0.75 and verdict.param("residual_s") == 90


def test_gfw_drops_fully_encrypted_first_packets_probabilistically() -> None:
    """Wu et al. 2023, as of a day in the era (2021-11 to 2023-03): only to servers in data-centre ranges (the
    lab's "vps" range stands for them), client to server, with a 180 s residual; not after March 2023."""
    inp = MatchInput(
        transport="tcp",
        client_ip="192.0.2.10",
        server_ip="198.19.64.10",
        client_port=50300,
        server_port=8388,
        direction="c2s",
        packet_index_in_flow=4,
        data_packet_index_c2s=1,
        fully_encrypted=True,
    )
    era = load_profile("gfw", as_of="2022-06-01")
    (verdict,) = era.policy.evaluate(inp)
    assert (verdict.action, verdict.rule_id) == (Action.DROP, "gfw-fet-drop")
    assert verdict.param("probability") == 0.26 and verdict.param("residual_s") == 180
    assert verdict.param("direction") == "c2s"
    active = era.policy.rule("gfw-fet-drop").active
    assert (str(active.start), str(active.end)) == ("2021-11-01", "2023-03-07")
    assert load_profile("gfw", as_of="2023-03-15").policy.evaluate(inp) == ()
    inp.server_ip = "198.19.128.10"  # the "elsewhere" range: not a data centre
    assert era.policy.evaluate(inp) == ()
    inp.server_ip, inp.fully_encrypted, inp.fet_exemption = "198.19.64.10", False, "ex2"
    assert era.policy.evaluate(inp) == ()


def _tcp_payloads(path: Path) -> Iterator[bytes]:
    """TCP payloads of an Ethernet pcap (little-endian, IPv4/IPv6): a minimal reader for this test."""
    data = path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1" and struct.unpack_from("<I", data, 20)[0] == 1
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        ethertype, off = struct.unpack_from("!H", frame, 12)[0], 14
        if ethertype == 0x0800 and frame[off + 9] == 6:
            ip_end = off + (frame[off] & 0x0F) * 4
        elif ethertype == 0x86DD and frame[off + 6] == 6:
            ip_end = off + 40
        else:
            continue
        yield frame[ip_end + (frame[ip_end + 12] >> 4) * 4 :]


def test_gfw_drops_a_real_esni_client_hello() -> None:
    capture = SHARED_DATA / "ndpi" / "pcap" / "encrypted_sni.pcap"
    if not capture.exists():
        pytest.skip(f"../shared/data not found: {capture}")
    hellos = []
    for payload in _tcp_payloads(capture):
        if payload[:1] == b"\x16":
            try:
                hellos.append(parse_client_hello_records(payload))
            except DissectError:
                continue
    esni = [h for h in hellos if h.has_esni]
    assert esni, "the capture holds ClientHellos with encrypted_server_name (0xffce)"
    (verdict,) = load_profile("gfw").policy.evaluate(tls_flow(esni[0]))
    assert (verdict.action, verdict.rule_id) == (Action.DROP, "gfw-esni-drop")
    assert verdict.param("direction") == "c2s" and verdict.evidence[-1].field == "tls.esni"


# -- demo --------------------------------------------------------------------------------------------


def test_demo_blocks_the_demo_name_everywhere_and_logs_tunnels() -> None:
    hello = parse_client_hello_records(tls_client_hello("example-blocked.test"))
    assert verdicts("demo", tls_flow(hello)) == [("reset", "demo-sni-reset")]
    assert verdicts("demo", dns_flow("example-blocked.test")) == [("dns-forge", "demo-dns-forge")]
    assert verdicts("demo", http_flow("example-blocked.test", "/")) == [("blockpage", "demo-http-host-blockpage")]
    assert verdicts("demo", http_flow("www.example.org", "/search", "q=forbidden-keyword")) == [
        ("reset", "demo-http-keyword-reset")
    ]
    assert verdicts("demo", http_flow("www.example.org", "/index.html")) == []
    quic = MatchInput(
        transport="udp",
        client_ip="192.0.2.10",
        server_ip="203.0.113.10",
        client_port=50400,
        server_port=443,
        direction="c2s",
        app_proto="quic",
        quic_sni="example-blocked.test",
        quic_version=1,
    )
    assert verdicts("demo", quic) == [("drop", "demo-quic-drop")]
    other = parse_client_hello_records(tls_client_hello("cdn.example.net"))
    blocked_net = tls_flow(other)
    blocked_net.server_ip = "198.51.100.7"
    assert verdicts("demo", blocked_net) == [("drop", "demo-net-drop")]
    ssh = MatchInput(
        transport="tcp",
        client_ip="192.0.2.10",
        server_ip="203.0.113.22",
        client_port=50500,
        server_port=22,
        direction="c2s",
        app_proto="ssh",
    )
    assert verdicts("demo", ssh) == [("log", "demo-log-tunnel")]
