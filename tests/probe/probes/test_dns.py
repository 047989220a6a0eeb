"""DNS probes against the lab resolver, a lying resolver and a DoH endpoint, all on 127.0.0.1."""

from __future__ import annotations

import socket

import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.lab.ca import LabCA
from chokepoint.probe.measurement import DNSQuery, Failure
from chokepoint.probe.probes import dns as dns_probe
from chokepoint.probe.probes.common import ProbeContext, ProbeError
from tests._corpus import mutations
from tests.probe.probes._servers import LOOPBACK, DnsBehaviour, DohServer, LyingDns


def _check_record(record: DNSQuery, engine: str, *, tags=("depth=0",)) -> None:
    assert record.engine == engine
    assert record.tags == tags
    assert 0 <= record.extra["t0"] <= record.t
    assert record.transaction_id is not None and record.transaction_id > 0


@pytest.mark.parametrize("lookup, engine", [(dns_probe.lookup_udp, "udp"), (dns_probe.lookup_tcp, "tcp")])
def test_lab_resolver_answers(ctx, lab, lookup, engine):
    a, aaaa = lookup(ctx, "site.test", lab.dns)
    for record in (a, aaaa):
        _check_record(record, engine)
        assert record.resolver_address == f"127.0.0.1:{lab.dns[1]}"
    assert a.transaction_id == aaaa.transaction_id  # one lookup, as OONI groups A and AAAA
    assert (a.query_type, a.failure, a.addresses, a.rcode) == ("A", None, ("127.0.0.1",), 0)
    assert a.answers[0].ttl == 60
    assert (aaaa.query_type, aaaa.failure, aaaa.addresses) == ("AAAA", Failure.DNS_NO_ANSWER, ())


@pytest.mark.parametrize("lookup", [dns_probe.lookup_udp, dns_probe.lookup_tcp])
def test_nxdomain_is_a_result(ctx, lab, lookup):
    a, _ = lookup(ctx, "gone.test", lab.dns)
    assert (a.failure, a.rcode, a.answers) == (Failure.DNS_NXDOMAIN_ERROR, dns.rcode.NXDOMAIN, None)


def test_stub_is_one_any_entry(ctx, lab):
    record = dns_probe.lookup_stub(ctx, "site.test", lab.dns)
    _check_record(record, "golang_net_resolver", tags=("classic", "depth=0"))
    assert (record.query_type, record.failure, record.addresses) == ("ANY", None, ("127.0.0.1",))
    assert record.extra["x_implementation"] == "chokepoint-stub"
    gone = dns_probe.lookup_stub(ctx, "gone.test", lab.dns)
    assert (gone.failure, gone.answers) == (Failure.DNS_NXDOMAIN_ERROR, None)


def test_getaddrinfo_from_hosts_file(ctx):
    record = dns_probe.lookup_getaddrinfo(ctx, "localhost")
    _check_record(record, "getaddrinfo", tags=("classic", "depth=0"))
    assert record.failure is None and set(record.addresses) <= {"127.0.0.1", "::1"} and record.addresses


@pytest.mark.parametrize(
    "behaviour, failure",
    [
        (DnsBehaviour(a=("10.10.34.35",)), None),
        (DnsBehaviour(rcode=dns.rcode.NXDOMAIN), Failure.DNS_NXDOMAIN_ERROR),
        (DnsBehaviour(rcode=dns.rcode.REFUSED), Failure.DNS_REFUSED_ERROR),
        (DnsBehaviour(rcode=dns.rcode.SERVFAIL), Failure.DNS_SERVFAIL_ERROR),
        (DnsBehaviour(rcode=dns.rcode.NOTIMP), Failure.DNS_SERVER_MISBEHAVING),
        (DnsBehaviour(a=()), Failure.DNS_NO_ANSWER),
    ],
)
@pytest.mark.parametrize("lookup", [dns_probe.lookup_udp, dns_probe.lookup_tcp])
def test_lying_resolver_outcomes(ctx, servers, behaviour, failure, lookup):
    liar = servers(LyingDns({"blocked.test": behaviour}))
    a, _ = lookup(ctx, "blocked.test", liar.address)
    assert a.failure == failure
    if failure is None:
        assert a.addresses == ("10.10.34.35",)  # the forged answer is recorded as received


@pytest.mark.parametrize(
    "mode, failure",
    [
        ("drop", Failure.GENERIC_TIMEOUT_ERROR),
        ("garbage", Failure.DNS_SERVER_MISBEHAVING),
        ("wrong-id", Failure.DNS_REPLY_WITH_WRONG_QUERY_ID),
        ("garbage-then-answer", None),  # a bad datagram does not hide the real reply
    ],
)
def test_udp_misbehaviour(short_ctx, servers, mode, failure):
    liar = servers(LyingDns({"blocked.test": DnsBehaviour(mode=mode)}))
    a, _ = dns_probe.lookup_udp(short_ctx, "blocked.test", liar.address, query_types=("A",)) + (None,)
    assert a.failure == failure
    if mode == "drop":
        assert a.t - a.extra["t0"] >= short_ctx.timeout


@pytest.mark.parametrize(
    "mode, failure", [("drop", Failure.GENERIC_TIMEOUT_ERROR), ("garbage", Failure.DNS_SERVER_MISBEHAVING)]
)
def test_tcp_misbehaviour(short_ctx, servers, mode, failure):
    liar = servers(LyingDns({"blocked.test": DnsBehaviour(mode=mode)}))
    (a,) = dns_probe.lookup_tcp(short_ctx, "blocked.test", liar.address, query_types=("A",))
    assert a.failure == failure


def test_stub_retries_truncated_answers_over_tcp(ctx, servers):
    liar = servers(LyingDns({"big.test": DnsBehaviour(a=("127.0.0.7",), mode="truncate")}))
    record = dns_probe.lookup_stub(ctx, "big.test", liar.address)
    assert record.failure is None and record.addresses == ("127.0.0.7",)


def test_closed_port_is_connection_refused(short_ctx):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
    (a,) = dns_probe.lookup_udp(short_ctx, "site.test", (LOOPBACK, port), query_types=("A",))
    (t,) = dns_probe.lookup_tcp(short_ctx, "site.test", (LOOPBACK, port), query_types=("A",))
    assert a.failure == t.failure == Failure.CONNECTION_REFUSED


@pytest.fixture(scope="module")
def doh_ca(tmp_path_factory):
    directory = tmp_path_factory.mktemp("doh-ca")
    ca = LabCA.create()
    ca.save(directory)
    return ca, directory


@pytest.mark.parametrize(
    "mode, failure",
    [("ok", None), ("status", Failure.DNS_SERVER_MISBEHAVING), ("content-type", Failure.DNS_SERVER_MISBEHAVING)],
)
def test_doh(lab, servers, doh_ca, mode, failure):
    ca, directory = doh_ca
    doh = servers(DohServer(lab.dns, ca, directory, mode))
    ctx = ProbeContext(timeout=10, cafile=str(directory / "ca.pem"))
    a, aaaa = dns_probe.lookup_doh(ctx, "site.test", doh.url)
    _check_record(a, "doh")
    assert a.resolver_address == doh.url and doh.requests == 2
    assert a.failure == failure
    if failure is None:
        assert a.addresses == ("127.0.0.1",) and aaaa.failure == Failure.DNS_NO_ANSWER


def test_doh_without_the_ca_is_unknown_authority(lab, servers, doh_ca):
    ca, directory = doh_ca
    doh = servers(DohServer(lab.dns, ca, directory))
    (a,) = dns_probe.lookup_doh(ProbeContext(timeout=10), "site.test", doh.url, query_types=("A",))
    assert a.failure == Failure.SSL_UNKNOWN_AUTHORITY


@pytest.mark.parametrize("url", ["http://127.0.0.1/dns-query", "https:///dns-query", "https://x:99999/"])
def test_bad_doh_url_cannot_run(ctx, url):
    with pytest.raises(ProbeError):
        dns_probe.lookup_doh(ctx, "site.test", url)


def test_bad_query_type_cannot_run(ctx, lab):
    with pytest.raises(ProbeError):
        dns_probe.lookup_udp(ctx, "site.test", lab.dns, query_types=("MX",))


# -- property: whatever bytes come back, decoding yields a reply or a failure string, never an exception --


def _real_exchanges(lab) -> list[tuple[dns.message.Message, bytes]]:
    """(query, real wire reply) pairs from the lab resolver (A, AAAA, NXDOMAIN, NODATA), captured now."""
    pairs = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        for name, kind in (("site.test", "A"), ("site.test", "AAAA"), ("gone.test", "A"), ("x.y.site.test", "MX")):
            query = dns.message.make_query(name, kind, use_edns=0)
            sock.sendto(query.to_wire(), lab.dns)
            pairs.append((query, sock.recv(65535)))
    return pairs


@pytest.fixture(scope="module")
def real_exchanges(lab):
    return _real_exchanges(lab)


_FAILURES = {Failure.DNS_SERVER_MISBEHAVING.value, Failure.DNS_REPLY_WITH_WRONG_QUERY_ID.value}


def test_decode_reply_matches_only_its_query(real_exchanges):
    query, wire = real_exchanges[0]
    assert dns_probe.decode_reply(query, wire).message is not None
    other = dns.message.make_query("other.test", "A")
    other.id = query.id
    assert dns_probe.decode_reply(other, wire).failure == Failure.DNS_REPLY_WITH_WRONG_QUERY_ID
    assert dns_probe.decode_reply(query, wire[:5]).failure == Failure.DNS_SERVER_MISBEHAVING


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_decode_never_raises_on_damaged_replies(real_exchanges, data):
    query, seed = data.draw(st.sampled_from(real_exchanges))
    wire = data.draw(mutations([seed], others=[w for _, w in real_exchanges]))
    reply = dns_probe.decode_reply(query, wire)
    if reply.message is None:
        assert reply.failure in _FAILURES
        return
    failure, answers = dns_probe.reply_outcome(reply.message, None)
    assert failure is None or isinstance(failure, str)
    assert all(a.answer_type in ("A", "AAAA", "CNAME") for a in answers or ())
