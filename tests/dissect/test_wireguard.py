"""WireGuard: real messages from nDPI's wireguard.pcap, cross-capture false-positive checks, fuzzing."""

import random

import pytest
from hypothesis import given, settings

from chokepoint.dissect.errors import DissectError, Malformed, NotThisProtocol
from chokepoint.dissect.wireguard import MessageType, WireGuardMessage, confirm_flow, parse_message
from tests._corpus import UDP, all_captures, mutations, ndpi_labels, read_flows


def _messages(payloads):
    return [parse_message(p) for p in payloads]


def _parsable(payloads):
    out = []
    for p in payloads:
        try:
            out.append(parse_message(p))
        except DissectError:
            pass
    return out


@pytest.fixture(scope="module")
def wg_flows():
    return [f for f in read_flows("wireguard.pcap") if f.proto == UDP]


def _seeds():
    try:
        flows = read_flows("wireguard.pcap")
    except pytest.skip.Exception:
        return [b"\x04\x00\x00\x00" + bytes(28)]
    return [p for f in flows for d in (True, False) for p in f.payloads(d)][:40]


def test_every_datagram_of_the_capture_parses(wg_flows):
    types = []
    for flow in wg_flows:
        for from_a in (True, False):
            for payload in flow.payloads(from_a):
                message = parse_message(payload)
                assert message.length == len(payload)
                types.append(message.msg_type)
    assert types.count(MessageType.HANDSHAKE_INITIATION) >= 1
    assert types.count(MessageType.HANDSHAKE_RESPONSE) >= 1
    assert types.count(MessageType.TRANSPORT_DATA) > 40


def test_handshake_indices_match_and_transport_counters_count_up(wg_flows):
    handshake = next(f for f in wg_flows if parse_message(f.payloads(True)[0]).msg_type == 1)
    c2s, s2c = _messages(handshake.payloads(True)), _messages(handshake.payloads(False))
    init, response = c2s[0], s2c[0]
    assert (init.length, response.length) == (148, 92)
    assert response.msg_type is MessageType.HANDSHAKE_RESPONSE
    assert response.receiver_index == init.sender_index
    # After the handshake each side addresses the other's index; counters start at 0 and increase.
    c2s_data = [m for m in c2s if m.msg_type is MessageType.TRANSPORT_DATA]
    s2c_data = [m for m in s2c if m.msg_type is MessageType.TRANSPORT_DATA]
    assert c2s_data[0].receiver_index == response.sender_index
    assert s2c_data[0].receiver_index == init.sender_index
    assert [m.counter for m in c2s_data[:3]] == [0, 1, 2]
    # Plaintext is padded to 16 bytes except where the padding is capped at the MTU (1452 = 1420 + 32).
    assert all(m.padded or m.length == 1452 for m in c2s_data + s2c_data)
    assert sum(m.padded for m in c2s_data + s2c_data) > 10


def test_confirm_flow_agrees_with_ndpi_on_both_flows(wg_flows):
    labels = ndpi_labels("wireguard.pcap")
    assert len(wg_flows) == 2
    for flow in wg_flows:
        assert labels[flow.key] == "WireGuard"
        assert confirm_flow(_messages(flow.payloads(True)), _messages(flow.payloads(False)))
        # Direction does not matter (either peer may initiate or rekey).
        assert confirm_flow(_messages(flow.payloads(False)), _messages(flow.payloads(True)))


def test_confirm_flow_needs_both_directions_and_matching_indices(wg_flows):
    handshake, transport = sorted(wg_flows, key=lambda f: parse_message(f.payloads(True)[0]).msg_type)
    hs_c2s = _messages(handshake.payloads(True))
    tr_c2s, tr_s2c = _messages(transport.payloads(True)), _messages(transport.payloads(False))
    assert not confirm_flow(hs_c2s, [])
    assert not confirm_flow([], tr_s2c)
    assert not confirm_flow(tr_c2s[:1], tr_s2c[:1])  # one transport message per side proves nothing yet
    assert confirm_flow(tr_c2s[:2], tr_s2c[:1])
    # Messages of two different sessions do not confirm each other.
    assert not confirm_flow(hs_c2s[:1], tr_s2c[:1])
    assert not confirm_flow(tr_c2s[:1] + hs_c2s[2:3], tr_s2c[:1])
    # The same 8 header bytes in both directions is a constant header, not two WireGuard peers.
    assert not confirm_flow(tr_c2s[:3], tr_c2s[:3])


def test_exact_lengths_and_reserved_bytes_are_enforced(wg_flows):
    handshake = next(f for f in wg_flows if f.payloads(True)[0][0] == 1)
    init, response = handshake.payloads(True)[0], handshake.payloads(False)[0]
    transport = handshake.payloads(True)[1]
    for real in (init, response):
        with pytest.raises(Malformed):
            parse_message(real[:-1])
    for real in (init, response, transport):
        with pytest.raises(NotThisProtocol):
            parse_message(real[:1] + b"\x01" + real[2:])
    with pytest.raises(Malformed):
        parse_message(init + b"\x00")
    with pytest.raises(Malformed):
        parse_message(transport[:31])
    assert parse_message(transport[:33]).padded is False
    assert parse_message(transport[:32]).counter == parse_message(transport).counter  # keepalive size
    with pytest.raises(NotThisProtocol):
        parse_message(b"\x05" + transport[1:])
    with pytest.raises(NotThisProtocol):
        parse_message(transport[:3])


def test_other_captures_never_confirm_as_wireguard():
    checked = 0
    for path in all_captures():
        if path.name == "wireguard.pcap":
            continue
        labels = ndpi_labels(path.name)
        for flow in read_flows(path):
            if flow.proto != UDP:
                continue
            assert labels.get(flow.key) != "WireGuard"
            c2s, s2c = _parsable(flow.payloads(True)[:16]), _parsable(flow.payloads(False)[:16])
            assert not confirm_flow(c2s, s2c), (path.name, flow.a, flow.b)
            checked += 1
    assert checked > 50


def test_random_datagrams_of_wireguard_sizes_are_rejected():
    rng = random.Random(20240521)
    for _ in range(3000):
        c2s = [rng.randbytes(rng.choice((148, 92, 64, 128, 144, 32))) for _ in range(4)]
        s2c = [rng.randbytes(rng.choice((148, 92, 64, 128, 144, 32))) for _ in range(4)]
        for datagram in c2s + s2c:
            with pytest.raises(NotThisProtocol):
                parse_message(datagram)
        assert not confirm_flow(_parsable(c2s), _parsable(s2c))


@settings(max_examples=400, deadline=None)
@given(mutations(_seeds()))
def test_mutated_real_messages_raise_only_typed_errors(data):
    try:
        message = parse_message(data)
    except DissectError:
        return
    assert isinstance(message, WireGuardMessage)
    assert message.length == len(data) and data[0] == message.msg_type and data[1:4] == b"\x00\x00\x00"
