"""QUIC dissection on real packets produced at test time by aioquic (an independent QUIC stack).

A client and a server (self-signed certificate) run a full in-memory handshake for v1 and v2; every
datagram they exchange is kept: client Initials, the server's coalesced Initial+Handshake flight,
the client's coalesced ACK+Finished, and 1-RTT short-header packets.
"""

from __future__ import annotations

import datetime
import ssl
from functools import cache

import dns.message
import pytest
from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicPacketType,
    QuicProtocolVersion,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
    pull_quic_transport_parameters,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chokepoint.dissect.errors import Malformed, NotThisProtocol
from chokepoint.dissect.quic import (
    CryptoFrame,
    InitialAssembler,
    PacketType,
    decrypt_initial,
    is_quic_initial_prefix,
    parse_long_header,
    parse_transport_parameters,
)
from chokepoint.dissect.quic_crypto import UnsupportedVersion
from chokepoint.dissect.tls import parse_client_hello_message

V1 = QuicProtocolVersion.VERSION_1
V2 = QuicProtocolVersion.VERSION_2
SERVER_NAME = "blocked.example"
#: 80 long ALPN names make aioquic's ClientHello ~2.5 KB: it spans three Initial packets/datagrams.
MANY_ALPNS = tuple(f"proto-{i:03d}-padding-padding" for i in range(80))


@cache
def _certificate():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return cert, key


@cache
def handshake(
    version: int = V1, server_name: str = SERVER_NAME, alpn: tuple[str, ...] = ("h3",)
) -> tuple[tuple[str, bytes], ...]:
    """Run an aioquic client/server handshake in memory; return the (direction, datagram) log."""
    cert, key = _certificate()
    client_config = QuicConfiguration(
        is_client=True,
        server_name=server_name,
        alpn_protocols=list(alpn),
        supported_versions=[version],
        verify_mode=ssl.CERT_NONE,
    )
    server_config = QuicConfiguration(
        is_client=False, alpn_protocols=list(alpn), supported_versions=[version], certificate=cert, private_key=key
    )
    client = QuicConnection(configuration=client_config)
    client_addr, server_addr = ("192.0.2.1", 50000), ("198.51.100.1", 443)
    client.connect(server_addr, now=0.0)
    server = None
    log: list[tuple[str, bytes]] = []
    now = 0.0
    for _ in range(8):
        for datagram, _addr in client.datagrams_to_send(now=now):
            log.append(("c2s", datagram))
            if server is None:
                header = pull_quic_header(Buffer(data=datagram), host_cid_length=8)
                server = QuicConnection(
                    configuration=server_config, original_destination_connection_id=header.destination_cid
                )
            server.receive_datagram(datagram, client_addr, now=now)
        if server is not None:
            for datagram, _addr in server.datagrams_to_send(now=now):
                log.append(("s2c", datagram))
                client.receive_datagram(datagram, server_addr, now=now)
        now += 0.01
    assert any(d[0] & 0x80 == 0 for _, d in log), "handshake did not reach 1-RTT"
    return tuple(log)


def client_datagrams(**kwargs) -> list[bytes]:
    return [d for direction, d in handshake(**kwargs) if direction == "c2s"]


def server_datagrams(**kwargs) -> list[bytes]:
    return [d for direction, d in handshake(**kwargs) if direction == "s2c"]


def aioquic_header(datagram: bytes):
    return pull_quic_header(Buffer(data=datagram), host_cid_length=8)


# ---------------------------------------------------------------------------------------------
# Headers


@pytest.mark.parametrize("version", [V1, V2])
def test_long_header_matches_aioquic(version):
    for direction, datagram in handshake(version=version):
        if not datagram[0] & 0x80:
            continue
        theirs = aioquic_header(datagram)
        ours = parse_long_header(datagram)
        assert ours.version == theirs.version
        assert ours.dcid == theirs.destination_cid and ours.scid == theirs.source_cid
        assert ours.token == theirs.token
        assert ours.packet_size == theirs.packet_length, direction
        assert (
            ours.packet_type.value
            == {QuicPacketType.INITIAL: "initial", QuicPacketType.HANDSHAKE: "handshake"}[theirs.packet_type]
        )
        assert ours.version_name == ("V-1" if version == V1 else "V-2")


@pytest.mark.parametrize("version", [V1, V2])
def test_short_headers_are_not_this_protocol(version):
    short = [d for _, d in handshake(version=version) if not d[0] & 0x80]
    assert short
    for datagram in short:
        with pytest.raises(NotThisProtocol):
            parse_long_header(datagram)
        with pytest.raises(NotThisProtocol):
            decrypt_initial(datagram)
        assert not is_quic_initial_prefix(datagram)


def test_version_negotiation_packet():
    packet = encode_quic_version_negotiation(
        source_cid=bytes(range(8)), destination_cid=b"\xaa" * 5, supported_versions=[V2, V1, 0x1A2A3A4A]
    )
    header = parse_long_header(packet)
    assert header.packet_type is PacketType.VERSION_NEGOTIATION
    assert header.supported_versions == (V2, V1, 0x1A2A3A4A)
    assert (header.dcid, header.scid) == (b"\xaa" * 5, bytes(range(8)))
    assert decrypt_initial(packet) == []
    assert not is_quic_initial_prefix(packet)
    with pytest.raises(Malformed):  # a version list must be whole 4-byte entries
        parse_long_header(packet[:-1])


@pytest.mark.parametrize("version", [V1, V2])
def test_retry_packet(version):
    packet = encode_quic_retry(
        version=version,
        source_cid=b"\x01" * 8,
        destination_cid=b"\x02" * 8,
        original_destination_cid=b"\x03" * 8,
        retry_token=b"token-from-server",
    )
    header = parse_long_header(packet)
    assert header.packet_type is PacketType.RETRY
    assert header.token == b"token-from-server"
    assert header.packet_size == len(packet)
    assert decrypt_initial(packet) == []
    assert not is_quic_initial_prefix(packet)


# ---------------------------------------------------------------------------------------------
# Initial decryption


@pytest.mark.parametrize("version", [V1, V2])
def test_decrypt_client_initial_agrees_with_aioquic(version):
    datagram = client_datagrams(version=version)[0]
    [initial] = decrypt_initial(datagram)
    header = aioquic_header(datagram)
    pair = CryptoPair()
    pair.setup_initial(cid=header.destination_cid, is_client=False, version=version)
    packet = datagram[: initial.header.packet_size]
    plain_header, plain_payload, packet_number = pair.decrypt_packet(packet, initial.header.pn_offset, 0)
    assert initial.payload == plain_payload
    assert initial.packet_number == packet_number
    hello_bytes = b"".join(f.data for f in initial.crypto_frames)
    hello = parse_client_hello_message(hello_bytes)
    assert hello.sni == SERVER_NAME and hello.alpn == ("h3",)


@pytest.mark.parametrize("version", [V1, V2])
def test_coalesced_server_flight(version):
    """The server's first datagram: Initial (ServerHello) and Handshake coalesced (RFC 9000 §12.2)."""
    dcid = aioquic_header(client_datagrams(version=version)[0]).destination_cid
    first = server_datagrams(version=version)[0]
    initial_header = parse_long_header(first)
    assert initial_header.packet_size < len(first)
    follower = parse_long_header(first, initial_header.packet_size)
    assert follower.packet_type is PacketType.HANDSHAKE
    [initial] = decrypt_initial(first, is_client=False, initial_dcid=dcid)
    [crypto] = initial.crypto_frames
    assert crypto.offset == 0 and crypto.data[0] == 0x02  # ServerHello
    with pytest.raises(Malformed):
        decrypt_initial(first, is_client=True, initial_dcid=dcid)


@pytest.mark.parametrize("version", [V1, V2])
def test_coalesced_client_ack_and_finished(version):
    """The client's second datagram: an Initial carrying only an ACK, then a Handshake packet."""
    second = client_datagrams(version=version)[1]
    dcid = aioquic_header(client_datagrams(version=version)[0]).destination_cid
    [initial] = decrypt_initial(second, initial_dcid=dcid)
    assert initial.crypto_frames == ()
    assert [type(f).__name__ for f in initial.frames][0] == "AckFrame"
    assert parse_long_header(second, initial.header.packet_size).packet_type is PacketType.HANDSHAKE
    with pytest.raises(Malformed):  # its own DCID (the server's CID) does not give the Initial keys
        decrypt_initial(second)


def test_transport_parameters_match_aioquic():
    datagram = client_datagrams()[0]
    [initial] = decrypt_initial(datagram)
    hello = parse_client_hello_message(b"".join(f.data for f in initial.crypto_frames))
    raw = dict(hello.extensions)[0x39]
    ours = dict(parse_transport_parameters(raw, varint_ids=True))
    theirs = pull_quic_transport_parameters(Buffer(data=raw))
    assert ours[0x0F] == theirs.initial_source_connection_id == aioquic_header(datagram).source_cid
    assert Buffer(data=ours[0x04]).pull_uint_var() == theirs.initial_max_data
    assert set(ours) >= {0x01, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0F}


# ---------------------------------------------------------------------------------------------
# Reassembly


@pytest.mark.parametrize("version", [V1, V2])
@pytest.mark.parametrize("server_name", [SERVER_NAME, "www.example.org", "xn--bcher-kva.example"])
def test_assembler_extracts_sni(version, server_name):
    assembler = InitialAssembler()
    info = assembler.feed(client_datagrams(version=version, server_name=server_name)[0])
    assert info is not None
    assert info.sni == server_name
    assert info.alpn == ("h3",)
    assert info.version == version and not info.is_gquic
    assert info.initial_size == 1200 and (info.datagrams, info.packets) == (1, 1)
    assert info.dcid == aioquic_header(client_datagrams(version=version, server_name=server_name)[0]).destination_cid
    assert info.ja4 is not None and info.ja4.startswith("q13d")
    assert assembler.done and assembler.feed(client_datagrams(version=version)[1]) is None


@pytest.mark.parametrize("version", [V1, V2])
def test_clienthello_split_across_datagrams(version):
    datagrams = client_datagrams(version=version, alpn=MANY_ALPNS)
    initials = [d for d in datagrams if d[0] & 0x80 and parse_long_header(d).packet_type is PacketType.INITIAL]
    first_three = initials[:3]
    offsets = [decrypt_initial(d)[0].crypto_frames[0].offset for d in first_three]
    assert offsets[0] == 0 and offsets[1] > 0 and offsets[2] > offsets[1]  # aioquic really split it

    assembler = InitialAssembler()
    assert assembler.feed(first_three[0]) is None
    assert assembler.feed(first_three[1]) is None
    info = assembler.feed(first_three[2])
    assert info is not None and info.sni == SERVER_NAME and info.alpn == MANY_ALPNS
    assert (info.datagrams, info.packets) == (3, 3)

    reordered = InitialAssembler()  # last fragment first: held as pending, completed by the first
    assert reordered.feed(first_three[2]) is None
    assert reordered.feed(first_three[1]) is None
    info = reordered.feed(first_three[0])
    assert info is not None and info.alpn == MANY_ALPNS
    assert info.initial_size == len(first_three[2])


def encrypt_initials(version: int, dcid: bytes, scid: bytes, frames: list[bytes], first_pn: int = 0) -> list[bytes]:
    """Test-only encryptor: one protected client Initial per payload, with aioquic's packet protection."""
    pair = CryptoPair()
    pair.setup_initial(cid=dcid, is_client=True, version=version)
    type_bits = 0x10 if version == V2 else 0x00
    packets = []
    for index, payload in enumerate(frames):
        pn = first_pn + index
        length = 2 + len(payload) + 16
        plain_header = (
            bytes((0xC0 | type_bits | 0x01,))
            + int(version).to_bytes(4, "big")
            + bytes((len(dcid),))
            + dcid
            + bytes((len(scid),))
            + scid
            + b"\x00"
            + (0x4000 | length).to_bytes(2, "big")
            + pn.to_bytes(2, "big")
        )
        packets.append(pair.encrypt_packet(plain_header, payload, pn))
    return packets


def crypto_frame(offset: int, data: bytes) -> bytes:
    return b"\x06" + (0x80000000 | offset).to_bytes(4, "big") + (0x4000 | len(data)).to_bytes(2, "big") + data


def real_hello(version: int) -> tuple[bytes, bytes, bytes]:
    """(ClientHello bytes, DCID, SCID) of aioquic's first Initial."""
    datagram = client_datagrams(version=version)[0]
    [initial] = decrypt_initial(datagram)
    return b"".join(f.data for f in initial.crypto_frames), initial.header.dcid, initial.header.scid


@pytest.mark.parametrize("version", [V1, V2])
def test_two_coalesced_initials_with_split_crypto(version):
    hello, dcid, scid = real_hello(version)
    cut = len(hello) // 3
    first, second = encrypt_initials(
        version, dcid, scid, [crypto_frame(0, hello[:cut]), crypto_frame(cut, hello[cut:])]
    )
    for datagram in (first + second, second + first):
        packets = decrypt_initial(datagram)
        assert len(packets) == 2
        info = InitialAssembler().feed(datagram + bytes(1200 - len(datagram)))
        assert info is not None and info.sni == SERVER_NAME and (info.datagrams, info.packets) == (1, 2)


def test_overlapping_crypto_first_copy_wins():
    """Retransmitted CRYPTO bytes that differ: the first copy is kept and the difference is counted."""
    hello, dcid, scid = real_hello(V1)
    sni_at = hello.index(SERVER_NAME.encode())
    forged = hello[:sni_at] + b"allowed.example" + hello[sni_at + len(SERVER_NAME) :]
    assert len(forged) == len(hello)
    original, overlap = encrypt_initials(
        V1, dcid, scid, [crypto_frame(0, hello[: sni_at + len(SERVER_NAME)]), crypto_frame(0, forged)]
    )
    assembler = InitialAssembler()
    assert assembler.feed(original) is None
    info = assembler.feed(overlap)
    assert info is not None and info.sni == SERVER_NAME
    assert assembler.conflicting_bytes == sum(a != b for a, b in zip(SERVER_NAME, "allowed.example"))
    forged_first = InitialAssembler()  # the same two packets in the other order: the forgery wins
    assert forged_first.feed(overlap).sni == "allowed.example"


def test_assembler_memory_bound():
    hello, dcid, scid = real_hello(V1)
    [far] = encrypt_initials(V1, dcid, scid, [crypto_frame(5000, hello)])
    with pytest.raises(Malformed):
        InitialAssembler(max_crypto_bytes=4096).feed(far)
    assembler = InitialAssembler(max_fragments=2)
    packets = encrypt_initials(V1, dcid, scid, [crypto_frame(100 * i, b"x") for i in range(1, 4)])
    assembler.feed(packets[0])
    assembler.feed(packets[1])
    with pytest.raises(Malformed):
        assembler.feed(packets[2])
    assert assembler.buffered_bytes == 2


def test_crypto_stream_must_start_with_clienthello():
    hello, dcid, scid = real_hello(V1)
    [server_hello_like] = encrypt_initials(V1, dcid, scid, [crypto_frame(0, b"\x02" + hello[1:])])
    assembler = InitialAssembler()
    with pytest.raises(Malformed):
        assembler.feed(server_hello_like)
    assert assembler.done and assembler.feed(client_datagrams()[0]) is None


# ---------------------------------------------------------------------------------------------
# Fast check


@pytest.mark.parametrize("version", [V1, V2])
def test_is_quic_initial_prefix(version):
    log = handshake(version=version)
    for direction, datagram in log:
        expected = bool(datagram[0] & 0x80) and parse_long_header(datagram).packet_type is PacketType.INITIAL
        assert is_quic_initial_prefix(datagram) is expected, (direction, datagram[:8].hex())
    assert is_quic_initial_prefix(client_datagrams(version=version)[0])


def test_is_quic_initial_prefix_rejects_other_protocols():
    dns_query = dns.message.make_query("blocked.example", "A").to_wire()
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=SERVER_NAME)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    client_hello_record = outgoing.read()
    for payload in (b"", b"\xc0", dns_query, client_hello_record):
        assert not is_quic_initial_prefix(payload)
        with pytest.raises(NotThisProtocol):
            parse_long_header(payload)


def test_crypto_frame_helper_roundtrip():
    """The test encryptor's framing decodes back through parse_frames (guards the helper itself)."""
    hello, dcid, scid = real_hello(V1)
    [packet] = encrypt_initials(V1, dcid, scid, [crypto_frame(7, hello[:50])], first_pn=5)
    [initial] = decrypt_initial(packet)
    assert initial.packet_number == 5 and initial.frames == (CryptoFrame(7, hello[:50]),)


@pytest.mark.parametrize(
    ("version", "error"),
    [
        (0x1A2A3A4A, UnsupportedVersion),  # reserved: forces Version Negotiation
        (0xFF000015, UnsupportedVersion),  # draft-21: older header layout
        (0x12345678, NotThisProtocol),  # not a QUIC version we know of
    ],
)
def test_versions_we_cannot_read(version, error):
    """A real v1 Initial with its version field rewritten."""
    datagram = bytearray(client_datagrams()[0])
    datagram[1:5] = version.to_bytes(4, "big")
    assert not is_quic_initial_prefix(bytes(datagram))
    with pytest.raises(error):
        parse_long_header(bytes(datagram))
    with pytest.raises(error):
        decrypt_initial(bytes(datagram))


def test_mvfst_version_without_known_salt():
    """0xfaceb010 has the v1 layout but no salt we can vouch for: parsed, not decrypted."""
    datagram = bytearray(client_datagrams()[0])
    datagram[1:5] = (0xFACEB010).to_bytes(4, "big")
    assert parse_long_header(bytes(datagram)).packet_type is PacketType.INITIAL
    assert not is_quic_initial_prefix(bytes(datagram))
    with pytest.raises(UnsupportedVersion):
        decrypt_initial(bytes(datagram))
