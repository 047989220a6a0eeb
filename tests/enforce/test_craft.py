"""Crafted packets: header generators, and every builder round-tripped through the project's decoder, an
independent header reader (own checksum arithmetic) and, for DNS, dnspython."""

from __future__ import annotations

import ipaddress
import random
import struct

import dns.flags
import dns.message
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.dissect.dns import parse_message
from chokepoint.enforce.craft import (
    Stamp,
    Stamper,
    dns_answer,
    dns_payload,
    http_blockpage,
    http_response,
    icmp_error_allowed,
    icmp_unreachable,
    pick_answers,
    tcp_reset,
    tcp_segment,
)
from chokepoint.enforce.personality import (
    DEFAULT,
    BlockpageStyle,
    DnsStyle,
    Field16,
    IpStyle,
    TsgSeed,
    Ttl,
    parse_personality,
)
from chokepoint.packet import build
from chokepoint.packet.record import ACK, FIN, PSH, RST
from tests.enforce._wire import addr, decode, read, real_packets

STAMP = Stamp(ttl=77, ip_id=0x3412, df=True, window=32120)


# ------------------------------------------------------------------------------------------------ stamper


def test_fixed_random_and_increment_generators():
    style = IpStyle(
        ttl=Ttl("range", 40, 60),
        ip_id=Field16("increment", 65534, 0, 1),
        window=Field16("random", 1000, 1010),
        df=False,
    )
    a = [Stamper(random.Random(7)).stamp(style) for _ in range(3)]
    gen = Stamper(random.Random(7))
    b = [gen.stamp(style) for _ in range(300)]
    assert a[0] == b[0]  # same seed, same first packet
    assert [s.ip_id for s in b[:4]] == [65534, 65535, 0, 1]  # increments and wraps at 16 bits
    assert all(40 <= s.ttl <= 60 and 1000 <= s.window <= 1010 and s.df is False for s in b)
    assert len({s.ttl for s in b}) > 10 and len({s.window for s in b}) == 11  # the whole ranges are used
    again = Stamper(random.Random(7))
    assert [again.stamp(style) for _ in range(300)] == b  # deterministic with a seeded RNG
    fixed = Stamper(random.Random(1)).stamp(
        IpStyle(ttl=Ttl("fixed", 9, 9), ip_id=Field16("fixed", 13330), window=Field16("fixed", 32120))
    )
    assert (fixed.ttl, fixed.ip_id, fixed.window, fixed.df) == (9, 13330, 32120, True)


def test_increment_counters_are_per_generator_and_per_stamper():
    gen = Stamper(random.Random(0))
    one = IpStyle(ip_id=Field16("increment", 100, 0, 10))
    two = IpStyle(ip_id=Field16("increment", 5000, 0, 1))
    assert [gen.stamp(one).ip_id, gen.stamp(two).ip_id, gen.stamp(one).ip_id, gen.stamp(two).ip_id] == [
        100,
        5000,
        110,
        5001,
    ]
    assert Stamper(random.Random(0)).stamp(one).ip_id == 100


def test_mirror_ttl_copies_the_trigger():
    gen = Stamper(random.Random(0))
    style = IpStyle(ttl=Ttl("mirror", 0, 0))
    assert gen.stamp(style, trigger_ttl=47).ttl == 47
    assert gen.stamp(style, trigger_ttl=0).ttl == 1  # a TTL of 0 would never be delivered


def test_tsg_generator_yields_k_13_by_the_leak_analysis_formula():
    """geedge.report: k = ((ipid_i - ipid_j) + ((sip mod win_j) - (sip mod win_i))) / (win_j - win_i)."""
    sip, dip = addr("198.18.0.2"), addr("198.19.0.10")
    s, d = int.from_bytes(sip, "big"), int.from_bytes(dip, "big")
    style = DEFAULT.reset.ip.__class__(ip_id=Field16("tsg"), window=Field16("tsg"))
    gen = Stamper(random.Random(2024))
    stamps = [gen.stamp(style, sip=sip, dip=dip) for _ in range(200)]
    low, high = TsgSeed().val_range
    assert (low, high) == (1, 65535 // 13)
    for st_ in stamps:
        val = st_.window - d % 13
        assert low <= val <= high
        assert 0 <= st_.ip_id <= 0xFFFF
    keys = set()
    for i, j in zip(stamps, stamps[1:]):
        if i.window == j.window:
            continue
        numerator = (i.ip_id - j.ip_id) + ((s % j.window) - (s % i.window))
        assert numerator % (j.window - i.window) == 0
        keys.add(numerator // (j.window - i.window))
    assert keys == {13}
    other = Stamper(random.Random(5)).stamp(
        IpStyle(ip_id=Field16("tsg"), window=Field16("tsg"), tsg=TsgSeed(seed_key=7, val_lo=100, val_hi=100)),
        sip=sip,
        dip=dip,
    )
    assert other.window == 100 + d % 7 and other.ip_id == (65535 - 700 + s % other.window)


# ---------------------------------------------------------------------------------------------------- TCP


@pytest.mark.parametrize(("src", "dst"), [("198.19.0.10", "198.18.0.2"), ("2001:db8:0:2::10", "2001:db8:0:1::2")])
@pytest.mark.parametrize("with_ack", [True, False])
def test_tcp_reset_round_trip(src, dst, with_ack):
    payload = bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
    packet = tcp_reset(src, dst, 443, 40000, 0xFFFFFFF0 + 0x20, 1234, with_ack=with_ack, stamp=STAMP, payload=payload)
    w = read(packet)
    assert (w.src, w.dst, w.sport, w.dport) == (src, dst, 443, 40000)
    assert w.seq == 0x10  # modulo 2**32
    assert w.flags == (RST | ACK if with_ack else RST) and w.ack == (1234 if with_ack else 0)
    assert w.payload == payload and w.window == 32120 and w.ttl == 77
    if w.version == 4:
        assert (w.ip_id, w.df) == (0x3412, True)
    pkt = decode(packet)
    assert (pkt.seq, pkt.ack, pkt.tcp_flags, pkt.window, pkt.ttl, pkt.payload) == (
        w.seq,
        w.ack,
        w.flags,
        32120,
        77,
        payload,
    )


def test_mixed_families_are_refused():
    with pytest.raises(ValueError, match="different IP versions"):
        tcp_segment("192.0.2.1", "2001:db8::1", 1, 2, 0, 0, ACK, STAMP)


# ---------------------------------------------------------------------------------------------------- DNS


def _query(name: str, rdtype: str, *, edns: bool, qid: int = 0x1234) -> tuple[bytes, dns.message.Message]:
    msg = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, payload=1232)
    msg.id = qid
    return msg.to_wire(), msg


class _Fields:
    def __init__(self, src, dst, sport, dport):
        self.src, self.dst, self.sport, self.dport = addr(src), addr(dst), sport, dport


@pytest.mark.parametrize("compression", [True, False])
@pytest.mark.parametrize("edns", [True, False])
def test_dns_answer_is_a_valid_response_dnspython_accepts(compression, edns):
    wire, query = _query("WwW.Blocked.Example", "A", edns=edns, qid=0xBEEF)
    style = DnsStyle(
        flags=0x8180, answer_ttl=300, answers=("203.0.113.9",), compression=compression, copy_query_edns=True
    )
    packet = dns_answer(
        _Fields("198.18.0.2", "198.19.0.53", 53111, 53),
        parse_message(wire),
        style,
        answers=("203.0.113.9",),
        stamp=STAMP,
    )
    w = read(packet)
    assert (w.src, w.dst, w.sport, w.dport) == ("198.19.0.53", "198.18.0.2", 53, 53111)
    answer = dns.message.from_wire(w.payload)
    assert answer.id == 0xBEEF and answer.flags == 0x8180
    assert query.is_response(answer)  # dnspython's own check: id, QR, question section
    assert answer.question[0].name.to_text() == "WwW.Blocked.Example."  # 0x20 case kept
    (rrset,) = answer.answer
    assert rrset.ttl == 300 and [r.address for r in rrset] == ["203.0.113.9"]
    assert (answer.edns >= 0) == edns  # OPT copied only when the query had one
    if edns:
        assert answer.payload == 1232
    # the answer's owner name is a pointer to the question name (offset 12) iff compression is on
    question_end = 12 + len(b"\x03WwW\x07Blocked\x07Example\x00") + 4
    assert (w.payload[question_end : question_end + 2] == b"\xc0\x0c") == compression
    assert decode(packet).payload == w.payload


def test_dns_answer_v6_aaaa_and_resolver_like_flags():
    wire, query = _query("blocked.example", "AAAA", edns=False)
    packet = dns_answer(
        _Fields("2001:db8:0:1::2", "2001:db8:0:2::53", 40001, 53),
        parse_message(wire),
        DnsStyle(),
        answers=("2001:db8::bad",),
        stamp=STAMP,
    )
    w = read(packet)
    assert w.version == 6 and w.ttl == 77
    answer = dns.message.from_wire(w.payload)
    assert query.is_response(answer)
    assert answer.flags & dns.flags.RD and answer.flags & dns.flags.RA and answer.flags & dns.flags.QR
    assert [r.address for r in answer.answer[0]] == ["2001:db8::bad"] and answer.answer[0].ttl == 60


def test_pick_answers_by_query_type():
    pool = ("192.0.2.1", "192.0.2.2", "2001:db8::1", "192.0.2.3")
    rng = random.Random(3)
    assert set(pick_answers(pool, 1, rng, 5)) == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}
    assert pick_answers(pool, 28, rng, 1) == ("2001:db8::1",)
    assert pick_answers(pool, 15, rng, 1) == ()  # MX: no address answer
    assert pick_answers(("2001:db8::1",), 1, rng, 1) == ()
    drawn = {pick_answers(pool, 1, rng, 1) for _ in range(200)}
    assert drawn == {("192.0.2.1",), ("192.0.2.2",), ("192.0.2.3",)}


def test_dns_payload_answers_real_queries_from_a_capture():
    """Every DNS query of the real dns.pcap gets a response dnspython takes as the answer to it."""
    queries = [(p, raw) for p, raw in real_packets("dns.pcap") if p.dport == 53 and p.proto == 17]
    assert queries
    for pkt, _raw in queries:
        query = dns.message.from_wire(pkt.payload)
        style = DnsStyle(flags=0x8180, answers=("192.0.2.66", "2001:db8::66"))
        message = parse_message(pkt.payload)
        answers = pick_answers(style.answers, message.qtype, random.Random(0))
        packet = dns_answer(pkt, message, style, answers=answers, stamp=STAMP)
        w = read(packet)
        assert (w.dport, w.sport) == (pkt.sport, pkt.dport)
        answer = dns.message.from_wire(w.payload)
        assert query.is_response(answer)
        expected = {1: ["192.0.2.66"], 28: ["2001:db8::66"]}.get(message.qtype, [])
        assert [r.to_text() for rrset in answer.answer for r in rrset] == expected


# --------------------------------------------------------------------------------------------------- HTTP


def _http(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, _reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status), headers, body


@pytest.mark.parametrize("close", ["fin", "rst"])
def test_http_blockpage_segments(close):
    body = bytes(range(256)) * 20  # forces several segments
    style = BlockpageStyle(status=403, body=body, close=close, mss=1000)
    gen = Stamper(random.Random(4))
    style_ip = IpStyle(ip_id=Field16("increment", 10, 0, 1), window=Field16("fixed", 502))

    def stamps() -> Stamp:
        return gen.stamp(style_ip)

    packets = http_blockpage("198.19.0.10", "198.18.0.2", 80, 40000, 7000, 9000, style, stamps)
    walls = [read(p) for p in packets]
    data = [w for w in walls if w.payload]
    assert [w.seq for w in data] == [7000 + 1000 * i for i in range(len(data))]
    assert all(len(w.payload) <= 1000 and w.ack == 9000 and w.flags & ACK and w.window == 502 for w in data)
    assert [w.ip_id for w in walls] == list(range(10, 10 + len(walls)))
    response = b"".join(w.payload for w in data)
    assert response == http_response(style)
    status, headers, got = _http(response)
    assert status == 403 and got == body and int(headers["Content-Length"]) == len(body)
    assert data[-1].flags & PSH and not any(w.flags & PSH for w in data[:-1])
    if close == "fin":
        assert len(walls) == len(data) and data[-1].flags & FIN
    else:
        assert not data[-1].flags & FIN
        assert walls[-1].flags == RST | ACK and walls[-1].seq == 7000 + len(response) and not walls[-1].payload
    for packet in packets:
        decode(packet)


def test_http_redirect_has_location():
    style = BlockpageStyle(status=302, location="http://warning.example/x", body=b"")
    status, headers, body = _http(http_response(style))
    assert status == 302 and headers["Location"] == "http://warning.example/x" and body == b""
    assert headers["Content-Length"] == "0" and headers["Connection"] == "close"


# --------------------------------------------------------------------------------------------------- ICMP


def test_icmp_unreachable_v4_quotes_header_and_8_bytes():
    trigger = build.ipv4_tcp(
        "198.18.0.2", "198.19.0.10", 40000, 443, 1000, 0, 0x02, options=b"\x02\x04\x05\xb4", ip_id=77
    )
    packet = icmp_unreachable(trigger, code=13, stamp=Stamp(ttl=64, ip_id=5, df=False))
    w = read(packet)
    assert (w.src, w.dst, w.icmp_type, w.icmp_code, w.df) == ("198.19.0.10", "198.18.0.2", 3, 13, False)
    assert w.l4[4:8] == b"\0\0\0\0" and w.payload == trigger[:28]
    pkt = decode(packet)
    assert (pkt.icmp_type, pkt.icmp_code) == (3, 13)
    routed = read(icmp_unreachable(trigger, code=10, stamp=STAMP, source="198.18.0.1"))
    assert routed.src == "198.18.0.1" and routed.icmp_code == 10


def test_icmp_unreachable_v6_quotes_up_to_the_minimum_mtu():
    big = build.ipv6_tcp("2001:db8:0:1::2", "2001:db8:0:2::10", 40000, 443, 1, 2, ACK, b"x" * 1400)
    packet = icmp_unreachable(big, code=13, code6=1, stamp=STAMP)
    w = read(packet)
    assert (w.src, w.dst, w.icmp_type, w.icmp_code) == ("2001:db8:0:2::10", "2001:db8:0:1::2", 1, 1)
    assert len(packet) == 1280 and w.payload == big[: 1280 - 48]
    small = build.ipv6_udp("2001:db8:0:1::2", "2001:db8:0:2::10", 5000, 443, b"q" * 30)
    assert read(icmp_unreachable(small, code=13, stamp=STAMP)).payload == small
    assert decode(packet).icmp_type == 1


def test_icmp_rules_and_bad_triggers():
    assert icmp_error_allowed(build.ipv4_udp("192.0.2.1", "192.0.2.2", 1, 2, b"x"))
    unreachable = icmp_unreachable(build.ipv4_udp("192.0.2.1", "192.0.2.2", 1, 2, b"x"), code=3, stamp=STAMP)
    assert not icmp_error_allowed(unreachable)  # never an error about an error
    echo = build.ipv4("192.0.2.1", "192.0.2.2", 1, build.icmp(8, 0, b"\0\1\0\1", b"ping"))
    assert icmp_error_allowed(echo)
    later = build.fragment_ipv4(build.ipv4_udp("192.0.2.1", "192.0.2.2", 1, 2, b"y" * 100), 68)[1]
    assert not icmp_error_allowed(later)  # non-initial fragment
    v6_error = build.ipv6(
        "2001:db8::1", "2001:db8::2", 58, build.icmp(1, 4, body=b"z", src="2001:db8::1", dst="2001:db8::2")
    )
    assert not icmp_error_allowed(v6_error)
    assert not icmp_error_allowed(b"\x45\x00")
    for bad in (b"", b"\x45" + b"\0" * 10, b"\x60" + b"\0" * 20, b"\x10" * 40):
        with pytest.raises(ValueError):
            icmp_unreachable(bad, code=13, stamp=STAMP)
    with pytest.raises(ValueError, match="IPv4 source"):
        icmp_unreachable(build.ipv4_udp("192.0.2.1", "192.0.2.2", 1, 2), code=13, stamp=STAMP, source="2001:db8::1")


def test_icmp_about_real_packets_of_every_kind():
    for name in ("dns.pcap", "443-curl.pcap", "quic-29.pcap"):
        for _pkt, raw in real_packets(name)[:40]:
            packet = icmp_unreachable(raw, code=13, stamp=STAMP)
            w = read(packet)
            ihl = (raw[0] & 0x0F) * 4 if raw[0] >> 4 == 4 else 0
            assert w.payload == (raw[: ihl + 8] if ihl else raw[:1232])


# --------------------------------------------------------------------------------------------- properties

_v4 = st.ip_addresses(v=4).map(str)
_v6 = st.ip_addresses(v=6).map(str)
_pair = st.one_of(st.tuples(_v4, _v4), st.tuples(_v6, _v6))
_port = st.integers(0, 65535)
_u32 = st.integers(0, 2**32 - 1)
_stamps = st.builds(Stamp, st.integers(1, 255), st.integers(0, 65535), st.booleans(), st.integers(0, 65535))


@settings(max_examples=300, deadline=None)
@given(_pair, _port, _port, _u32, _u32, st.booleans(), _stamps, st.binary(max_size=1400))
def test_property_resets_decode_with_valid_checksums(pair, sport, dport, seq, ack, with_ack, stamp, payload):
    src, dst = pair
    packet = tcp_reset(src, dst, sport, dport, seq, ack, with_ack=with_ack, stamp=stamp, payload=payload)
    w = read(packet)
    pkt = decode(packet)
    assert ipaddress.ip_address(w.src) == ipaddress.ip_address(src) and pkt.src == addr(w.src)
    assert (pkt.sport, pkt.dport, pkt.seq, pkt.payload) == (sport, dport, seq, payload)
    assert pkt.ack == (ack if with_ack else 0) and pkt.tcp_flags & RST
    assert pkt.ttl == stamp.ttl and pkt.window == stamp.window
    if w.version == 4:
        assert (pkt.ip_id, pkt.df) == (stamp.ip_id, stamp.df)


_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?", fullmatch=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _pair,
    _port,
    st.lists(_label, min_size=1, max_size=5),
    st.sampled_from(["A", "AAAA", "MX", "TXT", "HTTPS"]),
    st.booleans(),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 0xFFFF).map(lambda f: f & 0x87FF | 0x8000)),
    st.lists(st.one_of(_v4, _v6), max_size=4),
    _stamps,
)
def test_property_dns_answers_parse(pair, sport, labels, rdtype, edns, compression, flags, pool, stamp):
    client, resolver = pair
    name = ".".join(labels)
    wire, query = _query(name, rdtype, edns=edns, qid=sport)
    style = DnsStyle(flags=flags, answers=tuple(pool), compression=compression, copy_query_edns=True)
    message = parse_message(wire)
    answers = pick_answers(style.answers, message.qtype, random.Random(sport), 2)
    packet = dns_answer(_Fields(client, resolver, sport, 53), message, style, answers=answers, stamp=stamp)
    w = read(packet)
    assert decode(packet).payload == w.payload
    mine = parse_message(w.payload)
    assert mine.id == query.id and mine.questions == message.questions
    if flags is None or not flags & 0x000F:
        answer = dns.message.from_wire(w.payload)  # dnspython's parser, when the flags make a NOERROR answer
        assert query.is_response(answer)
        # compared as addresses: dnspython writes IPv4-mapped IPv6 as ::ffff:0.0.0.0, ipaddress as ::ffff:0:0
        got = sorted(ipaddress.ip_address(r.to_text()) for rrset in answer.answer for r in rrset)
        assert got == sorted(ipaddress.ip_address(a) for a in answers)
    assert [ipaddress.ip_address(r.value) for r in mine.answers] == [ipaddress.ip_address(a) for a in answers]


@settings(max_examples=200, deadline=None)
@given(
    _pair,
    _port,
    _port,
    _u32,
    _u32,
    st.binary(max_size=5000),
    st.integers(100, 1460),
    st.sampled_from(["fin", "rst"]),
    st.sampled_from([200, 302, 403, 451]),
    _stamps,
)
def test_property_blockpages_decode(pair, sport, dport, seq, ack, body, mss, close, status, stamp):
    src, dst = pair
    style = BlockpageStyle(
        status=status, body=body, close=close, mss=mss, location="http://block.example/" if status == 302 else ""
    )
    packets = http_blockpage(src, dst, sport, dport, seq, ack, style, stamp)
    walls = [read(p) for p in packets]
    for p in packets:
        decode(p)
    data = b"".join(w.payload for w in walls)
    assert data == http_response(style)
    assert _http(data)[0] == status and _http(data)[2] == body
    expected = seq
    for w in walls:
        assert w.seq == expected % 2**32 and w.ack == ack
        expected += len(w.payload)


_real = st.deferred(
    lambda: st.sampled_from(
        [
            raw
            for name in ("dns.pcap", "443-curl.pcap", "quic-29.pcap", "http.pcapng")
            for _p, raw in real_packets(name)[:60]
        ]
    )
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_real, st.data(), st.integers(0, 15), _stamps)
def test_property_icmp_about_mutated_real_packets(raw, data, code, stamp):
    """Truncated or byte-flipped real packets: either a ValueError or a valid ICMP error quoting the bytes."""
    cut = data.draw(st.integers(0, len(raw)))
    mutated = bytearray(raw[:cut])
    for _ in range(data.draw(st.integers(0, 3))):
        if mutated:
            i = data.draw(st.integers(0, len(mutated) - 1))
            mutated[i] = data.draw(st.integers(0, 255))
    trigger = bytes(mutated)
    try:
        packet = icmp_unreachable(trigger, code=code, stamp=stamp)
    except ValueError:
        version = trigger[0] >> 4 if trigger else 0
        if version == 4:
            ihl = (trigger[0] & 0x0F) * 4
            assert ihl < 20 or len(trigger) < ihl
        elif version == 6:
            assert len(trigger) < 40
        return
    w = read(packet)
    decode(packet)
    assert w.payload and trigger.startswith(w.payload)
    assert len(packet) <= (1280 if w.version == 6 else 20 + 8 + 60 + 8)


def test_forged_dns_payload_copies_no_opt_when_disabled():
    wire, _ = _query("a.example", "A", edns=True)
    payload = dns_payload(parse_message(wire), DnsStyle(copy_query_edns=False), ("192.0.2.1",))
    assert dns.message.from_wire(payload).edns == -1
    assert struct.unpack_from("!H", payload, 10)[0] == 0  # ARCOUNT


def test_personality_stamps_reach_the_wire():
    p = parse_personality({"based_on": "packetlogic"})
    stamp = Stamper(random.Random(0)).stamp(p.reset.ip)
    w = read(tcp_reset("198.19.0.10", "198.18.0.2", 80, 40000, 1, 2, with_ack=True, stamp=stamp))
    assert (w.ip_id, w.window) == (13330, 32120)
