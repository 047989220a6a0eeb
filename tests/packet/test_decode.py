"""Decoder: checked against nDPI's per-flow counts and dnspython over the real captures, against the real
transport bytes it was decoded from, over every link type (real IP packets re-wrapped), and fuzzed."""

from __future__ import annotations

import dataclasses
import struct
from collections import Counter
from functools import cache
from pathlib import Path

import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.packet import build
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import Frame
from chokepoint.packet.record import ACK, AH, ESP, GRE, ICMP, ICMPV6, PSH, SYN, TCP, UDP, Packet
from chokepoint.settings import EngineSettings
from tests._corpus import capture_params, frames_of, mutations, ndpi_counts, packet_key, sample_frames

#: Reasons a real capture may legitimately produce (non-IP frames; fragments while reassembly is off).
EXPECTED_REAL_REASONS = {"ip-fragment", "ip-fragment-non-first", "unsupported-ethertype:0x0806", "llc-frame"}


def decode_all(frames, decoder: Decoder | None = None) -> tuple[Decoder, list[tuple[Frame, Packet]]]:
    decoder = decoder or Decoder()
    out = []
    for frame in frames:
        packet = decoder.decode(frame)
        if packet is not None:
            out.append((frame, packet))
    return decoder, out


def neutral(packet: Packet) -> Packet:
    """A packet without the fields that depend on the frame rather than on the IP packet."""
    return dataclasses.replace(packet, frame_len=0, index=0, ts=0.0, encap=())


def test_packet_field_order_matches_the_positional_construction() -> None:
    # decode.py builds Packet positionally on the hot path; a reordered record must fail here.
    assert [f.name for f in dataclasses.fields(Packet)][:22] == [
        "ts",
        "ip_version",
        "src",
        "dst",
        "proto",
        "sport",
        "dport",
        "payload",
        "ttl",
        "ip_id",
        "df",
        "ip_len",
        "tcp_flags",
        "seq",
        "ack",
        "window",
        "tcp_header_len",
        "icmp_type",
        "icmp_code",
        "frame_len",
        "reassembled_from",
        "index",
    ]


@pytest.mark.parametrize("path", capture_params())
def test_flows_and_counts_match_ndpi(path: Path) -> None:
    """Every flow nDPI's ndpiReader reported, with the same packet and byte counts, and no other flow."""
    decoder, packets = decode_all(frames_of(path.name))
    got: dict[tuple, list[int]] = {}
    for frame, packet in packets:
        key = packet_key(packet)
        counts = got.setdefault(key, [0, 0])
        counts[0] += 1
        counts[1] += frame.orig_len
        assert packet.frame_len == frame.orig_len and packet.index == frame.index and packet.ts == frame.ts
    assert {k: tuple(v) for k, v in got.items()} == ndpi_counts(path.name)
    assert set(decoder.counters) <= EXPECTED_REAL_REASONS, decoder.counters
    assert not any(reason.startswith("unsupported-linktype") for reason in decoder.counters)


def _captured_ip(frame: Frame, packet: Packet) -> bytes | None:
    """The IP packet inside a real Ethernet (VLAN-tagged or not) or Linux SLL frame, cut to its length."""
    data = frame.data
    if frame.linktype == 1:
        offset = 14
        while data[offset - 2 : offset] == b"\x81\x00":
            offset += 4
    elif frame.linktype == 113:
        offset = 16
    else:
        return None
    if data[offset - 2 : offset] not in (b"\x08\x00", b"\x86\xdd"):
        return None
    return data[offset : offset + packet.ip_len]


@pytest.mark.parametrize("path", capture_params())
def test_decoded_fields_rebuild_the_captured_transport_bytes(path: Path) -> None:
    """From src, dst, ports, seq, ack, flags, window and payload (plus the captured TCP options), the
    builders must reproduce the captured TCP/UDP header and payload; only the checksum may differ
    (offloaded on the sending host)."""
    _decoder, packets = decode_all(frames_of(path.name))
    checked = 0
    for frame, packet in packets:
        ip = _captured_ip(frame, packet)
        if ip is None or packet.reassembled_from > 1 or len(ip) < packet.ip_len:
            continue
        if packet.ip_version == 4:
            if ip[6:8] != b"\0\0" and ip[6:8] != b"\x40\x00":
                continue  # a fragment
            header_len = (ip[0] & 0x0F) * 4
            assert (packet.ttl, packet.ip_id, packet.df) == (ip[8], int.from_bytes(ip[4:6], "big"), ip[6] == 0x40)
        else:
            if ip[6] not in (TCP, UDP):
                continue
            header_len = 40
            assert packet.ttl == ip[7]
        l4 = ip[header_len:]
        if packet.proto == TCP:
            options = l4[20 : packet.tcp_header_len]
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
                options,
                urgent=int.from_bytes(l4[18:20], "big"),
            )
            assert rebuilt[:16] + rebuilt[18:] == l4[:16] + l4[18:], frame.index
        elif packet.proto == UDP:
            rebuilt = build.udp(packet.src, packet.dst, packet.sport, packet.dport, packet.payload)
            assert rebuilt[:6] + rebuilt[8:] == l4[:6] + l4[8:], frame.index
        else:
            continue
        checked += 1
    assert checked > 0


def test_ethernet_padding_is_cut_by_total_length() -> None:
    padded = 0
    for name in ("443-curl.pcap", "chrome.pcap", "tor.pcap", "signal.pcap"):
        for frame, packet in decode_all(frames_of(name))[1]:
            ip = _captured_ip(frame, packet)
            if ip is None or packet.proto != TCP or len(frame.data) <= 14 + packet.ip_len:
                continue
            padded += 1
            header_len = (ip[0] & 0x0F) * 4 if packet.ip_version == 4 else 40
            assert len(packet.payload) == packet.ip_len - header_len - packet.tcp_header_len
            assert packet.payload == ip[len(ip) - len(packet.payload) :]
    assert padded > 10  # short frames padded to the Ethernet minimum exist in these captures


def test_real_dns_payloads_parse_with_dnspython() -> None:
    parsed = 0
    for name in ("dns.pcap", "dns-google-nsid.pcapng", "dns_fragmented.pcap", "telegram.pcap"):
        for _frame, packet in decode_all(frames_of(name), Decoder(settings_fragment_reassembly=True))[1]:
            if (
                packet.proto == UDP
                and 53 in (packet.sport, packet.dport)
                and packet.ip_len - 8 - (20 if packet.ip_version == 4 else 40) == len(packet.payload)
            ):
                message = dns.message.from_wire(packet.payload)
                assert message.question
                parsed += 1
    assert parsed > 30


def test_real_icmp() -> None:
    icmp = [(f, p) for f, p in decode_all(frames_of("signal.pcap"))[1] if p.proto == ICMP]
    assert len(icmp) == 1
    ((frame, packet),) = icmp
    ip = _captured_ip(frame, packet)
    header_len = (ip[0] & 0x0F) * 4
    assert (packet.sport, packet.dport) == (0, 0)
    assert (packet.icmp_type, packet.icmp_code) == (ip[header_len], ip[header_len + 1])
    assert packet.payload == ip[header_len + 8 :]


def test_first_fragments_decode_when_reassembly_is_off() -> None:
    decoder = Decoder()
    first = []
    for frame in frames_of("dns_fragmented.pcap"):
        before = decoder.counters["ip-fragment"]
        packet = decoder.decode(frame)
        if decoder.counters["ip-fragment"] > before:
            assert packet is not None
            first.append((frame, packet))
    assert decoder.counters == Counter({"ip-fragment": 7, "ip-fragment-non-first": 7})
    assert len(first) == 7
    for frame, packet in first:
        assert (packet.proto, packet.sport, packet.reassembled_from) == (UDP, 53, 1)
        ip = _captured_ip(frame, packet)
        udp_at = 20 if packet.ip_version == 4 else 48  # IPv6: fixed header + Fragment header
        # The UDP length announces the whole datagram; the first fragment carries only its start.
        assert int.from_bytes(ip[udp_at + 4 : udp_at + 6], "big") > 8 + len(packet.payload)
        assert packet.payload == ip[udp_at + 8 :]


# -- every link type, with real IP packets re-wrapped ----------------------------------------------------


def real_ip_packets() -> list[bytes]:
    out = []
    for name in ("443-curl.pcap", "dns-google-nsid.pcapng", "tls_ech.pcapng", "telegram.pcap", "signal.pcap"):
        for frame, packet in decode_all(frames_of(name))[1][:25]:
            ip = _captured_ip(frame, packet)
            if ip is not None:
                out.append(ip)
    return out


AF_INET6_VARIANTS = (10, 24, 28, 30)


def _sll_vlan(ip: bytes) -> tuple[int, bytes]:
    tag = struct.pack("!HH", 5, build.ip_ethertype(ip))
    return 113, build.linux_sll(tag + ip, build.ETH_VLAN)


WRAPPERS = {
    "eth": lambda ip: (1, build.ethernet(ip)),
    "vlan": lambda ip: (1, build.ethernet(ip, vlans=[(0x8100, 785)])),
    "qinq": lambda ip: (1, build.ethernet(ip, vlans=[(0x88A8, 100), (0x8100, 200)])),
    "vlan-9100": lambda ip: (1, build.ethernet(ip, vlans=[(0x9100, 7)])),
    "pppoe": lambda ip: (1, build.ethernet(build.pppoe_session(ip), build.ETH_PPPOE_SESSION)),
    "vlan-pppoe": lambda ip: (1, build.ethernet(build.pppoe_session(ip), build.ETH_PPPOE_SESSION, vlans=[(0x8100, 9)])),
    "sll": lambda ip: (113, build.linux_sll(ip)),
    "sll-vlan": _sll_vlan,
    "sll2": lambda ip: (276, build.linux_sll2(ip)),
    "raw101": lambda ip: (101, ip),
    "raw12": lambda ip: (12, ip),
    "raw14": lambda ip: (14, ip),
    "raw228-229": lambda ip: (228 if ip[0] >> 4 == 4 else 229, ip),
    "null-le": lambda ip: (0, build.loopback(ip, byteorder="<")),
    "null-be": lambda ip: (0, build.loopback(ip, byteorder=">")),
    "loop108": lambda ip: (108, build.loopback(ip, byteorder=">")),
}


#: The encapsulation labels each wrapper leaves on its packets (packet/decap.py).
WRAPPER_LABELS = {
    "vlan": ("vlan:785",),
    "qinq": ("qinq:100", "vlan:200"),
    "vlan-9100": ("qinq:7",),
    "pppoe": ("pppoe:0x0001",),
    "vlan-pppoe": ("vlan:9", "pppoe:0x0001"),
    "sll-vlan": ("vlan:5",),
}


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_link_types_decode_like_ethernet(wrapper: str) -> None:
    ips = real_ip_packets()
    if not ips:
        pytest.skip("../shared/data not found: no real packets to wrap")
    assert {ip[0] >> 4 for ip in ips} == {4, 6}
    reference, other = Decoder(), Decoder()
    for i, ip in enumerate(ips):
        expected = reference.decode(Frame(1.0, 1, build.ethernet(ip), len(ip) + 14, i + 1))
        assert expected is not None
        lt, data = WRAPPERS[wrapper](ip)
        got = other.decode(Frame(1.0, lt, data, len(data), i + 1))
        assert got is not None, (other.counters, data[:24].hex())
        assert neutral(got) == neutral(expected)
        assert got.encap == WRAPPER_LABELS.get(wrapper, ())
    assert not other.counters


@pytest.mark.parametrize("family", AF_INET6_VARIANTS)
def test_loopback_ipv6_families(family: int) -> None:
    ip = next(ip for ip in real_ip_packets() if ip[0] >> 4 == 6)
    for byteorder in "<>":
        packet = Decoder().decode(Frame(0.0, 0, build.loopback(ip, family, byteorder), len(ip) + 4, 1))
        assert packet is not None and packet.ip_version == 6


# -- headers built here ----------------------------------------------------------------------------------


def decode_ip(ip: bytes, decoder: Decoder | None = None) -> tuple[Packet | None, Decoder]:
    decoder = decoder or Decoder()
    return decoder.decode(Frame(2.0, 101, ip, len(ip), 1)), decoder


def test_ipv4_options_df_id_ttl() -> None:
    record_route = bytes([7, 11, 4]) + bytes(8)
    segment = build.tcp("192.0.2.1", "198.51.100.2", 40000, 443, 7, 9, SYN, b"", 1024, b"\x02\x04\x05\xb4")
    ip = build.ipv4(
        "192.0.2.1", "198.51.100.2", TCP, segment, ttl=3, ip_id=4242, df=True, options=b"\x01" + record_route
    )
    packet, decoder = decode_ip(ip)
    assert packet is not None and not decoder.counters
    assert (packet.ttl, packet.ip_id, packet.df, packet.ip_len) == (3, 4242, True, len(ip))
    assert (packet.sport, packet.dport, packet.seq, packet.ack, packet.tcp_flags) == (40000, 443, 7, 9, SYN)
    assert (packet.window, packet.tcp_header_len, packet.payload) == (1024, 24, b"")
    packet, _ = decode_ip(build.ipv4("192.0.2.1", "198.51.100.2", TCP, segment, df=False))
    assert packet.df is False


def test_total_length_beyond_capture_keeps_what_was_captured() -> None:
    ip = build.ipv4_tcp("192.0.2.1", "198.51.100.2", 1, 2, 3, 4, PSH | ACK, b"x" * 100)
    packet, decoder = decode_ip(ip[:90])
    assert packet.payload == b"x" * 50 and packet.ip_len == len(ip)
    assert decoder.counters == Counter({"ip-payload-truncated": 1})


def test_zero_total_length_uses_the_capture() -> None:
    ip = bytearray(build.ipv4_udp("192.0.2.1", "198.51.100.2", 5353, 53, b"q" * 30))
    ip[2:4] = b"\0\0"
    packet, decoder = decode_ip(bytes(ip))
    assert packet.payload == b"q" * 30 and decoder.counters == Counter({"ipv4-total-length-zero": 1})


def test_ipv6_extension_chain_to_tcp() -> None:
    src, dst = "2001:db8::1", "2001:db8::2"
    segment = build.tcp(src, dst, 5000, 80, 1, 2, ACK, b"GET / HTTP/1.1\r\n\r\n")
    hop_by_hop = bytes([43, 0]) + bytes(6)  # 8 bytes
    routing = bytes([60, 2]) + bytes(22)  # (2 + 1) * 8 = 24 bytes
    destination_options = bytes([AH, 0]) + bytes(6)
    ah = bytes([TCP, 4]) + bytes(22)  # AH counts 4-byte words: (4 + 2) * 4 = 24 bytes
    chain = hop_by_hop + routing + destination_options + ah + segment
    packet, decoder = decode_ip(build.ipv6(src, dst, 0, chain, hop_limit=9))
    assert packet is not None, decoder.counters
    assert (packet.proto, packet.sport, packet.dport, packet.ttl) == (TCP, 5000, 80, 9)
    assert packet.payload == b"GET / HTTP/1.1\r\n\r\n" and packet.ip_len == 40 + len(chain)


@pytest.mark.parametrize("upper", [ESP, 59, 132])
def test_ipv6_other_upper_layers(upper: int) -> None:
    body = b"\x00\x00\x01\x00opaque"
    packet, _ = decode_ip(build.ipv6("2001:db8::1", "2001:db8::2", 0, bytes([upper, 0]) + bytes(6) + body))
    assert (packet.proto, packet.sport, packet.dport, packet.payload) == (upper, 0, 0, body)


def test_ipv6_atomic_fragment_is_a_whole_datagram() -> None:
    datagram = build.udp("2001:db8::1", "2001:db8::2", 1, 53, b"query")
    ip = build.ipv6("2001:db8::1", "2001:db8::2", 44, bytes([UDP, 0, 0, 0]) + (77).to_bytes(4, "big") + datagram)
    packet, decoder = decode_ip(ip)
    assert (packet.proto, packet.payload, packet.ip_id) == (UDP, b"query", 77)
    assert decoder.counters == Counter({"ipv6-atomic-fragment": 1})


@pytest.mark.parametrize("proto", [GRE, ESP, AH, 132])
def test_other_ipv4_protocols_carry_the_ip_payload(proto: int) -> None:
    # for GRE: version 1 (PPTP's enhanced GRE) stays a GRE packet; version 0 is unwrapped (tests/packet/test_decap.py)
    body = b"\x00\x01\x08\x00" + build.ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"inner")
    packet, decoder = decode_ip(build.ipv4("192.0.2.1", "192.0.2.2", proto, body))
    assert (packet.proto, packet.sport, packet.dport, packet.payload) == (proto, 0, 0, body)
    assert not decoder.counters


def test_icmp_and_icmpv6() -> None:
    echo = build.icmp(8, 0, b"\x12\x34\x00\x01", b"ping")
    packet, _ = decode_ip(build.ipv4("192.0.2.1", "192.0.2.2", ICMP, echo))
    assert (packet.icmp_type, packet.icmp_code, packet.payload) == (8, 0, b"ping")
    src, dst = "2001:db8::1", "2001:db8::2"
    unreachable = build.icmp(1, 4, bytes(4), b"quoted", src=src, dst=dst)
    packet, _ = decode_ip(build.ipv6(src, dst, ICMPV6, unreachable))
    assert (packet.proto, packet.icmp_type, packet.icmp_code, packet.payload) == (ICMPV6, 1, 4, b"quoted")


def test_udp_length_cuts_trailing_bytes() -> None:
    ip = bytearray(build.ipv4_udp("192.0.2.1", "192.0.2.2", 1, 2, b"abcdef"))
    ip[24:26] = (8 + 3).to_bytes(2, "big")
    packet, _ = decode_ip(bytes(ip))
    assert packet.payload == b"abc"


# -- every malformed frame is counted by reason ----------------------------------------------------------


def _v4() -> bytes:
    return build.ipv4_tcp("192.0.2.1", "192.0.2.2", 1, 2, 3, 4, ACK, b"data")


def _set(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _v6_ext_truncated() -> bytes:
    ip = build.ipv6("2001:db8::1", "2001:db8::2", 0, bytes([60, 4]) + bytes(6))  # claims 40 bytes
    return ip


MALFORMED = {
    "truncated-ethernet-header": (1, lambda: build.ethernet(_v4())[:10]),
    "encap-malformed:vlan-truncated": (1, lambda: build.ethernet(_v4(), vlans=[(0x8100, 1)])[:16]),
    "encap-malformed:pppoe-truncated": (1, lambda: build.ethernet(build.pppoe_session(_v4()), 0x8864)[:18]),
    "unsupported-ppp-protocol:0xc021": (
        1,
        lambda: build.ethernet(_set(build.pppoe_session(_v4()), 6, b"\xc0\x21"), 0x8864),
    ),
    "truncated-sll-header": (113, lambda: build.linux_sll(_v4())[:12]),
    "truncated-sll2-header": (276, lambda: build.linux_sll2(_v4())[:12]),
    "truncated-loopback-header": (0, lambda: b"\x02\x00"),
    "unsupported-loopback-family:99": (108, lambda: build.loopback(_v4(), 99, ">")),
    "unsupported-loopback-family:other": (0, lambda: b"\x00\x01\x00\x00" + _v4()),  # 256 in either order
    "unsupported-linktype:147": (147, _v4),
    "truncated-ip-header": (101, lambda: b""),
    "bad-ip-version": (101, lambda: b"\x50" + _v4()[1:]),
    "truncated-ipv4-header": (101, lambda: _v4()[:19]),
    "bad-ipv4-header-length": (101, lambda: b"\x44" + _v4()[1:]),
    "bad-ipv4-total-length": (101, lambda: _set(_v4(), 2, b"\x00\x0a")),
    "truncated-ipv6-header": (101, lambda: build.ipv6_udp("::1", "::2", 1, 2)[:39]),
    "truncated-ipv6-extension-header": (101, _v6_ext_truncated),
    # A first fragment (offset 0, M=1) whose fragmentable part starts with another Fragment header.
    "ipv6-nested-fragment-header": (
        101,
        lambda: build.ipv6(
            "::1", "::2", 44, bytes([44, 0, 0, 1, 0, 0, 0, 1]) + bytes([17, 0, 0, 1, 0, 0, 0, 1]) + bytes(16)
        ),
    ),
    "truncated-tcp-header": (101, lambda: build.ipv4("192.0.2.1", "192.0.2.2", TCP, bytes(12))),
    "bad-tcp-header-length": (101, lambda: _set(_v4(), 32, b"\x40")),
    "truncated-udp-header": (101, lambda: build.ipv4("192.0.2.1", "192.0.2.2", UDP, bytes(6))),
    "bad-udp-length": (101, lambda: _set(build.ipv4_udp("192.0.2.1", "192.0.2.2", 1, 2, b"xyz"), 24, b"\x00\x05")),
    "truncated-icmp-header": (101, lambda: build.ipv4("192.0.2.1", "192.0.2.2", ICMP, bytes(6))),
    "unsupported-ethertype:0x88cc": (1, lambda: build.ethernet(b"lldp", 0x88CC)),
    "llc-frame": (1, lambda: build.ethernet(b"\x42\x42\x03" + bytes(40), 46)),
}


@pytest.mark.parametrize("reason", sorted(MALFORMED))
def test_malformed_frames_are_counted_by_reason(reason: str) -> None:
    linktype, make = MALFORMED[reason]
    data = make()
    decoder = Decoder()
    assert decoder.decode(Frame(0.0, linktype, data, len(data), 1)) is None
    noted = {"ip-fragment": 1} if reason == "ipv6-nested-fragment-header" else {}
    assert decoder.counters == Counter({reason: 1, **noted})


def test_real_non_ip_frames_are_counted() -> None:
    decoder, packets = decode_all(frames_of("tor.pcap"))
    assert decoder.counters["unsupported-ethertype:0x0806"] > 0 and decoder.counters["llc-frame"] > 0
    assert len(packets) + sum(decoder.counters.values()) == len(frames_of("tor.pcap"))


def test_from_settings() -> None:
    assert Decoder.from_settings(EngineSettings()).reassembler is None
    decoder = Decoder.from_settings(EngineSettings(ip_fragment_reassembly=True, ip_fragment_limit=101))
    assert decoder.reassembler is not None and decoder.reassembler.limit == 101


# -- property test: mutated real frames --------------------------------------------------------------------

LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147]


@st.composite
def mutated_frames(draw: st.DrawFn) -> list[Frame]:
    seeds = sample_frames(30)
    if not seeds:
        pytest.skip("../shared/data not found: no real frames to mutate")
    frames = []
    for i in range(draw(st.integers(1, 6))):
        data = draw(_frame_data())
        linktype = draw(st.sampled_from(seeds)).linktype
        if draw(st.integers(0, 4)) == 0:
            linktype = draw(st.sampled_from(LINKTYPES))
            if draw(st.booleans()):
                data = data[14:]
        frames.append(Frame(float(draw(st.integers(0, 100))), linktype, data, len(data), i + 1))
    return frames


@cache
def _frame_data() -> st.SearchStrategy[bytes]:
    """Real frame bytes with byte edits within the first 120 bytes (the headers), cuts and splices anywhere."""
    return mutations([f.data for f in sample_frames(30)], max_edits=6, within=120)


@settings(max_examples=400, deadline=None)
@given(frames=mutated_frames(), reassembly=st.booleans())
def test_decode_never_raises_on_mutated_real_frames(frames: list[Frame], reassembly: bool) -> None:
    decoder = Decoder(reassembly, fragment_limit=4, max_pending_fragments=2)
    for frame in frames:
        before = sum(decoder.counters.values())
        packet = decoder.decode(frame)
        if packet is None:
            assert sum(decoder.counters.values()) > before  # every skipped frame is counted
            continue
        assert packet.ip_version in (4, 6)
        assert len(packet.src) == len(packet.dst) == (4 if packet.ip_version == 4 else 16)
        assert 0 <= packet.sport < 65536 and 0 <= packet.dport < 65536
        assert packet.reassembled_from >= 1
        if packet.reassembled_from == 1:
            assert len(packet.payload) <= len(frame.data)
