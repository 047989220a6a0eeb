"""OONI measurement model: base keys, Web Connectivity test keys, failure strings.

Formats (ooni/spec, data-formats): df-000 base keys, df-001 HTTP (`requests`), df-002 DNS (`queries`),
df-005 TCP connect (`tcp_connect`), df-006 TLS (`tls_handshakes`), df-007 failure strings; Web Connectivity
test keys and the test-helper response (`control`) per ts-017. Keys this model does not name are kept in
`extra` and written back unchanged, so `parse_measurement(x).to_json() == x` for OONI's own measurements.
Chokepoint's observations OONI has no field for live under `test_keys.x_chokepoint`.

Parsing raises `MalformedMeasurement` (a `chokepoint.dissect.errors.Malformed`) naming the offending key.
"""

from __future__ import annotations

from chokepoint.probe.measurement.control import (
    ControlDNS,
    ControlHTTPRequest,
    ControlIPInfo,
    ControlRequest,
    ControlResponse,
    ControlTCPConnect,
    ControlTLSHandshake,
)
from chokepoint.probe.measurement.document import (
    CLASSIFICATION_KEYS,
    Measurement,
    WebConnectivityTestKeys,
    format_ooni_time,
    parse_measurement,
)
from chokepoint.probe.measurement.failures import Failure, failure_from_exception, failure_from_rcode, unknown_failure
from chokepoint.probe.measurement.observations import ChokepointObservations, ResidualObservation, ThroughputObservation
from chokepoint.probe.measurement.reader import MalformedMeasurement
from chokepoint.probe.measurement.records import (
    DNSAnswer,
    DNSQuery,
    HTTPRequestRecord,
    HTTPResponseRecord,
    HTTPTransaction,
    TCPConnect,
    TLSHandshake,
)

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
