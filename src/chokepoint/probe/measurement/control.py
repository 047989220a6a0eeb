"""The Web Connectivity test helper's request and response (`control`, ts-017)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chokepoint.probe.measurement.reader import MalformedMeasurement, _emit, _Reader


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
