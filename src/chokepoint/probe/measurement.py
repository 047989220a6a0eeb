"""OONI measurement model: base keys, Web Connectivity test keys, failure strings.

Formats (ooni/spec, data-formats): df-000 base keys, df-001 HTTP (`requests`), df-002 DNS (`queries`),
df-005 TCP connect (`tcp_connect`), df-006 TLS (`tls_handshakes`), df-007 failure strings; Web Connectivity
test keys and the test-helper response (`control`) per ts-017. Keys this model does not name are kept in
`extra` and written back unchanged, so `parse_measurement(x).to_json() == x` for OONI's own measurements.
Chokepoint's observations OONI has no field for live under `test_keys.x_chokepoint`.

Parsing raises `MalformedMeasurement` (a `chokepoint.dissect.errors.Malformed`) naming the offending key.
"""

from __future__ import annotations

import base64
import binascii
import errno
import http.client
import json
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import dns.exception
import dns.rcode
import dns.resolver

from chokepoint import __version__
from chokepoint.dissect.errors import Malformed

__all__ = [
    "CLASSIFICATION_KEYS",
    "ChokepointObservations",
    "ControlDNS",
    "ControlHTTPRequest",
    "ControlIPInfo",
    "ControlRequest",
    "ControlResponse",
    "ControlTCPConnect",
    "ControlTLSHandshake",
    "DNSAnswer",
    "DNSQuery",
    "Failure",
    "HTTPRequestRecord",
    "HTTPResponseRecord",
    "HTTPTransaction",
    "MalformedMeasurement",
    "Measurement",
    "ResidualObservation",
    "TCPConnect",
    "TLSHandshake",
    "ThroughputObservation",
    "WebConnectivityTestKeys",
    "failure_from_exception",
    "failure_from_rcode",
    "format_ooni_time",
    "parse_measurement",
    "unknown_failure",
]


class MalformedMeasurement(Malformed):
    """A measurement document that breaks the OONI data format; `path` names the offending key."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '<root>'}: {message}")
        self.path = path


# --------------------------------------------------------------------------------------------------
# Failure strings (df-007-errors.md) and the mapping from Python exceptions
# --------------------------------------------------------------------------------------------------


class Failure(StrEnum):
    """OONI failure strings (ooni/spec df-007) a Chokepoint probe emits; `None` means success."""

    ANDROID_DNS_CACHE_NO_DATA = "android_dns_cache_no_data"
    CONNECTION_ABORTED = "connection_aborted"
    CONNECTION_ALREADY_CLOSED = "connection_already_closed"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_RESET = "connection_reset"
    DNS_BOGON_ERROR = "dns_bogon_error"
    DNS_NO_ANSWER = "dns_no_answer"
    DNS_NON_RECOVERABLE_FAILURE = "dns_non_recoverable_failure"
    DNS_NXDOMAIN_ERROR = "dns_nxdomain_error"
    DNS_REFUSED_ERROR = "dns_refused_error"
    DNS_REPLY_WITH_WRONG_QUERY_ID = "dns_reply_with_wrong_query_id"
    DNS_SERVER_MISBEHAVING = "dns_server_misbehaving"
    DNS_SERVFAIL_ERROR = "dns_servfail_error"
    DNS_TEMPORARY_FAILURE = "dns_temporary_failure"
    EOF_ERROR = "eof_error"
    GENERIC_TIMEOUT_ERROR = "generic_timeout_error"
    HOST_UNREACHABLE = "host_unreachable"
    HTTP_INVALID_REDIRECT_LOCATION_HOST = "http_invalid_redirect_location_host"
    INTERRUPTED = "interrupted"
    JSON_PARSE_ERROR = "json_parse_error"
    NETWORK_DOWN = "network_down"
    NETWORK_RESET = "network_reset"
    NETWORK_UNREACHABLE = "network_unreachable"
    QUIC_INCOMPATIBLE_VERSION = "quic_incompatible_version"
    SSL_FAILED_HANDSHAKE = "ssl_failed_handshake"
    SSL_INVALID_CERTIFICATE = "ssl_invalid_certificate"
    SSL_INVALID_HOSTNAME = "ssl_invalid_hostname"
    SSL_UNKNOWN_AUTHORITY = "ssl_unknown_authority"


UNKNOWN_FAILURE_PREFIX = "unknown_failure"


def unknown_failure(detail: str) -> str:
    """df-007 "unknown_failure ..." string for an error with no specific name."""
    return f"{UNKNOWN_FAILURE_PREFIX}: {detail}" if detail else UNKNOWN_FAILURE_PREFIX


_ERRNO_FAILURES: Mapping[int, Failure] = {
    errno.ECONNREFUSED: Failure.CONNECTION_REFUSED,
    errno.ECONNRESET: Failure.CONNECTION_RESET,
    errno.ECONNABORTED: Failure.CONNECTION_ABORTED,
    errno.EHOSTUNREACH: Failure.HOST_UNREACHABLE,
    errno.ENETUNREACH: Failure.NETWORK_UNREACHABLE,
    errno.ENETDOWN: Failure.NETWORK_DOWN,
    errno.ENETRESET: Failure.NETWORK_RESET,
    errno.ETIMEDOUT: Failure.GENERIC_TIMEOUT_ERROR,
}

_GAI_FAILURES: Mapping[int, Failure] = {
    code: failure
    for name, failure in (
        ("EAI_NONAME", Failure.DNS_NXDOMAIN_ERROR),
        ("EAI_NODATA", Failure.DNS_NO_ANSWER),
        ("EAI_AGAIN", Failure.DNS_TEMPORARY_FAILURE),
        ("EAI_FAIL", Failure.DNS_NON_RECOVERABLE_FAILURE),
    )
    if (code := getattr(socket, name, None)) is not None
}

# OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h) that mean "no trusted issuer" vs "wrong name".
_X509_UNKNOWN_AUTHORITY = frozenset({2, 18, 19, 20, 21})
_X509_HOSTNAME_MISMATCH = frozenset({62, 64})

_RCODE_FAILURES: Mapping[int, Failure] = {
    dns.rcode.NXDOMAIN: Failure.DNS_NXDOMAIN_ERROR,
    dns.rcode.SERVFAIL: Failure.DNS_SERVFAIL_ERROR,
    dns.rcode.REFUSED: Failure.DNS_REFUSED_ERROR,
}


def failure_from_rcode(rcode: int) -> str | None:
    """Failure string for a DNS response code (RFC 1035 §4.1.1); None for NOERROR."""
    if rcode == dns.rcode.NOERROR:
        return None
    failure = _RCODE_FAILURES.get(rcode)
    return failure.value if failure is not None else Failure.DNS_SERVER_MISBEHAVING.value


def failure_from_exception(exc: BaseException) -> str:
    """Map a Python socket / ssl / http.client / dnspython exception to an OONI df-007 failure string.

    Mirrors ooni/probe-cli netxlite's classifiers: errno values by name, X.509 verification errors by
    OpenSSL code (unknown authority / invalid hostname / invalid certificate), any other TLS alert or
    handshake error as `ssl_failed_handshake`, an EOF mid-exchange as `eof_error`, every expired timer as
    `generic_timeout_error`. Anything else becomes "unknown_failure: <message>".
    """
    # Order matters: ssl.SSLCertVerificationError and http.client.RemoteDisconnected are OSError
    # subclasses, and socket.timeout is TimeoutError.
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code in _X509_HOSTNAME_MISMATCH:
            return Failure.SSL_INVALID_HOSTNAME.value
        if code in _X509_UNKNOWN_AUTHORITY:
            return Failure.SSL_UNKNOWN_AUTHORITY.value
        return Failure.SSL_INVALID_CERTIFICATE.value
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return Failure.EOF_ERROR.value
    if isinstance(exc, ssl.SSLError):
        return Failure.SSL_FAILED_HANDSHAKE.value
    if isinstance(exc, (http.client.RemoteDisconnected, http.client.IncompleteRead, EOFError)):
        return Failure.EOF_ERROR.value
    if isinstance(exc, TimeoutError):
        return Failure.GENERIC_TIMEOUT_ERROR.value
    if isinstance(exc, socket.gaierror):
        failure = _GAI_FAILURES.get(exc.errno) if exc.errno is not None else None
        return failure.value if failure is not None else unknown_failure(str(exc))
    if isinstance(exc, dns.exception.Timeout):
        return Failure.GENERIC_TIMEOUT_ERROR.value
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return Failure.DNS_NXDOMAIN_ERROR.value
    if isinstance(exc, dns.resolver.NoAnswer):
        return Failure.DNS_NO_ANSWER.value
    if isinstance(exc, dns.resolver.NoNameservers):
        return _failure_from_no_nameservers(exc)
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in _ERRNO_FAILURES:
        return _ERRNO_FAILURES[exc.errno].value
    if isinstance(exc, ConnectionRefusedError):
        return Failure.CONNECTION_REFUSED.value
    if isinstance(exc, ConnectionResetError):
        return Failure.CONNECTION_RESET.value
    if isinstance(exc, ConnectionAbortedError):
        return Failure.CONNECTION_ABORTED.value
    return unknown_failure(str(exc) or type(exc).__name__)


def _failure_from_no_nameservers(exc: dns.resolver.NoNameservers) -> str:
    """dnspython's NoNameservers carries (server, tcp, port, error-or-answer, ...) tuples per server."""
    for entry in exc.kwargs.get("errors", ()) or ():
        if len(entry) < 4:
            continue
        detail = entry[3]
        rcode = getattr(detail, "rcode", None)
        if callable(rcode):  # a dns.message.Message answer carrying an rcode
            failure = failure_from_rcode(rcode())
            if failure is not None:
                return failure
        elif isinstance(detail, BaseException):
            return failure_from_exception(detail)
        elif isinstance(detail, str):  # dnspython formats "<rcode> answered ..." strings
            for code, failure in _RCODE_FAILURES.items():
                if dns.rcode.to_text(code) in detail:
                    return failure.value
    return Failure.DNS_SERVER_MISBEHAVING.value


# --------------------------------------------------------------------------------------------------
# JSON reading helpers
# --------------------------------------------------------------------------------------------------

_MISSING = object()


class _Reader:
    """Typed access to one JSON object; remembers which keys were consumed so the rest go to `extra`."""

    __slots__ = ("obj", "path", "used")

    def __init__(self, obj: Any, path: str) -> None:
        if not isinstance(obj, dict):
            raise MalformedMeasurement(path, f"expected an object, got {type(obj).__name__}")
        self.obj = obj
        self.path = path
        self.used: set[str] = set()

    def _get(self, key: str) -> Any:
        self.used.add(key)
        return self.obj.get(key, _MISSING)

    def _key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        value = self._get(key)
        return None if value is _MISSING else value

    def text(self, key: str) -> str | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, str):
            raise MalformedMeasurement(self._key_path(key), f"expected a string, got {type(value).__name__}")
        return value

    def integer(self, key: str) -> int | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedMeasurement(self._key_path(key), f"expected an integer, got {type(value).__name__}")
        return value

    def number(self, key: str) -> int | float | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MalformedMeasurement(self._key_path(key), f"expected a number, got {type(value).__name__}")
        return value

    def flag(self, key: str) -> bool | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, bool):
            raise MalformedMeasurement(self._key_path(key), f"expected a boolean, got {type(value).__name__}")
        return value

    def array(self, key: str) -> list[Any] | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, list):
            raise MalformedMeasurement(self._key_path(key), f"expected a list, got {type(value).__name__}")
        return value

    def dictionary(self, key: str) -> dict[str, Any] | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, dict):
            raise MalformedMeasurement(self._key_path(key), f"expected an object, got {type(value).__name__}")
        return value

    def strings(self, key: str) -> tuple[str, ...] | None:
        items = self.array(key)
        if items is None:
            return None
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise MalformedMeasurement(f"{self._key_path(key)}[{index}]", "expected a string")
        return tuple(items)

    def objects(self, key: str, parse: Any) -> tuple[Any, ...] | None:
        items = self.array(key)
        if items is None:
            return None
        return tuple(parse(item, f"{self._key_path(key)}[{index}]") for index, item in enumerate(items))

    def mapping(self, key: str, parse: Any) -> dict[str, Any] | None:
        items = self.dictionary(key)
        if items is None:
            return None
        return {name: parse(value, f"{self._key_path(key)}.{name}") for name, value in items.items()}

    def maybe_binary(self, key: str) -> str | bytes | None:
        value = self._get(key)
        if value is _MISSING or value is None:
            return None
        return _maybe_binary_in(value, self._key_path(key))

    def extra(self) -> dict[str, Any]:
        return {key: value for key, value in self.obj.items() if key not in self.used}


def _maybe_binary_in(value: Any, path: str) -> str | bytes:
    """df-001 MaybeBinaryValue: a UTF-8 string, or {"format": "base64", "data": "..."}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("format") == "base64" and isinstance(value.get("data"), str):
        try:
            return base64.b64decode(value["data"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedMeasurement(path, f"invalid base64: {exc}") from None
    raise MalformedMeasurement(path, "expected a string or a base64 binary object")


def _maybe_binary_out(value: str | bytes) -> Any:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"format": "base64", "data": base64.b64encode(value).decode("ascii")}


def _as_bytes(value: str | bytes | None) -> bytes:
    """The bytes a df-001 body stood for (strings are UTF-8, as OONI writes them)."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogatepass")


def _header_pairs(value: Any, path: str) -> tuple[tuple[str, str | bytes], ...]:
    if not isinstance(value, list):
        raise MalformedMeasurement(path, "expected a list of [name, value] pairs")
    pairs = []
    for index, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
            raise MalformedMeasurement(f"{path}[{index}]", "expected a [name, value] pair")
        pairs.append((pair[0], _maybe_binary_in(pair[1], f"{path}[{index}][1]")))
    return tuple(pairs)


def _header_map(value: Any, path: str) -> dict[str, str | bytes]:
    if not isinstance(value, dict):
        raise MalformedMeasurement(path, "expected an object of headers")
    return {name: _maybe_binary_in(item, f"{path}.{name}") for name, item in value.items()}


def _emit(known: Mapping[str, Any], omit_if_none: Iterable[str], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Known keys (dropping the omitempty ones that are None) followed by the preserved unknown keys."""
    skip = frozenset(omit_if_none)
    out = {key: value for key, value in known.items() if not (value is None and key in skip)}
    for key, value in extra.items():
        out.setdefault(key, value)
    return out


def _tags_out(tags: tuple[str, ...] | None) -> list[str] | None:
    return None if tags is None else list(tags)


def _tuple_out(items: tuple[Any, ...] | None) -> list[Any] | None:
    return None if items is None else [item.to_json() for item in items]


# --------------------------------------------------------------------------------------------------
# df-002 DNS, df-005 TCP connect, df-006 TLS, df-001 HTTP
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Test helper (control) request and response, ts-017
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ControlTCPConnect:
    status: bool
    failure: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> ControlTCPConnect:
        r = _Reader(obj, path)
        return cls(bool(r.flag("status")), r.text("failure"), r.extra())

    def to_json(self) -> dict[str, Any]:
        return _emit({"status": self.status, "failure": self.failure}, (), self.extra)


@dataclass(frozen=True, slots=True)
class ControlTLSHandshake:
    server_name: str
    status: bool
    failure: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> ControlTLSHandshake:
        r = _Reader(obj, path)
        return cls(r.text("server_name") or "", bool(r.flag("status")), r.text("failure"), r.extra())

    def to_json(self) -> dict[str, Any]:
        return _emit({"server_name": self.server_name, "status": self.status, "failure": self.failure}, (), self.extra)


@dataclass(frozen=True, slots=True)
class ControlHTTPRequest:
    """The test helper's fetch of the URL (`status_code`/`body_length` are -1 when it failed)."""

    status_code: int = -1
    body_length: int = -1
    title: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    failure: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> ControlHTTPRequest:
        r = _Reader(obj, path)
        headers = r.dictionary("headers") or {}
        for name, value in headers.items():
            if not isinstance(value, str):
                raise MalformedMeasurement(f"{path}.headers.{name}", "expected a string")
        status, length = r.integer("status_code"), r.integer("body_length")
        return cls(
            -1 if status is None else status,
            -1 if length is None else length,
            r.text("title") or "",
            headers,
            r.text("failure"),
            r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        known = {
            "body_length": self.body_length,
            "failure": self.failure,
            "title": self.title,
            "headers": dict(self.headers),
            "status_code": self.status_code,
        }
        return _emit(known, (), self.extra)


@dataclass(frozen=True, slots=True)
class ControlDNS:
    failure: str | None = None
    addrs: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> ControlDNS:
        r = _Reader(obj, path)
        return cls(r.text("failure"), r.strings("addrs") or (), r.extra())

    def to_json(self) -> dict[str, Any]:
        return _emit({"failure": self.failure, "addrs": list(self.addrs)}, (), self.extra)


@dataclass(frozen=True, slots=True)
class ControlIPInfo:
    """Test helper's view of an address: ASN and flags (1 probe-resolved, 2 TH-resolved, 4 bogon, 8 TLS-valid)."""

    asn: int = 0
    flags: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> ControlIPInfo:
        r = _Reader(obj, path)
        return cls(r.integer("asn") or 0, r.integer("flags") or 0, r.extra())

    def to_json(self) -> dict[str, Any]:
        return _emit({"asn": self.asn, "flags": self.flags}, (), self.extra)


@dataclass(frozen=True, slots=True)
class ControlResponse:
    """The Web Connectivity test helper (`oohelperd`) response: its own DNS, TCP, TLS and HTTP view."""

    tcp_connect: Mapping[str, ControlTCPConnect] = field(default_factory=dict)
    tls_handshake: Mapping[str, ControlTLSHandshake] | None = None
    http_request: ControlHTTPRequest = field(default_factory=ControlHTTPRequest)
    dns: ControlDNS = field(default_factory=ControlDNS)
    ip_info: Mapping[str, ControlIPInfo] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> ControlResponse:
        r = _Reader(obj, path)
        http = r.dictionary("http_request")
        dns_obj = r.dictionary("dns")
        return cls(
            r.mapping("tcp_connect", ControlTCPConnect.from_json) or {},
            r.mapping("tls_handshake", ControlTLSHandshake.from_json),
            ControlHTTPRequest() if http is None else ControlHTTPRequest.from_json(http, f"{path}.http_request"),
            ControlDNS() if dns_obj is None else ControlDNS.from_json(dns_obj, f"{path}.dns"),
            r.mapping("ip_info", ControlIPInfo.from_json),
            r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        known = {
            "tcp_connect": {k: v.to_json() for k, v in self.tcp_connect.items()},
            "tls_handshake": None
            if self.tls_handshake is None
            else {k: v.to_json() for k, v in self.tls_handshake.items()},
            "http_request": self.http_request.to_json(),
            "dns": self.dns.to_json(),
            "ip_info": None if self.ip_info is None else {k: v.to_json() for k, v in self.ip_info.items()},
        }
        return _emit(known, ("tls_handshake", "ip_info"), self.extra)


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """What the probe asked the test helper (`x_control_request`): the URL and the endpoints it resolved."""

    http_request: str
    tcp_connect: tuple[str, ...] | None = None
    http_request_headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> ControlRequest:
        r = _Reader(obj, path)
        url = r.text("http_request")
        if url is None:
            raise MalformedMeasurement(f"{path}.http_request", "missing")
        headers: dict[str, tuple[str, ...]] = {}
        for name, values in (r.dictionary("http_request_headers") or {}).items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise MalformedMeasurement(f"{path}.http_request_headers.{name}", "expected a list of strings")
            headers[name] = tuple(values)
        return cls(url, r.strings("tcp_connect"), headers, r.extra())

    def to_json(self) -> dict[str, Any]:
        known = {
            "http_request": self.http_request,
            "http_request_headers": {k: list(v) for k, v in self.http_request_headers.items()},
            "tcp_connect": None if self.tcp_connect is None else list(self.tcp_connect),
        }
        return _emit(known, (), self.extra)


# --------------------------------------------------------------------------------------------------
# Chokepoint's own observations (test_keys.x_chokepoint)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThroughputObservation:
    """A timed download through the censor and the same download over the control path."""

    target: str
    bytes: int
    seconds: float
    control_bytes: int
    control_seconds: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rate_bps(self) -> float | None:
        return self.bytes * 8 / self.seconds if self.seconds > 0 else None

    @property
    def control_rate_bps(self) -> float | None:
        return self.control_bytes * 8 / self.control_seconds if self.control_seconds > 0 else None

    @classmethod
    def from_json(cls, obj: Any, path: str) -> ThroughputObservation:
        r = _Reader(obj, path)
        target, nbytes, cbytes = r.text("target"), r.integer("bytes"), r.integer("control_bytes")
        seconds, cseconds = r.number("seconds"), r.number("control_seconds")
        if target is None or nbytes is None or cbytes is None or seconds is None or cseconds is None:
            raise MalformedMeasurement(path, "needs target, bytes, seconds, control_bytes, control_seconds")
        if min(nbytes, cbytes, seconds, cseconds) < 0:
            raise MalformedMeasurement(path, "negative byte count or duration")
        return cls(target, nbytes, float(seconds), cbytes, float(cseconds), r.extra())

    def to_json(self) -> dict[str, Any]:
        known = {
            "target": self.target,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "control_bytes": self.control_bytes,
            "control_seconds": self.control_seconds,
        }
        return _emit(known, (), self.extra)


@dataclass(frozen=True, slots=True)
class ResidualObservation:
    """After a triggering request, how long innocuous connections to `target` kept failing."""

    target: str
    trigger: str
    duration_s: float
    failure: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> ResidualObservation:
        r = _Reader(obj, path)
        target, trigger, duration = r.text("target"), r.text("trigger"), r.number("duration_s")
        if target is None or trigger is None or duration is None:
            raise MalformedMeasurement(path, "needs target, trigger and duration_s")
        if duration < 0:
            raise MalformedMeasurement(f"{path}.duration_s", "negative duration")
        return cls(target, trigger, float(duration), r.text("failure"), r.extra())

    def to_json(self) -> dict[str, Any]:
        known = {"target": self.target, "trigger": self.trigger, "duration_s": self.duration_s, "failure": self.failure}
        return _emit(known, ("failure",), self.extra)


@dataclass(frozen=True, slots=True)
class ChokepointObservations:
    """`test_keys.x_chokepoint`: throughput vs control, residual blocking, and the technique analysis."""

    throughput: tuple[ThroughputObservation, ...] = ()
    residual: tuple[ResidualObservation, ...] = ()
    techniques: tuple[Mapping[str, Any], ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> ChokepointObservations:
        r = _Reader(obj, path)
        techniques = r.array("techniques")
        if techniques is not None and not all(isinstance(t, dict) for t in techniques):
            raise MalformedMeasurement(f"{path}.techniques", "expected a list of objects")
        return cls(
            r.objects("throughput", ThroughputObservation.from_json) or (),
            r.objects("residual", ResidualObservation.from_json) or (),
            None if techniques is None else tuple(techniques),
            r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        known = {
            "throughput": [o.to_json() for o in self.throughput] or None,
            "residual": [o.to_json() for o in self.residual] or None,
            "techniques": None if self.techniques is None else [dict(t) for t in self.techniques],
        }
        return _emit(known, ("throughput", "residual", "techniques"), self.extra)


# --------------------------------------------------------------------------------------------------
# Web Connectivity test keys and the measurement
# --------------------------------------------------------------------------------------------------

CLASSIFICATION_KEYS = frozenset(
    {
        "accessible",
        "blocking",
        "body_length_match",
        "body_proportion",
        "dns_consistency",
        "dns_experiment_failure",
        "headers_match",
        "http_experiment_failure",
        "status_code_match",
        "title_match",
        "x_blocking_flags",
        "x_dns_flags",
        "x_null_null_flags",
    }
)
"""Test keys that are OONI's *analysis* of the observations, not observations (ts-017 "Test keys")."""


@dataclass(frozen=True, slots=True)
class WebConnectivityTestKeys:
    """Web Connectivity `test_keys`: raw observations, the control, and the classification fields."""

    queries: tuple[DNSQuery, ...] | None = None
    tcp_connect: tuple[TCPConnect, ...] | None = None
    tls_handshakes: tuple[TLSHandshake, ...] | None = None
    requests: tuple[HTTPTransaction, ...] | None = None
    control: ControlResponse | None = None
    control_request: ControlRequest | None = None
    control_failure: str | None = None
    x_chokepoint: ChokepointObservations | None = None
    # classification (ts-017): computed by chokepoint.probe.webconnectivity from the fields above
    blocking: str | bool | None = None
    accessible: bool | None = None
    dns_consistency: str | None = None
    dns_experiment_failure: str | None = None
    http_experiment_failure: str | None = None
    body_proportion: float | int | None = None
    body_length_match: bool | None = None
    headers_match: bool | None = None
    status_code_match: bool | None = None
    title_match: bool | None = None
    x_blocking_flags: int | None = None
    x_dns_flags: int | None = None
    x_null_null_flags: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str = "test_keys") -> WebConnectivityTestKeys:
        r = _Reader(obj, path)
        blocking = r.raw("blocking")
        if not (blocking is None or blocking is False or isinstance(blocking, str)):
            raise MalformedMeasurement(f"{path}.blocking", "expected a string, false or null")
        control = r.dictionary("control")
        control_request = r.dictionary("x_control_request")
        chokepoint = r.dictionary("x_chokepoint")
        return cls(
            queries=r.objects("queries", DNSQuery.from_json),
            tcp_connect=r.objects("tcp_connect", TCPConnect.from_json),
            tls_handshakes=r.objects("tls_handshakes", TLSHandshake.from_json),
            requests=r.objects("requests", HTTPTransaction.from_json),
            control=None if control is None else ControlResponse.from_json(control, f"{path}.control"),
            control_request=None
            if control_request is None
            else ControlRequest.from_json(control_request, f"{path}.x_control_request"),
            control_failure=r.text("control_failure"),
            x_chokepoint=None
            if chokepoint is None
            else ChokepointObservations.from_json(chokepoint, f"{path}.x_chokepoint"),
            blocking=blocking,
            accessible=r.flag("accessible"),
            dns_consistency=r.text("dns_consistency"),
            dns_experiment_failure=r.text("dns_experiment_failure"),
            http_experiment_failure=r.text("http_experiment_failure"),
            body_proportion=r.number("body_proportion"),
            body_length_match=r.flag("body_length_match"),
            headers_match=r.flag("headers_match"),
            status_code_match=r.flag("status_code_match"),
            title_match=r.flag("title_match"),
            x_blocking_flags=r.integer("x_blocking_flags"),
            x_dns_flags=r.integer("x_dns_flags"),
            x_null_null_flags=r.integer("x_null_null_flags"),
            extra=r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        known = {
            "queries": _tuple_out(self.queries),
            "requests": _tuple_out(self.requests),
            "tcp_connect": _tuple_out(self.tcp_connect),
            "tls_handshakes": _tuple_out(self.tls_handshakes),
            "x_control_request": None if self.control_request is None else self.control_request.to_json(),
            "control": None if self.control is None else self.control.to_json(),
            "control_failure": self.control_failure,
            "x_chokepoint": None if self.x_chokepoint is None else self.x_chokepoint.to_json(),
            "x_dns_flags": self.x_dns_flags,
            "dns_experiment_failure": self.dns_experiment_failure,
            "dns_consistency": self.dns_consistency,
            "http_experiment_failure": self.http_experiment_failure,
            "x_blocking_flags": self.x_blocking_flags,
            "x_null_null_flags": self.x_null_null_flags,
            "body_proportion": self.body_proportion,
            "body_length_match": self.body_length_match,
            "headers_match": self.headers_match,
            "status_code_match": self.status_code_match,
            "title_match": self.title_match,
            "blocking": self.blocking,
            "accessible": self.accessible,
        }
        return _emit(
            known,
            ("x_control_request", "x_chokepoint", "x_dns_flags", "x_blocking_flags", "x_null_null_flags"),
            self.extra,
        )


def format_ooni_time(moment: datetime) -> str:
    """df-000 timestamp: "YYYY-MM-DD hh:mm:ss" in UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class Measurement:
    """A df-000 measurement. `test_keys` is typed for Web Connectivity, a plain mapping otherwise."""

    input: str | None
    test_keys: WebConnectivityTestKeys | Mapping[str, Any]
    measurement_start_time: str = ""
    test_start_time: str = ""
    test_name: str = "web_connectivity"
    test_version: str = ""
    test_runtime: float | int = 0.0
    probe_cc: str = "ZZ"
    probe_asn: str = "AS0"
    probe_ip: str = "127.0.0.1"
    probe_network_name: str = ""
    resolver_asn: str = "AS0"
    resolver_ip: str = ""
    resolver_network_name: str = ""
    report_id: str = ""
    software_name: str = "chokepoint"
    software_version: str = __version__
    data_format_version: str = "0.2.0"
    annotations: Mapping[str, str] | None = None
    extensions: Mapping[str, Any] | None = None
    test_helpers: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def web_connectivity(self) -> WebConnectivityTestKeys:
        """The typed Web Connectivity test keys; raises MalformedMeasurement for another test."""
        if not isinstance(self.test_keys, WebConnectivityTestKeys):
            raise MalformedMeasurement("test_keys", f"not a web_connectivity measurement ({self.test_name})")
        return self.test_keys

    @classmethod
    def from_json(cls, obj: Any) -> Measurement:
        r = _Reader(obj, "")
        test_name = r.text("test_name")
        if test_name is None:
            raise MalformedMeasurement("test_name", "missing")
        raw_keys = r.dictionary("test_keys")
        if raw_keys is None:
            raise MalformedMeasurement("test_keys", "missing")
        test_keys: WebConnectivityTestKeys | Mapping[str, Any]
        test_keys = WebConnectivityTestKeys.from_json(raw_keys) if test_name == "web_connectivity" else raw_keys
        annotations = r.dictionary("annotations")
        if annotations is not None and not all(isinstance(v, str) for v in annotations.values()):
            raise MalformedMeasurement("annotations", "expected string values")
        return cls(
            input=r.text("input"),
            test_keys=test_keys,
            measurement_start_time=r.text("measurement_start_time") or "",
            test_start_time=r.text("test_start_time") or "",
            test_name=test_name,
            test_version=r.text("test_version") or "",
            test_runtime=r.number("test_runtime") or 0,
            probe_cc=r.text("probe_cc") or "",
            probe_asn=r.text("probe_asn") or "",
            probe_ip=r.text("probe_ip") or "",
            probe_network_name=r.text("probe_network_name") or "",
            resolver_asn=r.text("resolver_asn") or "",
            resolver_ip=r.text("resolver_ip") or "",
            resolver_network_name=r.text("resolver_network_name") or "",
            report_id=r.text("report_id") or "",
            software_name=r.text("software_name") or "",
            software_version=r.text("software_version") or "",
            data_format_version=r.text("data_format_version") or "",
            annotations=annotations,
            extensions=r.dictionary("extensions"),
            test_helpers=r.dictionary("test_helpers"),
            extra=r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        keys = self.test_keys.to_json() if isinstance(self.test_keys, WebConnectivityTestKeys) else dict(self.test_keys)
        known = {
            "annotations": None if self.annotations is None else dict(self.annotations),
            "data_format_version": self.data_format_version,
            "extensions": self.extensions,
            "input": self.input,
            "measurement_start_time": self.measurement_start_time,
            "probe_asn": self.probe_asn,
            "probe_cc": self.probe_cc,
            "probe_ip": self.probe_ip,
            "probe_network_name": self.probe_network_name,
            "report_id": self.report_id,
            "resolver_asn": self.resolver_asn,
            "resolver_ip": self.resolver_ip,
            "resolver_network_name": self.resolver_network_name,
            "software_name": self.software_name,
            "software_version": self.software_version,
            "test_helpers": self.test_helpers,
            "test_keys": keys,
            "test_name": self.test_name,
            "test_runtime": self.test_runtime,
            "test_start_time": self.test_start_time,
            "test_version": self.test_version,
        }
        return _emit(known, ("annotations", "extensions", "test_helpers"), self.extra)

    def dumps(self) -> str:
        """The measurement as one line of JSON (OONI's JSONL report format)."""
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))


def parse_measurement(data: bytes | str | Mapping[str, Any]) -> Measurement:
    """Parse one OONI measurement from JSON text or an already-decoded object."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMeasurement("", f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise MalformedMeasurement("", f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise MalformedMeasurement("", "JSON nested too deeply") from None
    return Measurement.from_json(data)


def join_host_port(host: str, port: int | str) -> str:
    """Go's net.JoinHostPort: IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
