"""The TLS dissector on the real nDPI captures in ../shared/data: SNIs compared with nDPI's own
``result/<pcap>.out``, ECH and ESNI hellos, a missing fragment, false positives, record statistics."""

from __future__ import annotations

import pytest

from chokepoint.dissect import tls
from chokepoint.dissect.errors import DissectError, NeedMoreData, NotThisProtocol
from tests._corpus import ndpi_flows, tcp_flows

TLS_CAPTURES = [
    "443-chrome.pcap",
    "443-curl.pcap",
    "chrome.pcap",
    "encrypted_sni.pcap",
    "tls_ech.pcapng",
    "tls_2_reasms.pcapng",
    "tls_missing_ch_frag.pcap",
    "tls_port_80.pcapng",
    "tls_unidirectional.pcap",
    "tls_false_positives.pcapng",
    "tls_heur__vmess-tcp-tls.pcapng",
    "tor.pcap",
    "signal.pcap",
    "dns_doh.pcap",
    "dns_dot.pcap",
    "http_connect.pcap",
]


def _client_hello_or_error(stream: bytes):
    try:
        return tls.parse_client_hello_records(stream)
    except DissectError as exc:
        return exc


@pytest.mark.shared_data
@pytest.mark.parametrize("pcap", TLS_CAPTURES)
def test_capture_sni_matches_ndpi(pcap):
    """Every hello we parse carries exactly nDPI's Hostname/SNI (or none when nDPI shows none), and every
    DPI-confident nDPI TLS flow with an SNI is parsed."""
    labels = {lab.key: lab for lab in ndpi_flows(pcap)}
    checked = 0
    for flow in tcp_flows(pcap):
        label = labels.get(flow.key)
        result = _client_hello_or_error(flow.c2s)
        if label is None or label.fields.get("Confidence") != "DPI":
            continue
        expected = label.fields.get("Hostname/SNI")
        if isinstance(result, tls.ClientHello):
            assert result.sni == expected, (flow.a, flow.b, label.label)
            checked += expected is not None
        else:
            assert not (label.label.startswith("TLS") and expected), (flow.a, flow.b, result)
    expected_counts = {
        "443-curl.pcap": 1,
        "chrome.pcap": 6,
        "tls_ech.pcapng": 1,
        "tls_2_reasms.pcapng": 1,
        "tls_heur__vmess-tcp-tls.pcapng": 2,
        "tor.pcap": 7,
        "signal.pcap": 12,
        "dns_doh.pcap": 1,
        "http_connect.pcap": 1,
    }
    if pcap in expected_counts:
        assert checked == expected_counts[pcap]


@pytest.mark.shared_data
def test_ech_outer_hello():
    (flow,) = tcp_flows("tls_ech.pcapng")
    ch = tls.parse_client_hello_records(flow.c2s)
    assert ch.has_ech and ch.ech_type == "outer"
    assert ch.sni == "performance.radar.cloudflare.com"  # the public (outer) name


@pytest.mark.shared_data
def test_esni_hellos_have_no_sni():
    flows = tcp_flows("encrypted_sni.pcap")
    hellos = [tls.parse_client_hello_records(f.c2s) for f in flows]
    assert len(hellos) == 3
    assert all(ch.has_esni and ch.sni is None and not ch.has_ech for ch in hellos)


@pytest.mark.shared_data
def test_missing_client_hello_fragment_waits_and_server_side_parses():
    (flow,) = tcp_flows("tls_missing_ch_frag.pcap")
    with pytest.raises(NeedMoreData):  # the stream stops at the hole inside the 1500-byte record
        tls.parse_client_hello_records(flow.c2s)
    sh = tls.parse_server_hello_records(flow.s2c)
    assert sh.selected_version == 0x0304 and sh.cipher_suite == 0x1302  # nDPI: TLS_AES_256_GCM_SHA384


@pytest.mark.shared_data
def test_false_positives_capture_is_not_tls():
    for flow in tcp_flows("tls_false_positives.pcapng"):
        for stream in (flow.c2s, flow.s2c):
            assert not tls.looks_like_tls_record(stream)
            with pytest.raises(NotThisProtocol):
                tls.parse_client_hello_records(stream)
            with pytest.raises(NotThisProtocol):
                tls.parse_server_hello_records(stream)


@pytest.mark.shared_data
def test_tls_on_port_80_and_unidirectional():
    (flow,) = tcp_flows("tls_port_80.pcapng")
    ch = tls.parse_client_hello_records(flow.c2s)
    assert flow.b[1] == 80 and ch.sni is None and ch.alpn == ()
    (flow,) = tcp_flows("tls_unidirectional.pcap")
    with pytest.raises(NotThisProtocol):  # only "\r\n" was captured from the client
        tls.parse_client_hello_records(flow.c2s)


@pytest.mark.shared_data
def test_record_stats_on_a_real_flow():
    (flow,) = tcp_flows("tls_2_reasms.pcapng")
    stats = tls.tls_record_stats(flow.s2c)
    assert stats.records[:2] == ((22, 128), (20, 1)) and stats.garbage_at is None
    assert {ct for ct, _ in stats.records[2:]} == {23}
    assert tls.tls_record_stats(b"\x16\x03\x01\x00\x10abc").pending == 8
    assert tls.tls_record_stats(b"GET /").garbage_at == 0
