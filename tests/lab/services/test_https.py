"""HTTPS for any name: curl, openssl s_client and Python's ssl verify the lab CA's per-SNI leaf."""

from __future__ import annotations

import re
import socket
import ssl

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.lab.ca import CertNameError, LabCA
from chokepoint.lab.services import app
from chokepoint.lab.services.certs import TlsContexts
from tests._corpus import mutations
from tests.lab.services._harness import CLIENT_TIMEOUT, run_client

NAMES = [
    "example.com",
    "www.blocked.example",
    "MiXeD.Example",
    "x" * 63 + ".lab.test",
    ".".join(["abcdefghij" * 6] * 4),
]  # 243 characters: too long for a commonName, SAN only


def s_client(services, *args: str) -> str:
    out = run_client(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{services.ports['https']}",
            "-CAfile",
            str(services.ca_file),
            "-showcerts",
            *args,
        ]
    )
    return out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")


def _leaf(text: str) -> x509.Certificate:
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    assert pem, text
    return x509.load_pem_x509_certificate(pem.group(0).encode())


def _san(cert: x509.Certificate) -> list:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


@pytest.mark.parametrize("name", NAMES)
def test_curl_verifies_any_name(services, name):
    port = services.ports["https"]
    out = run_client(
        [
            "curl",
            "-sS",
            "-v",
            "--max-time",
            str(CLIENT_TIMEOUT),
            "--cacert",
            str(services.ca_file),
            "--resolve",
            f"{name}:{port}:127.0.0.1",
            f"https://{name}:{port}/secure?x=1",
        ]
    )
    assert out.returncode == 0, out.stderr  # curl exits 60 when the certificate does not verify
    assert out.stdout == app.page_body(f"{name}:{port}", "/secure?x=1")
    assert b"ALPN: server accepted http/1.1" in out.stderr or b"ALPN, server accepted to use http/1.1" in out.stderr


def test_curl_rejects_the_certificate_without_the_lab_ca(services):
    port = services.ports["https"]
    out = run_client(
        [
            "curl",
            "-sS",
            "--max-time",
            str(CLIENT_TIMEOUT),
            "--cacert",
            "/dev/null",
            "--resolve",
            f"example.com:{port}:127.0.0.1",
            f"https://example.com:{port}/",
        ]
    )
    assert out.returncode != 0


@pytest.mark.parametrize("name", ["example.com", "a.b.c.d.example", "x" * 63 + ".lab.test"])
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_openssl_s_client_sees_a_leaf_for_the_sni(services, name, version):
    text = s_client(
        services, "-servername", name, "-verify_hostname", name, "-verify_return_error", "-alpn", "http/1.1", version
    )
    assert "Verify return code: 0 (ok)" in text, text
    assert "ALPN protocol: http/1.1" in text
    leaf = _leaf(text)
    assert _san(leaf).get_values_for_type(x509.DNSName) == [name]
    assert leaf.issuer == LabCA.load(services.state_dir).certificate.subject


def test_no_sni_gets_the_address_certificate(services):
    text = s_client(services, "-noservername", "-verify_ip", "127.0.0.1", "-verify_return_error")
    assert "Verify return code: 0 (ok)" in text, text
    assert [str(ip) for ip in _san(_leaf(text)).get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_curl_to_an_ip_literal_verifies_the_ip_san(services):
    out = run_client(
        [
            "curl",
            "-sS",
            "--max-time",
            str(CLIENT_TIMEOUT),
            "--cacert",
            str(services.ca_file),
            f"https://127.0.0.1:{services.ports['https']}/ip",
        ]
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == app.page_body(f"127.0.0.1:{services.ports['https']}", "/ip")


def test_ipv6_no_sni(services, ipv6):
    if not ipv6:
        pytest.skip("no IPv6 loopback here")
    out = run_client(
        [
            "curl",
            "-sS",
            "-g",
            "--max-time",
            str(CLIENT_TIMEOUT),
            "--cacert",
            str(services.ca_file),
            f"https://[::1]:{services.ports['https']}/v6",
        ]
    )
    assert out.returncode == 0, out.stderr


def test_garbage_sni_keeps_the_address_certificate(services):
    text = s_client(services, "-servername", "not_a host!", "-verify_ip", "127.0.0.1")
    assert "Verify return code: 0 (ok)" in text, text
    assert [str(ip) for ip in _san(_leaf(text)).get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_python_ssl_default_context(services):
    _python_get(services)


def _python_get(services) -> None:
    context = ssl.create_default_context(cafile=str(services.ca_file))
    with socket.create_connection(("127.0.0.1", services.ports["https"]), timeout=CLIENT_TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="python.example") as tls:
            assert ("DNS", "python.example") in tls.getpeercert()["subjectAltName"]
            tls.sendall(b"GET /py HTTP/1.1\r\nHost: python.example\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    assert data.endswith(app.page_body("python.example", "/py"))


def _real_client_hello(name: str) -> bytes:
    """The first flight of Python's ssl client (a real OpenSSL ClientHello)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_damaged_client_hellos_do_not_hurt_the_service(services):
    hello = _real_client_hello("damaged.example")
    assert hello[0] == 0x16  # a handshake record
    damaged = [
        hello[:5],
        hello[:40],
        hello[:-10],
        hello[:9] + b"\xff" * 4 + hello[13:],
        b"\x16\x03\x01\x00\x05hello",
        bytes(range(256)),
    ]
    for payload in damaged:
        with socket.create_connection(("127.0.0.1", services.ports["https"]), timeout=CLIENT_TIMEOUT) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(CLIENT_TIMEOUT)
            try:
                while sock.recv(65536):
                    pass
            except ConnectionResetError:
                pass
    _python_get(services)


# ----------------------------------------------------------------------------- the context cache, in-process


def test_contexts_are_cached_per_name_and_bounded(tmp_path):
    contexts = TlsContexts(LabCA.create(), cache_size=2)
    first = contexts.context_for("a.example")
    assert contexts.context_for("A.Example.") is first
    contexts.context_for("b.example")
    contexts.context_for("c.example")
    assert contexts.context_for("a.example") is not first  # evicted, then rebuilt
    with pytest.raises(CertNameError):
        contexts.context_for("bad name")


@pytest.fixture(scope="module")
def contexts() -> TlsContexts:
    return TlsContexts(LabCA.create())


@settings(max_examples=300, deadline=None)
@given(
    name=st.one_of(
        st.text(max_size=80), mutations([b"example.com", b"127.0.0.1", b"::1"]).map(lambda b: b.decode("latin-1"))
    )
)
def test_any_sni_string_either_gets_a_context_or_a_cert_name_error(contexts, name):
    try:
        context = contexts.context_for(name)
    except CertNameError:
        return
    assert isinstance(context, ssl.SSLContext)
