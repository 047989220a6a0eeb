"""The v0.5 bit flags `x_blocking_flags`, `x_dns_flags`, `x_null_null_flags` (analysisext.go)."""

from __future__ import annotations

from chokepoint.probe.webconnectivity.analysis import _Analysis
from chokepoint.probe.webconnectivity.results import BlockingFlag, DNSFlag, NullNullFlag


def _flags(wa: _Analysis) -> tuple[int, int, int]:
    blocking = dns = null_null = 0
    if wa.dns_bogon:  # a bogon alone may be the site's own misconfiguration: flagged, not blocking
        dns |= DNSFlag.BOGON
    if wa.dns_unexpected_failure:
        blocking |= BlockingFlag.DNS
        dns |= DNSFlag.UNEXPECTED_FAILURE
    if wa.dns_invalid:
        blocking |= BlockingFlag.DNS
        dns |= DNSFlag.UNEXPECTED_ADDRS
    if wa.tcp_unexpected_failure:
        blocking |= BlockingFlag.TCP_IP
    if wa.tls_unexpected_failure:
        blocking |= BlockingFlag.TLS
    if wa.http_unexpected_failure:
        blocking |= BlockingFlag.HTTP
    has_final = any(
        v is not None
        for v in (
            wa.final_tcp_without_control,
            wa.final_tls_without_control,
            wa.final_tls_with_control,
            wa.final_tcp_with_control,
        )
    )
    if not has_final and wa.expectations is not None and wa.expectations.final_response_failure == "":
        if wa.dns_unexplained_failure:
            blocking |= BlockingFlag.DNS
        if wa.tcp_unexplained_failure:
            blocking |= BlockingFlag.TCP_IP
        if wa.tls_unexplained_failure:
            blocking |= BlockingFlag.TLS
        if wa.http_unexplained_failure:
            blocking |= BlockingFlag.HTTP
    if wa.final_tcp_without_control is not None:
        pass
    elif wa.final_tls_without_control is not None:
        null_null |= NullNullFlag.SUCCESSFUL_HTTPS
        blocking |= BlockingFlag.SUCCESS
    elif wa.final_tls_with_control is not None:
        blocking |= BlockingFlag.SUCCESS
    elif wa.final_tcp_with_control is not None:
        blocking |= BlockingFlag.HTTP_DIFF if wa.http_diff() else BlockingFlag.SUCCESS
    if wa.dns_expected_failure:
        null_null |= NullNullFlag.EXPECTED_DNS_FAILURE
    if wa.tcp_expected_failure:
        null_null |= NullNullFlag.EXPECTED_TCP_FAILURE
    if wa.tls_expected_failure:
        null_null |= NullNullFlag.EXPECTED_TLS_FAILURE
    if wa.expectations is not None and not wa.expectations.dns_addrs and wa.dns_success:
        null_null |= NullNullFlag.UNEXPECTED_DNS_SUCCESS
    return blocking, dns, null_null
