"""The one table of what a rule may test: field name -> MatchInput fact, kind, operators.

The schema (``schema.py``), the condition parser (``conditions.py``), the compiler (``compiler.py``) and
the generated docs (``fields_markdown()``) all read ``FIELDS``; nothing else lists the fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from operator import attrgetter
from typing import Any

from chokepoint.appproto import AppProto
from chokepoint.policy.input import MatchInput
from chokepoint.policy.values import encap_label


class Kind(StrEnum):
    """How a field is matched; decides its operators, list kinds and index."""

    DOMAIN = "domain"  # a DNS name: exact, label-boundary suffix, keyword, regex, domain lists
    TEXT = "text"  # free text: exact, keyword (substring), regex, keyword/string lists
    ENUM = "enum"  # one of a fixed vocabulary
    STRING = "string"  # an opaque token (JA3 hash, method, ALPN id): exact, string lists
    IP = "ip"  # an address: CIDRs, cidr lists (IPv4 and IPv6)
    PORT = "port"  # a port: ports and "lo-hi" ranges
    INT = "int"  # an integer: in, lt, le, gt, ge
    BOOL = "bool"  # a flag: is
    BYTES = "bytes"  # a payload: hex prefix, hex at an offset, byte regex


#: Operators each kind accepts (the first is the default a bare value means, where a kind has one).
OPERATORS: dict[Kind, tuple[str, ...]] = {
    Kind.DOMAIN: ("exact", "suffix", "keyword", "regex", "in_list"),
    Kind.TEXT: ("exact", "keyword", "regex", "in_list"),
    Kind.ENUM: ("in",),
    Kind.STRING: ("in", "in_list"),
    Kind.IP: ("in", "in_list"),
    Kind.PORT: ("in",),
    Kind.INT: ("in", "lt", "le", "gt", "ge"),
    Kind.BOOL: ("is",),
    Kind.BYTES: ("prefix", "at", "regex"),
}

#: Operator a bare value stands for (``transport: tcp`` is ``transport: {in: [tcp]}``); None: no shorthand.
SHORTHAND: dict[Kind, str | None] = {
    Kind.DOMAIN: None,
    Kind.TEXT: None,
    Kind.BYTES: None,
    Kind.ENUM: "in",
    Kind.STRING: "in",
    Kind.IP: "in",
    Kind.PORT: "in",
    Kind.INT: "in",
    Kind.BOOL: "is",
}

#: List kinds ``in_list`` accepts, by field kind (a keyword list on a domain field matches substrings).
LIST_KINDS: dict[Kind, tuple[str, ...]] = {
    Kind.DOMAIN: ("domain", "keyword", "string"),
    Kind.TEXT: ("keyword", "string"),
    Kind.STRING: ("string",),
    Kind.IP: ("cidr",),
}

#: Prefilter preference: an ``all`` is indexed by its most selective child (lower rank first).
ANCHOR_RANK: dict[Kind, int] = {
    Kind.DOMAIN: 0,
    Kind.TEXT: 0,
    Kind.BYTES: 0,
    Kind.IP: 0,
    Kind.STRING: 0,
    Kind.PORT: 1,
    Kind.INT: 1,
    Kind.ENUM: 2,
    Kind.BOOL: 2,
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: Kind
    read: Callable[[MatchInput], Any]  # the fact, or None when the flow has not produced it
    doc: str
    values: tuple[str, ...] = ()  # vocabulary of an ENUM field
    multi: bool = False  # the fact is a tuple of values; any of them may match
    alias_of: tuple[str, ...] = ()  # a virtual field: any of these fields
    check: Callable[[str], str] | None = None  # canonical form of a STRING item, ValueError when bad

    @property
    def group(self) -> str:
        """Fields of one group share an index (all domain fields share the domain trie)."""
        return "domain" if self.kind is Kind.DOMAIN else self.name


def _nonempty(name: str) -> Callable[[MatchInput], Any]:
    """Read an attribute where empty means absent (a name or payload the flow has not produced)."""
    get = attrgetter(name)

    def read(inp: MatchInput) -> Any:
        return get(inp) or None

    return read


def _http_url(inp: MatchInput) -> str | None:
    if inp.http_path is None:
        return None
    return inp.http_path if inp.http_query is None else f"{inp.http_path}?{inp.http_query}"


def _alias(inp: MatchInput) -> None:  # virtual fields are read through their members
    return None


def _client_port_gt_server_port(inp: MatchInput) -> bool:
    return inp.client_port > inp.server_port


def _client_port_ge_server_port(inp: MatchInput) -> bool:
    return inp.client_port >= inp.server_port


def _payload_len(inp: MatchInput) -> int:
    return len(inp.payload)


def _first_payload_c2s_len(inp: MatchInput) -> int | None:
    return len(inp.first_payload_c2s) or None


_DOMAIN_FIELDS = ("dns.qname", "tls.sni", "http.host", "quic.sni")

FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec(
            "transport",
            Kind.ENUM,
            attrgetter("transport"),
            "transport protocol of the flow",
            values=("tcp", "udp", "icmp", "esp", "ah", "gre", "ip"),
        ),
        FieldSpec(
            "direction",
            Kind.ENUM,
            attrgetter("direction"),
            "direction of the packet being inspected: c2s (client to server) or s2c",
            values=("c2s", "s2c"),
        ),
        FieldSpec(
            "app_proto",
            Kind.ENUM,
            attrgetter("app_proto"),
            "application protocol (chokepoint.appproto)",
            values=tuple(p.value for p in AppProto),
        ),
        FieldSpec("client_ip", Kind.IP, attrgetter("client_ip"), "address of the flow's initiator"),
        FieldSpec("server_ip", Kind.IP, attrgetter("server_ip"), "address of the flow's responder"),
        FieldSpec("client_port", Kind.PORT, attrgetter("client_port"), "port of the flow's initiator"),
        FieldSpec("server_port", Kind.PORT, attrgetter("server_port"), "port of the flow's responder"),
        FieldSpec(
            "packet_index_in_flow",
            Kind.INT,
            attrgetter("packet_index_in_flow"),
            "1-based count of packets in the flow so far",
        ),
        FieldSpec(
            "tcp_header_len",
            Kind.INT,
            attrgetter("tcp_header_len"),
            "TCP header length of the packet being inspected (Henan firewall: exactly 20)",
        ),
        FieldSpec(
            "client_port_gt_server_port",
            Kind.BOOL,
            _client_port_gt_server_port,
            "the client's port is above the server's (GFW QUIC blocking, Zohaib et al., USENIX Security 2025)",
        ),
        FieldSpec(
            "client_port_ge_server_port",
            Kind.BOOL,
            _client_port_ge_server_port,
            "the client's port is at least the server's (the USENIX Security 2025 artifact's rule, section 3.3: "
            "'Source Port >= Destination Port')",
        ),
        FieldSpec(
            "payload",
            Kind.BYTES,
            _nonempty("payload"),
            "payload of the packet being inspected (one TCP segment or UDP datagram, never reassembled)",
        ),
        FieldSpec(
            "payload_len",
            Kind.INT,
            _payload_len,
            "payload bytes of the packet being inspected (Russia's QUIC rule: UDP payload >= 1001)",
        ),
        FieldSpec(
            "first_payload_c2s_len",
            Kind.INT,
            _first_payload_c2s_len,
            "length of the client's first data packet (absent until there is one)",
        ),
        FieldSpec(
            "data_packet_index_c2s",
            Kind.INT,
            attrgetter("data_packet_index_c2s"),
            "client packets carrying data so far, this one included (1 = the first); the policy is "
            "re-evaluated on each of the first few when a rule uses this field (Iran: the first two)",
        ),
        FieldSpec(
            "local_hour",
            Kind.INT,
            attrgetter("local_hour"),
            "hour 0-23 of the packet's timestamp in the profile's timezone (Myanmar's nightly shutdown)",
        ),
        FieldSpec("dns.qname", Kind.DOMAIN, _nonempty("dns_qname"), "DNS question name (lowercase, no final dot)"),
        FieldSpec("dns.qtype", Kind.INT, attrgetter("dns_qtype"), "DNS question type (RFC 1035 3.2.2)"),
        FieldSpec("tls.sni", Kind.DOMAIN, _nonempty("tls_sni"), "TLS ClientHello server_name (RFC 6066 3)"),
        FieldSpec("http.host", Kind.DOMAIN, _nonempty("http_host"), "HTTP Host header (lowercase, no port)"),
        FieldSpec("quic.sni", Kind.DOMAIN, _nonempty("quic_sni"), "SNI of the QUIC Initial's ClientHello"),
        FieldSpec(
            "domain", Kind.DOMAIN, _alias, "any of dns.qname, tls.sni, http.host, quic.sni", alias_of=_DOMAIN_FIELDS
        ),
        FieldSpec("http.method", Kind.STRING, attrgetter("http_method"), "HTTP request method"),
        FieldSpec("http.path", Kind.TEXT, attrgetter("http_path"), "HTTP request path, percent-decoded, no query"),
        FieldSpec("http.query", Kind.TEXT, attrgetter("http_query"), "HTTP query string, percent-decoded, no '?'"),
        FieldSpec("http.url", Kind.TEXT, _http_url, "HTTP path and query joined by '?' (the request target)"),
        FieldSpec("http.user_agent", Kind.TEXT, attrgetter("http_user_agent"), "HTTP User-Agent header"),
        FieldSpec("quic.version", Kind.INT, attrgetter("quic_version"), "QUIC version of the Initial (RFC 9000 17.2)"),
        FieldSpec("ja3", Kind.STRING, attrgetter("ja3"), "JA3 hash of the ClientHello (md5 hex)"),
        FieldSpec("ja4", Kind.STRING, attrgetter("ja4"), "JA4 fingerprint of the ClientHello"),
        FieldSpec(
            "tls.alpn", Kind.STRING, attrgetter("tls_alpn"), "ALPN protocol ids offered (RFC 7301); any", multi=True
        ),
        FieldSpec(
            "tls.versions",
            Kind.INT,
            attrgetter("tls_versions"),
            "protocol versions the ClientHello's supported_versions offers (RFC 8446 4.2.1; 0x0301 = TLS 1.0); any",
            multi=True,
        ),
        FieldSpec(
            "encap",
            Kind.STRING,
            _nonempty("encap"),
            "encapsulation labels the packet arrived in, e.g. vlan:100, qinq:30, pppoe:0x1a2b, mpls:16, gre:7, "
            "vxlan:5001, gtpu:0x1, 6in4, ppp (packet/decap.py); any",
            multi=True,
            check=encap_label,
        ),
        FieldSpec("tls.ech", Kind.BOOL, attrgetter("tls_ech"), "encrypted_client_hello (0xfe0d) present"),
        FieldSpec("tls.esni", Kind.BOOL, attrgetter("tls_esni"), "encrypted_server_name (0xffce) present"),
        FieldSpec(
            "tls.record_fragmented",
            Kind.BOOL,
            attrgetter("tls_record_fragmented"),
            "the ClientHello spans more than one TLS record",
        ),
        FieldSpec(
            "first_payload_c2s", Kind.BYTES, _nonempty("first_payload_c2s"), "the client's first data packet, as seen"
        ),
        FieldSpec(
            "first_payload_s2c", Kind.BYTES, _nonempty("first_payload_s2c"), "the server's first data packet, as seen"
        ),
        FieldSpec("stream_c2s", Kind.BYTES, _nonempty("stream_c2s"), "reassembled client bytes so far"),
        FieldSpec(
            "fully_encrypted",
            Kind.BOOL,
            attrgetter("fully_encrypted"),
            "first client data packet looks fully encrypted (Wu et al., USENIX Security 2023)",
        ),
        FieldSpec(
            "fet_exemption",
            Kind.ENUM,
            attrgetter("fet_exemption"),
            "which exemption (Ex1..Ex5, Wu et al. 2023) spared the flow",
            values=("ex1", "ex2", "ex3", "ex4", "ex5"),
        ),
        FieldSpec(
            "tls_in_tls",
            Kind.BOOL,
            attrgetter("tls_in_tls"),
            "an encapsulated TLS handshake inside this TLS flow (Xue et al., USENIX Security 2024; dissect/tlsintls.py)",
        ),
    )
}


def read_values(spec: FieldSpec, inp: MatchInput) -> tuple[Any, ...]:
    """The values of a (non-virtual) field in ``inp``: () when absent, one or more otherwise."""
    value = spec.read(inp)
    if value is None:
        return ()
    return tuple(value) if spec.multi else (value,)


def format_value(value: Any) -> str:
    """A fact as evidence text: bytes as hex (first 64 bytes), booleans lowercase."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return data[:64].hex() + ("..." if len(data) > 64 else "")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fields_markdown() -> str:
    """The field table for the docs (docs/policy.md), generated from ``FIELDS``."""
    lines = ["| field | kind | operators | lists | meaning |", "|---|---|---|---|---|"]
    for spec in FIELDS.values():
        ops = ", ".join(OPERATORS[spec.kind])
        short = SHORTHAND[spec.kind]
        if short:
            ops += f" (bare value = {short})"
        lists = ", ".join(LIST_KINDS.get(spec.kind, ())) or "-"
        doc = spec.doc + (f"; one of: {', '.join(spec.values)}" if spec.values else "")
        lines.append(f"| `{spec.name}` | {spec.kind.value} | {ops} | {lists} | {doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(fields_markdown(), end="")
