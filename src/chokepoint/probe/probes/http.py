"""HTTP/1.1 GET probe (RFC 9112, via `http.client` on a socket we connected ourselves), recorded as an
OONI df-001 `requests` entry, plus `fetch`: connect + TLS + GET on a fresh connection with any Host/SNI.

The request carries the Host (and, over TLS, the SNI) it is told to: the real one, or a control one through
the same path, which is how Chokepoint tells Host/SNI filtering from a broken site. The request headers are
the browser-like ones OONI sends. A response is always recorded (`code` 0 when none arrived); a failure
after the status line keeps what was read (status, headers, partial body), so a stalled download shows
as "timed out after a 200 response began". Bodies are kept up to `body_limit` bytes
(`body_is_truncated` beyond it); a body that keeps dribbling past `total_timeout` ends with
`generic_timeout_error`.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chokepoint.probe.measurement import (
    HTTPRequestRecord,
    HTTPResponseRecord,
    HTTPTransaction,
    TCPConnect,
    TLSHandshake,
    failure_from_exception,
)
from chokepoint.probe.probes import tcp, tls
from chokepoint.probe.probes.common import ProbeContext, Target, peer_endpoint

__all__ = ["BODY_LIMIT", "REQUEST_HEADERS", "FetchResult", "Fetched", "fetch", "get", "title_of"]

BODY_LIMIT = 1 << 20
READ_SIZE = 64 * 1024
#: What OONI's Web Connectivity sends (ts-017; Host is added per request).
REQUEST_HEADERS: tuple[tuple[str, str], ...] = (
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.9"),
    (
        "User-Agent",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.0.0 Safari/537.3",
    ),
)
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_TITLE = re.compile(rb"<title>([^<]{1,512})</title>", re.IGNORECASE)
# http.client raises HTTPException subclasses for grammar errors, OSError for the socket (ssl errors,
# resets, timeouts), ValueError for a few malformed framing values it does not wrap.
_FETCH_ERRORS = (OSError, http.client.HTTPException, EOFError, ValueError)


def title_of(body: bytes) -> str:
    """The page title as OONI extracts it (`<title>([^<]{1,512})</title>`, case-insensitive)."""
    match = _TITLE.search(body)
    return match.group(1).decode("utf-8", "replace") if match else ""


@dataclass(frozen=True, slots=True)
class Fetched:
    """The df-001 record with the body as bytes, its title and the redirect location (if any)."""

    transaction: HTTPTransaction
    body: bytes
    title: str
    location: str | None

    @property
    def failure(self) -> str | None:
        return self.transaction.failure

    @property
    def status(self) -> int:
        return self.transaction.response.code if self.transaction.response is not None else 0

    @property
    def headers(self) -> dict[str, str]:
        response = self.transaction.response
        out: dict[str, str] = {}
        for name, value in response.headers_list if response is not None else ():
            out.setdefault(name, value if isinstance(value, str) else value.decode("latin-1"))
        return out


def _request_record(url: str, host_header: str, extra_headers: Sequence[tuple[str, str]]) -> HTTPRequestRecord:
    pairs = (("Host", host_header), *extra_headers)
    return HTTPRequestRecord(url, "GET", tuple(pairs), {k: v for k, v in pairs}, "", False, {"x_transport": "tcp"})


def get(
    ctx: ProbeContext,
    sock: socket.socket,
    url: str,
    path: str,
    host_header: str,
    *,
    network: str = "tcp",
    tags: Iterable[str] = ("depth=0",),
    transaction_id: int | None = None,
    body_limit: int = BODY_LIMIT,
    total_timeout: float | None = None,
    headers: Sequence[tuple[str, str]] = REQUEST_HEADERS,
    on_chunk=None,
) -> Fetched:
    """GET `path` with `Host: host_header` over the connected (possibly TLS) `sock`, then close it.

    `on_chunk(size)` is called with 0 once the request is sent, then for every body chunk read (throughput
    timing); `total_timeout` (default
    three times the context's timeout) bounds the whole exchange."""
    txid = ctx.transaction_id() if transaction_id is None else transaction_id
    address = peer_endpoint(sock)
    alpn = (sock.selected_alpn_protocol() or "") if isinstance(sock, ssl.SSLSocket) else ""
    request = _request_record(url, host_header, headers)
    t0 = ctx.clock.now()
    deadline = time.monotonic() + (total_timeout if total_timeout is not None else 3 * ctx.timeout)
    status, reason_headers, body, truncated, failure = 0, (), bytearray(), False, None
    location = None
    connection = http.client.HTTPConnection("unused", timeout=ctx.timeout)
    connection.sock = sock
    try:
        sock.settimeout(ctx.timeout)
        connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        for name, value in request.headers_list:
            connection.putheader(name, value)
        connection.endheaders()
        if on_chunk is not None:
            on_chunk(0)  # the request is out: throughput timing starts here
        response = connection.getresponse()
        status = response.status
        reason_headers = tuple(response.getheaders())
        location = response.getheader("Location") if status in REDIRECT_CODES else None
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("the response did not complete in time")
            chunk = response.read1(min(READ_SIZE, body_limit + 1 - len(body)))
            if not chunk:
                break
            body += chunk
            if on_chunk is not None:
                on_chunk(len(chunk))
            if len(body) > body_limit:
                del body[body_limit:]
                truncated = True
                break
    except _FETCH_ERRORS as exc:
        failure = failure_from_exception(exc)
    finally:
        connection.close()
        sock.close()
    body_bytes = bytes(body)
    response_record = HTTPResponseRecord(
        status, reason_headers, {k: v for k, v in reversed(reason_headers)}, body_bytes, truncated
    )
    transaction = HTTPTransaction(
        request, response_record, failure, network, address, alpn, ctx.clock.now(), tuple(tags), txid, {"t0": t0}
    )
    return Fetched(transaction, body_bytes, title_of(body_bytes), location)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One fresh connection: its connect, its handshake (https only) and its GET (None when an earlier
    step failed)."""

    connect: TCPConnect
    handshake: TLSHandshake | None
    fetched: Fetched | None

    @property
    def failure(self) -> str | None:
        """The first failure along the way, or None when the GET completed."""
        for step in (self.connect, self.handshake, self.fetched):
            if step is not None and step.failure is not None:
                return step.failure
        return None


def fetch(
    ctx: ProbeContext,
    target: Target,
    ip: str,
    *,
    host: str | None = None,
    tags: Iterable[str] = ("depth=0",),
    body_limit: int = BODY_LIMIT,
    total_timeout: float | None = None,
    on_chunk=None,
    tls_handshake: bool = True,
    request: bool = True,
) -> FetchResult:
    """Connect to `ip` on the target's port, handshake (https: SNI `host`) and GET the target's path with
    `Host: host` (default: the target's own host). Without `request` (or `tls_handshake`) it stops after
    the handshake (or the connect) and closes the connection."""
    name = host or target.host
    tags = tuple(tags)
    txid = ctx.transaction_id()
    connection = tcp.connect(ctx, ip, target.port, tags=tags, transaction_id=txid)
    if connection.sock is None:
        return FetchResult(connection.record, None, None)
    sock: socket.socket = connection.sock
    handshake = None
    if target.scheme == "https" and tls_handshake:
        secured = tls.handshake(ctx, sock, name, tags=tags, transaction_id=txid)
        handshake = secured.record
        if secured.sock is None:
            return FetchResult(connection.record, handshake, None)
        sock = secured.sock
    if not request or (target.scheme == "https" and not tls_handshake):
        sock.close()
        return FetchResult(connection.record, handshake, None)
    url = f"{target.scheme}://{target.authority_for(name)}{target.path}"
    fetched = get(
        ctx,
        sock,
        url,
        target.path,
        target.authority_for(name),
        tags=tags,
        transaction_id=txid,
        body_limit=body_limit,
        total_timeout=total_timeout,
        on_chunk=on_chunk,
    )
    return FetchResult(connection.record, handshake, fetched)
