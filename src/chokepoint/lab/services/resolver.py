"""The lab DNS server: every name resolves to the lab server unless a map says otherwise.

Answers are authoritative (AA) and also claim recursion (RA) because clients use this server as their
resolver; RD and the ID are copied, EDNS is echoed with our payload size (1232, the DNS flag day 2020
value) and the DO bit (RFC 6891, RFC 3225), an EDNS version above 0 gets BADVERS. A/AAAA come from an
``AnswerTable`` (default 198.19.0.10 / 2001:db8:0:2::10, TTL 60). Names strictly below
``nxdomain.test`` are NXDOMAIN; every other name is treated as its own zone apex, so NODATA and
NXDOMAIN answers carry an SOA for negative caching (RFC 2308). UDP answers larger than the client's
limit (512 without EDNS) are truncated with TC set (RFC 1035 4.2.1); TCP uses the 2-byte length
framing and may carry several queries per connection (RFC 7766).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import yaml

log = logging.getLogger(__name__)

DEFAULT_A = ("198.19.0.10",)
DEFAULT_AAAA = ("2001:db8:0:2::10",)
TTL = 60
#: Our EDNS UDP payload size (https://www.dnsflagday.net/2020/).
EDNS_PAYLOAD = 1232
NXDOMAIN_ZONE = dns.name.from_text("nxdomain.test.")
TCP_IDLE_TIMEOUT = 30.0
_HEADER = struct.Struct("!HHHHHH")
_SOA_TEXT = "ns.lab.test. hostmaster.lab.test. 1 3600 600 86400 60"


class DnsMapError(ValueError):
    """A DNS map file or mapping that does not follow the documented format."""


@dataclass(frozen=True, slots=True)
class Records:
    """The addresses one name resolves to; an empty family answers NODATA."""

    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()


class AnswerTable:
    """Name -> ``Records`` (or ``None`` for NXDOMAIN), with ``*.suffix`` wildcards and a default.

    Map format (JSON or YAML)::

        default: {A: [198.19.0.10], AAAA: ["2001:db8:0:2::10"]}    # optional
        names:
          blocked.example: 198.19.0.11            # one address or a list, split by family
          "*.cdn.example": {A: [198.19.0.12]}       # subdomains only; AAAA here answers NODATA
          gone.example: null                        # NXDOMAIN

    The most specific entry wins: the exact name, then the longest matching wildcard, then the default.
    Records listed for a name replace the default entirely.
    """

    def __init__(
        self, default: Records = Records(DEFAULT_A, DEFAULT_AAAA), names: Mapping[str, Records | None] | None = None
    ) -> None:
        self.default = default
        self._exact: dict[dns.name.Name, Records | None] = {}
        self._wildcards: dict[dns.name.Name, Records | None] = {}
        for text, records in (names or {}).items():
            try:
                name = dns.name.from_text(text)
            except dns.exception.DNSException as exc:
                raise DnsMapError(f"bad name {text!r} in DNS map: {exc}") from exc
            if name.labels and name.labels[0] == b"*":
                self._wildcards[name.parent()] = records
            else:
                self._exact[name] = records

    @classmethod
    def from_mapping(cls, mapping: Mapping | None) -> AnswerTable:
        """Build from the parsed map format above. Raises ``DnsMapError``."""
        if mapping is None:
            return cls()
        if not isinstance(mapping, Mapping):
            raise DnsMapError("a DNS map must be a mapping with 'default' and/or 'names'")
        unknown = set(mapping) - {"default", "names"}
        if unknown:
            raise DnsMapError(f"unknown keys in DNS map: {sorted(map(str, unknown))}")
        default = Records(DEFAULT_A, DEFAULT_AAAA)
        if mapping.get("default") is not None:
            default = _records("default", mapping["default"])
        names = mapping.get("names") or {}
        if not isinstance(names, Mapping):
            raise DnsMapError("'names' in a DNS map must be a mapping of name -> addresses")
        return cls(
            default, {str(name): None if value is None else _records(str(name), value) for name, value in names.items()}
        )

    @classmethod
    def load(cls, path: str | Path) -> AnswerTable:
        """Read a map file (``.json``, otherwise YAML). Raises ``DnsMapError``."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DnsMapError(f"cannot read DNS map {path}: {exc}") from exc
        try:
            mapping = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise DnsMapError(f"DNS map {path} does not parse: {exc}") from exc
        return cls.from_mapping(mapping)

    def lookup(self, name: dns.name.Name) -> Records | None:
        """The records for ``name`` (case-insensitive); ``None`` means NXDOMAIN."""
        if name in self._exact:
            return self._exact[name]
        parent = name
        while len(parent) > 1:
            parent = parent.parent()
            if parent in self._wildcards:
                return self._wildcards[parent]
        return self.default


def _records(where: str, value) -> Records:
    if isinstance(value, (str, list, tuple)):
        addresses = [value] if isinstance(value, str) else list(value)
        parsed = [_address(where, item) for item in addresses]
        return Records(tuple(str(a) for a in parsed if a.version == 4), tuple(str(a) for a in parsed if a.version == 6))
    if isinstance(value, Mapping):
        unknown = set(value) - {"A", "AAAA"}
        if unknown:
            raise DnsMapError(f"{where}: only A and AAAA may be given, not {sorted(map(str, unknown))}")
        out = {}
        for key, version in (("A", 4), ("AAAA", 6)):
            items = value.get(key) or []
            items = [items] if isinstance(items, str) else items
            if not isinstance(items, (list, tuple)):
                raise DnsMapError(f"{where}: {key} must be an address or a list of addresses")
            parsed = [_address(where, item) for item in items]
            if any(a.version != version for a in parsed):
                raise DnsMapError(f"{where}: {key} holds an address of the wrong family")
            out[key] = tuple(str(a) for a in parsed)
        return Records(out["A"], out["AAAA"])
    raise DnsMapError(f"{where}: expected an address, a list or a mapping of A/AAAA, got {value!r}")


def _address(where: str, item) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(item))
    except ValueError as exc:
        raise DnsMapError(f"{where}: {item!r} is not an IP address") from exc


class DnsResponder:
    """Turns one query (wire format) into one answer (wire format), or ``None`` to stay silent."""

    def __init__(self, table: AnswerTable | None = None, *, ttl: int = TTL) -> None:
        self.table = table or AnswerTable()
        self.ttl = ttl
        self._soa = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, _SOA_TEXT)

    def respond(self, wire: bytes, *, tcp: bool = False) -> bytes | None:
        """Answer a query; silent for anything shorter than a header or that is itself a response."""
        if len(wire) < _HEADER.size:
            return None
        ident, flags = _HEADER.unpack_from(wire)[:2]
        if flags & dns.flags.QR:
            return None
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException as exc:
            log.debug("FORMERR for query %#06x: %s", ident, exc)
            return _header_only(ident, flags, dns.rcode.FORMERR)
        if query.opcode() != dns.opcode.QUERY:
            return _header_only(ident, flags, dns.rcode.NOTIMP)
        if len(query.question) != 1:
            return _header_only(ident, flags, dns.rcode.FORMERR)
        response = dns.message.make_response(query, recursion_available=True, our_payload=EDNS_PAYLOAD)
        response.flags |= dns.flags.AA
        if query.edns >= 0 and query.ednsflags & dns.flags.DO:
            response.want_dnssec(True)
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
        else:
            self._fill(response, query.question[0])
        if tcp:
            limit = 65535
        elif query.edns >= 0:
            limit = max(512, min(query.payload, EDNS_PAYLOAD))
        else:
            limit = 512
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.authority.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)

    def _fill(self, response: dns.message.Message, question: dns.rrset.RRset) -> None:
        qname, rdtype = question.name, question.rdtype
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return
        if qname.is_subdomain(NXDOMAIN_ZONE) and qname != NXDOMAIN_ZONE:
            self._negative(response, NXDOMAIN_ZONE, dns.rcode.NXDOMAIN)
            return
        records = self.table.lookup(qname)
        if records is None:
            self._negative(response, qname.parent() if len(qname) > 1 else qname, dns.rcode.NXDOMAIN)
            return
        wanted = {
            dns.rdatatype.A: ((dns.rdatatype.A, records.a),),
            dns.rdatatype.AAAA: ((dns.rdatatype.AAAA, records.aaaa),),
            dns.rdatatype.ANY: ((dns.rdatatype.A, records.a), (dns.rdatatype.AAAA, records.aaaa)),
        }.get(rdtype, ())
        for answer_type, addresses in wanted:
            if addresses:
                response.answer.append(
                    dns.rrset.from_text_list(qname, self.ttl, dns.rdataclass.IN, answer_type, list(addresses))
                )
        if rdtype == dns.rdatatype.SOA:
            response.answer.append(self._soa_rrset(qname))
        if not response.answer:
            self._negative(response, qname, dns.rcode.NOERROR)

    def _negative(self, response: dns.message.Message, zone: dns.name.Name, rcode: dns.rcode.Rcode) -> None:
        response.set_rcode(rcode)
        response.authority.append(self._soa_rrset(zone))

    def _soa_rrset(self, owner: dns.name.Name) -> dns.rrset.RRset:
        return dns.rrset.from_rdata(owner, self.ttl, self._soa)


def _header_only(ident: int, query_flags: int, rcode: int) -> bytes:
    """A reply with no sections: ID, opcode and RD copied, QR and RA set (RFC 1035 4.1.1)."""
    opcode_bits = query_flags & 0x7800
    flags = dns.flags.QR | opcode_bits | (query_flags & dns.flags.RD) | dns.flags.RA | (rcode & 0xF)
    return _HEADER.pack(ident, flags, 0, 0, 0, 0)


class DnsUdpProtocol(asyncio.DatagramProtocol):
    """One UDP socket of the DNS server."""

    def __init__(self, responder: DnsResponder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr) -> None:
        reply = self.responder.respond(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("dns/udp: %s", exc)


async def handle_dns_tcp(responder: DnsResponder, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Serve length-prefixed queries on one TCP connection until EOF, garbage framing or idleness."""
    try:
        while True:
            try:
                prefix = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
            except asyncio.IncompleteReadError:
                return
            (length,) = struct.unpack("!H", prefix)
            wire = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
            reply = responder.respond(wire, tcp=True)
            if reply is not None:
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError) as exc:
        log.debug("dns/tcp %s: %s", writer.get_extra_info("peername"), exc)
    finally:
        writer.close()
