"""Property tests: QUIC parsing of mutated real datagrams raises nothing but the typed errors.

Seeds are real bytes: aioquic's v1/v2 handshakes (every datagram both ways, incl. a ClientHello split
over three Initials) and, when ../shared/data is present, the first client datagrams of nDPI's QUIC
captures (draft-29, v1, mvfst, Q046, Q050, T050).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.dissect.errors import DissectError, Malformed
from chokepoint.dissect.quic import (
    GquicHandshakeMessage,
    InitialAssembler,
    PacketType,
    decrypt_initial,
    is_quic_initial_prefix,
    parse_frames,
    parse_gquic_frames,
    parse_gquic_handshake_message,
    parse_long_header,
    parse_transport_parameters,
)
from tests._corpus import NDPI_PCAPS, mutations
from tests.dissect import test_quic as generated
from tests.dissect import test_quic_captures as captures

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    datagrams = [d for version in (generated.V1, generated.V2) for _, d in generated.handshake(version=version)]
    datagrams += generated.client_datagrams(alpn=generated.MANY_ALPNS)[:3]
    if NDPI_PCAPS.is_dir():
        for name in captures.CAPTURES:
            for flow in captures.client_flows(name).values():
                datagrams.extend(flow[:2])
    return datagrams


@pytest.fixture(scope="module")
def client_initials(seeds) -> list[bytes]:
    """Seeds whose first packet is an IETF-protected client Initial that decrypts as is."""
    out = []
    for datagram in seeds:
        if is_quic_initial_prefix(datagram):
            try:
                packets = decrypt_initial(datagram)
            except Malformed:
                continue  # e.g. a later Initial keyed by an earlier DCID
            if packets and packets[0].header.header_format.value == "ietf":
                out.append(datagram)
    return out


@SETTINGS
@given(data=st.data())
def test_mutated_datagrams_raise_only_typed_errors(seeds, data):
    seed = data.draw(st.sampled_from(seeds))
    mutated = data.draw(mutations([seed], others=seeds))
    assert is_quic_initial_prefix(mutated) in (True, False)
    for call in (
        lambda: parse_long_header(mutated),
        lambda: decrypt_initial(mutated),
        lambda: decrypt_initial(mutated, is_client=False, initial_dcid=seed[6:14]),
        lambda: InitialAssembler().feed(mutated),
    ):
        try:
            call()
        except DissectError:
            pass


@SETTINGS
@given(data=st.data())
def test_flows_of_mutated_datagrams(seeds, data):
    """An assembler fed a sequence of (mostly mutated) datagrams keeps raising only typed errors."""
    assembler = InitialAssembler(max_crypto_bytes=data.draw(st.sampled_from([4096, 1 << 16])))
    for _ in range(data.draw(st.integers(1, 6))):
        seed = data.draw(st.sampled_from(seeds))
        datagram = seed if data.draw(st.booleans()) else data.draw(mutations([seed], others=seeds))
        try:
            assembler.feed(datagram)
        except DissectError:
            pass
    assert assembler.buffered_bytes <= assembler.max_crypto_bytes


@SETTINGS
@given(data=st.data())
def test_any_flip_after_the_packet_number_offset_fails_authentication(client_initials, data):
    """AEAD + header protection: changing any byte from the packet number on is detected."""
    datagram = data.draw(st.sampled_from(client_initials))
    header = parse_long_header(datagram)
    index = data.draw(st.integers(header.pn_offset, header.packet_size - 1))
    damaged = bytearray(datagram)
    damaged[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(Malformed):
        decrypt_initial(bytes(damaged))


@pytest.fixture(scope="module")
def plaintexts(seeds) -> list[tuple[bool, bytes, int]]:
    """(is_gquic, decrypted payload, packet-number length) of every Initial among the seeds."""
    out = []
    for datagram in seeds:
        try:
            packets = decrypt_initial(datagram)
        except DissectError:
            continue
        for packet in packets:
            if packet.header.packet_type is PacketType.INITIAL:
                out.append((packet.header.is_gquic, packet.payload, 4))
    return out


@SETTINGS
@given(data=st.data())
def test_mutated_frames(plaintexts, data):
    is_gquic, payload, pn_len = data.draw(st.sampled_from(plaintexts))
    mutated = data.draw(mutations([payload]))
    parser = parse_gquic_frames if is_gquic else parse_frames
    try:
        parser(mutated, pn_len) if is_gquic else parser(mutated)
    except Malformed:
        pass


@pytest.fixture(scope="module")
def hello_parts(seeds) -> list[tuple[str, bytes]]:
    """Real gQUIC CHLOs and real transport-parameter extensions taken from the seeds."""
    out = []
    for datagram in seeds:
        try:
            info = InitialAssembler().feed(datagram)
        except DissectError:
            continue
        if info is None:
            continue
        if isinstance(info.client_hello, GquicHandshakeMessage):
            out.append(("chlo", b"CHLO" + _chlo_bytes(info.client_hello)))
            continue
        out.extend(("params", data) for ext_type, data in info.client_hello.extensions if ext_type in (0x39, 0xFFA5))
    return out


def _chlo_bytes(chlo) -> bytes:
    """Re-serialise a parsed CHLO (after its tag) so mutations start from a real message."""
    index, values, end = b"", b"", 0
    for tag, value in chlo.entries:
        end += len(value)
        index += tag + end.to_bytes(4, "little")
        values += value
    return len(chlo.entries).to_bytes(2, "little") + b"\x00\x00" + index + values


def test_chlo_reserialisation_is_exact(hello_parts):
    """Guard for the fuzz seeds: a re-serialised CHLO parses back to the same message."""
    chlos = [part for kind, part in hello_parts if kind == "chlo"]
    if not chlos:
        pytest.skip("../shared/data not found: no gQUIC capture to take a CHLO from")
    for raw in chlos:
        assert b"CHLO" + _chlo_bytes(parse_gquic_handshake_message(raw)) == raw


@SETTINGS
@given(data=st.data())
def test_mutated_chlo_and_transport_parameters(hello_parts, data):
    kind, part = data.draw(st.sampled_from(hello_parts))
    mutated = data.draw(mutations([part]))
    try:
        if kind == "chlo":
            parse_gquic_handshake_message(mutated)
        else:
            for varint_ids in (True, False):
                try:
                    parse_transport_parameters(mutated, varint_ids=varint_ids)
                except Malformed:
                    pass
    except DissectError:
        pass


@SETTINGS
@given(data=st.data())
def test_mutated_clienthello_behind_valid_protection(data):
    """Mutated ClientHellos re-encrypted into valid Initials (aioquic's packet protection) reach the
    TLS parser and JA4 through the assembler; still only typed errors may come out."""
    version = data.draw(st.sampled_from([generated.V1, generated.V2]))
    hello, dcid, scid = generated.real_hello(version)
    mutated = data.draw(mutations([hello]))[:1100]
    [packet] = generated.encrypt_initials(version, dcid, scid, [generated.crypto_frame(0, mutated)])
    try:
        info = InitialAssembler().feed(packet)
    except DissectError:
        assert mutated != hello
        return
    if mutated == hello:
        assert info is not None and info.sni == generated.SERVER_NAME
