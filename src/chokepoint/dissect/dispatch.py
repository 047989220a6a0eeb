"""Which dissector sees which bytes, and what a flow has been found to be.

The dispatcher is the only place that knows the dissectors; each dissector module only parses bytes.
Per flow it keeps the set of protocols still possible for each direction, feeds them the reassembled
stream (or the single segment, when a profile switches reassembly off) and the first UDP datagrams,
and records typed results in a ``FlowFacts``. Three outcomes stay distinct and are counted:
a match, "not this protocol" (the candidate is dropped) and "malformed" (counted per dissector).

Proxy tunnels: once a SOCKS CONNECT request or an HTTP CONNECT request is complete, the client's bytes after it
are the tunnelled stream (``Tunnel``); a TLS ClientHello or an HTTP request found there is recorded as the flow's
``tls`` / ``http`` (the rules' ``tls.sni`` / ``http.host`` see the inner name, as a censor reading the stream
does), and ``tunnel`` keeps the proxy's target. The flow's ``app_proto`` stays the proxy protocol.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chokepoint.appproto import AppProto
from chokepoint.dissect import (
    dns,
    fet,
    http,
    ipsec,
    midstream,
    openvpn,
    pptp,
    quic,
    quic_midstream,
    socks,
    ssh,
    tls,
    tlsintls,
    tor,
    wireguard,
)
from chokepoint.dissect.dns import DnsMessage
from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol
from chokepoint.dissect.tlsintls import TlsInTls
from chokepoint.dissect.wireguard import WireGuardMessage
from chokepoint.packet.record import AH, ESP, GRE, ICMP, ICMPV6

C2S, S2C = 0, 1
#: Messages of each kind kept per flow (DNS queries/answers, WireGuard/OpenVPN packets).
MAX_KEPT = 8
#: Datagrams per direction that UDP dissectors look at before giving up.
MAX_UDP_PROBES = 6

DNS_PORTS = frozenset({53, 5353, 5355})
IKE_PORTS = frozenset({500, 4500})


@dataclass(frozen=True, slots=True)
class Tunnel:
    """A proxy tunnel: the handshake (``kind`` socks or http-connect) asked for ``host``:``port``; the tunnelled
    client bytes start at ``offset`` of the client's stream; ``inner`` is what they were found to be (tls,
    http, other; empty until decided)."""

    kind: str
    host: str | None
    port: int | None
    offset: int
    inner: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": f"{self.host}:{self.port}", "inner": self.inner or None}


@dataclass(slots=True)
class FlowFacts:
    """Everything the dissectors found in one flow (typed results of each dissector module)."""

    app_proto: str = AppProto.UNKNOWN.value
    decided: bool = False
    tcp_candidates: set[str] = field(default_factory=lambda: set(TCP_CLIENT_FIRST))
    dns: list[DnsMessage] = field(default_factory=list)  # both directions
    http: Any = None  # http.HttpRequest (first request)
    http_response: Any = None  # http.HttpResponse (first response)
    tls: Any = None  # tls.ClientHello
    tls_server: Any = None  # tls.ServerHello
    tls_midstream: bool = False  # TLS records without a ClientHello (capture began late, or one side only)
    tls_next_header: list[int | None] = field(default_factory=lambda: [None, None])  # see on_tcp_beyond_stream
    tls_shape: Any = None  # tlsintls.TlsShape while the TLS-in-TLS detector still looks (see on_tls_segment)
    tls_in_tls: TlsInTls | None = None  # an encapsulated TLS handshake was found
    quic: Any = None  # quic.QuicInfo
    quic_assembler: Any = None
    quic_seen: Any = None  # quic_midstream.QuicSighting: QUIC without a decrypted client Initial
    udp_heads: Any = None  # ([heads], [lengths]) per direction, for the short-header test (UDP/443 only)
    ssh_client: Any = None
    ssh_server: Any = None
    socks: Any = None
    tunnel: Tunnel | None = None  # a SOCKS / HTTP CONNECT tunnel and what it carries
    openvpn: str | None = None  # detection reason
    openvpn_pkts: tuple[list[bytes], list[bytes]] = field(default_factory=lambda: ([], []))  # raw payloads
    wireguard: tuple[list[WireGuardMessage], list[WireGuardMessage]] = field(default_factory=lambda: ([], []))
    ike: Any = None
    esp: Any = None
    pptp: Any = None
    tor: str | None = None  # evidence that the TLS hello is Tor's
    fet: Any = None  # fet.FetResult on the first client data packet
    udp_probes: list[int] = field(default_factory=lambda: [0, 0])
    malformed: Counter[str] = field(default_factory=Counter)

    def decide(self, proto: AppProto | str) -> None:
        self.app_proto = str(proto)
        self.decided = True

    @property
    def undetermined(self) -> bool:
        """No dissector has recognised the flow (``unknown``, or ``fully-encrypted`` by the FET test alone)."""
        return self.app_proto in _UNDETERMINED


#: Labels that say only that no dissector recognised the flow; mid-connection evidence may still replace them.
_UNDETERMINED = frozenset({AppProto.UNKNOWN.value, AppProto.FULLY_ENCRYPTED.value})


#: Protocols whose result is refined as more client bytes arrive (headers, the SOCKS request).
_REFINED = frozenset({AppProto.HTTP, AppProto.HTTP_CONNECT, AppProto.SOCKS})

#: TCP protocols recognised from the client's first bytes, in the order they are tried.
TCP_CLIENT_FIRST: tuple[str, ...] = ("tls", "http", "ssh", "socks", "pptp", "openvpn", "dns")


def new_facts() -> FlowFacts:
    return FlowFacts()


def on_ip_only(facts: FlowFacts, proto: int, payload: bytes) -> None:
    """Flows that are not TCP/UDP are labelled by IP protocol (ESP/AH headers parsed for evidence)."""
    if facts.decided:
        return
    if proto == ESP:
        facts.esp = _try(facts, "ipsec", ipsec.parse_esp, payload)
        facts.decide(AppProto.IPSEC)
    elif proto == AH:
        facts.esp = _try(facts, "ipsec", ipsec.parse_ah, payload)
        facts.decide(AppProto.IPSEC)
    elif proto == GRE:
        facts.decide(AppProto.GRE)
    elif proto in (ICMP, ICMPV6):
        facts.decide(AppProto.ICMP)


def on_first_client_payload(facts: FlowFacts, payload: bytes) -> None:
    """The fully-encrypted test looks at the client's first data packet as sent, never reassembled
    (Wu et al., USENIX Security 2023, section 4).

    ``app_proto`` follows one rule (docs/architecture.md, "app_proto"): a protocol a dissector recognised, else
    ``fully-encrypted`` when this test says so, else ``unknown``. So an undecided flow reads ``fully-encrypted``
    from its first packet on, and a ``fully_encrypted.verdict`` of true never comes with ``unknown``."""
    facts.fet = fet.classify_first_packet(payload)
    if facts.undetermined:
        facts.app_proto = _undetermined_label(facts)


def _undetermined_label(facts: FlowFacts) -> str:
    return (
        AppProto.FULLY_ENCRYPTED.value
        if facts.fet is not None and facts.fet.fully_encrypted
        else AppProto.UNKNOWN.value
    )


def partial_reason(facts: FlowFacts) -> str | None:
    """Why the flow's label rests on less than the client's opening message, or None when it does not.

    ``tls``/``tor`` without a ClientHello (records mid-connection, or the server's side only), ``http`` without
    the request, ``quic`` without a decrypted client Initial, ``ssh`` from the server's banner alone."""
    proto = facts.app_proto
    if proto in (AppProto.TLS, AppProto.TOR) and facts.tls is None:
        return "tls: no ClientHello seen (TLS records or ServerHello only)"
    if proto in (AppProto.HTTP, AppProto.HTTP_CONNECT) and facts.http is None:
        return "http: a response without its request"
    if proto == AppProto.QUIC and facts.quic is None:
        evidence = facts.quic_seen.evidence if facts.quic_seen is not None else "client Initial incomplete"
        return f"quic: no client Initial decrypted ({evidence})"
    if proto == AppProto.SSH and facts.ssh_client is None:
        return "ssh: the server's banner only"
    return None


def on_tcp_data(facts: FlowFacts, direction: int, data: bytes, server_port: int) -> None:
    """Dissect TCP bytes: ``data`` is the reassembled stream so far, or the segment alone."""
    if direction == C2S:
        _tcp_client(facts, data, server_port)
    else:
        _tcp_server(facts, data)


def _tcp_client(facts: FlowFacts, data: bytes, server_port: int) -> None:
    if facts.app_proto == AppProto.SSH and facts.ssh_client is None:  # the server spoke first
        facts.ssh_client = _try(facts, "ssh", ssh.parse_banner, data)
        return
    if facts.tunnel is not None:
        _tunnelled(facts, data)
        return
    if facts.decided and facts.app_proto not in _REFINED:
        if facts.undetermined:
            _tls_midstream(facts, data, C2S)
        elif facts.tls_shape is not None and facts.tls_shape.client_start is None:
            facts.tls_shape.client_start = tlsintls.client_app_start(tls.tls_record_stats(data).records)
        return
    for name in [c for c in TCP_CLIENT_FIRST if c in facts.tcp_candidates]:
        try:
            if name == "tls":
                try:
                    ch = tls.parse_client_hello_records(data)
                except NotThisProtocol:
                    if not _tls_midstream(facts, data, C2S):
                        raise
                    facts.tcp_candidates = {name}
                    return
                facts.tls = ch
                facts.tor = tor.tor_evidence(ch)
                facts.decide(AppProto.TOR if facts.tor else AppProto.TLS)
                facts.tls_shape = tlsintls.TlsShape()
            elif name == "http":
                _http_request(facts, data)
            elif name == "ssh":
                facts.ssh_client = ssh.parse_banner(data)
                facts.decide(AppProto.SSH)
            elif name == "socks":
                facts.socks = socks.parse_client(data)
                facts.decide(AppProto.SOCKS)
                if facts.socks.command is None:  # greeting only: the request (destination) follows
                    raise NeedMoreData("SOCKS request not seen yet")
                if facts.socks.command == 1:  # CONNECT: what follows is the tunnelled stream
                    r = facts.socks
                    facts.tunnel = Tunnel("socks", r.dst_host, r.dst_port, r.header_length)
                    facts.tcp_candidates = {name}
                    _tunnelled(facts, data)
                    return
            elif name == "pptp":
                facts.pptp = pptp.parse_control(data)
                facts.decide(AppProto.PPTP)
            elif name == "openvpn":
                _openvpn_tcp(facts, C2S, data)
            elif name == "dns":
                if server_port not in DNS_PORTS:
                    raise NotThisProtocol("DNS over TCP only on DNS ports")
                facts.dns = list(dns.parse_tcp_stream(data)[:MAX_KEPT])
                facts.decide(AppProto.DNS)
        except NeedMoreData:
            if facts.decided:  # recognised, still refining: only this dissector sees later bytes
                facts.tcp_candidates = {name}
                return
            continue
        except NotThisProtocol:
            facts.tcp_candidates.discard(name)
            continue
        except Malformed:
            facts.malformed[name] += 1
            facts.tcp_candidates.discard(name)
            continue
        if facts.decided:
            facts.tcp_candidates = {name}
            return
    if not facts.decided and "tls" not in facts.tcp_candidates and _tls_midstream(facts, data, C2S):
        return  # records that chain only once more bytes came (the capture began inside a record)
    if not facts.tcp_candidates and not facts.decided:
        facts.decide(_undetermined_label(facts))


def _tls_midstream(facts: FlowFacts, data: bytes, direction: int = C2S) -> bool:
    """TLS records without a ClientHello (a capture that began after the handshake, or one side of it): decide
    ``tls`` (marked partial, see :func:`partial_reason`) when the records chain (dissect/midstream.py)."""
    if midstream.find_record_chain(data) is None:
        facts.tls_next_header[direction] = midstream.next_header_offset(data)
        return False
    facts.tls_midstream = True
    facts.decide(AppProto.TLS)
    return True


def on_tls_segment(facts: FlowFacts, direction: int, ts: float, offset: int, length: int) -> None:
    """A data segment of a TLS flow for the TLS-in-TLS detector (dissect/tlsintls.py): its time, direction,
    offset from the direction's first byte and length. The engine calls it while ``facts.tls_shape`` is set."""
    shape = facts.tls_shape
    shape.add(ts, direction, offset, length)
    shape.evaluate()
    if shape.done:
        facts.tls_in_tls = shape.result
        facts.tls_shape = None


def tls_in_tls_result(facts: FlowFacts) -> tlsintls.TlsInTls | None:
    """The detector's finding at the end of the flow (a window still open is compared with what came)."""
    if facts.tls_shape is not None:
        facts.tls_in_tls = facts.tls_shape.evaluate(final=True)
        facts.tls_shape = None
    return facts.tls_in_tls


def on_tcp_beyond_stream(facts: FlowFacts, direction: int, offset: int, segment: bytes) -> None:
    """A segment past the reassembled bytes (``offset`` from the first byte of the direction): when a single
    TLS record header was found whose record ran past them, check the next header where it must start."""
    expected = facts.tls_next_header[direction]
    if expected is None or not (facts.undetermined or not facts.decided):
        return
    if offset > expected:  # the segment that carried it was not seen
        facts.tls_next_header[direction] = None
        return
    start = expected - offset
    if start + 5 > len(segment):
        return
    facts.tls_next_header[direction] = None
    if midstream.plausible_header(segment[start : start + 5]):
        facts.tls_midstream = True
        facts.decide(AppProto.TLS)


def _http_request(facts: FlowFacts, data: bytes) -> None:
    try:
        req = http.parse_request(data)
    except NeedMoreData:
        if not http.looks_like_request(data):
            raise
        req = http.parse_request(data, partial=True)
    facts.http = req
    facts.decide(AppProto.HTTP_CONNECT if req.is_connect else AppProto.HTTP)
    if not req.complete:
        raise NeedMoreData("HTTP headers incomplete")  # keep refining as more bytes arrive
    if req.is_connect:
        facts.tunnel = Tunnel("http-connect", req.host, req.port, req.header_length)
        _tunnelled(facts, data)


#: Tunnelled bytes looked at before giving up on recognising them.
TUNNEL_PEEK = 4096


def _tunnelled(facts: FlowFacts, data: bytes) -> None:
    """The client bytes after a proxy handshake: a TLS ClientHello (its SNI is the flow's) or an HTTP request
    (its Host is), recognised once; anything else leaves the tunnel ``other``."""
    tunnel = facts.tunnel
    assert tunnel is not None  # set by the proxy handshake that calls this
    inner = data[tunnel.offset :]
    if tunnel.inner or not inner:
        return
    try:
        ch = tls.parse_client_hello_records(inner)
    except NeedMoreData:
        if len(inner) < TUNNEL_PEEK:
            return
    except NotThisProtocol:
        pass
    except Malformed:
        facts.malformed["tls"] += 1
    else:
        facts.tls = ch
        facts.tor = tor.tor_evidence(ch)
        facts.tunnel = Tunnel(tunnel.kind, tunnel.host, tunnel.port, tunnel.offset, "tls")
        return
    if http.looks_like_request(inner):
        try:
            req = http.parse_request(inner)
        except NeedMoreData:
            if len(inner) < TUNNEL_PEEK:
                return
            req = http.parse_request(inner, partial=True)
        except (NotThisProtocol, Malformed):
            req = None
        if req is not None:
            facts.http = req
            facts.tunnel = Tunnel(tunnel.kind, tunnel.host, tunnel.port, tunnel.offset, "http")
            return
    facts.tunnel = Tunnel(tunnel.kind, tunnel.host, tunnel.port, tunnel.offset, "other")


def _openvpn_tcp(facts: FlowFacts, direction: int, data: bytes) -> None:
    facts.openvpn_pkts[direction][:] = [data]  # the stream so far; detect() splits on the length prefix
    if direction == C2S:
        openvpn.parse_tcp(data)  # NotThisProtocol / NeedMoreData / Malformed
    reason = openvpn.detect(*facts.openvpn_pkts, transport="tcp")
    if not reason:
        raise NeedMoreData("OpenVPN needs more packets or the peer's answer")
    facts.openvpn = reason
    facts.decide(AppProto.OPENVPN)


def _tcp_server(facts: FlowFacts, data: bytes) -> None:
    if facts.ssh_server is None and data[:4] == b"SSH-":
        facts.ssh_server = _try(facts, "ssh", lambda d: ssh.parse_banner(d, server=True), data)
        if facts.ssh_server is not None and not facts.decided:
            facts.decide(AppProto.SSH)
    if facts.tls_server is None and tls.looks_like_tls_record(data):
        facts.tls_server = _try(facts, "tls", tls.parse_server_hello_records, data)
        if facts.tls_server is not None and (not facts.decided or facts.undetermined):
            facts.decide(AppProto.TLS)
    if facts.http_response is None and (facts.http is not None or not facts.decided or facts.undetermined):
        if facts.http is not None:
            facts.http_response = _try(facts, "http", http.parse_response, data) if data[:5] == b"HTTP/" else None
        else:  # no request seen: a response from the server's side only, or from mid-connection
            facts.http_response = midstream.find_http_response(data)
            if facts.http_response is not None:
                facts.decide(AppProto.HTTP)
    if (not facts.decided or facts.undetermined) and facts.tls_server is None and not facts.tls_midstream:
        _tls_midstream(facts, data, S2C)
    if "openvpn" in facts.tcp_candidates and not facts.decided:
        try:
            _openvpn_tcp(facts, S2C, data)
        except (NeedMoreData, NotThisProtocol, Malformed):
            pass


def on_udp_datagram(facts: FlowFacts, direction: int, data: bytes, client_port: int, server_port: int) -> None:
    """Dissect one UDP datagram (only the first few per direction are offered)."""
    facts.udp_probes[direction] += 1
    ports = (client_port, server_port)
    if (facts.app_proto == AppProto.DNS or not facts.decided) and (
        client_port in DNS_PORTS or server_port in DNS_PORTS
    ):
        msg = _try(facts, "dns", dns.parse_message, data)
        if msg is not None:
            if len(facts.dns) < MAX_KEPT:
                facts.dns.append(msg)
            facts.decide(AppProto.DNS)
            return
    if facts.decided and facts.app_proto != AppProto.QUIC and not facts.undetermined:
        return
    if direction == C2S and (facts.quic is None) and quic.is_quic_initial_prefix(data):
        if facts.quic_assembler is None:
            facts.quic_assembler = quic.InitialAssembler()
        info = _try(facts, "quic", facts.quic_assembler.feed, data)
        if info is not None:
            facts.quic = info
            facts.decide(AppProto.QUIC)
            return
    if facts.quic is None and (not facts.decided or facts.undetermined or facts.quic_seen is None):
        sighting = quic_midstream.long_header_sighting(data)
        if sighting is not None:
            _quic_seen(facts, sighting)
            return
    if facts.decided and not facts.undetermined:
        return
    if server_port in quic_midstream.SHORT_HEADER_PORTS and _short_headers(facts, direction, data):
        return
    if facts.decided:
        return
    if IKE_PORTS & set(ports):
        # On the IKE ports a header with out-of-range fields is still IKE (nDPI agrees): parse leniently,
        # the anomalies are kept on the header.
        parse = ipsec.parse_udp_4500 if 4500 in ports else ipsec.parse_isakmp
        parsed = _try(facts, "ike", lambda d: parse(d, strict=False), data)
        if parsed is not None:
            if getattr(parsed, "is_esp", False):
                facts.esp = parsed
                facts.decide(AppProto.IPSEC)
            else:
                facts.ike = parsed
                facts.decide(AppProto.IKE)
            return
    wg = _try(facts, "wireguard", wireguard.parse_message, data)
    if wg is not None and len(facts.wireguard[direction]) < MAX_KEPT:
        facts.wireguard[direction].append(wg)
        if wireguard.confirm_flow(*facts.wireguard):
            facts.decide(AppProto.WIREGUARD)
            return
    if _try(facts, "openvpn", openvpn.parse_udp, data) is not None and len(facts.openvpn_pkts[direction]) < MAX_KEPT:
        facts.openvpn_pkts[direction].append(data)
        reason = openvpn.detect(*facts.openvpn_pkts, transport="udp")
        if reason:
            facts.openvpn = reason
            facts.decide(AppProto.OPENVPN)
            return
    if min(facts.udp_probes) >= MAX_UDP_PROBES or sum(facts.udp_probes) >= 2 * MAX_UDP_PROBES:
        facts.decide(AppProto.UNKNOWN)


def _quic_seen(facts: FlowFacts, sighting: quic_midstream.QuicSighting) -> None:
    if facts.quic_seen is None or facts.quic_seen.version is None:
        facts.quic_seen = sighting
    facts.decide(AppProto.QUIC)


def _short_headers(facts: FlowFacts, direction: int, data: bytes) -> bool:
    """Keep the heads of a UDP/443 flow's first datagrams; decide QUIC when one direction's short headers pass
    ``quic_midstream.short_header_sighting``."""
    if facts.udp_heads is None:
        facts.udp_heads = (([], []), ([], []))
    heads, lengths = facts.udp_heads[direction]
    if len(heads) >= MAX_UDP_PROBES or not data:
        return False
    heads.append(data[: quic_midstream.SHORT_HEADER_BYTES])
    lengths.append(len(data))
    sighting = quic_midstream.short_header_sighting(heads, lengths)
    if sighting is None:
        return False
    _quic_seen(facts, sighting)
    return True


_T = TypeVar("_T")


def _try(facts: FlowFacts, name: str, parse: Callable[[bytes], _T], data: bytes) -> _T | None:
    """Run one parser; ``None`` for "not this / need more", malformed input counted per dissector."""
    try:
        return parse(data)
    except (NotThisProtocol, NeedMoreData):
        return None
    except Malformed:
        facts.malformed[name] += 1
        return None
