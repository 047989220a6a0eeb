"""DNS probes: the system resolver, DNS over UDP and TCP (RFC 1035 §4.2, RFC 7766) and DNS over HTTPS
(RFC 8484), each recorded as OONI df-002 `queries` entries.

Engines, as OONI names them:

- `getaddrinfo`: the C library's resolver (in the lab client namespace it reads
  `/etc/netns/cpk-client/resolv.conf`, i.e. the lab resolver behind the censor). One `ANY` entry holding
  every A and AAAA answer, as OONI records it.
- `golang_net_resolver`: OONI's name for a stub resolver that is not the C library's: it sends A and
  AAAA over UDP to a configured nameserver (TCP when truncated) and records one `ANY` entry. Chokepoint uses
  it when the system resolver is given explicitly (`resolver=IP:PORT`), e.g. a nameserver on a non-standard
  port; OONI's analysis treats both engines as the system resolver (the entry also carries
  `x_implementation: "chokepoint-stub"`).
- `udp`, `tcp`, `doh`: one entry per query type, A and AAAA sharing a transaction id.

Failures are df-007 strings: the rcode (`dns_nxdomain_error`, `dns_refused_error`, ...), `dns_no_answer` for
NOERROR without addresses, `dns_server_misbehaving` for an unparseable reply or a DoH answer that is not
`200 application/dns-message`, `dns_reply_with_wrong_query_id` when only replies to another query arrived,
`generic_timeout_error`. A UDP probe keeps listening after a bad datagram until its deadline, so an injected
garbage reply does not hide the real one (but the first well-formed matching reply wins, as in any stub).
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.exception
import dns.flags
import dns.message
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA

from chokepoint.probe.measurement import DNSAnswer, DNSQuery, Failure, failure_from_exception, failure_from_rcode
from chokepoint.probe.probes.common import ProbeContext, ProbeError, family_of, join_host_port, tls_client_context

__all__ = [
    "DOH_CONTENT_TYPE",
    "ENGINE_DOH",
    "ENGINE_GETADDRINFO",
    "ENGINE_STUB",
    "ENGINE_TCP",
    "ENGINE_UDP",
    "DnsReply",
    "decode_reply",
    "exchange_doh",
    "exchange_tcp",
    "exchange_udp",
    "lookup_doh",
    "lookup_getaddrinfo",
    "lookup_stub",
    "lookup_tcp",
    "lookup_udp",
    "make_query",
    "reply_outcome",
]

ENGINE_GETADDRINFO = "getaddrinfo"
ENGINE_STUB = "golang_net_resolver"
ENGINE_UDP = "udp"
ENGINE_TCP = "tcp"
ENGINE_DOH = "doh"
DOH_CONTENT_TYPE = "application/dns-message"
MAX_UDP = 65535
MAX_DOH_BODY = 65535
EDNS_PAYLOAD = 1232
QUERY_TYPES = ("A", "AAAA")
_LENGTH = struct.Struct("!H")
# dnspython's decoder raises DNSException subclasses for bad wire data; a few malformed names or rdata
# surface as ValueError / UnicodeError / struct.error / IndexError from deeper layers.
_DECODE_ERRORS = (dns.exception.DNSException, ValueError, UnicodeError, struct.error, IndexError)


@dataclass(frozen=True, slots=True)
class DnsReply:
    """A decoded reply, or the failure that replaced it."""

    message: dns.message.Message | None
    failure: str | None


def make_query(hostname: str, query_type: str, *, zero_id: bool = False) -> dns.message.Message:
    """A recursive query with EDNS0 (payload 1232); `zero_id` for DoH (RFC 8484 §4.1)."""
    try:
        query = dns.message.make_query(hostname, query_type, use_edns=0, payload=EDNS_PAYLOAD)
    except _DECODE_ERRORS as exc:
        raise ProbeError(f"cannot build a DNS query for {hostname!r} {query_type}: {exc}") from None
    if zero_id:
        query.id = 0
    return query


def decode_reply(query: dns.message.Message, wire: bytes) -> DnsReply:
    """Decode `wire` as the reply to `query`: `dns_server_misbehaving` when it is not DNS,
    `dns_reply_with_wrong_query_id` when it answers another query (id or question differ)."""
    try:
        message = dns.message.from_wire(wire)
    except _DECODE_ERRORS:
        return DnsReply(None, Failure.DNS_SERVER_MISBEHAVING.value)
    try:
        matches = query.is_response(message)
    except _DECODE_ERRORS:
        matches = False
    if not matches:
        return DnsReply(None, Failure.DNS_REPLY_WITH_WRONG_QUERY_ID.value)
    return DnsReply(message, None)


def _answers(message: dns.message.Message, query_type: str | None) -> tuple[DNSAnswer, ...]:
    """Class-IN A, AAAA and CNAME records of the answer section (only `query_type`'s addresses when
    given); records of another class carry no address even when their type number says A."""
    out = []
    for rrset in message.answer:
        for rdata in rrset:
            if isinstance(rdata, (dns.rdtypes.IN.A.A, dns.rdtypes.IN.AAAA.AAAA)):
                kind = "A" if isinstance(rdata, dns.rdtypes.IN.A.A) else "AAAA"
                if query_type in (None, kind):
                    field = "ipv4" if kind == "A" else "ipv6"
                    out.append(DNSAnswer(kind, **{field: rdata.address}, ttl=rrset.ttl))
            elif isinstance(rdata, dns.rdtypes.ANY.CNAME.CNAME):
                out.append(DNSAnswer("CNAME", hostname=rdata.target.to_text(), ttl=rrset.ttl))
    return tuple(out)


def reply_outcome(
    message: dns.message.Message, query_type: str | None
) -> tuple[str | None, tuple[DNSAnswer, ...] | None]:
    """(failure, answers) of a decoded reply: the rcode's failure, or dns_no_answer without any address
    (`query_type` None: addresses of both families)."""
    failure = failure_from_rcode(message.rcode())
    if failure is not None:
        return failure, None
    answers = _answers(message, query_type)
    if not any(a.address for a in answers):
        return Failure.DNS_NO_ANSWER.value, answers or None
    return None, answers


class _Deadline:
    __slots__ = ("end",)

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline expired")
        return left


def exchange_udp(query: dns.message.Message, server: tuple[str, int], timeout: float) -> DnsReply:
    """Send `query` over UDP and wait for a matching reply until `timeout` (ignoring bad datagrams)."""
    deadline = _Deadline(timeout)
    bad: str | None = None
    try:
        with socket.socket(family_of(server[0]), socket.SOCK_DGRAM) as sock:
            sock.connect(server)  # connected: an ICMP port unreachable becomes ECONNREFUSED
            sock.send(query.to_wire())
            while True:
                sock.settimeout(deadline.remaining())
                reply = decode_reply(query, sock.recv(MAX_UDP))
                if reply.message is not None:
                    return reply
                bad = reply.failure
    except OSError as exc:  # TimeoutError (socket.timeout) included
        if bad is not None and isinstance(exc, TimeoutError):
            return DnsReply(None, bad)
        return DnsReply(None, failure_from_exception(exc))


def _recv_exactly(sock: socket.socket, size: int, deadline: _Deadline) -> bytes:
    data = bytearray()
    while len(data) < size:
        sock.settimeout(deadline.remaining())
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the server closed the connection")
        data += chunk
    return bytes(data)


def exchange_tcp(query: dns.message.Message, server: tuple[str, int], timeout: float) -> DnsReply:
    """RFC 7766: one query with the 2-byte length prefix on a fresh connection."""
    deadline = _Deadline(timeout)
    wire = query.to_wire()
    try:
        with socket.create_connection(server, timeout=deadline.remaining()) as sock:
            sock.settimeout(deadline.remaining())
            sock.sendall(_LENGTH.pack(len(wire)) + wire)
            (length,) = _LENGTH.unpack(_recv_exactly(sock, 2, deadline))
            return decode_reply(query, _recv_exactly(sock, length, deadline))
    except (OSError, EOFError) as exc:
        return DnsReply(None, failure_from_exception(exc))


def exchange_doh(query: dns.message.Message, url: str, timeout: float, cafile: str | None) -> DnsReply:
    """RFC 8484 POST of `query` to `url` (https only, §5); the reply must be 200 application/dns-message."""
    parts = urlsplit(url)
    deadline = _Deadline(timeout)
    context = tls_client_context(cafile)
    try:
        connection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port or 443, timeout=deadline.remaining(), context=context
        )
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request(
                "POST",
                path,
                body=query.to_wire(),
                headers={"Content-Type": DOH_CONTENT_TYPE, "Accept": DOH_CONTENT_TYPE},
            )
            response = connection.getresponse()
            body = response.read(MAX_DOH_BODY + 1)
            content_type = (response.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()
        finally:
            connection.close()
    except (OSError, http.client.HTTPException, EOFError) as exc:
        return DnsReply(None, failure_from_exception(exc))
    if response.status != 200 or content_type != DOH_CONTENT_TYPE or len(body) > MAX_DOH_BODY:
        return DnsReply(None, Failure.DNS_SERVER_MISBEHAVING.value)
    return decode_reply(query, body)


def _check_doh_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ProbeError(f"bad DoH URL {url!r}: {exc}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise ProbeError(f"bad DoH URL {url!r}: RFC 8484 needs an https:// URL with a host")


def _record(
    ctx: ProbeContext,
    hostname: str,
    query_type: str,
    engine: str,
    address: str,
    t0: float,
    reply: DnsReply,
    tags: Iterable[str],
    transaction_id: int,
) -> DNSQuery:
    failure, answers = (reply.failure, None) if reply.message is None else reply_outcome(reply.message, query_type)
    rcode = int(reply.message.rcode()) if reply.message is not None else None
    return DNSQuery(
        hostname,
        query_type,
        engine,
        failure,
        answers,
        address,
        None,
        None,
        rcode,
        ctx.clock.now(),
        tuple(tags),
        transaction_id,
        {"t0": t0},
    )


def _lookup(
    ctx: ProbeContext,
    hostname: str,
    query_types: Iterable[str],
    engine: str,
    address: str,
    exchange,
    tags: Iterable[str],
    transaction_id: int | None,
    zero_id: bool = False,
) -> tuple[DNSQuery, ...]:
    txid = ctx.transaction_id() if transaction_id is None else transaction_id
    records = []
    for query_type in query_types:
        if query_type not in QUERY_TYPES:
            raise ProbeError(f"query type {query_type!r} is not one of {', '.join(QUERY_TYPES)}")
        query = make_query(hostname, query_type, zero_id=zero_id)
        t0 = ctx.clock.now()
        records.append(_record(ctx, hostname, query_type, engine, address, t0, exchange(query), tags, txid))
    return tuple(records)


def lookup_udp(
    ctx: ProbeContext,
    hostname: str,
    server: tuple[str, int],
    *,
    query_types: Iterable[str] = QUERY_TYPES,
    tags: Iterable[str] = ("depth=0",),
    transaction_id: int | None = None,
) -> tuple[DNSQuery, ...]:
    """DNS over UDP to `server` (ip, port): one record per query type."""
    return _lookup(
        ctx,
        hostname,
        query_types,
        ENGINE_UDP,
        join_host_port(*server),
        lambda q: exchange_udp(q, server, ctx.timeout),
        tags,
        transaction_id,
    )


def lookup_tcp(
    ctx: ProbeContext,
    hostname: str,
    server: tuple[str, int],
    *,
    query_types: Iterable[str] = QUERY_TYPES,
    tags: Iterable[str] = ("depth=0",),
    transaction_id: int | None = None,
) -> tuple[DNSQuery, ...]:
    """DNS over TCP to `server` (ip, port): one record per query type."""
    return _lookup(
        ctx,
        hostname,
        query_types,
        ENGINE_TCP,
        join_host_port(*server),
        lambda q: exchange_tcp(q, server, ctx.timeout),
        tags,
        transaction_id,
    )


def lookup_doh(
    ctx: ProbeContext,
    hostname: str,
    url: str,
    *,
    query_types: Iterable[str] = QUERY_TYPES,
    tags: Iterable[str] = ("depth=0",),
    transaction_id: int | None = None,
) -> tuple[DNSQuery, ...]:
    """DNS over HTTPS (RFC 8484 POST) to `url`: one record per query type."""
    _check_doh_url(url)
    return _lookup(
        ctx,
        hostname,
        query_types,
        ENGINE_DOH,
        url,
        lambda q: exchange_doh(q, url, ctx.timeout, ctx.cafile),
        tags,
        transaction_id,
        zero_id=True,
    )


def _merge_any(
    hostname: str,
    engine: str,
    address: str,
    parts: list[DNSQuery],
    t0: float,
    t: float,
    tags: tuple[str, ...],
    txid: int,
    extra: dict,
) -> DNSQuery:
    """One ANY entry from the A and AAAA lookups, as getaddrinfo would report them: the addresses of both;
    a failure only when neither produced an address (an rcode failure before dns_no_answer)."""
    answers = tuple(a for p in parts for a in p.answers or () if a.address)
    failure = None
    if not answers:
        failures = [p.failure for p in parts if p.failure]
        failure = next((f for f in failures if f != Failure.DNS_NO_ANSWER), None) or (
            failures[0] if failures else Failure.DNS_NO_ANSWER.value
        )
    return DNSQuery(
        hostname, "ANY", engine, failure, answers or None, address, None, None, None, t, tags, txid, {"t0": t0, **extra}
    )


def lookup_stub(
    ctx: ProbeContext,
    hostname: str,
    server: tuple[str, int],
    *,
    tags: Iterable[str] = ("classic", "depth=0"),
    transaction_id: int | None = None,
) -> DNSQuery:
    """The system resolver as a stub to `server`: A and AAAA over UDP (over TCP when truncated),
    recorded as one `golang_net_resolver` ANY entry."""
    txid = ctx.transaction_id() if transaction_id is None else transaction_id
    t0 = ctx.clock.now()
    parts = []
    for query_type in QUERY_TYPES:
        query = make_query(hostname, query_type)
        reply = exchange_udp(query, server, ctx.timeout)
        if reply.message is not None and reply.message.flags & dns.flags.TC:
            reply = exchange_tcp(query, server, ctx.timeout)
        parts.append(_record(ctx, hostname, query_type, ENGINE_STUB, "", t0, reply, (), txid))
    return _merge_any(
        hostname,
        ENGINE_STUB,
        join_host_port(*server),
        parts,
        t0,
        ctx.clock.now(),
        tuple(tags),
        txid,
        {"x_implementation": "chokepoint-stub"},
    )


def _getaddrinfo(hostname: str, timeout: float) -> list[str]:
    """libc getaddrinfo in a daemon thread, abandoned after `timeout` (it has no timeout of its own)."""
    box: dict[str, object] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["result"] = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name=f"getaddrinfo {hostname}", daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"getaddrinfo({hostname!r}) did not return within {timeout:g} s")
    error = box.get("error")
    if isinstance(error, UnicodeError):
        raise ProbeError(f"{hostname!r} cannot be encoded as a DNS name: {error}")
    if isinstance(error, OSError):
        raise error
    addresses: list[str] = []
    for family, _, _, _, sockaddr in box["result"]:  # type: ignore[union-attr]
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in addresses:
            addresses.append(sockaddr[0].split("%", 1)[0])
    return addresses


def lookup_getaddrinfo(
    ctx: ProbeContext, hostname: str, *, tags: Iterable[str] = ("classic", "depth=0"), transaction_id: int | None = None
) -> DNSQuery:
    """The C library's resolver: one ANY entry (no TTLs: getaddrinfo does not expose them)."""
    txid = ctx.transaction_id() if transaction_id is None else transaction_id
    t0 = ctx.clock.now()
    try:
        addresses = _getaddrinfo(hostname, ctx.timeout)
    except OSError as exc:
        return DNSQuery(
            hostname,
            "ANY",
            ENGINE_GETADDRINFO,
            failure_from_exception(exc),
            None,
            "",
            None,
            None,
            None,
            ctx.clock.now(),
            tuple(tags),
            txid,
            {"t0": t0},
        )
    answers = tuple(DNSAnswer("AAAA", ipv6=a) if ":" in a else DNSAnswer("A", ipv4=a) for a in addresses)
    failure = None if answers else Failure.DNS_NO_ANSWER.value
    return DNSQuery(
        hostname,
        "ANY",
        ENGINE_GETADDRINFO,
        failure,
        answers or None,
        "",
        None,
        None,
        None,
        ctx.clock.now(),
        tuple(tags),
        txid,
        {"t0": t0},
    )
