"""QUIC + HTTP/3 against the lab's aioquic server, an SNI-dropping QUIC censor and a version-negotiating
server."""

from __future__ import annotations

import select
import socket
import threading

import pytest
from aioquic.buffer import Buffer
from aioquic.quic.events import ConnectionTerminated
from aioquic.quic.packet import QuicErrorCode, encode_quic_version_negotiation, pull_quic_header
from cryptography import x509

from chokepoint.lab.services import app
from chokepoint.probe.measurement import Failure
from chokepoint.probe.probes import quic
from chokepoint.probe.probes.common import ProbeContext, ProbeError
from tests.probe.probes._servers import LOOPBACK, QuicCensor


def test_h3_get(ctx, lab):
    result = quic.get_h3(ctx, LOOPBACK, lab.https_port, "h3.site.test", authority="h3.site.test", path="/q?1")
    handshake, request = result.handshake, result.request
    assert result.failure is None
    assert (handshake.network, handshake.negotiated_protocol, handshake.tls_version) == ("udp", "h3", "TLSv1.3")
    assert handshake.cipher_suite.startswith("TLS_") and handshake.address == f"127.0.0.1:{lab.https_port}"
    (der,) = handshake.peer_certificates
    assert x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName) == ["h3.site.test"]
    assert (request.network, request.alpn, request.response.code) == ("udp", "h3", 200)
    assert result.body == app.page_body("h3.site.test", "/q?1") and result.title == "chokepoint lab origin"
    assert request.transaction_id == handshake.transaction_id
    assert handshake.extra["t0"] <= handshake.t <= request.extra["t0"] <= request.t


def test_handshake_only(ctx, lab):
    result = quic.get_h3(ctx, LOOPBACK, lab.https_port, "h3.site.test", fetch=False)
    assert result.handshake.failure is None and result.request is None


def test_untrusted_certificate(lab):
    result = quic.get_h3(ProbeContext(timeout=10), LOOPBACK, lab.https_port, "h3.site.test")
    assert result.handshake.failure == Failure.SSL_UNKNOWN_AUTHORITY and result.request is None


def test_sni_dropping_censor(short_ctx, ctx, lab, servers):
    censor = servers(QuicCensor(lab.https_port, {"blocked.test"}))
    dropped = quic.get_h3(short_ctx, LOOPBACK, censor.port, "blocked.test")
    assert dropped.handshake.failure == Failure.GENERIC_TIMEOUT_ERROR and censor.dropped >= 1
    passed = quic.get_h3(ctx, LOOPBACK, censor.port, "fine.test")
    assert passed.failure is None and passed.request.response.code == 200


def test_nothing_listening_times_out(short_ctx):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
    result = quic.get_h3(short_ctx, LOOPBACK, port, "x.test")
    assert result.handshake.failure == Failure.GENERIC_TIMEOUT_ERROR


def test_version_negotiation_without_common_version(short_ctx):
    """A server that only speaks a version aioquic does not (RFC 9000 §6: Version Negotiation)."""
    stop = threading.Event()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))

        def serve() -> None:
            while not stop.is_set():
                if not select.select([sock], [], [], 0.05)[0]:
                    continue
                data, peer = sock.recvfrom(65535)
                header = pull_quic_header(Buffer(data=data), host_cid_length=8)
                sock.sendto(
                    encode_quic_version_negotiation(
                        source_cid=header.destination_cid,
                        destination_cid=header.source_cid,
                        supported_versions=[0x1A2A3A4A],
                    ),
                    peer,
                )

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            result = quic.get_h3(short_ctx, LOOPBACK, sock.getsockname()[1], "x.test")
        finally:
            stop.set()
            thread.join(5)
    assert result.handshake.failure == Failure.QUIC_INCOMPATIBLE_VERSION


@pytest.mark.parametrize(
    "code, reason, failure",
    [
        (QuicErrorCode.CRYPTO_ERROR + 42, "hostname 'a.test' doesn't match 'b.test'", Failure.SSL_INVALID_HOSTNAME),
        (QuicErrorCode.CRYPTO_ERROR + 42, "unable to get local issuer certificate", Failure.SSL_UNKNOWN_AUTHORITY),
        (QuicErrorCode.CRYPTO_ERROR + 45, "Certificate is no longer valid", Failure.SSL_INVALID_CERTIFICATE),
        (QuicErrorCode.CRYPTO_ERROR + 40, "No supported cipher suite", Failure.SSL_FAILED_HANDSHAKE),
        (QuicErrorCode.INTERNAL_ERROR, "Idle timeout", Failure.GENERIC_TIMEOUT_ERROR),
        (QuicErrorCode.NO_ERROR, "", Failure.EOF_ERROR),
    ],
)
def test_termination_mapping(code, reason, failure):
    assert quic.failure_from_termination(ConnectionTerminated(int(code), None, reason)) == failure


def test_other_terminations_are_unknown_failures():
    text = quic.failure_from_termination(ConnectionTerminated(int(QuicErrorCode.PROTOCOL_VIOLATION), None, "bad"))
    assert text.startswith("unknown_failure") and "0xa" in text


@pytest.mark.parametrize("ip, port", [("h3.test", 443), ("127.0.0.1", 0)])
def test_bad_endpoint_cannot_run(ctx, ip, port):
    with pytest.raises(ProbeError):
        quic.get_h3(ctx, ip, port, "x.test")


@pytest.fixture(scope="module")
def lab_v6(tmp_path_factory):
    """The lab services on ::1 only (skipped where the host has no IPv6 loopback)."""
    from tests.lab.services import _harness

    if not _harness.ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    running = _harness.start(tmp_path_factory.mktemp("lab-v6"), bind=("::1",), dns_bind=("::1",))
    yield running
    _harness.stop(running)


def test_h3_and_https_over_ipv6(lab_v6):
    from chokepoint.probe.probes import http
    from chokepoint.probe.probes.common import parse_target

    ctx = ProbeContext(timeout=10, cafile=str(lab_v6.ca_file))
    port = lab_v6.ports["https"]
    result = quic.get_h3(ctx, "::1", port, "v6.test")
    assert result.failure is None and result.handshake.address == f"[::1]:{port}"
    assert result.request.response.code == 200
    fetched = http.fetch(ctx, parse_target(f"https://v6.test:{port}/"), "::1")
    assert fetched.failure is None and fetched.handshake.address == f"[::1]:{port}"
