"""Decapsulation (packet/decap.py, Decoder._descend): every encapsulation round-trips (build the wrapped frame,
decode it, compare the inner record with the bare packet's and check the labels); malformed and too-deep stacks
are counted and skipped; hypothesis fuzzes each decapsulator and the whole decoder."""

from __future__ import annotations

import dataclasses
import random
import struct
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.packet import build, decap
from chokepoint.packet.decap import Layer
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import Frame
from chokepoint.packet.record import ACK, PSH, UDP, Packet
from chokepoint.packet.samples import tls_client_hello

OUTER4 = ("192.0.2.1", "192.0.2.254")
OUTER6 = ("2001:db8::1", "2001:db8::fe")


@cache
def inner_packets() -> list[bytes]:
    """A TLS ClientHello over IPv4 and IPv6 and a UDP datagram: the packets the wrappers carry."""
    hello = tls_client_hello("decap.example")
    return [
        build.ipv4_tcp("10.1.2.3", "203.0.113.9", 40000, 443, 1000, 1, PSH | ACK, hello),
        build.ipv6_tcp("2001:db8:1::3", "2001:db8:2::9", 40001, 443, 1000, 1, PSH | ACK, hello),
        build.ipv4_udp("10.1.2.3", "203.0.113.53", 5353, 53, b"\x12\x34" + bytes(30)),
    ]


def neutral(packet: Packet) -> Packet:
    return dataclasses.replace(packet, frame_len=0, index=0, ts=0.0, encap=(), ip_len=0)


def bare(ip: bytes) -> Packet:
    return Decoder().decode(Frame(1.0, 101, ip, len(ip), 1))


def udp_over(outer: tuple[str, str], dport: int, payload: bytes) -> bytes:
    return (
        build.ipv4_udp(outer[0], outer[1], 50000, dport, payload)
        if "." in outer[0]
        else build.ipv6_udp(outer[0], outer[1], 50000, dport, payload)
    )


def _teb(ip: bytes) -> bytes:
    return build.ethernet(ip, vlans=[(0x8100, 42)])


#: name -> (linktype, wrap(ip) -> frame, the labels, outermost first)
WRAPPERS = {
    "vlan": (1, lambda ip: build.ethernet(ip, vlans=[(0x8100, 100)]), ("vlan:100",)),
    "qinq": (1, lambda ip: build.ethernet(ip, vlans=[(0x88A8, 30), (0x8100, 100)]), ("qinq:30", "vlan:100")),
    "qinq-deep": (
        1,
        lambda ip: build.ethernet(ip, vlans=[(0x88A8, 1), (0x88A8, 2), (0x8100, 3), (0x8100, 4)]),
        ("qinq:1", "qinq:2", "vlan:3", "vlan:4"),
    ),
    "vlan-pppoe": (
        1,
        lambda ip: build.ethernet(build.pppoe_session(ip, 0x1A2B), 0x8864, vlans=[(0x8100, 100)]),
        ("vlan:100", "pppoe:0x1a2b"),
    ),
    "mpls": (1, lambda ip: build.ethernet(build.mpls(ip, [16, 1001]), 0x8847), ("mpls:16", "mpls:1001")),
    "mpls-pw": (
        1,
        lambda ip: build.ethernet(build.mpls(build.ethernet(ip), [2000], pseudowire=True), 0x8847),
        ("mpls:2000",),
    ),
    "ppp": (9, lambda ip: build.ppp(ip), ("ppp",)),
    "ppp-hdlc": (9, lambda ip: build.ppp(ip, hdlc=True), ("ppp",)),
    "ppp-compressed": (50, lambda ip: build.ppp(ip, hdlc=True, compressed=True), ("ppp",)),
    "ppp-with-direction": (204, lambda ip: build.ppp(ip, direction=1), ("ppp",)),
    "gre": (101, lambda ip: build.ipv4(*OUTER4, 47, build.gre(ip)), ("gre",)),
    "gre-key-seq-csum": (
        101,
        lambda ip: build.ipv4(*OUTER4, 47, build.gre(ip, key=7, sequence=99, checksum_present=True)),
        ("gre:7",),
    ),
    "gre-teb": (101, lambda ip: build.ipv6(*OUTER6, 47, build.gre(_teb(ip), 0x6558, key=5)), ("gre:5", "vlan:42")),
    "gre-mpls": (101, lambda ip: build.ipv4(*OUTER4, 47, build.gre(build.mpls(ip, [77]), 0x8847)), ("gre", "mpls:77")),
    "vxlan": (
        1,
        lambda ip: build.ethernet(udp_over(OUTER4, 4789, build.vxlan(build.ethernet(ip), 5001))),
        ("vxlan:5001",),
    ),
    "vxlan-v6-vlan": (
        1,
        lambda ip: build.ethernet(udp_over(OUTER6, 4789, build.vxlan(_teb(ip), 7))),
        ("vxlan:7", "vlan:42"),
    ),
    "gtpu": (101, lambda ip: udp_over(OUTER4, 2152, build.gtpu(ip, 0xDEADBEEF)), ("gtpu:0xdeadbeef",)),
    "gtpu-extensions": (
        101,
        lambda ip: udp_over(
            OUTER6, 2152, build.gtpu(ip, 9, sequence=3, extensions=[(0x85, b"\x10\x05"), (0x32, b"x" * 6)])
        ),
        ("gtpu:0x00000009",),
    ),
    "ip-in-ipv4": (101, lambda ip: build.ip_in_ip(ip, *OUTER4), None),  # 4in4 or 6in4, by the inner version
    "ip-in-ipv6": (1, lambda ip: build.ethernet(build.ip_in_ip(ip, *OUTER6)), None),
    "vlan-gre-vxlan": (
        1,
        lambda ip: build.ethernet(
            build.ipv4(*OUTER4, 47, build.gre(udp_over(OUTER6, 4789, build.vxlan(build.ethernet(ip), 3)))),
            vlans=[(0x8100, 12)],
        ),
        ("vlan:12", "gre", "vxlan:3"),
    ),
}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_round_trip(name):
    linktype, wrap, labels = WRAPPERS[name]
    decoder = Decoder()
    for ip in inner_packets():
        frame = wrap(ip)
        got = decoder.decode(Frame(1.0, linktype, frame, len(frame), 1))
        assert got is not None, decoder.counters
        assert neutral(got) == neutral(bare(ip))
        if labels is None:
            outer = 4 if name == "ip-in-ipv4" else 6
            labels = (f"{ip[0] >> 4}in{outer}",)
            assert got.encap == labels
            labels = None
        else:
            assert got.encap == labels
    assert not decoder.counters


def test_pptp_gre_and_other_gre_types_stay_gre():
    payload = b"\x01\x02\x03\x04" * 5
    decoder = Decoder()
    for body in (build.gre(payload, 0x880B, key=0x00100001, version=1), build.gre(payload, 0x88BE)):
        ip = build.ipv4(*OUTER4, 47, body)
        got = decoder.decode(Frame(1.0, 101, ip, len(ip), 1))
        assert (got.proto, got.payload, got.encap) == (47, body, ())
    assert not decoder.counters


def test_udp_on_a_tunnel_port_that_is_not_a_tunnel_stays_udp():
    decoder = Decoder()
    for port, payload in ((4789, b"\x00" * 30), (2152, bytes([0x32, 1, 0, 4]) + bytes(8))):  # no I flag; an echo
        ip = build.ipv4_udp(*OUTER4, 50000, port, payload)
        got = decoder.decode(Frame(1.0, 101, ip, len(ip), 1))
        assert (got.proto, got.dport, got.payload, got.encap) == (UDP, port, payload, ())


MALFORMED = {
    "encap-malformed:pppoe-header": lambda ip: build.ethernet(b"\x21" + build.pppoe_session(ip)[1:], 0x8864),
    "encap-malformed:pppoe-length": lambda ip: build.ethernet(build.pppoe_session(ip)[:4] + b"\xff\xff" + ip, 0x8864),
    "encap-malformed:mpls-payload": lambda ip: build.ethernet(build.mpls(b"\x55" + ip[1:], [3]), 0x8847),
    "encap-malformed:mpls-truncated": lambda ip: build.ethernet(b"\x00\x01", 0x8847),
    "encap-malformed:gre-reserved": lambda ip: build.ipv4(*OUTER4, 47, b"\x40\x00\x08\x00" + ip),
    "encap-malformed:gre-truncated": lambda ip: build.ipv4(*OUTER4, 47, build.gre(ip, key=1)[:6]),
    "encap-malformed:gtpu-length": lambda ip: build.ipv4_udp(*OUTER4, 1, 2152, build.gtpu(ip, 1)[:-10]),
    "encap-malformed:gtpu-extension": lambda ip: build.ipv4_udp(
        *OUTER4, 1, 2152, struct.pack("!BBHIHBB", 0x34, 0xFF, 8 + len(ip), 1, 0, 0, 0x85) + b"\x00\x00\x00\x00" + ip
    ),
    "encap-malformed:gtpu-payload": lambda ip: build.ipv4_udp(*OUTER4, 1, 2152, build.gtpu(b"\x10" + ip[1:], 1)),
    "encap-malformed:4in4": lambda ip: build.ipv4(*OUTER4, 4, b"\x60" + ip[1:]),
    "encap-malformed:6in6": lambda ip: build.ipv6(*OUTER6, 41, b"\x40" + ip[1:]),
    "encap-too-deep": lambda ip: build.ethernet(ip, vlans=[(0x8100, i) for i in range(decap.MAX_DEPTH + 1)]),
    "unsupported-ppp-protocol:0xc021": lambda ip: build.ethernet(
        build.pppoe_session(ip)[:6] + b"\xc0\x21" + ip, 0x8864
    ),
}


@pytest.mark.parametrize("reason", sorted(MALFORMED))
def test_malformed_and_too_deep_stacks_are_counted_and_skipped(reason):
    ip = inner_packets()[0]
    frame = MALFORMED[reason](ip)
    linktype = 1 if frame[12:14] in (b"\x81\x00", b"\x88\x64", b"\x88\x47", b"\x88\xa8") else 101
    decoder = Decoder()
    assert decoder.decode(Frame(1.0, linktype, frame, len(frame), 1)) is None
    assert dict(decoder.counters) == {reason: 1}


def test_max_depth_holds_exactly():
    ip = inner_packets()[0]
    frame = build.ethernet(ip, vlans=[(0x8100, i) for i in range(decap.MAX_DEPTH)])
    assert len(Decoder().decode(Frame(1.0, 1, frame, len(frame), 1)).encap) == decap.MAX_DEPTH
    deep = build.ipv4(*OUTER4, 4, ip)
    for _ in range(decap.MAX_DEPTH):
        deep = build.ipv4(*OUTER4, 4, deep)
    decoder = Decoder()
    assert decoder.decode(Frame(1.0, 101, deep, len(deep), 1)) is None and decoder.counters == {"encap-too-deep": 1}


def test_link_labels_match_what_the_decoder_records():
    ip = inner_packets()[1]
    frame = build.ethernet(build.pppoe_session(ip, 7), 0x8864, vlans=[(0x88A8, 4), (0x8100, 5)])
    assert decap.link_labels(frame, 14, 0x88A8) == Decoder().decode(Frame(1.0, 1, frame, len(frame), 1)).encap


# -- fuzzing -------------------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STARTS = {
    Layer.ETHERTYPE: (0x8100, 0x88A8, 0x8864, 0x8847, 0x6558, 0x880B),
    Layer.PPP: (0,),
    Layer.PPP_HDLC: (0,),
    Layer.MPLS: (0,),
    Layer.GRE: (0,),
    Layer.VXLAN: (0,),
    Layer.GTPU: (0,),
    Layer.ETHERNET: (0,),
}


@FUZZ
@given(st.sampled_from(sorted(STARTS)), st.data(), st.binary(max_size=200))
def test_each_decapsulator_raises_only_its_own_errors(layer, data, raw):
    value = data.draw(st.sampled_from(STARTS[layer]))
    off = 0
    for _ in range(decap.MAX_DEPTH * 3):  # follow the steps as the decoder would, bounded
        try:
            layer, value, off, label = decap.step(layer, value, raw, off, len(raw))
        except (decap.Malformed, decap.Unsupported, decap.NotWrapped):
            return
        assert 0 <= off <= len(raw) and (label is None or ":" in label or label in ("gre", "pw"))
        if layer in (Layer.IPV4, Layer.IPV6):
            return


@cache
def _wrapped_corpus() -> list[tuple[int, bytes]]:
    return [(lt, wrap(ip)) for lt, wrap, _ in WRAPPERS.values() for ip in inner_packets()]


@FUZZ
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=3), st.randoms())
def test_the_decoder_never_raises_on_damaged_wrapped_frames(pick, mode, rng: random.Random):
    corpus = _wrapped_corpus()
    linktype, frame = corpus[pick % len(corpus)]
    frame = bytearray(frame)
    if mode == 0:
        frame = frame[: rng.randrange(len(frame) + 1)]
    elif mode == 1:
        for _ in range(rng.randint(1, 8)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
    elif mode == 2:
        cut = rng.randrange(14, 60)
        frame = frame[:cut] + frame[cut : cut + 8] * rng.randint(2, 12) + frame[cut:]  # headers repeated: depth
    decoder = Decoder(True)
    packet = decoder.decode(Frame(1.0, linktype, bytes(frame), len(frame), 1))
    if packet is not None:
        assert len(packet.encap) <= decap.MAX_DEPTH


def test_a_tag_from_packet_metadata_is_put_back():
    frame = build.ethernet(inner_packets()[0])
    aux = struct.pack("<IIIHHHH", 0x10 | 0x40, len(frame), len(frame), 0, 14, 100, 0x88A8)
    tagged = decap.reinsert_vlan(frame, aux)
    assert tagged[12:16] == b"\x88\xa8\x00\x64" and tagged[16:] == frame[12:]
    assert decap.reinsert_vlan(frame, struct.pack("<IIIHHHH", 0, 0, 0, 0, 0, 0, 0)) == frame  # no tag
    no_tpid = decap.reinsert_vlan(frame, struct.pack("<IIIHHHH", 0x10, 0, 0, 0, 0, 5, 0))
    assert no_tpid[12:16] == b"\x81\x00\x00\x05"
    assert Decoder().decode(Frame(1.0, 1, tagged, len(tagged), 1)).encap == ("qinq:100",)
