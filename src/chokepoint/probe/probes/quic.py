"""QUIC handshake and HTTP/3 GET probe (RFC 9000, RFC 9001, RFC 9114) with aioquic.

The handshake is recorded like an OONI df-006 entry with `network: "udp"` (OONI's `quic_handshakes`), the
GET like a df-001 entry with `network: "udp"` and `alpn: "h3"`. Failures: a dropped Initial (the usual
QUIC censorship, e.g. by SNI) is `generic_timeout_error`; a certificate the client rejects is
`ssl_invalid_hostname` / `ssl_unknown_authority` / `ssl_invalid_certificate`; any other TLS alert
`ssl_failed_handshake`; a failed version negotiation `quic_incompatible_version`. The certificate is
verified against the system bundle plus the context's CA file.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aioquic import tls as aioquic_tls
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.h3.exceptions import H3Error
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, StreamReset
from aioquic.quic.packet import QuicErrorCode
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from chokepoint.probe.measurement import (
    Failure,
    HTTPRequestRecord,
    HTTPResponseRecord,
    HTTPTransaction,
    TLSHandshake,
    failure_from_exception,
    unknown_failure,
)
from chokepoint.probe.probes.common import ProbeContext, ProbeError, family_of, ip_literal, join_host_port
from chokepoint.probe.probes.http import BODY_LIMIT, REQUEST_HEADERS, title_of

__all__ = ["QuicResult", "failure_from_termination", "get_h3"]

_CRYPTO_ERROR = int(QuicErrorCode.CRYPTO_ERROR)
_CERTIFICATE_ALERTS = frozenset(
    {
        aioquic_tls.AlertDescription.bad_certificate,
        aioquic_tls.AlertDescription.certificate_expired,
        aioquic_tls.AlertDescription.unknown_ca,
        aioquic_tls.AlertDescription.unsupported_certificate,
    }
)
# OpenSSL's X509 verification messages (pyOpenSSL X509StoreContextError) that mean "no trusted issuer".
_UNKNOWN_AUTHORITY = (
    "unable to get local issuer",
    "self-signed",
    "self signed",
    "unable to get issuer",
    "unknown ca",
    "untrusted",
)


def failure_from_termination(event: ConnectionTerminated) -> str:
    """df-007 failure string for how aioquic ended a connection (locally or by the peer)."""
    reason = (event.reason_phrase or "").lower()
    if "idle timeout" in reason:
        return Failure.GENERIC_TIMEOUT_ERROR.value
    if "common protocol version" in reason:
        return Failure.QUIC_INCOMPATIBLE_VERSION.value
    if _CRYPTO_ERROR <= event.error_code < _CRYPTO_ERROR + 256:
        alert = event.error_code - _CRYPTO_ERROR
        if alert in _CERTIFICATE_ALERTS:
            if "hostname" in reason or "doesn't match" in reason:
                return Failure.SSL_INVALID_HOSTNAME.value
            if any(marker in reason for marker in _UNKNOWN_AUTHORITY):
                return Failure.SSL_UNKNOWN_AUTHORITY.value
            return Failure.SSL_INVALID_CERTIFICATE.value
        return Failure.SSL_FAILED_HANDSHAKE.value
    if event.error_code == QuicErrorCode.NO_ERROR:
        return Failure.EOF_ERROR.value
    return unknown_failure(f"quic error 0x{event.error_code:x}: {event.reason_phrase}")


class _Client(QuicConnectionProtocol):
    """An HTTP/3 client connection that remembers why it ended."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.terminated: ConnectionTerminated | None = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.body_limit = BODY_LIMIT
        self.truncated = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for future in (self.done, self.connected):  # retrieved: no "exception never retrieved" noise
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.stream_id: int | None = None

    def quic_event_received(self, event) -> None:
        if isinstance(event, HandshakeCompleted) and not self.connected.done():
            self.connected.set_result(None)
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
            for future in (self.done, self.connected):
                if not future.done():
                    future.set_exception(ConnectionError(failure_from_termination(event)))
            return
        if isinstance(event, StreamReset) and event.stream_id == self.stream_id and not self.done.done():
            self.done.set_exception(ConnectionResetError(f"stream reset (error 0x{event.error_code:x})"))
            return
        try:
            h3_events = self.h3.handle_event(event)
        except H3Error as exc:
            if not self.done.done():
                self.done.set_exception(ConnectionError(unknown_failure(f"HTTP/3 error: {exc}")))
            return
        for h3_event in h3_events:
            if getattr(h3_event, "stream_id", None) != self.stream_id:
                continue
            if isinstance(h3_event, HeadersReceived):
                for name, value in h3_event.headers:
                    key, text = name.decode("latin-1"), value.decode("latin-1")
                    if key == ":status":
                        self.status = int(text) if text.isdigit() else 0
                    elif not key.startswith(":"):
                        self.headers.append((key, text))
            elif isinstance(h3_event, DataReceived):
                room = self.body_limit - len(self.body)
                self.body += h3_event.data[:room]
                if len(h3_event.data) > room:
                    self.truncated = True
            if getattr(h3_event, "stream_ended", False) or self.truncated:
                if not self.done.done():
                    self.done.set_result(None)

    def send_get(self, authority: str, path: str) -> None:
        self.stream_id = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", authority.encode("ascii", "replace")),
            (b":path", path.encode("ascii", "replace")),
        ]
        headers += [(name.lower().encode(), value.encode()) for name, value in REQUEST_HEADERS]
        self.h3.send_headers(self.stream_id, headers, end_stream=True)
        self.transmit()


def _trust_bundle(cafile: str | None) -> bytes | None:
    """The system bundle plus `cafile`, as PEM for aioquic (None: aioquic's default, certifi)."""
    parts = []
    paths = ssl.get_default_verify_paths()
    for system in (paths.cafile, paths.openssl_cafile):
        if system and Path(system).is_file():
            parts.append(Path(system).read_bytes())
            break
    if cafile:
        try:
            parts.append(Path(cafile).read_bytes())
        except OSError as exc:
            raise ProbeError(f"cannot read the CA file {cafile}: {exc}") from None
    return b"\n".join(parts) if parts else None


@dataclass(frozen=True, slots=True)
class QuicResult:
    """The handshake record and the HTTP/3 GET record (None when the handshake failed)."""

    handshake: TLSHandshake
    request: HTTPTransaction | None
    body: bytes = b""
    title: str = ""

    @property
    def failure(self) -> str | None:
        if self.handshake.failure is not None:
            return self.handshake.failure
        return self.request.failure if self.request is not None else None


def get_h3(
    ctx: ProbeContext,
    ip: str,
    port: int,
    server_name: str,
    *,
    authority: str | None = None,
    path: str = "/",
    tags: Iterable[str] = ("depth=0",),
    transaction_id: int | None = None,
    body_limit: int = BODY_LIMIT,
    fetch: bool = True,
) -> QuicResult:
    """QUIC handshake to `ip`:`port` with SNI `server_name`, then (with `fetch`) GET `path`."""
    address = ip_literal(ip)
    if address is None or not 0 < port < 65536:
        raise ProbeError(f"cannot reach {ip!r} port {port!r} over QUIC: not an IP address and port")
    txid = ctx.transaction_id() if transaction_id is None else transaction_id
    tags = tuple(tags)
    authority = authority or server_name
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=server_name,
        idle_timeout=2 * max(ctx.timeout, 1.0),
        cadata=_trust_bundle(ctx.cafile),
    )
    endpoint = join_host_port(address, port)
    url = f"https://{authority}{path}"
    request_record = HTTPRequestRecord(
        url,
        "GET",
        (("Host", authority), *REQUEST_HEADERS),
        {"Host": authority, **dict(REQUEST_HEADERS)},
        "",
        False,
        {"x_transport": "quic"},
    )
    t0 = ctx.clock.now()
    state: dict = {}

    async def run() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(family_of(address), socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((address, port))
        except OSError:
            sock.close()
            raise
        connection = QuicConnection(configuration=configuration)
        transport, protocol = await loop.create_datagram_endpoint(lambda: _Client(connection), sock=sock)
        client: _Client = protocol  # type: ignore[assignment]
        client.body_limit = body_limit
        state["client"] = client
        try:
            # the peer address exactly as the socket reports received datagrams (IPv6: a 4-tuple),
            # or aioquic would take every reply for a new network path
            client.connect((address, port, 0, 0) if ":" in address else (address, port))
            await asyncio.wait_for(asyncio.shield(client.connected), ctx.timeout)
            state["handshake_t"] = ctx.clock.now()
            if fetch:
                state["request_t0"] = ctx.clock.now()
                client.send_get(authority, path)
                await asyncio.wait_for(asyncio.shield(client.done), 3 * ctx.timeout)
        finally:
            client.close()
            try:
                await asyncio.wait_for(client.wait_closed(), 1.0)
            except TimeoutError:
                pass
            transport.close()

    error: BaseException | None = None
    try:
        with warnings.catch_warnings():  # system bundles hold old roots cryptography warns about
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            asyncio.run(run())
    except (OSError, TimeoutError) as exc:  # ConnectionError (termination) is an OSError
        error = exc
    client: _Client | None = state.get("client")
    handshake_t = state.get("handshake_t")
    if handshake_t is None:
        failure = _failure(error, client)
        record = TLSHandshake(
            endpoint, server_name, failure, "udp", t=ctx.clock.now(), tags=tags, transaction_id=txid, extra={"t0": t0}
        )
        return QuicResult(record, None)
    assert client is not None
    tls_engine = client._quic.tls
    cipher = f"TLS_{tls_engine.key_schedule.cipher_suite.name}" if tls_engine.key_schedule is not None else ""
    peer = tls_engine._peer_certificate
    leaf = peer.public_bytes(Encoding.DER) if peer is not None else None
    record = TLSHandshake(
        endpoint,
        server_name,
        None,
        "udp",
        cipher,
        tls_engine.alpn_negotiated or "",
        False,
        (leaf,) if leaf else None,
        "TLSv1.3",
        handshake_t,
        tags,
        txid,
        {"t0": t0},
    )
    if not fetch:
        return QuicResult(record, None)
    failure = _failure(error, client) if error is not None else None
    body = bytes(client.body)
    response = HTTPResponseRecord(
        client.status, tuple(client.headers), {k: v for k, v in reversed(client.headers)}, body, client.truncated
    )
    request = HTTPTransaction(
        request_record,
        response,
        failure,
        "udp",
        endpoint,
        "h3",
        ctx.clock.now(),
        tags,
        txid,
        {"t0": state.get("request_t0", handshake_t)},
    )
    return QuicResult(record, request, body, title_of(body))


def _failure(error: BaseException | None, client: _Client | None) -> str:
    if client is not None and client.terminated is not None and not isinstance(error, TimeoutError):
        return failure_from_termination(client.terminated)
    if (
        isinstance(error, ConnectionError)
        and error.args
        and isinstance(error.args[0], str)
        and not isinstance(error, ConnectionResetError)
    ):
        return error.args[0]
    if error is None:
        return unknown_failure("the connection ended without an outcome")
    return failure_from_exception(error)
