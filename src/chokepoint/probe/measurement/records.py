"""The records of one network operation: df-002 DNS (`queries`), df-005 TCP connect (`tcp_connect`), df-006 TLS
(`tls_handshakes`), df-001 HTTP (`requests`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chokepoint.probe.measurement.reader import (
    MalformedMeasurement,
    _as_bytes,
    _emit,
    _header_map,
    _header_pairs,
    _maybe_binary_in,
    _maybe_binary_out,
    _Reader,
    _tags_out,
    _tuple_out,
)


@dataclass(frozen=True, slots=True)
class DNSAnswer:
    """One resource record of a df-002 query (`asn`/`as_org_name` as geolocated by the probe)."""

    answer_type: str
    ipv4: str | None = None
    ipv6: str | None = None
    hostname: str | None = None
    asn: int | None = None
    as_org_name: str | None = None
    ttl: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str | None:
        """The IP address of an A or AAAA record, else None."""
        if self.answer_type == "A":
            return self.ipv4
        if self.answer_type == "AAAA":
            return self.ipv6
        return None

    @classmethod
    def from_json(cls, obj: Any, path: str) -> DNSAnswer:
        r = _Reader(obj, path)
        answer_type = r.text("answer_type")
        if answer_type is None:
            raise MalformedMeasurement(f"{path}.answer_type", "missing")
        return cls(
            answer_type,
            r.text("ipv4"),
            r.text("ipv6"),
            r.text("hostname"),
            r.integer("asn"),
            r.text("as_org_name"),
            r.integer("ttl"),
            r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        known = {
            "asn": self.asn,
            "as_org_name": self.as_org_name,
            "answer_type": self.answer_type,
            "hostname": self.hostname,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "ttl": self.ttl,
        }
        return _emit(known, ("asn", "as_org_name", "hostname", "ipv4", "ipv6"), self.extra)


@dataclass(frozen=True, slots=True)
class DNSQuery:
    """A df-002 DNS lookup: one query type through one engine (getaddrinfo, udp, doh, ...)."""

    hostname: str
    query_type: str
    engine: str = "getaddrinfo"
    failure: str | None = None
    answers: tuple[DNSAnswer, ...] | None = None
    resolver_address: str = ""
    resolver_hostname: str | None = None
    resolver_port: str | None = None
    rcode: int | None = None
    t: float | int | None = None
    tags: tuple[str, ...] | None = None
    transaction_id: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def addresses(self) -> tuple[str, ...]:
        """A and AAAA addresses, in answer order."""
        return tuple(a.address for a in self.answers or () if a.address is not None)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> DNSQuery:
        r = _Reader(obj, path)
        hostname = r.text("hostname")
        query_type = r.text("query_type")
        if hostname is None or query_type is None:
            raise MalformedMeasurement(path, "missing hostname or query_type")
        port = r.raw("resolver_port")
        if isinstance(port, bool) or not (port is None or isinstance(port, (str, int))):
            raise MalformedMeasurement(f"{path}.resolver_port", "expected a string or an integer")
        return cls(
            hostname,
            query_type,
            r.text("engine") or "",
            r.text("failure"),
            r.objects("answers", DNSAnswer.from_json),
            r.text("resolver_address") or "",
            r.text("resolver_hostname"),
            port,
            r.integer("rcode"),
            r.number("t"),
            r.strings("tags"),
            r.integer("transaction_id"),
            r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        known = {
            "answers": _tuple_out(self.answers),
            "engine": self.engine,
            "failure": self.failure,
            "hostname": self.hostname,
            "query_type": self.query_type,
            "resolver_hostname": self.resolver_hostname,
            "resolver_port": self.resolver_port,
            "resolver_address": self.resolver_address,
            "rcode": self.rcode,
            "t": self.t,
            "tags": _tags_out(self.tags),
            "transaction_id": self.transaction_id,
        }
        return _emit(known, ("rcode", "t", "tags", "transaction_id"), self.extra)


@dataclass(frozen=True, slots=True)
class TCPConnect:
    """A df-005 TCP connect attempt."""

    ip: str
    port: int
    failure: str | None = None
    success: bool | None = None
    t: float | int | None = None
    tags: tuple[str, ...] | None = None
    transaction_id: int | None = None
    status_extra: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        """ "ip:port", with IPv6 in brackets (Go's net.JoinHostPort, as the test helper keys it)."""
        return join_host_port(self.ip, self.port)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> TCPConnect:
        r = _Reader(obj, path)
        ip, port = r.text("ip"), r.integer("port")
        if ip is None or port is None:
            raise MalformedMeasurement(path, "missing ip or port")
        status = _Reader(r.dictionary("status") or {}, f"{path}.status")
        failure, success = status.text("failure"), status.flag("success")
        return cls(
            ip,
            port,
            failure,
            success,
            r.number("t"),
            r.strings("tags"),
            r.integer("transaction_id"),
            status.extra(),
            r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        status = _emit({"failure": self.failure, "success": self.success}, (), self.status_extra)
        known = {
            "ip": self.ip,
            "port": self.port,
            "status": status,
            "t": self.t,
            "tags": _tags_out(self.tags),
            "transaction_id": self.transaction_id,
        }
        return _emit(known, ("t", "tags", "transaction_id"), self.extra)


@dataclass(frozen=True, slots=True)
class TLSHandshake:
    """A df-006 TLS handshake (peer certificates as DER bytes)."""

    address: str
    server_name: str
    failure: str | None = None
    network: str = "tcp"
    cipher_suite: str = ""
    negotiated_protocol: str = ""
    no_tls_verify: bool = False
    peer_certificates: tuple[bytes, ...] | None = None
    tls_version: str = ""
    t: float | int | None = None
    tags: tuple[str, ...] | None = None
    transaction_id: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> TLSHandshake:
        r = _Reader(obj, path)
        address = r.text("address")
        if address is None:
            raise MalformedMeasurement(f"{path}.address", "missing")
        certs = r.array("peer_certificates")
        peer = (
            None
            if certs is None
            else tuple(
                _as_bytes(_maybe_binary_in(cert, f"{path}.peer_certificates[{i}]")) for i, cert in enumerate(certs)
            )
        )
        return cls(
            address,
            r.text("server_name") or "",
            r.text("failure"),
            r.text("network") or "",
            r.text("cipher_suite") or "",
            r.text("negotiated_protocol") or "",
            bool(r.flag("no_tls_verify")),
            peer,
            r.text("tls_version") or "",
            r.number("t"),
            r.strings("tags"),
            r.integer("transaction_id"),
            r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        certs = (
            None
            if self.peer_certificates is None
            else [
                {"format": "base64", "data": base64.b64encode(cert).decode("ascii")} for cert in self.peer_certificates
            ]
        )
        known = {
            "network": self.network,
            "address": self.address,
            "cipher_suite": self.cipher_suite,
            "failure": self.failure,
            "negotiated_protocol": self.negotiated_protocol,
            "no_tls_verify": self.no_tls_verify,
            "peer_certificates": certs,
            "server_name": self.server_name,
            "t": self.t,
            "tags": _tags_out(self.tags),
            "tls_version": self.tls_version,
            "transaction_id": self.transaction_id,
        }
        return _emit(known, ("t", "tags", "transaction_id"), self.extra)


def join_host_port(host: str, port: int | str) -> str:
    """Go's net.JoinHostPort: IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _headers_get(headers: Mapping[str, str | bytes], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


@dataclass(frozen=True, slots=True)
class HTTPRequestRecord:
    """The request half of a df-001 entry."""

    url: str
    method: str = "GET"
    headers_list: tuple[tuple[str, str | bytes], ...] = ()
    headers: Mapping[str, str | bytes] = field(default_factory=dict)
    body: str | bytes = ""
    body_is_truncated: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> HTTPRequestRecord:
        r = _Reader(obj, path)
        url = r.text("url")
        if url is None:
            raise MalformedMeasurement(f"{path}.url", "missing")
        pairs = r.raw("headers_list")
        headers = r.raw("headers")
        return cls(
            url,
            r.text("method") or "",
            () if pairs is None else _header_pairs(pairs, f"{path}.headers_list"),
            {} if headers is None else _header_map(headers, f"{path}.headers"),
            r.maybe_binary("body") or "",
            bool(r.flag("body_is_truncated")),
            r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        known = {
            "body": _maybe_binary_out(self.body),
            "body_is_truncated": self.body_is_truncated,
            "headers_list": [[k, _maybe_binary_out(v)] for k, v in self.headers_list],
            "headers": {k: _maybe_binary_out(v) for k, v in self.headers.items()},
            "method": self.method,
            "url": self.url,
        }
        return _emit(known, (), self.extra)


@dataclass(frozen=True, slots=True)
class HTTPResponseRecord:
    """The response half of a df-001 entry (`code` 0 and empty body when no response arrived)."""

    code: int = 0
    headers_list: tuple[tuple[str, str | bytes], ...] = ()
    headers: Mapping[str, str | bytes] = field(default_factory=dict)
    body: str | bytes = ""
    body_is_truncated: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def body_bytes(self) -> bytes:
        return _as_bytes(self.body)

    def header(self, name: str) -> str | None:
        """First value of a header, case-insensitively."""
        for key, value in self.headers_list:
            if key.lower() == name.lower():
                return value if isinstance(value, str) else value.decode("latin-1")
        return _headers_get(self.headers, name)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> HTTPResponseRecord:
        r = _Reader(obj, path)
        pairs = r.raw("headers_list")
        headers = r.raw("headers")
        return cls(
            r.integer("code") or 0,
            () if pairs is None else _header_pairs(pairs, f"{path}.headers_list"),
            {} if headers is None else _header_map(headers, f"{path}.headers"),
            r.maybe_binary("body") or "",
            bool(r.flag("body_is_truncated")),
            r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        known = {
            "body": _maybe_binary_out(self.body),
            "body_is_truncated": self.body_is_truncated,
            "code": self.code,
            "headers_list": [[k, _maybe_binary_out(v)] for k, v in self.headers_list],
            "headers": {k: _maybe_binary_out(v) for k, v in self.headers.items()},
        }
        return _emit(known, (), self.extra)


@dataclass(frozen=True, slots=True)
class HTTPTransaction:
    """A df-001 `requests` entry: one HTTP round trip (Web Connectivity lists the newest first)."""

    request: HTTPRequestRecord
    response: HTTPResponseRecord | None = None
    failure: str | None = None
    network: str = "tcp"
    address: str = ""
    alpn: str = ""
    t: float | int | None = None
    tags: tuple[str, ...] | None = None
    transaction_id: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> HTTPTransaction:
        r = _Reader(obj, path)
        request = r.dictionary("request")
        if request is None:
            raise MalformedMeasurement(f"{path}.request", "missing")
        response = r.dictionary("response")
        return cls(
            HTTPRequestRecord.from_json(request, f"{path}.request"),
            None if response is None else HTTPResponseRecord.from_json(response, f"{path}.response"),
            r.text("failure"),
            r.text("network") or "",
            r.text("address") or "",
            r.text("alpn") or "",
            r.number("t"),
            r.strings("tags"),
            r.integer("transaction_id"),
            r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        known = {
            "network": self.network,
            "address": self.address,
            "alpn": self.alpn or None,
            "failure": self.failure,
            "request": self.request.to_json(),
            "response": None if self.response is None else self.response.to_json(),
            "t": self.t,
            "tags": _tags_out(self.tags),
            "transaction_id": self.transaction_id,
        }
        return _emit(known, ("alpn", "t", "tags", "transaction_id"), self.extra)
