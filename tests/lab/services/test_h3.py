"""QUIC/HTTP/3 service: aioquic's client GETs over UDP and verifies a per-SNI lab certificate."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aioquic import tls
from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.buffer import Buffer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, QuicConnectionError
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted
from aioquic.quic.packet import QuicProtocolVersion, pull_quic_header
from cryptography import x509
from hypothesis import given, settings

from chokepoint.lab.ca import LabCA
from chokepoint.lab.services import app, h3
from tests._corpus import mutations
from tests.lab.services._harness import CLIENT_TIMEOUT


class _H3Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._waiters: dict[int, asyncio.Future] = {}
        self._responses: dict[int, tuple[list, bytearray]] = {}

    def quic_event_received(self, event) -> None:
        for http_event in self._http.handle_event(event):
            headers, body = self._responses.setdefault(http_event.stream_id, ([], bytearray()))
            if isinstance(http_event, HeadersReceived):
                headers.extend(http_event.headers)
            elif isinstance(http_event, DataReceived):
                body.extend(http_event.data)
            if getattr(http_event, "stream_ended", False):
                self._waiters.pop(http_event.stream_id).set_result((headers, bytes(body)))

    async def request(self, method: str, authority: str, path: str) -> tuple[dict, bytes]:
        stream_id = self._quic.get_next_available_stream_id()
        self._http.send_headers(
            stream_id,
            [
                (b":method", method.encode()),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
            ],
            end_stream=True,
        )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[stream_id] = waiter
        self.transmit()
        headers, body = await asyncio.wait_for(waiter, CLIENT_TIMEOUT)
        return {k.decode(): v.decode() for k, v in headers}, body


def h3_get(
    services,
    server_name: str,
    paths: list[str],
    *,
    host: str = "127.0.0.1",
    method: str = "GET",
    cafile: str | None = None,
) -> list[tuple[dict, bytes]]:
    async def go():
        configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=server_name)
        configuration.load_verify_locations(cafile or str(services.ca_file))
        async with connect(
            host, services.ports["https"], configuration=configuration, create_protocol=_H3Client, wait_connected=True
        ) as client:
            return [await client.request(method, server_name, path) for path in paths]

    return asyncio.run(asyncio.wait_for(go(), CLIENT_TIMEOUT))


@pytest.mark.parametrize("name", ["quic.example", "www.blocked.example", "y" * 63 + ".lab.test"])
def test_get_any_name_over_h3(services, name):
    ((headers, body),) = h3_get(services, name, ["/h3/path?x=1"])  # aioquic verifies chain + name
    assert headers[":status"] == "200" and headers["x-chokepoint-lab"] == "origin"
    assert body == app.page_body(name, "/h3/path?x=1")
    assert headers["content-length"] == str(len(body))


def test_several_requests_on_one_connection(services):
    results = h3_get(services, "multi.example", ["/a", "/status/404", "/large?bytes=200001", "/redirect?to=/b"])
    assert [h[":status"] for h, _ in results] == ["200", "404", "200", "302"]
    assert results[0][1] == app.page_body("multi.example", "/a")
    assert results[2][1] == app.large_body(200_001)
    assert results[3][0]["location"] == "/b"


def test_head_over_h3(services):
    ((headers, body),) = h3_get(services, "head.example", ["/x"], method="HEAD")
    assert headers[":status"] == "200" and headers["x-chokepoint-lab"] == "origin" and body == b""
    assert "content-length" not in headers  # optional for HEAD; aioquic's client rejects it


def test_large_beyond_the_h3_cap_is_refused(services):
    ((headers, body),) = h3_get(services, "big.example", [f"/large?bytes={h3.H3_BODY_MAX + 1}"])
    assert headers[":status"] == "400" and b"at most" in body


def test_no_sni_gets_the_address_certificate(services):
    # aioquic sends no SNI for an IP literal and then checks the certificate's IP SAN
    ((headers, body),) = h3_get(services, "127.0.0.1", ["/ip"])
    assert headers[":status"] == "200"


def test_the_wrong_ca_fails_the_handshake(services, tmp_path):
    other = tmp_path / "other-ca.pem"
    other.write_bytes(LabCA.create().cert_pem)
    with pytest.raises((ConnectionError, TimeoutError, asyncio.TimeoutError)):
        h3_get(services, "quic.example", ["/"], cafile=str(other))


def test_garbage_datagrams_do_not_hurt_the_service(services):
    client = QuicConnection(
        configuration=QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="junk.example")
    )
    client.connect(("127.0.0.1", services.ports["https"]), now=0.0)
    initial = client.datagrams_to_send(now=0.0)[0][0]  # a real, padded client Initial
    junk = [
        b"",
        b"\x00",
        b"\xc0" + bytes(1300),
        initial[:100],
        initial[:7] + b"\xff" * 20 + initial[27:],
        bytes(reversed(initial)),
        b"\x40" + bytes(50),
        initial,
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for payload in junk:
            sock.sendto(payload, ("127.0.0.1", services.ports["https"]))
    ((headers, _),) = h3_get(services, "after.example", ["/"])
    assert headers[":status"] == "200"


# ----------------------------------------------------------------- the per-SNI hook, in memory (no sockets)


@pytest.fixture(scope="module")
def ca() -> LabCA:
    return LabCA.create()


def _server(ca: LabCA, hooked: bool) -> QuicConnection:
    default = ca.leaf("198.19.0.2")
    configuration = QuicConfiguration(
        is_client=False, alpn_protocols=list(H3_ALPN), certificate=default.certificate, private_key=default.private_key
    )
    server = QuicConnection(configuration=configuration, original_destination_connection_id=bytes(8))
    if hooked:
        h3.install_sni_certificates(server, h3.ca_chooser(ca))
    return server


def _handshake(ca: LabCA, name: str, hooked: bool, tmp_path) -> tuple[list, QuicConnection]:
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(ca.cert_pem)
    client = QuicConnection(
        configuration=QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=name, cafile=str(cafile))
    )
    client_addr, server_addr = ("198.18.0.2", 40000), ("198.19.0.2", 443)
    client.connect(server_addr, now=0.0)
    first = client.datagrams_to_send(now=0.0)
    header = pull_quic_header(Buffer(data=first[0][0]), host_cid_length=8)
    server = _server(ca, hooked)
    server._original_destination_connection_id = header.destination_cid
    pending, now = [(server, first)], 0.0
    for _ in range(20):
        if not pending:
            break
        receiver, datagrams = pending.pop(0)
        for data, _ in datagrams:
            receiver.receive_datagram(data, client_addr if receiver is server else server_addr, now=now)
        now += 0.001
        for conn in (server, client):
            out = conn.datagrams_to_send(now=now)
            if out:
                pending.append((client if conn is server else server, out))
    for _ in range(5):  # let a closing client time out of its draining state
        timer = client.get_timer()
        if timer is None:
            break
        client.handle_timer(now=max(now, timer))
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    return events, server


@pytest.mark.parametrize("name", ["hook.example", "Other.Example"])
def test_hook_presents_a_certificate_for_the_sni(ca, name, tmp_path):
    events, server = _handshake(ca, name, hooked=True, tmp_path=tmp_path)
    assert any(isinstance(e, HandshakeCompleted) for e in events), events
    san = server.tls.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [name.lower()]


def test_without_the_hook_the_name_does_not_verify(ca, tmp_path):
    events, _ = _handshake(ca, "hook.example", hooked=False, tmp_path=tmp_path)
    assert not any(isinstance(e, HandshakeCompleted) for e in events)
    closes = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert closes and "doesn't match" in closes[0].reason_phrase


def test_aioquic_still_has_what_the_hook_wraps():
    h3.check_aioquic_hooks()


def _client_hello(name: str) -> bytes:
    """A real aioquic ClientHello (with QUIC transport parameters) as the server's TLS engine receives it."""
    client = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=name))
    client.connect(("198.19.0.2", 443), now=0.0)
    context = tls.Context(is_client=True, alpn_protocols=list(H3_ALPN), server_name=name)
    context.handshake_extensions = client.tls.handshake_extensions
    buffers = {epoch: Buffer(capacity=8192) for epoch in tls.Epoch}
    context.handle_message(b"", buffers)
    return buffers[tls.Epoch.INITIAL].data


def _feed(ca: LabCA, hooked: bool, hello: bytes):
    server = _server(ca, hooked)
    # TLS only, no packets: the transport-parameter checks after the certificate choice then fail
    # (QuicConnectionError), identically with and without the hook.
    server._version = QuicProtocolVersion.VERSION_1  # what receive_datagram() sets before _initialize()
    server._initialize(bytes(8))
    try:
        server.tls.handle_message(hello, {epoch: Buffer(capacity=65536) for epoch in tls.Epoch})
    except Exception as exc:  # noqa: BLE001 - the property compares outcomes, whatever aioquic raises
        return type(exc), server
    return None, server


def test_real_client_hello_through_the_hook(ca):
    hello = _client_hello("seed.example")
    (hooked, server), (plain, unhooked) = _feed(ca, True, hello), _feed(ca, False, hello)
    assert hooked == plain
    assert server.tls.certificate.subject.rfc4514_string() == "CN=seed.example"
    assert unhooked.tls.certificate.subject.rfc4514_string() == "CN=198.19.0.2"


def test_hook_is_transparent_on_damaged_client_hellos(ca):
    seeds = [_client_hello("seed.example"), _client_hello("a.b.example"), _client_hello("127.0.0.1")]

    @settings(max_examples=300, deadline=None)
    @given(hello=mutations(seeds, max_edits=4))
    def check(hello):
        hooked, _ = _feed(ca, True, hello)
        plain, _ = _feed(ca, False, hello)
        assert hooked == plain  # the hook never adds, removes or changes a failure
        assert hooked is None or issubclass(hooked, (tls.Alert, ValueError, QuicConnectionError))

    check()
