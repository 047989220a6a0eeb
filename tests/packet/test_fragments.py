"""Fragment reassembly: the real fragmented DNS capture, real datagrams fragmented here and fed in any
order, and the policies (first-wins overlaps, fragment limit, packet-time timeout, bounded pending set)."""

from __future__ import annotations

import dataclasses
from collections import Counter

import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.packet import build
from chokepoint.packet.decode import Decoder
from chokepoint.packet.fragments import FragmentReassembler, Reassembled
from chokepoint.packet.pcap import Frame
from chokepoint.packet.record import TCP, UDP, Packet
from tests._corpus import frames_of, ndpi_counts


def feed(decoder: Decoder, packets: list[bytes], ts: float = 10.0, step: float = 0.0) -> list[Packet]:
    out = []
    for i, ip in enumerate(packets):
        packet = decoder.decode(Frame(ts + i * step, 101, ip, len(ip), i + 1))
        if packet is not None:
            out.append(packet)
    return out


def same_datagram(packet: Packet, original: Packet) -> bool:
    keep = dict(ts=0.0, frame_len=0, index=0, reassembled_from=1)
    return dataclasses.replace(packet, **keep) == dataclasses.replace(original, **keep)


# -- the real capture ------------------------------------------------------------------------------------


def test_real_fragmented_dns_reassembles() -> None:
    decoder = Decoder(settings_fragment_reassembly=True)
    whole = []
    for frame in frames_of("dns_fragmented.pcap"):
        packet = decoder.decode(frame)
        if packet is not None and packet.reassembled_from > 1:
            whole.append((frame, packet))
    assert decoder.counters == Counter({"ip-fragment-held": 7})
    assert decoder.reassembler.pending == 0
    assert len(whole) == 7
    assert {p.ip_version for _f, p in whole} == {4, 6}
    for frame, packet in whole:
        assert packet.reassembled_from == 2 and packet.proto == UDP and packet.sport == 53
        assert packet.frame_len > frame.orig_len  # both fragments' frames
        header = 20 if packet.ip_version == 4 else 40
        assert packet.ip_len == header + 8 + len(packet.payload)
        assert len(packet.payload) > 1400
        message = dns.message.from_wire(packet.payload)  # the whole DNS response, as dnspython reads it
        assert str(message.question[0].name).endswith("weberlab.de.") and message.answer


def test_real_fragmented_dns_flows_keep_ndpi_counts_when_off() -> None:
    """With reassembly off the first fragments still count towards their flows exactly as nDPI counted."""
    flows = ndpi_counts("dns_fragmented.pcap")
    decoder = Decoder()
    assert sum(1 for f in frames_of("dns_fragmented.pcap") if decoder.decode(f)) == sum(p for p, _b in flows.values())


# -- real datagrams, fragmented here ---------------------------------------------------------------------


def real_datagrams() -> list[Packet]:
    """Decoded real TCP/UDP packets with a payload of at least 200 bytes."""
    decoder = Decoder()
    out = []
    for name in ("dns-google-nsid.pcapng", "quic-29.pcap", "443-curl.pcap", "tls_ech.pcapng"):
        for frame in frames_of(name):
            packet = decoder.decode(frame)
            if packet is not None and packet.proto in (TCP, UDP) and len(packet.payload) >= 200:
                out.append(packet)
    return out


def rebuild(packet: Packet, ident: int = 0x1234) -> bytes:
    """The IP packet for a decoded one (DF cleared so that it may be fragmented)."""
    if packet.proto == TCP:
        l4 = build.tcp(
            packet.src,
            packet.dst,
            packet.sport,
            packet.dport,
            packet.seq,
            packet.ack,
            packet.tcp_flags,
            packet.payload,
            packet.window,
        )
    else:
        l4 = build.udp(packet.src, packet.dst, packet.sport, packet.dport, packet.payload)
    if packet.ip_version == 4:
        return build.ipv4(packet.src, packet.dst, packet.proto, l4, ttl=packet.ttl, ip_id=ident)
    return build.ipv6(packet.src, packet.dst, packet.proto, l4, hop_limit=packet.ttl)


def fragment(ip: bytes, mtu: int, ident: int = 0x1234) -> list[bytes]:
    return build.fragment_ipv4(ip, mtu) if ip[0] >> 4 == 4 else build.fragment_ipv6(ip, mtu, ident)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fragments_in_any_order_reassemble_to_the_original(data: st.DataObject) -> None:
    originals = real_datagrams()
    if not originals:
        pytest.skip("../shared/data not found: no real datagrams")
    original = data.draw(st.sampled_from(originals))
    ip = rebuild(original)
    expected = Decoder().decode(Frame(0.0, 101, ip, len(ip), 1))
    if original.ip_version == 6:
        expected.ip_id = 0x1234  # the Fragment header's identification
    mtu = data.draw(st.integers(68 if original.ip_version == 4 else 56, len(ip) - 1), label="mtu")
    fragments = fragment(ip, mtu)
    assert len(fragments) > 1 and all(len(f) <= mtu for f in fragments)
    order = data.draw(st.permutations(fragments), label="order")
    # Duplicates of fragments other than the last one to arrive, slipped in before it.
    duplicates = data.draw(st.lists(st.sampled_from(order[:-1]), max_size=3), label="duplicates")
    arrivals = list(order[:-1])
    for duplicate in duplicates:
        arrivals.insert(data.draw(st.integers(0, len(arrivals))), duplicate)
    arrivals.append(order[-1])
    decoder = Decoder(settings_fragment_reassembly=True, fragment_limit=1000)
    packets = feed(decoder, arrivals)
    assert len(packets) == 1
    (packet,) = packets
    assert same_datagram(packet, expected)
    assert packet.payload == original.payload
    assert packet.reassembled_from == len(arrivals)
    assert decoder.counters == Counter({"ip-fragment-held": len(arrivals) - 1, "fragment-overlap": len(duplicates)})
    assert decoder.reassembler.pending == 0


def test_fragmented_without_reassembly_decodes_only_the_first() -> None:
    original = real_datagrams()[0]
    fragments = fragment(rebuild(original), 200)
    decoder = Decoder()
    packets = feed(decoder, fragments)
    assert len(packets) == 1 and packets[0].sport == original.sport
    assert original.payload.startswith(packets[0].payload) and packets[0].payload != original.payload
    assert decoder.counters == Counter({"ip-fragment": 1, "ip-fragment-non-first": len(fragments) - 1})


def test_reassembled_ipv4_keeps_first_fragment_header_fields() -> None:
    ip = build.ipv4(
        "192.0.2.1", "192.0.2.2", UDP, build.udp("192.0.2.1", "192.0.2.2", 5, 53, b"a" * 300), ttl=33, ip_id=999
    )
    fragments = build.fragment_ipv4(ip, 100)
    assert all(f[8] == 33 for f in fragments)
    last = bytearray(fragments[-1])
    last[8] = 200  # a different TTL on a later fragment: the first fragment's header wins
    last[10:12] = b"\0\0"
    last[10:12] = build.checksum(bytes(last[:20])).to_bytes(2, "big")
    (packet,) = feed(Decoder(True), [bytes(last)] + fragments[:-1])
    assert (packet.ttl, packet.ip_id, packet.ip_len, packet.reassembled_from) == (33, 999, len(ip), len(fragments))


def test_ipv6_with_hop_by_hop_header_reassembles() -> None:
    src, dst = "2001:db8::1", "2001:db8::2"
    datagram = build.udp(src, dst, 4000, 443, bytes(range(256)) * 4)
    ip = build.ipv6(src, dst, 0, bytes([UDP, 0]) + bytes(6) + datagram)  # hop-by-hop, then UDP
    fragments = build.fragment_ipv6(ip, 300, ident=0xDEADBEEF)
    assert all(f[6] == 0 and f[40] == 44 for f in fragments)  # the hop-by-hop header stays unfragmentable
    (packet,) = feed(Decoder(True), fragments[::-1])
    assert (packet.proto, packet.sport, packet.ip_id) == (UDP, 4000, 0xDEADBEEF)
    assert packet.payload == bytes(range(256)) * 4 and packet.ip_len == len(ip)


# -- policies --------------------------------------------------------------------------------------------

SRC, DST = "198.51.100.7", "203.0.113.9"


def frag(offset: int, payload: bytes, more: bool, ident: int = 7, proto: int = UDP) -> bytes:
    return build.ipv4(SRC, DST, proto, payload, ip_id=ident, more_fragments=more, frag_offset=offset)


def udp_bytes(body: bytes) -> bytes:
    return build.udp(SRC, DST, 1111, 53, body)


@pytest.mark.parametrize("conflict_first", [True, False])
def test_overlap_first_wins(conflict_first: bool) -> None:
    datagram = udp_bytes(b"A" * 40)  # 48 bytes
    honest = frag(16, datagram[16:32], True)
    forged = frag(16, b"X" * 16, True)
    head, tail = frag(0, datagram[:16], True), frag(32, datagram[32:], False)
    order = [head, forged, honest, tail] if conflict_first else [head, honest, forged, tail]
    decoder = Decoder(True)
    (packet,) = feed(decoder, order)
    expected = (b"A" * 8 + b"X" * 16 + b"A" * 16) if conflict_first else b"A" * 40
    assert packet.payload == expected
    assert decoder.counters["fragment-overlap"] == 1 and decoder.counters["fragment-overlap-conflict"] == 1
    assert packet.reassembled_from == 4


def test_partial_overlap_fills_only_the_gap() -> None:
    datagram = udp_bytes(bytes(range(56)))  # 64 bytes
    decoder = Decoder(True)
    packets = feed(
        decoder, [frag(0, datagram[:24], True), frag(40, datagram[40:], False), frag(16, datagram[16:48], True)]
    )  # overlaps both neighbours
    assert [p.payload for p in packets] == [bytes(range(56))]
    assert decoder.counters["fragment-overlap"] == 1 and "fragment-overlap-conflict" not in decoder.counters


@pytest.mark.parametrize("limit", [2, 5, 64, 101])
def test_fragment_limit(limit: int) -> None:
    body = bytes(8 * limit)  # with the 8-byte UDP header: limit + 1 fragments of 8 bytes
    datagram = udp_bytes(body)
    pieces = [frag(o, datagram[o : o + 8], o + 8 < len(datagram)) for o in range(0, len(datagram), 8)]
    assert len(pieces) == limit + 1
    decoder = Decoder(True, fragment_limit=limit)
    assert feed(decoder, pieces) == []
    assert decoder.counters["fragment-limit-exceeded"] == 1
    # At the limit exactly: the same datagram in `limit` fragments goes through.
    merged = [frag(0, datagram[:16], True)] + [p for p in pieces[2:]]
    decoder = Decoder(True, fragment_limit=limit)
    (packet,) = feed(decoder, merged)
    assert packet.reassembled_from == limit and packet.payload == body


def test_fragments_of_a_dropped_datagram_stay_dropped() -> None:
    datagram = udp_bytes(bytes(32))
    pieces = [frag(o, datagram[o : o + 8], o + 8 < len(datagram)) for o in range(0, len(datagram), 8)]
    decoder = Decoder(True, fragment_limit=3)
    assert feed(decoder, pieces + pieces[:2]) == []
    assert decoder.counters["fragment-limit-exceeded"] == 1
    assert decoder.counters["fragment-of-dropped-datagram"] == 3


@pytest.mark.parametrize(("gap", "completes"), [(29.0, True), (31.0, False)])
def test_timeout_runs_on_packet_time(gap: float, completes: bool) -> None:
    datagram = udp_bytes(b"t" * 40)
    decoder = Decoder(True, fragment_timeout=30.0)
    first = decoder.decode(Frame(100.0, 101, frag(0, datagram[:24], True), 0, 1))
    last = decoder.decode(Frame(100.0 + gap, 101, frag(24, datagram[24:], False), 0, 2))
    assert first is None
    assert (last is not None) is completes
    assert decoder.counters["fragment-timeout"] == (0 if completes else 1)


def test_pending_datagrams_are_bounded() -> None:
    decoder = Decoder(True, max_pending_fragments=3)
    for ident in range(5):
        feed(decoder, [frag(0, udp_bytes(b"p" * 16), True, ident=ident)])
    assert decoder.reassembler.pending == 3
    assert decoder.counters["fragment-evicted"] == 2
    # The evicted datagram no longer completes; a kept one does.
    assert feed(decoder, [frag(24, b"tail" * 2, False, ident=0)]) == []
    assert len(feed(decoder, [frag(24, b"tail" * 2, False, ident=4)])) == 1


def test_bad_fragments_are_discarded() -> None:
    decoder = Decoder(True)
    feed(decoder, [frag(0, b"x" * 12, True)])  # non-last, not a multiple of 8
    assert decoder.counters["fragment-bad-length"] == 1
    feed(decoder, [frag(65528, b"y" * 16, False, ident=8)])  # ping of death: past 65535
    assert decoder.counters["fragment-too-large"] == 1
    feed(decoder, [frag(16, b"z" * 8, False, ident=9), frag(24, b"z" * 8, True, ident=9)])  # past the end
    assert decoder.counters["fragment-inconsistent-end"] == 1
    feed(decoder, [frag(32, b"w" * 8, False, ident=10), frag(40, b"w" * 8, False, ident=10)])  # two ends
    assert decoder.counters["fragment-inconsistent-end"] == 2
    feed(decoder, [frag(32, b"v" * 8, True, ident=11), frag(16, b"v" * 8, False, ident=11)])  # end before data
    assert decoder.counters["fragment-inconsistent-end"] == 3
    assert decoder.reassembler.pending == 3  # dropped datagrams are remembered until their timeout


def test_reassembler_rejects_bad_configuration() -> None:
    for kwargs in ({"limit": 0}, {"max_pending": 0}, {"timeout": 0}):
        with pytest.raises(ValueError):
            FragmentReassembler(Counter(), **kwargs)


def test_reassembler_direct() -> None:
    counters: Counter[str] = Counter()
    reassembler = FragmentReassembler(counters, limit=8)
    assert reassembler.add("k", 0.0, 8, False, b"world!", head=None, frame_len=10) is None
    done = reassembler.add("k", 0.5, 0, True, b"hello, _", head="first", frame_len=20)
    assert done == Reassembled(b"hello, _world!", "first", 2, 30)
    assert reassembler.pending == 0 and not counters


# -- property test: random cuts, duplicates and orders ----------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(min_size=1, max_size=400),
    cuts=st.lists(st.integers(1, 60), max_size=12),
    extra=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 8)), max_size=4),
    data=st.data(),
)
def test_random_fragmentations_reassemble(body: bytes, cuts: list[int], extra: list, data: st.DataObject) -> None:
    """Cut at random multiples of 8, add overlapping copies of honest bytes, shuffle: always the original."""
    datagram = udp_bytes(body)
    bounds = sorted({c * 8 for c in cuts if c * 8 < len(datagram)} | {0, len(datagram)})
    pieces = [(bounds[i], datagram[bounds[i] : bounds[i + 1]], i + 2 < len(bounds)) for i in range(len(bounds) - 1)]
    for start_unit, length_units in extra:  # honest overlapping copies
        start = start_unit * 8
        end = min(start + length_units * 8, len(datagram))
        if start < len(datagram) and (start, end) != (0, len(datagram)):
            pieces.append((start, datagram[start:end], end < len(datagram)))
    order = data.draw(st.permutations(pieces))
    decoder = Decoder(True, fragment_limit=64)
    packets = feed(decoder, [frag(o, chunk, more) for o, chunk, more in order])
    # At least one datagram completes (the honest pieces cover it); every completion is the original.
    # (Overlapping copies may complete it early; what is left then starts a new datagram.)
    assert packets and all(p.payload == body for p in packets)
    assert "fragment-overlap-conflict" not in decoder.counters
