"""Failure strings (ooni/spec df-007-errors.md) and the mapping from Python exceptions and DNS rcodes to them."""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
from collections.abc import Mapping
from enum import StrEnum

import dns.exception
import dns.rcode
import dns.resolver


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
