"""The dispatcher: which dissector sees which bytes, and what the flow is found to be (real payloads)."""

import random

import dns.message

from chokepoint.dissect import dispatch
from chokepoint.dissect.dispatch import C2S, S2C
from chokepoint.packet.samples import quic_initial, tls_client_hello


def tcp(c2s_chunks, s2c=b"", port=443):
    facts = dispatch.new_facts()
    stream = b""
    for i, chunk in enumerate(c2s_chunks):
        if i == 0:
            dispatch.on_first_client_payload(facts, chunk)
        stream += chunk
        dispatch.on_tcp_data(facts, C2S, stream, port)
    if s2c:
        dispatch.on_tcp_data(facts, S2C, s2c, port)
    return facts


def test_a_client_hello_in_pieces_is_tls_with_its_sni():
    hello = tls_client_hello("pieces.example")
    facts = tcp([hello[:40], hello[40:300], hello[300:]])
    assert facts.app_proto == "tls" and facts.tls.sni == "pieces.example"
    assert "ex5" in facts.fet.exemptions and not facts.fet.fully_encrypted  # it starts like TLS


def test_http_is_refined_until_the_headers_are_complete():
    facts = tcp([b"GET /a HTTP/1.1\r\nHost: one.exa", b"mple\r\nUser-Agent: t\r\n\r\n"], port=80)
    assert facts.app_proto == "http" and facts.http.complete and facts.http.host == "one.example"


def test_connect_is_http_connect():
    facts = tcp([b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n"], port=3128)
    assert facts.app_proto == "http-connect"


def test_socks5_greeting_then_request_fills_the_destination():
    greeting = bytes([5, 1, 0])
    request = bytes([5, 1, 0, 3, 11]) + b"example.org" + (443).to_bytes(2, "big")
    facts = tcp([greeting, request], port=1080)
    assert facts.app_proto == "socks" and facts.socks.dst_host == "example.org" and facts.socks.dst_port == 443


def test_random_first_packet_is_fully_encrypted_and_printable_is_unknown():
    rng = random.Random(5)
    assert tcp([rng.randbytes(500)], port=8388).app_proto == "fully-encrypted"
    assert tcp([b"hello there, this is just text\n" * 4], port=9000).app_proto == "unknown"


def test_mid_stream_tls_records_are_tls():
    record = bytes([23, 3, 3, 0, 20]) + bytes(20)
    facts = tcp([record + record])
    assert facts.app_proto == "tls" and facts.tls_midstream and facts.tls is None


def test_ssh_server_first_then_client_banner():
    facts = dispatch.new_facts()
    dispatch.on_tcp_data(facts, S2C, b"SSH-2.0-OpenSSH_9.2\r\n", 22)
    assert facts.app_proto == "ssh" and facts.ssh_client is None
    dispatch.on_tcp_data(facts, C2S, b"SSH-2.0-OpenSSH_9.6\r\n", 22)
    assert facts.ssh_client.software_version == "OpenSSH_9.6"


def test_dns_queries_and_answers_are_kept_in_order():
    facts = dispatch.new_facts()
    query = dns.message.make_query("a.example", "A", id=7)
    dispatch.on_udp_datagram(facts, C2S, query.to_wire(), 40000, 53)
    dispatch.on_udp_datagram(facts, S2C, dns.message.make_response(query).to_wire(), 40000, 53)
    assert facts.app_proto == "dns"
    assert [m.is_response for m in facts.dns] == [False, True] and facts.dns[0].qname == "a.example"


def test_quic_initial_from_aioquic():
    facts = dispatch.new_facts()
    for datagram in quic_initial("q.example", "203.0.113.1"):
        dispatch.on_udp_datagram(facts, C2S, datagram, 50000, 443)
    assert facts.app_proto == "quic" and facts.quic.sni == "q.example"


def test_unrecognised_udp_gives_up_after_the_probe_budget():
    facts = dispatch.new_facts()
    rng = random.Random(1)
    for _ in range(dispatch.MAX_UDP_PROBES):
        dispatch.on_udp_datagram(facts, C2S, rng.randbytes(100), 40000, 27015)
        dispatch.on_udp_datagram(facts, S2C, rng.randbytes(100), 40000, 27015)
    assert facts.decided and facts.app_proto == "unknown"


def test_esp_and_gre_by_ip_protocol():
    esp = dispatch.new_facts()
    dispatch.on_ip_only(esp, 50, (0x1234).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes(32))
    gre = dispatch.new_facts()
    dispatch.on_ip_only(gre, 47, bytes(8))
    assert esp.app_proto == "ipsec" and gre.app_proto == "gre"


def test_tls_records_from_the_server_side_only_are_tls_and_partial():
    record = bytes([23, 3, 3, 0, 40]) + random.Random(3).randbytes(40)
    facts = dispatch.new_facts()
    dispatch.on_tcp_data(facts, S2C, record + record[:20], 443)
    assert facts.app_proto == "tls" and facts.tls is None
    assert dispatch.partial_reason(facts).startswith("tls")


def test_an_http_response_without_its_request_is_http_and_partial():
    facts = dispatch.new_facts()
    dispatch.on_tcp_data(facts, S2C, b"HTTP/1.1 404 Not Found\r\nServer: x\r\n\r\nbody", 80)
    assert facts.app_proto == "http" and facts.http is None and facts.http_response.status == 404
    assert dispatch.partial_reason(facts) == "http: a response without its request"
    whole = tcp([b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"], s2c=b"HTTP/1.1 200 OK\r\n\r\n", port=80)
    assert whole.http_response.status == 200 and dispatch.partial_reason(whole) is None


def test_a_fully_encrypted_first_packet_is_never_unknown():
    """One rule (docs/architecture.md): a recognised protocol, else fully-encrypted when the FET test says so,
    else unknown; the label holds from the first packet on, also while dissectors still wait for bytes."""
    rng = random.Random(11)
    for _ in range(200):
        payload = rng.randbytes(rng.randint(16, 1400))
        facts = dispatch.new_facts()
        dispatch.on_first_client_payload(facts, payload)
        dispatch.on_tcp_data(facts, C2S, payload, rng.choice([443, 8388, 1080, 10086]))
        if facts.fet.fully_encrypted:
            assert facts.app_proto == "fully-encrypted"
        elif facts.app_proto == "fully-encrypted":
            raise AssertionError("fully-encrypted without the FET verdict")


def test_tls_records_seen_later_replace_fully_encrypted():
    """A capture that began inside a TLS record: the first client bytes look random (FET), later ones chain."""
    rng = random.Random(4)
    tail, record = rng.randbytes(300), bytes([23, 3, 3, 1, 0]) + rng.randbytes(256)
    facts = dispatch.new_facts()
    dispatch.on_first_client_payload(facts, tail)
    dispatch.on_tcp_data(facts, C2S, tail, 443)
    assert facts.app_proto == "fully-encrypted"
    dispatch.on_tcp_data(facts, C2S, tail + record + record[:5], 443)
    assert facts.app_proto == "tls" and dispatch.partial_reason(facts) is not None


def test_a_socks5_tunnel_shows_the_tunnelled_client_hello():
    """curl's real SOCKS5 handshake (the address resolved by curl, so the proxy request names no host) and its
    tunnelled ClientHello: the flow stays socks, its SNI is the inner name, ``tunnel`` keeps the target."""
    from tests._real_clients import curl_through_proxy

    chunks = curl_through_proxy("socks5", "https://www.google.com/", resolve="www.google.com:443:203.0.113.10")
    facts = tcp(chunks, port=1080)
    assert facts.app_proto == "socks" and facts.socks.dst_host == "203.0.113.10"
    assert facts.tls.sni == "www.google.com"
    assert (facts.tunnel.kind, facts.tunnel.host, facts.tunnel.port, facts.tunnel.inner) == (
        "socks",
        "203.0.113.10",
        443,
        "tls",
    )
    assert facts.tunnel.offset == len(chunks[0]) + len(chunks[1])


def test_an_http_connect_tunnel_shows_the_tunnelled_client_hello():
    from tests._real_clients import curl_through_proxy

    chunks = curl_through_proxy("http-connect", "https://www.google.com/")
    facts = tcp(chunks, port=3128)
    assert facts.app_proto == "http-connect" and facts.http.is_connect and facts.http.host == "www.google.com"
    assert facts.tls.sni == "www.google.com" and facts.tunnel.inner == "tls"


def test_a_tunnelled_http_request_and_unrecognised_tunnelled_bytes():
    connect = b"CONNECT 203.0.113.10:80 HTTP/1.1\r\nHost: 203.0.113.10:80\r\n\r\n"
    facts = tcp([connect, b"GET /x HTTP/1.1\r\nHost: inner.example\r\n\r\n"], port=3128)
    assert facts.app_proto == "http-connect" and facts.http.host == "inner.example" and facts.tunnel.inner == "http"
    noise = random.Random(7).randbytes(300)
    facts = tcp([connect, noise], port=3128)
    assert facts.tunnel.inner == "other" and facts.tls is None and facts.http.is_connect
    waiting = tcp([connect, tls_client_hello("inner.example")[:50]], port=3128)
    assert waiting.tunnel.inner == "" and waiting.tls is None  # a ClientHello still arriving
