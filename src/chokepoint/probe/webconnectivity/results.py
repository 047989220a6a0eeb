"""What the classification returns: OONI's `blocking` values and bit flags, Chokepoint's techniques, the result."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from chokepoint.probe.fingerprints import FingerprintMatch

BLOCKING_DNS = "dns"
BLOCKING_TCP_IP = "tcp_ip"
BLOCKING_HTTP_FAILURE = "http-failure"
BLOCKING_HTTP_DIFF = "http-diff"


class BlockingFlag:
    """`x_blocking_flags` bits (webconnectivitylte analysiscore.go)."""

    DNS = 1
    TCP_IP = 2
    TLS = 4
    HTTP = 8
    HTTP_DIFF = 16
    SUCCESS = 32


class DNSFlag:
    """`x_dns_flags` bits."""

    BOGON = 1
    UNEXPECTED_FAILURE = 2
    UNEXPECTED_ADDRS = 4


class NullNullFlag:
    """`x_null_null_flags` bits (why blocking and accessible might both be null)."""

    EXPECTED_DNS_FAILURE = 1
    EXPECTED_TCP_FAILURE = 2
    EXPECTED_TLS_FAILURE = 4
    SUCCESSFUL_HTTPS = 8
    UNEXPECTED_DNS_SUCCESS = 16


class TechniqueKind(StrEnum):
    """Chokepoint's per-layer interference techniques."""

    DNS_NXDOMAIN = "dns-nxdomain"
    DNS_BOGON = "dns-bogon"
    DNS_FORGED = "dns-forged"
    DNS_FAILURE = "dns-failure"
    TCP_REFUSED = "tcp-refused"
    TCP_DROPPED = "tcp-dropped"
    TCP_RESET = "tcp-reset"
    TCP_UNREACHABLE = "tcp-unreachable"
    TCP_FAILURE = "tcp-failure"
    TLS_RESET = "tls-reset"
    TLS_DROPPED = "tls-dropped"
    TLS_EOF = "tls-eof"
    TLS_MITM = "tls-mitm"
    TLS_FAILURE = "tls-failure"
    HTTP_RESET = "http-reset"
    HTTP_DROPPED = "http-dropped"
    HTTP_EOF = "http-eof"
    HTTP_FAILURE = "http-failure"
    HTTP_BLOCKPAGE = "http-blockpage"
    HTTP_DIFF = "http-diff"
    THROTTLED = "throttled"
    RESIDUAL = "residual"

    @property
    def layer(self) -> str:
        return {"dns": "dns", "tcp": "tcp", "tls": "tls", "http": "http"}.get(self.value.split("-")[0], "transport")


@dataclass(frozen=True, slots=True)
class Technique:
    """One detected interference, with the witness that supports it."""

    kind: TechniqueKind
    target: str
    evidence: str
    failure: str | None = None
    fingerprint: FingerprintMatch | None = None
    throughput_ratio: float | None = None
    duration_s: float | None = None

    @property
    def layer(self) -> str:
        return self.kind.layer

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "technique": self.kind.value,
            "layer": self.layer,
            "target": self.target,
            "evidence": self.evidence,
        }
        if self.failure is not None:
            out["failure"] = self.failure
        if self.fingerprint is not None:
            out["fingerprint"] = self.fingerprint.to_json()
        if self.throughput_ratio is not None:
            out["throughput_ratio"] = self.throughput_ratio
        if self.duration_s is not None:
            out["duration_s"] = self.duration_s
        return out


@dataclass(frozen=True, slots=True)
class WebConnectivityResult:
    """OONI's classification keys plus Chokepoint's techniques and every fingerprint that matched."""

    blocking: str | bool | None
    accessible: bool | None
    dns_consistency: str | None
    dns_experiment_failure: str | None
    http_experiment_failure: str | None
    body_proportion: float
    body_length_match: bool | None
    headers_match: bool | None
    status_code_match: bool | None
    title_match: bool | None
    x_blocking_flags: int
    x_dns_flags: int
    x_null_null_flags: int
    techniques: tuple[Technique, ...] = ()
    fingerprint_matches: tuple[FingerprintMatch, ...] = ()

    @property
    def false_positives(self) -> tuple[FingerprintMatch, ...]:
        """Matches of known-benign signatures (scope fp), e.g. a CDN challenge page."""
        return tuple(m for m in self.fingerprint_matches if m.is_false_positive)
