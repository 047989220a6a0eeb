"""The measurement document: df-000 base keys, the Web Connectivity test keys, and parsing from JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chokepoint import __version__
from chokepoint.probe.measurement.control import ControlRequest, ControlResponse
from chokepoint.probe.measurement.observations import ChokepointObservations
from chokepoint.probe.measurement.reader import MalformedMeasurement, _emit, _Reader, _tuple_out
from chokepoint.probe.measurement.records import DNSQuery, HTTPTransaction, TCPConnect, TLSHandshake

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
