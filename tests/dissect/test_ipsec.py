"""IPsec/IKE: every UDP 500/4500 datagram of nDPI's ipsec_isakmp_esp.pcap, registries, negatives, fuzzing."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.dissect.errors import DissectError, Malformed, NeedMoreData, NotThisProtocol
from chokepoint.dissect.ipsec import (
    AhHeader,
    IsakmpHeader,
    Udp4500Kind,
    parse_ah,
    parse_esp,
    parse_isakmp,
    parse_udp_4500,
)
from tests._corpus import UDP, all_captures, mutations, ndpi_labels, read_flows

CAPTURE = "ipsec_isakmp_esp.pcap"


def _port(flow):
    return 500 if 500 in (flow.a[1], flow.b[1]) else 4500


@pytest.fixture(scope="module")
def flows():
    return read_flows(CAPTURE)


def _datagrams(flows, port):
    return [(from_a, p) for f in flows if _port(f) == port for from_a in (True, False) for p in f.payloads(from_a)]


def _seeds():
    try:
        fl = read_flows(CAPTURE)
    except pytest.skip.Exception:
        return [b"\x01" * 8 + bytes(8) + b"\x00\x20\x22\x08" + bytes(4) + struct.pack(">I", 28)]
    seeds = [p for f in fl[:6] for p in f.payloads(True)[:4] + f.payloads(False)[:4]]
    return seeds


def test_every_flow_ndpi_labels_ipsec_has_strictly_valid_ike(flows):
    labels = ndpi_labels(CAPTURE)
    assert len(flows) == len(labels) == 24
    for flow in flows:
        assert labels[flow.key] == "IPSec"
        valid = 0
        for payload in flow.payloads(True) + flow.payloads(False):
            try:
                parse_isakmp(payload) if _port(flow) == 500 else parse_udp_4500(payload)
            except Malformed:
                continue
            valid += 1
        assert valid >= 1


def test_udp_500_is_ikev2_with_consistent_payload_chains(flows):
    malformed = []
    for from_a, payload in _datagrams(flows, 500):
        try:
            header = parse_isakmp(payload)
        except Malformed:
            malformed.append(parse_isakmp(payload, strict=False))
            continue
        assert (header.ike_version, header.minor_version, header.length) == (2, 0, len(payload))
        assert header.exchange_type == 34  # IKE_SA_INIT only on port 500 here; the rest moved to 4500
        assert header.message_id == 0 and header.payloads and header.payloads[0] == header.next_payload
        assert header.is_response == (not from_a)
        if from_a and 33 in header.payloads:  # a fresh request: SA, KE, Nonce, no responder SPI yet
            assert header.responder_spi == bytes(8) and {33, 34, 40} <= set(header.payloads)
    # nDPI's capture holds one deliberately corrupted header (flags 0xff): lenient parsing names it.
    assert [m.anomalies for m in malformed] == [("IKEv2 reserved flag bits set in 0xff",)]


def test_udp_4500_separates_ike_from_esp(flows):
    kinds = {kind: 0 for kind in Udp4500Kind}
    spis: dict[tuple, set] = {}
    sequences: dict[tuple, list] = {}
    for flow in flows:
        if _port(flow) != 4500:
            continue
        for from_a in (True, False):
            for payload in flow.payloads(from_a):
                try:
                    message = parse_udp_4500(payload)
                except Malformed:
                    lenient = parse_udp_4500(payload, strict=False)
                    assert lenient.ike and "IKEv2 next payload 127 unassigned" in lenient.ike.anomalies
                    continue
                kinds[message.kind] += 1
                if message.kind is Udp4500Kind.IKE:
                    assert message.ike.exchange_type in (35, 36, 37) and message.ike.payloads[-1] == 46  # SK
                    assert message.esp is None and not message.is_esp
                else:
                    assert message.is_esp and message.esp.spi >= 256 and message.esp.length == len(payload)
                    spis.setdefault(flow.key, set()).add((from_a, message.esp.spi))
                    sequences.setdefault((flow.key, from_a, message.esp.spi), []).append(message.esp.sequence)
    assert kinds[Udp4500Kind.IKE] > 200 and kinds[Udp4500Kind.ESP] > 300
    # ESP sequence numbers start at 1 and count up per SA (RFC 4303 §3.3.3).
    assert all(seq == sorted(seq) and seq[0] >= 1 for seq in sequences.values())
    assert any(seq[:3] == [1, 2, 3] for seq in sequences.values())


def test_ike_on_4500_is_the_same_message_after_the_marker(flows):
    payload = next(p for _, p in _datagrams(flows, 4500) if p[:4] == b"\x00\x00\x00\x00")
    assert parse_udp_4500(payload).ike == parse_isakmp(payload[4:])
    esp = next(p for _, p in _datagrams(flows, 4500) if p[:4] != b"\x00\x00\x00\x00")
    assert parse_udp_4500(esp).esp == parse_esp(esp)


def test_nat_keepalive_and_short_datagrams():
    # RFC 3948 §2.3: the NAT-keepalive is the single octet 0xFF.
    assert parse_udp_4500(b"\xff").kind is Udp4500Kind.NAT_KEEPALIVE
    for data in (b"", b"\x00", b"\xfe", b"\xff\xff"):
        with pytest.raises(NotThisProtocol):
            parse_udp_4500(data)


def test_length_and_version_decide_the_claim(flows):
    request = next(p for a, p in _datagrams(flows, 500) if a)
    with pytest.raises(NeedMoreData):
        parse_isakmp(request[:-1])  # e.g. the first IP fragment of the message
    with pytest.raises(NotThisProtocol):
        parse_isakmp(request + b"\x00")
    with pytest.raises(NotThisProtocol):
        parse_isakmp(request[:17] + b"\x30" + request[18:])
    with pytest.raises(NotThisProtocol):
        parse_isakmp(request[:27])
    bad_exchange = request[:18] + b"\x26" + request[19:]  # 38 IKE_SESSION_RESUME is assigned: fine
    assert parse_isakmp(bad_exchange).exchange_type == 38
    for offset, value, message in (
        (18, 0x21, "exchange type 33"),
        (16, 0x20, "next payload 32"),
        (19, 0x48, "reserved flag bits"),
    ):
        corrupt = request[:offset] + bytes([value]) + request[offset + 1 :]
        with pytest.raises(Malformed, match=message):
            parse_isakmp(corrupt)
        assert any(message in a for a in parse_isakmp(corrupt, strict=False).anomalies)
    broken_chain = request[:30] + b"\x00\x01" + request[32:]  # first payload length 1
    with pytest.raises(Malformed, match="inconsistent"):
        parse_isakmp(broken_chain)


def test_esp_header_rules(flows):
    esp = next(p for _, p in _datagrams(flows, 4500) if p[:4] != b"\x00\x00\x00\x00")
    with pytest.raises(Malformed):
        parse_esp(esp[:11])
    with pytest.raises(Malformed):
        parse_esp(b"\x00\x00\x00\xff" + esp[4:])  # SPI 1..255 reserved
    assert parse_esp(esp[:12]).spi == struct.unpack_from(">I", esp)[0]


def _ah(payload_len_words: int, spi: int, seq: int, icv: bytes, next_header: int = 6) -> bytes:
    """An AH header laid out as RFC 4302 §2 (no AH capture is available: no real bytes to use)."""
    return struct.pack(">BBHII", next_header, payload_len_words, 0, spi, seq) + icv


def test_ah_header_rules():
    icv = bytes(range(12))  # HMAC-SHA1-96 ICV (RFC 2404): 96 bits
    header = _ah(4, 0x1000, 7, icv)
    parsed = parse_ah(header + b"payload")
    assert parsed == AhHeader(6, 24, 0x1000, 7, icv)
    assert parse_ah(header, ipv6=True).header_length == 24
    short_icv = _ah(3, 0x1000, 7, bytes(8))  # 20 bytes: 32-bit aligned (IPv4) but not 64-bit (IPv6)
    assert parse_ah(short_icv).icv == bytes(8)
    with pytest.raises(Malformed):
        parse_ah(short_icv, ipv6=True)
    with pytest.raises(Malformed):
        parse_ah(header[:20])
    with pytest.raises(Malformed):
        parse_ah(_ah(0, 0x1000, 7, b""))  # 8 bytes < fixed header
    with pytest.raises(Malformed):
        parse_ah(header[:2] + b"\x00\x01" + header[4:])  # reserved
    with pytest.raises(Malformed):
        parse_ah(_ah(4, 200, 7, icv))


def test_other_captures_are_not_ike():
    checked = 0
    for path in all_captures():
        if path.name == CAPTURE:
            continue
        for flow in read_flows(path):
            if flow.proto != UDP:
                continue
            for payload in flow.payloads(True)[:8] + flow.payloads(False)[:8]:
                with pytest.raises((NotThisProtocol, Malformed, NeedMoreData)):
                    parse_isakmp(payload)
                checked += 1
    assert checked > 300


@settings(max_examples=400, deadline=None)
@given(mutations(_seeds()), st.booleans())
def test_mutated_real_datagrams_raise_only_typed_errors(data, strict):
    for parse in (
        lambda d: parse_isakmp(d, strict=strict),
        lambda d: parse_udp_4500(d, strict=strict),
        parse_esp,
        parse_ah,
    ):
        try:
            result = parse(data)
        except DissectError:
            continue
        if isinstance(result, IsakmpHeader):
            assert result.length == len(data)
            assert strict is False or not result.anomalies
