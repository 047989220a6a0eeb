"""TLS handshakes against the lab HTTPS server, directly and through an SNI-keyed censor."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest
from cryptography import x509

from chokepoint.lab.ca import LabCA
from chokepoint.probe.measurement import Failure
from chokepoint.probe.probes import tcp, tls
from chokepoint.probe.probes.common import ProbeContext
from tests.probe.probes._servers import LOOPBACK, CensorProxy


def _handshake(ctx, port: int, server_name: str) -> tls.Secured:
    connection = tcp.connect(ctx, LOOPBACK, port)
    assert connection.sock is not None, connection.record
    return tls.handshake(
        ctx, connection.sock, server_name, tags=("depth=0",), transaction_id=connection.record.transaction_id
    )


def test_handshake_with_the_lab_certificate(ctx, lab):
    secured = _handshake(ctx, lab.https_port, "www.site.test")
    secured.close()
    record = secured.record
    assert record.failure is None and record.network == "tcp"
    assert record.address == f"127.0.0.1:{lab.https_port}" and record.server_name == "www.site.test"
    assert record.tls_version == "TLSv1.3" and record.cipher_suite.startswith("TLS_")
    assert record.negotiated_protocol == "http/1.1"
    (der,) = record.peer_certificates
    names = (
        x509.load_der_x509_certificate(der)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value.get_values_for_type(x509.DNSName)
    )
    assert names == ["www.site.test"]  # the lab CA issued it for the SNI we sent
    assert record.to_json()["peer_certificates"][0]["format"] == "base64"


def test_untrusted_ca_is_unknown_authority(lab):
    secured = _handshake(ProbeContext(timeout=10), lab.https_port, "site.test")
    assert secured.sock is None and secured.record.failure == Failure.SSL_UNKNOWN_AUTHORITY


def test_wrong_name_is_invalid_hostname(tmp_path):
    """A server presenting a trusted certificate for another name (a MITM with a stolen certificate)."""
    ca = LabCA.create()
    ca.save(tmp_path)
    cert_pem, key_pem = ca.issue("other.test")
    (tmp_path / "leaf.pem").write_bytes(cert_pem)
    (tmp_path / "leaf.key").write_bytes(key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)

        def serve() -> None:
            client, _ = listener.accept()
            try:
                with server_context.wrap_socket(client, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                client.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        ctx = ProbeContext(timeout=10, cafile=str(tmp_path / "ca.pem"))
        secured = _handshake(ctx, listener.getsockname()[1], "site.test")
        thread.join(10)
    assert secured.record.failure == Failure.SSL_INVALID_HOSTNAME


@pytest.mark.parametrize(
    "action, failure",
    [("reset", Failure.CONNECTION_RESET), ("close", Failure.EOF_ERROR), ("drop", Failure.GENERIC_TIMEOUT_ERROR)],
)
def test_sni_censor_outcomes(short_ctx, lab, servers, action, failure):
    censor = servers(CensorProxy(lab.https_port, {"blocked.test": action}))
    secured = _handshake(short_ctx, censor.port, "blocked.test")
    assert secured.sock is None and secured.record.failure == failure
    assert censor.triggers == {"blocked.test": 1}
    allowed = _handshake(short_ctx, censor.port, "fine.test")  # the same path, another SNI
    allowed.close()
    assert allowed.record.failure is None


def test_compare_sni_finds_sni_blocking(ctx, lab, servers):
    censor = servers(CensorProxy(lab.https_port, {"blocked.test": "reset"}))
    result = tls.compare_sni(ctx, LOOPBACK, censor.port, "blocked.test", "control.test")
    assert result.sni_blocked
    assert result.control.failure is None and result.control.server_name == "control.test"
    assert result.target.failure == Failure.CONNECTION_RESET and result.target_connect.failure is None
    assert result.control.extra["t0"] < result.target.extra["t0"]  # the control goes first
    assert "sni=control" in result.control.tags and "sni=target" in result.target.tags
    clean = tls.compare_sni(ctx, LOOPBACK, censor.port, "fine.test", "control.test")
    assert not clean.sni_blocked and clean.target.failure is None


def test_compare_sni_when_nothing_listens(short_ctx):
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
    result = tls.compare_sni(short_ctx, LOOPBACK, port, "a.test", "b.test")
    assert result.target is None and result.control is None and not result.sni_blocked
    assert result.target_connect.failure == Failure.CONNECTION_REFUSED
