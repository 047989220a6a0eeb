"""Lab DNS: the responder on dnspython-built queries, the map format, live UDP/TCP with dnspython and dig,
real queries from the nDPI captures, and property tests on damaged queries."""

from __future__ import annotations

import json
import socket
import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import given, settings

from chokepoint.lab.services import resolver
from chokepoint.lab.services.resolver import AnswerTable, DnsMapError, DnsResponder, Records
from tests._corpus import mutations
from tests.lab.services import _harness
from tests.lab.services._harness import CLIENT_TIMEOUT, run_client


def ask(responder: DnsResponder, query: dns.message.Message, *, tcp: bool = False) -> dns.message.Message:
    wire = responder.respond(query.to_wire(), tcp=tcp)
    assert wire is not None
    return dns.message.from_wire(wire)


def addresses(response: dns.message.Message, rdtype) -> list[str]:
    return [rd.address for rrset in response.answer if rrset.rdtype == rdtype for rd in rrset]


# ---------------------------------------------------------------------------------------------- answers


@pytest.mark.parametrize("rd", [True, False])
def test_a_and_aaaa_defaults_with_correct_flags(rd):
    responder = DnsResponder()
    for rdtype, expected in ((dns.rdatatype.A, ["198.19.0.10"]), (dns.rdatatype.AAAA, ["2001:db8:0:2::10"])):
        query = dns.message.make_query("www.Example.COM", rdtype)
        if not rd:
            query.flags &= ~dns.flags.RD
        response = ask(responder, query)
        assert response.id == query.id
        assert response.flags & dns.flags.QR and response.flags & dns.flags.AA and response.flags & dns.flags.RA
        assert bool(response.flags & dns.flags.RD) == rd
        assert response.rcode() == dns.rcode.NOERROR
        assert addresses(response, rdtype) == expected
        assert response.answer[0].ttl == resolver.TTL == 60
        assert response.question[0].name.to_text() == "www.Example.COM."  # 0x20 case preserved
        assert query.is_response(response)


def test_any_returns_both_families_and_other_types_get_nodata_with_soa():
    responder = DnsResponder()
    response = ask(responder, dns.message.make_query("x.test", dns.rdatatype.ANY))
    assert addresses(response, dns.rdatatype.A) == ["198.19.0.10"]
    assert addresses(response, dns.rdatatype.AAAA) == ["2001:db8:0:2::10"]
    for rdtype in (dns.rdatatype.MX, dns.rdatatype.TXT, dns.rdatatype.HTTPS, dns.rdatatype.NS):
        response = ask(responder, dns.message.make_query("x.test", rdtype))
        assert response.rcode() == dns.rcode.NOERROR and not response.answer
        (soa,) = response.authority
        assert soa.rdtype == dns.rdatatype.SOA and soa.name == dns.name.from_text("x.test")
    soa_answer = ask(responder, dns.message.make_query("x.test", dns.rdatatype.SOA))
    assert soa_answer.answer[0].rdtype == dns.rdatatype.SOA


def test_nxdomain_below_nxdomain_test_only():
    responder = DnsResponder()
    for name in ("a.nxdomain.test", "deep.er.NXDOMAIN.test"):
        response = ask(responder, dns.message.make_query(name, dns.rdatatype.A))
        assert response.rcode() == dns.rcode.NXDOMAIN and not response.answer
        assert response.flags & dns.flags.AA
        assert response.authority[0].name == resolver.NXDOMAIN_ZONE
    apex = ask(responder, dns.message.make_query("nxdomain.test", dns.rdatatype.A))
    assert apex.rcode() == dns.rcode.NOERROR and addresses(apex, dns.rdatatype.A) == ["198.19.0.10"]


def test_edns_is_echoed_with_our_payload_and_the_do_bit():
    responder = DnsResponder()
    query = dns.message.make_query(
        "edns.test",
        dns.rdatatype.A,
        use_edns=0,
        payload=4096,
        want_dnssec=True,
        options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")],
    )
    response = ask(responder, query)
    assert response.edns == 0 and response.payload == resolver.EDNS_PAYLOAD
    assert response.ednsflags & dns.flags.DO
    plain = ask(responder, dns.message.make_query("edns.test", dns.rdatatype.A, use_edns=False))
    assert plain.edns == -1


def test_edns_version_above_zero_gets_badvers():
    query = dns.message.make_query("v1.test", dns.rdatatype.A, use_edns=1)
    response = ask(DnsResponder(), query)
    assert response.rcode() == dns.rcode.BADVERS and response.edns == 0 and not response.answer


def test_refused_notimp_formerr_and_silence():
    responder = DnsResponder()
    chaos = dns.message.make_query("version.bind", dns.rdatatype.TXT, rdclass=dns.rdataclass.CH)
    assert ask(responder, chaos).rcode() == dns.rcode.REFUSED
    notify = dns.message.make_query("zone.test", dns.rdatatype.SOA)
    notify.set_opcode(dns.opcode.NOTIFY)
    response = ask(responder, notify)
    assert response.rcode() == dns.rcode.NOTIMP and response.opcode() == dns.opcode.NOTIFY
    two = dns.message.make_query("a.test", dns.rdatatype.A)
    two.question.append(dns.message.make_query("b.test", dns.rdatatype.A).question[0])
    assert ask(responder, two).rcode() == dns.rcode.FORMERR
    garbage = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\x3fabc"
    reply = dns.message.from_wire(responder.respond(garbage))
    assert reply.id == 0xBEEF and reply.rcode() == dns.rcode.FORMERR and reply.flags & dns.flags.RD
    already_response = dns.message.make_response(dns.message.make_query("r.test", dns.rdatatype.A))
    assert responder.respond(already_response.to_wire()) is None
    assert responder.respond(b"\x12\x34\x01") is None


def test_udp_truncates_and_tcp_does_not():
    many = [f"198.19.1.{n}" for n in range(1, 101)]
    responder = DnsResponder(AnswerTable(names={"many.test": Records(tuple(many), ())}))
    udp = ask(responder, dns.message.make_query("many.test", dns.rdatatype.A, use_edns=False))
    assert udp.flags & dns.flags.TC and not udp.answer
    edns = ask(responder, dns.message.make_query("many.test", dns.rdatatype.A, use_edns=0, payload=4096))
    assert edns.flags & dns.flags.TC  # 100 A records exceed our 1232-byte limit
    tcp = ask(responder, dns.message.make_query("many.test", dns.rdatatype.A), tcp=True)
    assert not tcp.flags & dns.flags.TC and sorted(addresses(tcp, dns.rdatatype.A)) == sorted(many)


# ------------------------------------------------------------------------------------------------ the map


def test_map_precedence_exact_then_longest_wildcard_then_default():
    table = AnswerTable.from_mapping(
        {
            "default": {"A": ["198.19.0.20"], "AAAA": "2001:db8:0:2::20"},
            "names": {
                "exact.example": "198.19.0.11",
                "*.example": ["198.19.0.12", "2001:db8:0:2::12"],
                "*.deep.example": {"A": ["198.19.0.13"]},
                "gone.example": None,
            },
        }
    )
    look = lambda name: table.lookup(dns.name.from_text(name))  # noqa: E731
    assert look("EXACT.example") == Records(("198.19.0.11",), ())
    assert look("x.example") == Records(("198.19.0.12",), ("2001:db8:0:2::12",))
    assert look("a.b.deep.example") == Records(("198.19.0.13",), ())
    assert look("example") == Records(("198.19.0.20",), ("2001:db8:0:2::20",))  # wildcards skip the apex
    assert look("gone.example") is None
    response = ask(DnsResponder(table), dns.message.make_query("gone.example", dns.rdatatype.A))
    assert response.rcode() == dns.rcode.NXDOMAIN
    nodata = ask(DnsResponder(table), dns.message.make_query("exact.example", dns.rdatatype.AAAA))
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_map_files(tmp_path, suffix):
    mapping = {"names": {"site.example": "198.19.0.15"}}
    path = tmp_path / f"map{suffix}"
    path.write_text(json.dumps(mapping) if suffix == ".json" else "names:\n  site.example: 198.19.0.15\n")
    table = AnswerTable.load(path)
    assert table.lookup(dns.name.from_text("site.example")) == Records(("198.19.0.15",), ())


@pytest.mark.parametrize(
    "mapping",
    [
        [1, 2],
        {"nams": {}},
        {"names": {"a.test": "not-an-ip"}},
        {"names": {"a.test": {"MX": ["x"]}}},
        {"names": {"a.test": {"A": ["2001:db8::1"]}}},
        {"names": {"a.test": 5}},
        {"names": ["a.test"]},
        {"names": {"a..test": "198.19.0.1"}},
        {"default": {"AAAA": ["198.19.0.1"]}},
    ],
)
def test_map_errors(mapping):
    with pytest.raises(DnsMapError):
        AnswerTable.from_mapping(mapping)


def test_map_file_errors(tmp_path):
    with pytest.raises(DnsMapError, match="cannot read"):
        AnswerTable.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(DnsMapError, match="does not parse"):
        AnswerTable.load(bad)


# ------------------------------------------------------------------------------------- live, over sockets


def test_dnspython_udp_and_tcp(services):
    port = services.ports["dns"]
    for transport in (dns.query.udp, dns.query.tcp):
        response = transport(
            dns.message.make_query("live.example", dns.rdatatype.A), "127.0.0.1", port=port, timeout=CLIENT_TIMEOUT
        )
        assert addresses(response, dns.rdatatype.A) == ["198.19.0.10"]
        response = transport(
            dns.message.make_query("gone.nxdomain.test", dns.rdatatype.AAAA),
            "127.0.0.1",
            port=port,
            timeout=CLIENT_TIMEOUT,
        )
        assert response.rcode() == dns.rcode.NXDOMAIN


def test_dig(services):
    port = str(services.ports["dns"])
    for mode in ("+notcp", "+tcp"):
        out = run_client(["dig", "-p", port, "@127.0.0.1", mode, "+time=3", "+tries=1", "dig.example", "AAAA"])
        text = out.stdout.decode()
        assert "status: NOERROR" in text and "flags: qr aa rd ra" in text, text
        assert "dig.example.\t\t60\tIN\tAAAA\t2001:db8:0:2::10" in text


def test_tcp_pipelining_and_garbage_framing(services):
    port = services.ports["dns"]
    queries = [dns.message.make_query(f"p{i}.test", dns.rdatatype.A) for i in range(3)]
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries)))
        for query in queries:
            (length,) = struct.unpack("!H", _recv_exactly(sock, 2))
            assert query.is_response(dns.message.from_wire(_recv_exactly(sock, length)))
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"\xff\xff" + b"junk")  # a length it never completes, then EOF
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(10) == b""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for junk in (b"", b"\x00", bytes(11), b"\xff" * 600):
            sock.sendto(junk, ("127.0.0.1", port))
    test_dnspython_udp_and_tcp(services)


def test_ipv6(services, ipv6):
    if not ipv6:
        pytest.skip("no IPv6 loopback here")
    response = dns.query.udp(
        dns.message.make_query("six.example", dns.rdatatype.AAAA),
        "::1",
        port=services.ports["dns"],
        timeout=CLIENT_TIMEOUT,
    )
    assert addresses(response, dns.rdatatype.AAAA) == ["2001:db8:0:2::10"]


def test_control_role_answers_the_same_from_a_map(tmp_path):
    dns_map = tmp_path / "map.yaml"
    dns_map.write_text("names:\n  mapped.example: [198.19.0.21, '2001:db8:0:2::21']\n")
    running = _harness.start(tmp_path / "control", role="control", extra=("--dns-map", str(dns_map)))
    try:
        assert {e["service"] for e in running.ready["endpoints"]} == {"dns"}
        port = running.ports["dns"]
        for transport in (dns.query.udp, dns.query.tcp):
            mapped = transport(
                dns.message.make_query("mapped.example", dns.rdatatype.AAAA),
                "127.0.0.1",
                port=port,
                timeout=CLIENT_TIMEOUT,
            )
            assert addresses(mapped, dns.rdatatype.AAAA) == ["2001:db8:0:2::21"]
            other = transport(
                dns.message.make_query("other.example", dns.rdatatype.A), "127.0.0.1", port=port, timeout=CLIENT_TIMEOUT
            )
            assert addresses(other, dns.rdatatype.A) == ["198.19.0.10"]
        assert not (tmp_path / "control" / "ca.pem").exists()  # DNS only: no CA needed
    finally:
        assert _harness.stop(running) == 0


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


# --------------------------------------------------------------------- real queries and damaged queries


def _seed_queries() -> list[bytes]:
    return [
        dns.message.make_query("seed.example", dns.rdatatype.A).to_wire(),
        dns.message.make_query(
            "Seed.Example",
            dns.rdatatype.AAAA,
            use_edns=0,
            want_dnssec=True,
            options=[dns.edns.ECSOption("198.51.100.0", 24)],
        ).to_wire(),
        dns.message.make_query("x.nxdomain.test", dns.rdatatype.ANY, use_edns=0, pad=64).to_wire(),
        dns.message.make_query("mx.example", dns.rdatatype.MX, use_edns=1).to_wire(),
    ]


def _check_reply(wire: bytes, reply: bytes | None, *, tcp: bool = False) -> None:
    if reply is None:
        assert len(wire) < 12 or wire[2] & 0x80  # silent only for runts and responses
        return
    parsed = dns.message.from_wire(reply)
    assert parsed.flags & dns.flags.QR and parsed.id == struct.unpack_from("!H", wire)[0]
    assert tcp or len(reply) <= 512 or parsed.edns >= 0


@settings(max_examples=500, deadline=None)
@given(wire=mutations(_seed_queries(), max_edits=4))
def test_damaged_queries_get_a_valid_reply_or_silence(wire):
    responder = DnsResponder(AnswerTable(names={"seed.example": Records(("198.19.0.11",), ())}))
    _check_reply(wire, responder.respond(wire))
    _check_reply(wire, responder.respond(wire, tcp=True), tcp=True)


@pytest.mark.shared_data
def test_every_real_query_in_the_ndpi_captures_gets_a_valid_reply(shared_data):
    from tests._corpus import NDPI_PCAPS, udp_datagrams

    captures = ["dns.pcap", "dns-google-nsid.pcapng", "malformed_dns.pcap", "dns_fragmented.pcap"]
    queries = [
        p.payload for name in captures if (NDPI_PCAPS / name).exists() for p in udp_datagrams(name, 53) if p.dport == 53
    ]
    if not queries:
        pytest.skip(f"no DNS captures under {NDPI_PCAPS}")
    responder = DnsResponder()
    answered = 0
    for wire in queries:
        reply = responder.respond(bytes(wire))
        _check_reply(bytes(wire), reply)
        answered += reply is not None
    assert answered >= len(queries) // 2, (answered, len(queries))
