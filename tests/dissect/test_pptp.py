"""PPTP: the control connection of nDPI's pptp.pcap, RFC 2637 header rules, negatives, fuzzing."""

import struct

import pytest
from hypothesis import given, settings

from chokepoint.dissect.errors import DissectError, Malformed, NeedMoreData, NotThisProtocol
from chokepoint.dissect.pptp import MESSAGE_LENGTHS, ControlType, PptpControl, parse_control, split_control
from tests._corpus import TCP, all_captures, mutations, ndpi_labels, read_flows

T = ControlType


@pytest.fixture(scope="module")
def conversation():
    (flow,) = [f for f in read_flows("pptp.pcap") if f.proto == TCP]
    assert ndpi_labels("pptp.pcap")[flow.key] == "PPTP"
    return flow


def _seeds():
    try:
        (flow,) = read_flows("pptp.pcap")
    except pytest.skip.Exception:
        return [struct.pack(">HHIHH", 16, 1, 0x1A2B3C4D, 12, 0) + bytes(4)]
    seeds = []
    for from_a in (True, False):
        stream = flow.stream(from_a)
        off = 0
        for message in split_control(stream)[0]:
            seeds.append(stream[off : off + message.length])
            off += message.length
        seeds.append(stream[:300])
    return seeds


def test_the_whole_control_conversation_parses(conversation):
    requests, rest_c = split_control(conversation.stream(True))
    replies, rest_s = split_control(conversation.stream(False))
    assert rest_c == rest_s == b""
    assert [m.control_type for m in requests] == [
        T.START_CONTROL_CONNECTION_REQUEST,
        T.OUTGOING_CALL_REQUEST,
        T.CALL_CLEAR_REQUEST,
    ]
    assert [m.control_type for m in replies] == [
        T.START_CONTROL_CONNECTION_REPLY,
        T.OUTGOING_CALL_REPLY,
        T.SET_LINK_INFO,
        T.SET_LINK_INFO,
        T.CALL_DISCONNECT_NOTIFY,
    ]
    for m in requests + replies:
        assert m.length == MESSAGE_LENGTHS[m.control_type] == len(m.body) + 12
    sccrq, sccrp = requests[0], replies[0]
    assert sccrq.protocol_version == sccrp.protocol_version == 0x0100  # RFC 2637 §2.1: version 1, revision 0
    assert (sccrq.hostname, sccrq.vendor) == ("local", "cananian")  # pptp-linux's client identifies itself
    assert sccrp.vendor == "Microsoft" and sccrp.result_code == 1  # "successful channel establishment"
    ocrq, ocrp = requests[1], replies[1]
    assert ocrp.peer_call_id == ocrq.call_id and ocrp.result_code == 1  # the reply names the caller's Call ID
    assert all(m.peer_call_id == ocrq.call_id for m in replies[2:4])  # Set-Link-Info to the PNS's call
    assert requests[2].call_id == ocrq.call_id  # Call-Clear-Request for that call


def test_prefixes_need_more_data_and_bad_fields_are_malformed(conversation):
    stream = conversation.stream(True)
    first = parse_control(stream)
    for cut in range(first.length):
        with pytest.raises(NeedMoreData):
            parse_control(stream[:cut])
    assert parse_control(stream[: first.length]) == first
    corruptions = {
        "message type": stream[:2] + b"\x00\x02" + stream[4:],
        "control message type 16": stream[:8] + b"\x00\x10" + stream[10:],
        "control message type 0": stream[:8] + b"\x00\x00" + stream[10:],
        "Reserved0": stream[:10] + b"\x00\x01" + stream[12:],
        "length 168": b"\x00\xa8" + stream[2:],
    }
    for expected, data in corruptions.items():
        with pytest.raises(Malformed, match=expected):
            parse_control(data)
    for not_pptp in (
        stream[:4] + b"\x1a\x2b\x3c\x4e" + stream[8:],
        stream[:2] + b"\x00\x03" + stream[4:],
        b"\x00\x9d" + stream[2:5],
        b"\x00\x9c\x01",
    ):
        with pytest.raises(NotThisProtocol):
            parse_control(not_pptp)


def test_other_tcp_streams_are_not_pptp():
    checked = 0
    for path in all_captures():
        if path.name == "pptp.pcap":
            continue
        for flow in read_flows(path):
            if flow.proto != TCP:
                continue
            for from_a in (True, False):
                stream = flow.stream(from_a)[:256]
                if len(stream) >= 8:
                    with pytest.raises(NotThisProtocol):
                        parse_control(stream)
                    checked += 1
    assert checked > 100


@settings(max_examples=400, deadline=None)
@given(mutations(_seeds()))
def test_mutated_real_messages_raise_only_typed_errors(data):
    try:
        message = parse_control(data)
    except DissectError:
        return
    assert isinstance(message, PptpControl) and message.length <= len(data)
    messages, rest = split_control(data)
    assert messages[0] == message and len(rest) <= len(data) - message.length
    if rest:
        with pytest.raises(DissectError):
            parse_control(rest)
