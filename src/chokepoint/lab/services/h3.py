"""QUIC + HTTP/3 (RFC 9000, RFC 9114) server for the lab origin app, built on aioquic.

Certificate per SNI: aioquic takes one certificate per ``QuicConfiguration`` and has no SNI callback,
and no wildcard or SAN list can cover "any hostname". So each connection gets a hook that runs when
its TLS engine has the complete ClientHello (which may span several Initial packets) and before the
server signs anything: it reads the SNI with aioquic's own ClientHello parser, asks the lab CA for
that name's leaf, and sets it as the connection's certificate. Without SNI (or with a name that is
not a hostname) the listener's address certificate stays. The hook wraps two private aioquic methods
(``QuicConnection._initialize`` and ``tls.Context._server_handle_hello``) on that one connection
object only; aioquic is pinned (pyproject.toml), ``check_aioquic_hooks()`` fails loudly at start-up if
they disappear, and the tests check that the served certificate matches the SNI.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from aioquic import tls
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.buffer import Buffer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent, StopSendingReceived, StreamReset

from chokepoint.lab.ca import CertNameError, IssuedCert, LabCA
from chokepoint.lab.services import app

log = logging.getLogger(__name__)

#: aioquic buffers a whole response body in memory (no back-pressure API): cap /large over HTTP/3.
H3_BODY_MAX = 64 << 20

CertificateChooser = Callable[[str | None], IssuedCert | None]


class AioquicHookError(RuntimeError):
    """The installed aioquic lacks the internals the per-SNI certificate hook relies on."""


def check_aioquic_hooks() -> None:
    """Raise ``AioquicHookError`` unless the private methods we wrap exist."""
    for owner, name in ((QuicConnection, "_initialize"), (tls.Context, "_server_handle_hello")):
        if not callable(getattr(owner, name, None)):
            raise AioquicHookError(
                f"aioquic {owner.__name__}.{name} is gone; the per-SNI QUIC "
                "certificate hook needs updating for this aioquic version"
            )


def install_sni_certificates(quic: QuicConnection, choose: CertificateChooser) -> None:
    """Make this server connection present ``choose(sni)``'s certificate (see the module docstring)."""
    initialize = quic._initialize

    def initialize_with_hook(peer_cid: bytes) -> None:
        initialize(peer_cid)
        context = quic.tls
        handle_hello = context._server_handle_hello

        def handle_hello_with_sni(input_buf: Buffer, *args, **kwargs):
            start = input_buf.tell()
            try:
                server_name = tls.pull_client_hello(input_buf).server_name
            except (ValueError, tls.Alert):  # aioquic itself raises the right alert just below
                server_name = None
            finally:
                input_buf.seek(start)
            leaf = choose(server_name)
            if leaf is not None:
                context.certificate = leaf.certificate
                context.certificate_private_key = leaf.private_key
                context.certificate_chain = []
            return handle_hello(input_buf, *args, **kwargs)

        context._server_handle_hello = handle_hello_with_sni

    quic._initialize = initialize_with_hook


def ca_chooser(ca: LabCA) -> CertificateChooser:
    """A chooser issuing lab-CA leaves per SNI; ``None`` (keep the default) for no or bad SNI."""

    def choose(server_name: str | None) -> IssuedCert | None:
        if server_name is None:
            return None
        try:
            return ca.leaf(server_name)
        except CertNameError as exc:
            log.info("quic: no certificate for SNI %r (%s)", server_name, exc)
            return None

    return choose


class H3OriginProtocol(QuicConnectionProtocol):
    """One QUIC connection speaking HTTP/3 to the origin app."""

    def __init__(self, quic: QuicConnection, stream_handler=None, *, choose: CertificateChooser | None = None) -> None:
        super().__init__(quic, stream_handler)
        if choose is not None:
            install_sni_certificates(quic, choose)
        self._http: H3Connection | None = None
        self._requests: dict[int, app.Request | None] = {}
        self._terminated = False
        self._tasks: dict[int, asyncio.Task] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self._http = H3Connection(self._quic)
        elif isinstance(event, (StreamReset, StopSendingReceived)):
            self._cancel(event.stream_id)
        elif isinstance(event, ConnectionTerminated):
            self._terminated = True
            for stream_id in list(self._tasks):
                self._cancel(stream_id)
        if self._http is not None:
            for http_event in self._http.handle_event(event):
                self._http_event_received(http_event)

    def _http_event_received(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            fields = {}
            for name, value in event.headers:
                fields.setdefault(name, value)
            method = fields.get(b":method", b"").decode("latin-1")
            path = fields.get(b":path", b"").decode("latin-1")
            if not method or (not path and method != "CONNECT"):
                self._requests[event.stream_id] = None  # answered with 400 once the stream ends
            else:
                authority = fields.get(b":authority", fields.get(b"host", b"")).decode("latin-1")
                self._requests[event.stream_id] = app.Request(method, path, authority, "HTTP/3")
            if event.stream_ended:
                self._start(event.stream_id)
        elif isinstance(event, DataReceived) and event.stream_ended:
            self._start(event.stream_id)

    def _start(self, stream_id: int) -> None:
        if stream_id not in self._requests or stream_id in self._tasks:
            return
        request = self._requests.pop(stream_id)
        task = asyncio.get_running_loop().create_task(self._answer(stream_id, request))
        self._tasks[stream_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(stream_id, None))

    def _cancel(self, stream_id: int) -> None:
        self._requests.pop(stream_id, None)
        task = self._tasks.pop(stream_id, None)
        if task is not None:
            task.cancel()

    async def _answer(self, stream_id: int, request: app.Request | None) -> None:
        if request is None:
            response = app.error_response(400, "missing :method or :path")
        else:
            response = await app.respond(request)
            log.info("h3 %s %s host=%r -> %d", request.method, request.target, request.host, response.status)
        body = response.body
        if response.stream is not None:
            if response.length > H3_BODY_MAX:
                response = app.error_response(400, f"over HTTP/3, /large serves at most {H3_BODY_MAX} bytes")
                body = response.body
            else:
                body = b"".join([chunk async for chunk in response.stream()])
        head_only = request is not None and request.method == "HEAD"
        headers = [(b":status", str(response.status).encode())]
        headers += [(name.lower().encode(), value.encode("latin-1")) for name, value in response.headers]
        if response.has_body and not head_only:
            # Optional for HEAD (RFC 9110 8.6); aioquic's client treats it as a length mismatch there.
            headers.append((b"content-length", str(len(body)).encode()))
        send_body = response.has_body and not head_only and body
        if self._http is None or self._terminated:
            return
        self._http.send_headers(stream_id, headers, end_stream=not send_body)
        if send_body:
            self._http.send_data(stream_id, body, end_stream=True)
        self.transmit()


async def serve_h3(sock: socket.socket, ca: LabCA, default: IssuedCert) -> QuicServer:
    """Serve HTTP/3 on a bound UDP socket; ``default`` is presented when the client sends no SNI."""
    check_aioquic_hooks()
    configuration = QuicConfiguration(
        is_client=False, alpn_protocols=list(H3_ALPN), certificate=default.certificate, private_key=default.private_key
    )
    choose = ca_chooser(ca)

    def create_protocol(quic: QuicConnection, stream_handler=None) -> H3OriginProtocol:
        return H3OriginProtocol(quic, stream_handler, choose=choose)

    loop = asyncio.get_running_loop()
    _, server = await loop.create_datagram_endpoint(
        lambda: QuicServer(configuration=configuration, create_protocol=create_protocol), sock=sock
    )
    return server
