"""Builders: they reproduce real captured headers byte for byte (checksums included), and what they build
decodes back to the fields they were given."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.packet import build
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import CaptureWriter, Frame, open_capture
from chokepoint.packet.record import ACK, FIN, PSH, SYN, TCP, UDP, Packet
from tests._corpus import capture_paths, frames_of


def test_checksum_rfc1071_example() -> None:
    # RFC 1071 §3 worked example: the one's complement sum of these bytes is 0xddf2.
    assert build.checksum(bytes.fromhex("0001f203f4f5f6f7")) == ~0xDDF2 & 0xFFFF
    assert build.checksum(b"\x01") == ~0x0100 & 0xFFFF  # odd length: padded with a zero byte


def real_ethernet_ip() -> list[bytes]:
    """Every untagged Ethernet IPv4/IPv6 packet of the real captures (cut to its IP length)."""
    out = []
    for path in capture_paths():
        for frame in frames_of(path):
            if frame.linktype != 1:
                continue
            ethertype = frame.data[12:14]
            if ethertype == b"\x08\x00":
                out.append(frame.data[14 : 14 + struct.unpack("!H", frame.data[16:18])[0]])
            elif ethertype == b"\x86\xdd":
                out.append(frame.data[14 : 54 + struct.unpack("!H", frame.data[18:20])[0]])
    return out


def test_builders_reproduce_real_headers_and_checksums() -> None:
    """IPv4 headers, TCP segments and UDP datagrams rebuilt from decoded fields equal the captured bytes,
    checksums included, wherever the capturing host had not offloaded the checksum."""
    packets = real_ethernet_ip()
    if not packets:
        pytest.skip("../shared/data not found: no real packets")
    decoder = Decoder()
    counts = {"ipv4": [0, 0], "tcp": [0, 0], "udp": [0, 0]}
    for ip in packets:
        packet = decoder.decode(Frame(0.0, 101, ip, len(ip), 1))
        if packet is None or len(ip) < packet.ip_len:
            continue
        if packet.ip_version == 4:
            header_len = (ip[0] & 0x0F) * 4
            if ip[6:8] not in (b"\0\0", b"\x40\0"):
                continue  # fragments
            rebuilt = build.ipv4(
                packet.src,
                packet.dst,
                packet.proto,
                ip[header_len:],
                ttl=packet.ttl,
                ip_id=packet.ip_id,
                df=packet.df,
                options=ip[20:header_len],
                tos=ip[1],
            )
            counts["ipv4"][0] += 1
            counts["ipv4"][1] += rebuilt == ip
        else:
            header_len = 40
            if ip[6] not in (TCP, UDP):
                continue
        l4 = ip[header_len:]
        if packet.proto == TCP:
            rebuilt = build.tcp(
                packet.src,
                packet.dst,
                packet.sport,
                packet.dport,
                packet.seq,
                packet.ack,
                packet.tcp_flags,
                packet.payload,
                packet.window,
                l4[20 : packet.tcp_header_len],
                urgent=int.from_bytes(l4[18:20], "big"),
            )
            kind = "tcp"
        elif packet.proto == UDP:
            rebuilt = build.udp(packet.src, packet.dst, packet.sport, packet.dport, packet.payload)
            kind = "udp"
        else:
            continue
        counts[kind][0] += 1
        counts[kind][1] += rebuilt == l4
    for kind, (total, equal) in counts.items():
        assert total > 1000, kind
        assert equal / total > 0.8, (kind, equal, total)  # the rest: checksum offload on the sender


def test_ethernet_and_pppoe_reproduce_a_real_qinq_pppoe_frame() -> None:
    # dns.pcap holds real double-tagged (802.1Q in 802.1Q) frames carrying PPPoE sessions.
    frames = [f for f in frames_of("dns.pcap") if f.data[12:14] == b"\x81\x00"]
    assert len(frames) == 2
    for frame in frames:
        data = frame.data
        outer, inner = (struct.unpack("!H", data[14:16])[0], struct.unpack("!H", data[18:20])[0])
        assert outer >> 12 == 0 and inner >> 12 == 0  # no priority bits, so the builder can match them
        assert data[20:22] == b"\x88\x64"
        session, ip = struct.unpack("!H", data[24:26])[0], data[30:]
        rebuilt = build.ethernet(
            build.pppoe_session(ip, session),
            build.ETH_PPPOE_SESSION,
            src=data[6:12],
            dst=data[:6],
            vlans=[(0x8100, outer), (0x8100, inner)],
        )
        assert rebuilt == data
        packet = Decoder().decode(frame)
        assert packet is not None and packet.proto == UDP and 53 in (packet.sport, packet.dport)


def test_linux_sll_reproduces_a_real_header() -> None:
    frame = frames_of("tls_heur__vmess-tcp-tls.pcapng")[0]
    arphrd = struct.unpack("!H", frame.data[2:4])[0]
    assert build.linux_sll(frame.data[16:], arphrd=arphrd, link_address=bytes(6)) == frame.data


# -- round trips -----------------------------------------------------------------------------------------

ports = st.integers(0, 65535)
u32 = st.integers(0, 2**32 - 1)
payloads = st.binary(max_size=1460)
tcp_options = st.integers(0, 10).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))


def decode_frame(frame_bytes: bytes) -> Packet:
    decoder = Decoder()
    packet = decoder.decode(Frame(3.0, 1, frame_bytes, len(frame_bytes), 9))
    assert packet is not None, decoder.counters
    assert not decoder.counters
    return packet


@settings(max_examples=250, deadline=None)
@given(
    v6=st.booleans(),
    src4=st.ip_addresses(v=4),
    dst4=st.ip_addresses(v=4),
    src6=st.ip_addresses(v=6),
    dst6=st.ip_addresses(v=6),
    sport=ports,
    dport=ports,
    seq=u32,
    ack=u32,
    flags=st.integers(0, 255),
    payload=payloads,
    ttl=st.integers(0, 255),
    ip_id=st.integers(0, 65535),
    df=st.booleans(),
    window=st.integers(0, 65535),
    options=tcp_options,
)
def test_tcp_round_trip(
    v6, src4, dst4, src6, dst6, sport, dport, seq, ack, flags, payload, ttl, ip_id, df, window, options
) -> None:
    if v6:
        src, dst = str(src6), str(dst6)
        ip = build.ipv6_tcp(src, dst, sport, dport, seq, ack, flags, payload, ttl, window, options)
    else:
        src, dst = str(src4), str(dst4)
        ip = build.ipv4_tcp(src, dst, sport, dport, seq, ack, flags, payload, ttl, ip_id, df, window, options)
    packet = decode_frame(build.ethernet(ip))
    assert (packet.src, packet.dst) == (ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    assert (packet.ip_version, packet.proto, packet.sport, packet.dport) == (6 if v6 else 4, TCP, sport, dport)
    assert (packet.seq, packet.ack, packet.tcp_flags, packet.window) == (seq, ack, flags, window)
    assert (packet.payload, packet.ttl, packet.tcp_header_len, packet.ip_len) == (
        payload,
        ttl,
        20 + len(options),
        len(ip),
    )
    if not v6:
        assert (packet.ip_id, packet.df) == (ip_id, df)
        assert build.checksum(ip[:20]) == 0
    segment = ip[40:] if v6 else ip[20:]
    pseudo = build.pseudo_header(packet.src, packet.dst, TCP, len(segment))
    assert build.checksum(pseudo + segment) == 0


@settings(max_examples=250, deadline=None)
@given(
    v6=st.booleans(),
    src4=st.ip_addresses(v=4),
    dst4=st.ip_addresses(v=4),
    src6=st.ip_addresses(v=6),
    dst6=st.ip_addresses(v=6),
    sport=ports,
    dport=ports,
    payload=payloads,
    ttl=st.integers(0, 255),
)
def test_udp_round_trip(v6, src4, dst4, src6, dst6, sport, dport, payload, ttl) -> None:
    src, dst = (str(src6), str(dst6)) if v6 else (str(src4), str(dst4))
    ip = (
        build.ipv6_udp(src, dst, sport, dport, payload, ttl)
        if v6
        else build.ipv4_udp(src, dst, sport, dport, payload, ttl)
    )
    packet = decode_frame(build.ethernet(ip))
    assert (packet.proto, packet.sport, packet.dport, packet.payload, packet.ttl) == (UDP, sport, dport, payload, ttl)
    datagram = ip[40:] if v6 else ip[20:]
    assert build.checksum(build.pseudo_header(packet.src, packet.dst, UDP, len(datagram)) + datagram) == 0


# -- conversations ---------------------------------------------------------------------------------------


def real_exchange() -> tuple[list[bytes], list[bytes]]:
    """The first client and server TCP payloads of a real HTTP capture."""
    decoder = Decoder()
    c2s: list[bytes] = []
    s2c: list[bytes] = []
    for frame in frames_of("http.pcapng"):
        packet = decoder.decode(frame)
        if packet is not None and packet.proto == TCP and packet.payload:
            (c2s if packet.dport == 80 else s2c).append(packet.payload)
    assert c2s and s2c
    return c2s[:2], s2c[:3]


@pytest.mark.parametrize(("client", "server"), [("10.1.1.1", "10.2.2.2"), ("2001:db8::a", "2001:db8::b")])
def test_tcp_conversation(tmp_path: Path, client: str, server: str) -> None:
    c2s, s2c = real_exchange()
    packets = build.tcp_conversation(client, server, 40001, 80, c2s, s2c, start_ts=1000.0)
    path = tmp_path / "conversation.pcap"
    with CaptureWriter(path, linktype=101) as writer:
        for ts, ip in packets:
            writer.write(ts, ip)
    decoder = Decoder()
    with open_capture(path) as reader:
        decoded = [decoder.decode(frame) for frame in reader]
    assert all(decoded) and not decoder.counters
    assert [p.ts for p in decoded] == pytest.approx([1000.0 + i * 0.001 for i in range(len(packets))])
    client_b = ipaddress.ip_address(client).packed
    flags = [p.tcp_flags for p in decoded]
    assert flags[:3] == [SYN, SYN | ACK, ACK]
    assert flags[-3:] == [FIN | ACK, FIN | ACK, ACK]
    # Every segment acknowledges exactly what the peer has sent so far (SYN and FIN count one).
    sent = {True: 0, False: 0}
    isn = {True: decoded[0].seq, False: decoded[1].seq}
    for packet in decoded:
        from_client = packet.src == client_b
        assert packet.seq == isn[from_client] + sent[from_client]
        if packet.tcp_flags & ACK:
            assert packet.ack == isn[not from_client] + sent[not from_client]
        sent[from_client] += len(packet.payload) + bool(packet.tcp_flags & SYN) + bool(packet.tcp_flags & FIN)
    assert b"".join(p.payload for p in decoded if p.src == client_b) == b"".join(c2s)
    assert b"".join(p.payload for p in decoded if p.src != client_b) == b"".join(s2c)
    assert all(p.tcp_flags == PSH | ACK for p in decoded if p.payload)
    if decoded[0].ip_version == 4:
        ids = [p.ip_id for p in decoded if p.src == client_b]
        assert ids == list(range(1, len(ids) + 1))


def test_tcp_conversation_with_link_gives_ethernet_frames() -> None:
    frames = build.tcp_conversation("10.1.1.1", "10.2.2.2", 1, 2, [b"x"], [], 0.0, link=True)
    assert all(frame[12:14] == b"\x08\x00" for _ts, frame in frames)
    assert frames[0][1][6:12] == build.CLIENT_MAC and frames[1][1][6:12] == build.SERVER_MAC


# -- fragmenting -----------------------------------------------------------------------------------------


def test_fragment_ipv4_copies_only_copied_options() -> None:
    security = bytes([130, 11]) + bytes(9)  # copied flag set (RFC 791 option 130)
    record_route = bytes([7, 7, 4]) + bytes(4)  # not copied
    c2s, _ = real_exchange()
    segment = build.tcp("10.0.0.1", "10.0.0.2", 1234, 80, 1, 1, PSH | ACK, c2s[0])
    ip = build.ipv4("10.0.0.1", "10.0.0.2", TCP, segment, ip_id=77, options=security + record_route)
    fragments = build.fragment_ipv4(ip, 68)  # the IPv4 minimum MTU (RFC 791)
    assert len(fragments) > 2
    offsets = []
    for i, fragment in enumerate(fragments):
        header_len = (fragment[0] & 0x0F) * 4
        assert len(fragment) <= 68 and build.checksum(fragment[:header_len]) == 0
        flags = struct.unpack("!H", fragment[6:8])[0]
        assert bool(flags & 0x2000) == (i < len(fragments) - 1)
        offsets.append(((flags & 0x1FFF) * 8, len(fragment) - header_len))
        options = fragment[20:header_len]
        if i == 0:
            assert options.startswith(security + record_route)
        else:
            assert options.startswith(security) and bytes([7, 7, 4]) not in options
        if i < len(fragments) - 1:
            assert (len(fragment) - header_len) % 8 == 0
    assert [o for o, _ in offsets] == [sum(n for _, n in offsets[:i]) for i in range(len(offsets))]
    assert sum(n for _, n in offsets) == len(segment)
    decoder = Decoder(settings_fragment_reassembly=True)
    out = [decoder.decode(Frame(0.0, 101, f, len(f), 1)) for f in fragments]
    assert out[-1] is not None and out[-1].payload == c2s[0] and out[-1].reassembled_from == len(fragments)


def test_fragment_ipv4_refuses() -> None:
    ip = build.ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, bytes(100), df=True)
    with pytest.raises(ValueError, match="DF"):
        build.fragment_ipv4(ip, 60)
    assert build.fragment_ipv4(ip, 1500) == [ip]
    with pytest.raises(ValueError, match="no room"):
        build.fragment_ipv4(build.ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, bytes(100)), 24)


def test_fragment_ipv6_layout() -> None:
    ip = build.ipv6_udp("2001:db8::1", "2001:db8::2", 1, 2, bytes(range(200)) * 3)
    fragments = build.fragment_ipv6(ip, 256, ident=5)
    data = b""
    for i, fragment in enumerate(fragments):
        assert len(fragment) <= 256 and fragment[6] == 44
        assert struct.unpack("!H", fragment[4:6])[0] == len(fragment) - 40
        next_header, offset_flags, ident = struct.unpack("!BxHI", fragment[40:48])
        assert (next_header, ident, offset_flags & 0xFFF8, offset_flags & 1) == (
            UDP,
            5,
            len(data),
            int(i < len(fragments) - 1),
        )
        data += fragment[48:]
    assert data == ip[40:]


# --------------------------------------------------------------------------- TCP flag bits 8-11 (AE, reserved)


def test_tcp_flags_above_the_classic_eight_go_to_the_data_offset_byte_and_decode_back():
    from chokepoint.packet.decode import Decoder
    from chokepoint.packet.pcap import Frame
    from chokepoint.packet.record import AE, RESERVED, RST, tcp_flags_text

    flags = RST | AE | 0x200
    segment = build.tcp("192.0.2.1", "198.51.100.2", 443, 40000, 7, 0, flags)
    assert segment[12] == (5 << 4) | 0x3 and segment[13] == RST  # data offset 5, AE and the first RE bit
    raw = build.ipv4("192.0.2.1", "198.51.100.2", 6, segment)
    pkt = Decoder().decode(Frame(0.0, 101, raw, len(raw), 1))
    assert pkt.tcp_flags == flags and pkt.tcp_header_len == 20
    assert tcp_flags_text(pkt.tcp_flags) == "R+AE+RE"
    assert tcp_flags_text(RST | 0x10) == "RA" and tcp_flags_text(RESERVED | 0x02) == "S+RE"
    with pytest.raises(ValueError):
        build.tcp("192.0.2.1", "198.51.100.2", 1, 2, 0, 0, 0x1000)
