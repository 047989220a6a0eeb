"""DNS dissector: checked against dnspython-built messages and the real nDPI captures."""

from __future__ import annotations

import dataclasses
import random
import socket
import struct

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chokepoint.dissect import dns as cdns
from chokepoint.dissect.errors import DissectError, Malformed, NeedMoreData, NotThisProtocol
from tests._corpus import NDPI_PCAPS, mutations, ndpi_flows, packet_key, tcp_flows, udp_datagrams

DNS_CAPTURES = [
    "dns.pcap",
    "dns-google-nsid.pcapng",
    "malformed_dns.pcap",
    "dns_fragmented.pcap",
    "http_connect.pcap",
    "tls_heur__vmess-tcp-tls.pcapng",
]


# ------------------------------------------------------------------------------------------ helpers


def _text(name: dns.name.Name) -> str:
    text = name.to_text()
    return text[:-1] if text.endswith(".") and text != "." else text


def _records(section) -> list[tuple]:
    """dnspython's view of a section as (name, type, class, ttl, value) in our text conventions."""
    out = []
    for rrset in section:
        for rdata in rrset:
            if rrset.rdtype in (1, 28, 16):
                value = rdata.to_text()
            elif rrset.rdtype in (2, 5, 12):
                value = _text(rdata.target)
            elif rrset.rdtype == 15:
                value = f"{rdata.preference} {_text(rdata.exchange)}"
            elif rrset.rdtype == 6:
                value = (
                    f"{_text(rdata.mname)} {_text(rdata.rname)} {rdata.serial} {rdata.refresh} "
                    f"{rdata.retry} {rdata.expire} {rdata.minimum}"
                )
            else:
                value = rdata.to_wire().hex()
            out.append((_text(rrset.name), rrset.rdtype, rrset.rdclass, rrset.ttl, value))
    return out


def _ours(records) -> list[tuple]:
    return [(r.name, r.rtype, r.rclass, r.ttl, r.value) for r in records if r.rtype != 41]


def assert_same_as_dnspython(wire: bytes, dedupe: bool = False) -> cdns.DnsMessage:
    """Parse ``wire`` with both and compare; ``dedupe``: compare record sets (dnspython merges duplicates)."""
    ours = cdns.parse_message(wire)
    ref = dns.message.from_wire(wire, ignore_trailing=True)
    assert ours.id == ref.id
    assert ours.flags & 0xFFF0 == ref.flags & 0xFFF0
    assert ours.opcode == ref.opcode()
    assert ours.rcode == ref.rcode()
    assert [(q.name, q.qtype, q.qclass) for q in ours.questions] == [
        (_text(q.name), q.rdtype, q.rdclass) for q in ref.question
    ]
    for mine, theirs in (
        (ours.answers, ref.answer),
        (ours.authority, ref.authority),
        (ours.additional, ref.additional),
    ):
        if dedupe:
            assert set(_ours(mine)) == set(_records(theirs))
        else:
            assert sorted(_ours(mine)) == sorted(_records(theirs))
    if ref.edns >= 0:
        assert ours.edns is not None
        assert (ours.edns.udp_size, ours.edns.version) == (ref.payload, ref.edns)
        assert ours.edns.dnssec_ok == bool(ref.ednsflags & dns.flags.DO)
        assert [(code, data) for code, data in ours.edns.options] == [(o.otype, o.to_wire()) for o in ref.options]
    else:
        assert ours.edns is None
    return ours


def _response_with_everything() -> dns.message.Message:
    query = dns.message.make_query("WwW.ExAmple.COM", "A", use_edns=0, want_dnssec=True, id=0x1234)
    response = dns.message.make_response(query)
    add = response.answer.append
    add(dns.rrset.from_text("WwW.ExAmple.COM.", 300, "IN", "CNAME", "edge.Example.net."))
    add(dns.rrset.from_text("edge.Example.net.", 20, "IN", "A", "93.184.216.34", "10.10.34.34"))
    add(dns.rrset.from_text("edge.Example.net.", 20, "IN", "AAAA", "2001:db8::1", "::ffff:1.2.3.4", "d0::11"))
    add(dns.rrset.from_text("example.com.", 3600, "IN", "MX", "10 mail.example.com.", "0 ."))
    add(dns.rrset.from_text("example.com.", 0, "IN", "TXT", '"v=spf1 -all"', '"a b\\" c" "\\\\x\\001"'))
    add(dns.rrset.from_text("34.216.184.93.in-addr.arpa.", 60, "IN", "PTR", "example.com."))
    add(dns.rrset.from_text("_sip._tcp.example.com.", 60, "IN", "SRV", "10 5 5060 sip.example.com."))
    add(dns.rrset.from_text("example.com.", 60, "IN", "CAA", '0 issue "letsencrypt.org"'))
    response.authority.append(dns.rrset.from_text("example.com.", 60, "IN", "NS", "a.iana-servers.net."))
    response.authority.append(
        dns.rrset.from_text(
            "example.com.", 60, "IN", "SOA", "ns.icann.org. noc.dns.icann.org. 2024081467 7200 3600 1209600 3600"
        )
    )
    response.additional.append(dns.rrset.from_text("a.iana-servers.net.", 60, "IN", "A", "199.43.135.53"))
    return response


def _dnspython_messages() -> list[bytes]:
    out = [
        dns.message.make_query("example.com", "A", id=1).to_wire(),
        dns.message.make_query("WwW.GoOgLe.CoM", "AAAA", id=2, use_edns=0, payload=1232).to_wire(),
        dns.message.make_query(".", "NS", id=3, use_edns=0, options=[dns.edns.GenericOption(3, b"")]).to_wire(),
        dns.message.make_query("xn--fiqs8s.cn", "HTTPS", id=4).to_wire(),
        _response_with_everything().to_wire(),
        _response_with_everything().to_wire(max_size=65535),
    ]
    nx = dns.message.make_response(dns.message.make_query("blocked.example", "A", id=5))
    nx.set_rcode(dns.rcode.NXDOMAIN)
    out.append(nx.to_wire())
    return out


@pytest.fixture(scope="module")
def real_dns_payloads() -> list[tuple[str, bytes]]:
    out = []
    for name in DNS_CAPTURES:
        out += [(name, seg.payload) for seg in udp_datagrams(name, 53)]
    return out


# ------------------------------------------------------------------------------------- dnspython-built


def test_query_fields_and_0x20_case():
    wire = dns.message.make_query(
        "WwW.GoOgLe.CoM", "AAAA", id=0xBEEF, use_edns=0, payload=1232, want_dnssec=True
    ).to_wire()
    msg = assert_same_as_dnspython(wire)
    assert (msg.id, msg.is_response, msg.opcode, msg.rcode) == (0xBEEF, False, 0, 0)
    assert msg.questions[0].name == "WwW.GoOgLe.CoM"  # as seen on the wire
    assert (msg.qname, msg.qtype) == ("www.google.com", 28)  # normalised for matching
    assert msg.edns == cdns.DnsEdns(1232, 0, 0, True, ())
    assert msg.trailing == 0


def test_response_with_every_rendered_type_matches_dnspython():
    msg = assert_same_as_dnspython(_response_with_everything().to_wire())
    # dnspython compresses case-insensitively, so later names may take the question's 0x20 case
    values = {(r.rtype, r.value.lower() if r.rtype != 16 else r.value) for r in msg.answers + msg.authority}
    assert (1, "10.10.34.34") in values
    assert (28, "::ffff:1.2.3.4") in values and (28, "d0::11") in values
    assert (15, "0 .") in values and (15, "10 mail.example.com") in values
    assert (16, '"a b\\" c" "\\\\x\\001"') in values
    assert (6, "ns.icann.org noc.dns.icann.org 2024081467 7200 3600 1209600 3600") in values
    assert (33, "000a000513c403736970076578616d706c6503636f6d00") in values  # SRV: hex, uncompressed
    assert msg.answers[0].name == "WwW.ExAmple.COM"


def test_odd_label_bytes_render_like_dnspython():
    name = dns.name.Name([b"a.b", b'\x00x"(', b"@$;", b" sp", b"\xe4\xb8\xad", b""])
    wire = dns.message.make_query(name, "A", id=7).to_wire()
    msg = cdns.parse_message(wire)
    assert msg.questions[0].name == _text(name) == 'a\\.b.\\000x\\"\\(.\\@\\$\\;.\\032sp.\\228\\184\\173'
    # the builder reads the escaped text form back to the same wire name
    assert cdns.build_query(msg.questions[0].name, 1, 7, flags=msg.flags) == wire


def test_nxdomain_response_and_rcode():
    nx = dns.message.make_response(dns.message.make_query("blocked.example", "A", id=5, use_edns=0))
    nx.set_rcode(dns.rcode.BADVERS)  # 16: needs the OPT record's extended RCODE bits
    msg = assert_same_as_dnspython(nx.to_wire())
    assert msg.rcode == 16 and msg.flags & 0xF == 0 and msg.edns.ext_rcode == 1


# -------------------------------------------------------------------------------- compression and limits


def _header(qd=1, an=0, flags=0x0100, msg_id=9) -> bytes:
    return struct.pack("!HHHHHH", msg_id, flags, qd, an, 0, 0)


@pytest.mark.parametrize(
    "body, why",
    [
        (b"\xc0\x0c\x00\x01\x00\x01", "pointer to itself"),
        (b"\xc0\x10\x00\x01\x00\x01\x00\x00", "forward pointer"),
        (b"\xc0\x05\x00\x01\x00\x01", "pointer into the header"),
        (b"\x03abc\xc0\x0c\x00\x01\x00\x01", "pointer back to the start of the same name (loop)"),
        (b"\x03abc\x80\x00\x01\x00\x01", "reserved label type 0x80"),
        (b"\x03abc\x41\x00\x01\x00\x01", "extended label type 0x40"),
        (b"\x3fabc\x00\x01\x00\x01", "label past the end"),
        (b"\x03abc\x03def", "name without terminator"),
        (b"\x03abc\x00\x00", "truncated question"),
        (
            b"\x3f"
            + b"a" * 63
            + b"\x3f"
            + b"b" * 63
            + b"\x3f"
            + b"c" * 63
            + b"\x3f"
            + b"d" * 63
            + b"\x00\x00\x01\x00\x01",
            "name of 257 octets",
        ),
    ],
)
def test_malformed_names(body, why):
    with pytest.raises(Malformed):
        cdns.parse_message(_header() + body)


def test_pointer_chain_loop_between_two_names_is_rejected():
    # answer name points to the question, whose labels end in a pointer back to the answer: a two-name loop
    question = b"\x03www\xc0\x1d\x00\x01\x00\x01"  # pointer to offset 29 = the answer's name
    answer = b"\x03abc\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x04"
    with pytest.raises(Malformed):
        cdns.parse_message(_header(qd=1, an=1, flags=0x8180) + question + answer)


def test_longest_legal_name_parses():
    labels = [b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 61]  # 4*1 + 250 + root = 255 octets
    wire = dns.message.make_query(dns.name.Name([*labels, b""]), "A").to_wire()
    assert len(cdns.parse_message(wire).questions[0].name) == 253


@pytest.mark.parametrize(
    "rtype, rdata",
    [(1, b"\x01\x02\x03"), (28, b"\x00" * 4), (5, b"\x03abc"), (15, b"\x00"), (16, b"\x05ab"), (6, b"\x00\x00")],
)
def test_bad_rdata_is_malformed(rtype, rdata):
    body = b"\x01a\x00\x00\x01\x00\x01" + b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 60, len(rdata)) + rdata
    with pytest.raises(Malformed):
        cdns.parse_message(_header(qd=1, an=1, flags=0x8180) + body)


def test_bad_edns_option_is_malformed():
    query = dns.message.make_query("a.example", "A", use_edns=0).to_wire()
    # grow the OPT RDATA by an option header that claims 9 bytes but carries 1
    broken = query[:-2] + b"\x00\x05" + b"\x00\x03\x00\x09\x41"
    with pytest.raises(Malformed):
        cdns.parse_message(broken)


def test_trailing_bytes_are_counted_not_fatal():
    wire = dns.message.make_query("a.example", "A").to_wire()
    assert cdns.parse_message(wire + b"\x00" * 7).trailing == 7


# ----------------------------------------------------------------------------- not DNS: false positives


@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "empty"),
        (b"\x00" * 11, "shorter than a header"),
        (b"\x00" * 12, "a query without a question"),
        (_header(flags=0x1800) + b"\x01a\x00\x00\x01\x00\x01", "opcode 3 is unassigned"),
        (_header(flags=0x0103) + b"\x01a\x00\x00\x01\x00\x01", "a query carrying RCODE 3"),
        (_header(qd=1, an=40) + b"\x01a\x00\x00\x01\x00\x01", "40 answers cannot fit"),
        (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "HTTP"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "SSH banner"),
        (b"\x05\x01\x00", "SOCKS5 greeting"),
    ],
)
def test_not_dns(data, why):
    with pytest.raises(NotThisProtocol):
        cdns.parse_message(data)


def test_random_bytes_are_not_taken_for_dns():
    rng = random.Random(20261127)
    accepted = 0
    for _ in range(20000):
        blob = rng.randbytes(rng.randint(12, 600))
        try:
            cdns.parse_message(blob)
            accepted += 1
        except (NotThisProtocol, Malformed):
            pass
    assert accepted == 0


def test_real_non_dns_tcp_payloads_are_not_dns():
    checked = 0
    for name in ("http_connect.pcap", "ssh.pcap", "socks.pcap", "tls_heur__vmess-tcp-tls.pcapng", "http.pcapng"):
        for conn in tcp_flows(name):
            for stream in (conn.c2s, conn.s2c):
                if stream:
                    checked += 1
                    with pytest.raises((NotThisProtocol, Malformed)):
                        cdns.parse_message(stream)
                    with pytest.raises(NotThisProtocol):
                        cdns.parse_tcp_stream(stream)
    assert checked >= 10


# ------------------------------------------------------------------------------------------------ TCP


def _tcp(*messages: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(m)) + m for m in messages)


def test_tcp_stream_several_messages_and_split():
    first, second = _dnspython_messages()[:2]
    stream = _tcp(first, second)
    assert [m.qname for m in cdns.parse_tcp_stream(stream)] == ["example.com", "www.google.com"]
    for cut in range(len(first) + 2):
        with pytest.raises(NeedMoreData):
            cdns.parse_tcp_stream(stream[:cut])
    for cut in range(len(first) + 2, len(stream)):  # second incomplete: only the first is returned
        assert [m.id for m in cdns.parse_tcp_stream(stream[:cut])] == [1]


def test_tcp_stream_rejects_non_dns_early():
    with pytest.raises(NotThisProtocol):  # a TLS record read as a length prefix: header checks fail at 14 bytes
        cdns.parse_tcp_stream(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x4a\x6e\xa5")
    with pytest.raises(NotThisProtocol):
        cdns.parse_tcp_stream(b"\x00\x05hello")


def test_real_dns_over_tcp_flows():
    conns = [c for c in tcp_flows("dns_fragmented.pcap") if c.server[1] == 53]
    assert len(conns) == 2
    for conn in conns:
        (query,) = cdns.parse_tcp_stream(conn.c2s)
        (answer,) = cdns.parse_tcp_stream(conn.s2c)
        assert (query.qname, query.qtype, query.is_response) == ("weberlab.de", 48, False)  # DNSKEY
        assert answer.id == query.id and answer.is_response and len(answer.answers) == 4
        assert {r.rtype for r in answer.answers} == {48, 46}  # DNSKEY + RRSIG, kept as hex
        assert_same_as_dnspython(conn.s2c[2:])
        # the 1732-byte segment travelled as IP fragments: the first fragment's worth is not enough
        assert len(conn.segments(False)) == 1 and len(conn.s2c) == 1732
        with pytest.raises(NeedMoreData):
            cdns.parse_tcp_stream(conn.s2c[:1400])


# ------------------------------------------------------------------------------------------ real captures


def test_real_captures_parse_like_dnspython(real_dns_payloads):
    parsed = malformed = 0
    for _name, payload in real_dns_payloads:
        try:
            ref_ok = dns.message.from_wire(payload, ignore_trailing=True) is not None
        except dns.exception.DNSException:
            ref_ok = False
        if ref_ok:
            assert_same_as_dnspython(payload)
            parsed += 1
        else:
            with pytest.raises(Malformed):
                cdns.parse_message(payload)
            malformed += 1
    assert malformed == 4 and parsed == len(real_dns_payloads) - 4 >= 70


def test_real_qnames_match_ndpi_hostnames():
    """nDPI names a DNS flow after the first message it sees (query or response)."""
    compared = 0
    for name in DNS_CAPTURES:
        labels = {f.key: f for f in ndpi_flows(name) if f.l4 == "UDP" and f.label.startswith("DNS")}
        first: dict[tuple, bytes] = {}
        for seg in udp_datagrams(name, 53):
            first.setdefault(packet_key(seg), seg.payload)
        for ends, flow in labels.items():
            if flow.confidence == "DPI":
                assert cdns.parse_message(first[ends]).qname == (flow.hostname or ""), (name, ends)
                compared += 1
    assert compared >= 30


def test_real_nsid_answers():
    nsids = set()
    for seg in udp_datagrams("dns-google-nsid.pcapng", 53):
        msg = cdns.parse_message(seg.payload)
        assert msg.edns is not None and msg.edns.udp_size in (512, 4096)
        if msg.is_response:
            nsids.add(msg.edns.option(3))
        else:
            assert msg.edns.option(3) == b""  # NSID requested (RFC 5001)
    assert {b"gpdns-mil", b"gpdns-ams", b"r3.mil1", b"r9.mil1"} <= nsids


def test_real_root_priming_query_and_whatsapp_answers():
    root = [cdns.parse_message(s.payload) for s in udp_datagrams("dns-google-nsid.pcapng", 53) if s.payload[12] == 0]
    assert root and all(m.qname == "" and m.questions[0].name == "." and m.qtype == 2 for m in root)
    response = next(m for m in root if m.is_response)
    assert [r.value for r in response.answers][:2] == ["a.root-servers.net", "b.root-servers.net"]
    whatsapp = [cdns.parse_message(s.payload) for s in udp_datagrams("dns.pcap", 53) if s.sport == 53]
    answer = next(m for m in whatsapp if m.qname == "e7.whatsapp.net")
    assert answer.answers[0].value == "169.45.219.235" and len(answer.answers) == 8


def test_real_malformed_dns_response():
    payloads = [s.payload for s in udp_datagrams("malformed_dns.pcap", 53)]
    queries = [p for p in payloads if not p[2] & 0x80]
    responses = [p for p in payloads if p[2] & 0x80]
    assert len(queries) == 2 and len(responses) == 4
    assert {cdns.parse_message(q).qname for q in queries} == {"www.xt.com"}
    for response in responses:  # the second question is a run of 34-byte labels far beyond 255 octets
        with pytest.raises(Malformed, match="longer than 255"):
            cdns.parse_message(response)


def test_real_fragmented_udp_responses():
    sizes = [len(s.payload) for s in udp_datagrams("dns_fragmented.pcap", 53) if s.sport == 53]
    assert max(sizes) > 1500  # reassembled from IP fragments by the decoder
    for seg in udp_datagrams("dns_fragmented.pcap", 53):
        if len(seg.payload) > 1400:
            assert cdns.parse_message(seg.payload).answers


# -------------------------------------------------------------------------------------------- building


def test_build_query_round_trip_and_dnspython_agrees():
    wire = cdns.build_query("WwW.Example.ORG", cdns.RType.AAAA, 0x4242, edns_udp_size=1232)
    msg = cdns.parse_message(wire)
    assert msg.questions == (cdns.DnsQuestion("WwW.Example.ORG", 28, 1),)
    assert (msg.id, msg.flags, msg.edns.udp_size) == (0x4242, 0x0100, 1232)
    ref = dns.message.from_wire(wire)
    assert ref.question[0].name.to_text() == "WwW.Example.ORG." and ref.payload == 1232


def test_build_response_forges_an_answer_dnspython_accepts():
    query_wire = dns.message.make_query("WwW.Blocked.Example", "A", id=0x0AA0).to_wire()
    query = cdns.parse_message(query_wire)
    forged = cdns.build_response(query, ["10.10.34.34"], ttl=300)
    msg = cdns.parse_message(forged)
    assert msg.id == 0x0AA0 and msg.is_response and msg.flags == 0x8180
    assert msg.answers == (cdns.DnsRecord("WwW.Blocked.Example", 1, 1, 300, "10.10.34.34"),)
    ref = dns.message.from_wire(forged)
    assert dns.message.from_wire(query_wire).is_response(ref)  # dnspython: id, opcode and question match
    assert ref.answer[0][0].address == "10.10.34.34"
    assert forged[len(query_wire) : len(query_wire) + 2] == b"\xc0\x0c"  # answer name compressed to the question


def test_build_response_without_compression_and_with_flags():
    query = cdns.parse_message(cdns.build_query("a.example", 1, 7))
    plain = cdns.build_response(query, ["127.0.0.1"], ttl=300, compress=False)
    packed = cdns.build_response(query, ["127.0.0.1"], ttl=300)
    assert len(plain) == len(packed) + len(b"\x01a\x07example\x00") - 2
    assert b"\xc0\x0c" not in plain
    assert cdns.parse_message(plain).answers == cdns.parse_message(packed).answers
    nx = cdns.parse_message(cdns.build_response(query, rcode=3))
    assert nx.rcode == 3 and not nx.answers and nx.flags == 0x8183
    aa = cdns.parse_message(cdns.build_response(query, ["127.0.0.1"], flags=0x8580))
    assert aa.flags == 0x8580


def test_build_response_with_cname_chain_and_records():
    query = cdns.build_query("www.example.com", 1, 1)
    wire = cdns.build_response(
        query,
        [
            cdns.DnsRecord("www.example.com", 5, 1, 60, "cdn.example.net"),
            cdns.DnsRecord("cdn.example.net", 1, 1, 60, "192.0.2.1"),
        ],
    )
    msg = assert_same_as_dnspython(wire)
    assert [r.value for r in msg.answers] == ["cdn.example.net", "192.0.2.1"]


@pytest.mark.parametrize("answer", ["2001:db8::1", "1.2.3", "not-an-ip"])
def test_builder_rejects_values_of_the_wrong_type(answer):
    query = cdns.build_query("a.example", cdns.RType.A)
    with pytest.raises(ValueError):
        cdns.build_response(query, [answer])
    with pytest.raises(ValueError):
        cdns.build_response(query, [cdns.DnsRecord("a.example", 1, 1, 2**32, "1.2.3.4")])


@pytest.mark.parametrize("name", ["a..b", "a" * 64 + ".com", ".".join(["a" * 63] * 5), "例子.cn", "bad\\"])
def test_builder_rejects_bad_names(name):
    with pytest.raises(ValueError):
        cdns.build_query(name)


def test_real_messages_re_encode(real_dns_payloads):
    for _, payload in real_dns_payloads:
        try:
            msg = cdns.parse_message(payload)
        except Malformed:
            continue
        for compress in (True, False):
            again = cdns.parse_message(cdns.encode_message(msg, compress))
            assert again == dataclasses.replace(msg, trailing=0)


# ------------------------------------------------------------------------------------------ properties

_label = st.binary(min_size=1, max_size=20)
_names = st.lists(_label, min_size=0, max_size=5).map(lambda labels: dns.name.Name([*labels, b""]))
_UNKNOWN_TYPES = (4660, 65280, 65534)  # rendered as hex by both sides


def _value(rtype: int, draw) -> str:
    if rtype == 1:
        return socket.inet_ntop(socket.AF_INET, draw(st.binary(min_size=4, max_size=4)))
    if rtype == 28:
        return socket.inet_ntop(socket.AF_INET6, draw(st.binary(min_size=16, max_size=16)))
    if rtype in (2, 5, 12):
        return _text(draw(_names))
    if rtype == 15:
        return f"{draw(st.integers(0, 65535))} {_text(draw(_names))}"
    if rtype == 16:
        strings = draw(st.lists(st.binary(max_size=40), min_size=1, max_size=3))
        return " ".join('"' + "".join(cdns._TXT_ESCAPED[c] for c in s) + '"' for s in strings)
    if rtype == 6:
        return f"{_text(draw(_names))} {_text(draw(_names))} " + " ".join(
            str(draw(st.integers(0, 2**32 - 1))) for _ in range(5)
        )
    return draw(st.binary(max_size=30)).hex()


# dnspython reads a section as RRsets (RFC 2181 section 5), not as the list of records on the wire: records of one
# type whose owners are equal ignoring ASCII case (RFC 4343) merge under the first owner's spelling, RDATA equal in
# canonical form (names lower-cased, RFC 4034 section 6.2) merge, and a singleton type (CNAME: RFC 1034 section
# 3.6.2, RFC 2181 section 10.1; SOA) keeps only its last record. Such a section is valid on the wire and our parser
# keeps every record as sent (a censor sees what was sent), but dnspython cannot show it one-to-one; so the plain
# messages compared with dnspython hold only well-formed RRsets. Exact duplicates stay (compared as sets).
_SINGLETON_TYPES = frozenset({5, 6})  # CNAME, SOA (dnspython's is_singleton also has DNAME, NSEC, NXT)
_NAME_VALUED_TYPES = frozenset({2, 5, 6, 12, 15})  # NS CNAME SOA PTR MX: names compared ignoring case


def _canonical(record: cdns.DnsRecord) -> tuple:
    """(owner, type, RDATA) as an RRset compares them; text forms are ASCII, so ``lower()`` is ASCII case folding."""
    value = record.value.lower() if record.rtype in _NAME_VALUED_TYPES else record.value
    return record.name.lower(), record.rtype, value


def _well_formed_rrsets(records: tuple[cdns.DnsRecord, ...]) -> tuple[cdns.DnsRecord, ...]:
    """The records of one section, less those that would merge in an RRset other than as exact duplicates."""
    kept: list[cdns.DnsRecord] = []
    for record in records:
        owner, rtype, value = _canonical(record)
        same_set = [k for k in kept if _canonical(k)[:2] == (owner, rtype)]
        clashes = same_set and (
            same_set[0].name != record.name  # one owner spelt two ways
            or rtype in _SINGLETON_TYPES  # a second CNAME / SOA
            or any(_canonical(k)[2] == value and k.value != record.value for k in same_set)
        )  # "A." vs "a."
        if not clashes:
            kept.append(record)
    return tuple(kept)


@st.composite
def messages(draw, plain: bool) -> cdns.DnsMessage:
    """Random responses; ``plain`` ones (opcode QUERY, class IN, one TTL) are comparable with dnspython."""

    def record():
        rtype = draw(st.sampled_from([1, 2, 5, 6, 12, 15, 16, 28, *_UNKNOWN_TYPES]))
        return cdns.DnsRecord(
            _text(draw(_names)),
            rtype,
            1 if plain else draw(st.integers(0, 65535)),
            300 if plain else draw(st.integers(0, 2**32 - 1)),
            _value(rtype, draw),
        )

    opcodes = [0] if plain else [0, 1, 2, 4, 5]
    flags = 0x8000 | (draw(st.sampled_from(opcodes)) << 11) | draw(st.integers(0, 0x7FF))
    questions = tuple(
        cdns.DnsQuestion(_text(draw(_names)), draw(st.integers(1, 65535)), 1 if plain else draw(st.integers(0, 65535)))
        for _ in range(1 if plain else draw(st.integers(1, 2)))
    )
    sections = [tuple(record() for _ in range(draw(st.integers(0, 3)))) for _ in range(3)]
    if plain:
        sections = [_well_formed_rrsets(section) for section in sections]
    return cdns.DnsMessage(draw(st.integers(0, 65535)), flags, questions, *sections)


@settings(max_examples=300, deadline=None)
@given(messages(plain=False), st.booleans())
def test_property_parse_build_round_trip(message, compress):
    assert cdns.parse_message(cdns.encode_message(message, compress)) == message


@settings(max_examples=300, deadline=None)
@given(messages(plain=True), st.booleans())
def test_property_built_messages_read_the_same_in_dnspython(message, compress):
    assert_same_as_dnspython(cdns.encode_message(message, compress), dedupe=True)


@pytest.fixture(scope="module")
def fuzz_seeds() -> list[bytes]:
    seeds = _dnspython_messages()
    if NDPI_PCAPS.is_dir():
        for name in DNS_CAPTURES:
            seeds += [seg.payload for seg in udp_datagrams(name, 53)]
    return seeds


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_mutated_messages_raise_only_typed_errors(fuzz_seeds, data):
    blob = data.draw(mutations(fuzz_seeds))
    try:
        msg = cdns.parse_message(blob)
    except DissectError as exc:
        event(type(exc).__name__)
        return
    event("parsed")
    assert msg.qname is None or msg.qname == msg.qname.lower()
    # whatever parses re-encodes to an equivalent message
    assert cdns.parse_message(cdns.encode_message(msg)) == dataclasses.replace(msg, trailing=0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_mutated_tcp_streams_raise_only_typed_errors(fuzz_seeds, data):
    stream = data.draw(mutations([_tcp(a, b) for a, b in zip(fuzz_seeds, fuzz_seeds[1:])]))
    try:
        assert cdns.parse_tcp_stream(stream)
    except DissectError:
        pass
