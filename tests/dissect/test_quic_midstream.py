"""QUIC seen mid-connection (dissect/quic_midstream.py): long headers of any registered version, Version
Negotiation, short headers; on real aioquic sessions and packets built to the wire formats."""

from __future__ import annotations

import random
import ssl
from functools import cache

import pytest
from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicProtocolVersion, encode_quic_version_negotiation, pull_quic_header
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.dissect import dispatch
from chokepoint.dissect.dispatch import C2S, S2C
from chokepoint.dissect.quic_midstream import (
    SHORT_HEADER_BYTES,
    long_header_sighting,
    short_header_sighting,
)
from tests.dissect.test_quic import _certificate

V1, V2 = QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2


@cache
def session(version: int = V1, exchanges: int = 6) -> tuple[tuple[int, bytes], ...]:
    """An aioquic client and server in memory: the handshake, then ``exchanges`` request/response rounds on one
    stream; every datagram as (direction, bytes)."""
    cert, key = _certificate()
    client = QuicConnection(
        configuration=QuicConfiguration(
            is_client=True,
            server_name="mid.example",
            alpn_protocols=["h3"],
            supported_versions=[version],
            verify_mode=ssl.CERT_NONE,
        )
    )
    server_config = QuicConfiguration(
        is_client=False, alpn_protocols=["h3"], supported_versions=[version], certificate=cert, private_key=key
    )
    caddr, saddr = ("192.0.2.1", 50000), ("198.51.100.1", 443)
    client.connect(saddr, now=0.0)
    server = None
    log: list[tuple[int, bytes]] = []
    now = 0.0

    def pump() -> None:
        nonlocal server, now
        for datagram, _ in client.datagrams_to_send(now=now):
            log.append((C2S, datagram))
            if server is None:
                header = pull_quic_header(Buffer(data=datagram), host_cid_length=8)
                server = QuicConnection(
                    configuration=server_config, original_destination_connection_id=header.destination_cid
                )
            server.receive_datagram(datagram, caddr, now=now)
        for datagram, _ in server.datagrams_to_send(now=now) if server else ():
            log.append((S2C, datagram))
            client.receive_datagram(datagram, saddr, now=now)
        now += 0.01

    for _ in range(6):
        pump()
    stream = client.get_next_available_stream_id()
    for i in range(exchanges):
        client.send_stream_data(stream, b"request %d " % i * 20)
        pump()
        server.send_stream_data(stream, b"response %d " % i * 80)
        pump()
    return tuple(log)


def late(log, direction=None):
    """The datagrams after the last long header (a capture that began once the handshake was over)."""
    last_long = max(i for i, (_, d) in enumerate(log) if d[0] & 0x80)
    return [(dr, d) for dr, d in log[last_long + 1 :] if direction is None or dr == direction]


@pytest.mark.parametrize("version", [V1, V2])
def test_every_long_header_of_a_session_is_a_sighting_with_its_version(version):
    longs = [(dr, d) for dr, d in session(version) if d[0] & 0x80]
    assert {dr for dr, _ in longs} == {C2S, S2C}  # client and server Initial/Handshake packets
    for _, datagram in longs:
        sighting = long_header_sighting(datagram)
        assert sighting is not None and sighting.version == version and sighting.evidence == "long-header"
    assert {long_header_sighting(d).packet_type for _, d in longs} == {"initial"}  # Handshake packets coalesced


def test_version_negotiation_offers_a_registered_version():
    packet = encode_quic_version_negotiation(
        source_cid=bytes(8), destination_cid=bytes(range(8)), supported_versions=[0x1A2A3A4A, V1, V2]
    )
    sighting = long_header_sighting(packet)
    assert sighting.evidence == "version-negotiation" and sighting.version == V1
    unregistered = encode_quic_version_negotiation(
        source_cid=bytes(8), destination_cid=bytes(8), supported_versions=[0x12345678]
    )
    assert long_header_sighting(unregistered) is None


@pytest.mark.parametrize(
    ("version", "owner"),
    [(0x51474F01, "quic-go"), (0x91C17001, "quicly"), (0xABCD0001, "WinQuic"), (0x5A6A7A8A, "forcing negotiation")],
)
def test_other_registered_versions_by_the_invariants(version, owner):
    packet = bytes([0xC0]) + version.to_bytes(4, "big") + bytes([8]) + bytes(8) + bytes([8]) + bytes(8) + bytes(40)
    assert long_header_sighting(packet).version == version, owner
    assert long_header_sighting(packet[:30]) is None  # no room for a packet number and a tag
    bad_cid = packet[:5] + bytes([40]) + packet[6:]
    assert long_header_sighting(bad_cid) is None


def test_an_unregistered_version_is_not_a_sighting():
    packet = bytes([0xC0]) + (0x12345678).to_bytes(4, "big") + bytes([8]) + bytes(8) + bytes([8]) + bytes(60)
    assert long_header_sighting(packet) is None


@pytest.mark.parametrize("version", [V1, V2])
def test_short_headers_of_the_client_give_the_server_s_cid_length(version):
    shorts = [d for d in (d for dr, d in late(session(version), C2S))][:6]
    assert len(shorts) >= 3
    sighting = short_header_sighting([d[:SHORT_HEADER_BYTES] for d in shorts], [len(d) for d in shorts])
    assert sighting is not None and sighting.dcid_length == 8 and not sighting.gquic  # aioquic's 8-byte CIDs
    assert short_header_sighting([d[:SHORT_HEADER_BYTES] for d in shorts[:2]], [len(d) for d in shorts[:2]]) is None


def test_openvpn_data_packets_with_constant_headers_are_not_short_headers():
    rng = random.Random(1)
    for opcode_byte, session_bytes in ((0x48, 3), (0x50, 8)):  # P_DATA_V2 + peer ID; HARD_RESET_V3 + session ID
        ident = rng.randbytes(session_bytes)
        packets = [bytes([opcode_byte]) + ident + (i).to_bytes(4, "big") + rng.randbytes(80) for i in range(6)]
        assert short_header_sighting([p[:SHORT_HEADER_BYTES] for p in packets], [len(p) for p in packets]) is None


def test_q046_short_headers_are_gquic():
    rng = random.Random(2)
    cid = rng.randbytes(8)
    packets = [bytes([0x40]) + cid + bytes([pn]) + rng.randbytes(60) for pn in range(12, 18)]
    sighting = short_header_sighting([p[:SHORT_HEADER_BYTES] for p in packets], [len(p) for p in packets])
    assert sighting.gquic and sighting.dcid_length == 8


def test_random_datagrams_are_neither():
    rng = random.Random(3)
    for _ in range(3000):
        datagrams = [rng.randbytes(rng.randint(20, 1400)) for _ in range(6)]
        assert long_header_sighting(datagrams[0]) is None
        assert short_header_sighting([d[:SHORT_HEADER_BYTES] for d in datagrams], [len(d) for d in datagrams]) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=6))
def test_never_raises(datagrams):
    for d in datagrams:
        long_header_sighting(d)
    short_header_sighting([d[:SHORT_HEADER_BYTES] for d in datagrams], [len(d) for d in datagrams])


def _dispatch(datagrams) -> dispatch.FlowFacts:
    facts = dispatch.new_facts()
    for direction, d in datagrams:
        if facts.udp_probes[direction] < dispatch.MAX_UDP_PROBES or not facts.decided:
            dispatch.on_udp_datagram(facts, direction, d, 50000, 443)
    return facts


def test_a_flow_picked_up_after_the_handshake_is_quic_partial_without_sni():
    facts = _dispatch(late(session()))
    assert facts.app_proto == "quic" and facts.quic is None and facts.quic_seen.evidence == "short-header"
    assert dispatch.partial_reason(facts) == "quic: no client Initial decrypted (short-header)"


def test_a_flow_picked_up_at_the_server_s_handshake_packets_has_the_version():
    log = session(V2)
    first_server = next(i for i, (dr, _) in enumerate(log) if dr == S2C)
    facts = _dispatch(log[first_server:])
    assert facts.app_proto == "quic" and facts.quic is None and facts.quic_seen.version == V2


def test_the_whole_session_decrypts_the_initial_and_is_not_partial():
    facts = _dispatch(session())
    assert facts.quic.sni == "mid.example" and dispatch.partial_reason(facts) is None


def test_short_headers_elsewhere_than_udp_443_stay_unknown():
    facts = dispatch.new_facts()
    for direction, d in late(session()):
        if facts.udp_probes[direction] < dispatch.MAX_UDP_PROBES or not facts.decided:
            dispatch.on_udp_datagram(facts, direction, d, 50000, 8443)
    assert facts.app_proto == "unknown"
