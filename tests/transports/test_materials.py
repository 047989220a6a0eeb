"""Per-run secrets: certificates that verify with the right key usages, key pairs, an OpenVPN static key."""

from __future__ import annotations

import base64
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from chokepoint.transports.materials import make


def test_tls_and_client_tls_certificates_chain_to_the_run_ca(tmp_path):
    out = make(("tls", "client-tls"), tmp_path, server_name="proxy.test", server_ip="198.19.64.10")
    ca = x509.load_pem_x509_certificate(open(out["tls_ca"], "rb").read())
    server = x509.load_pem_x509_certificate(open(out["tls_cert"], "rb").read())
    client = x509.load_pem_x509_certificate(open(out["client_cert"], "rb").read())
    for cert in (server, client):
        cert.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "proxy.test" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("198.19.64.10") in san.get_values_for_type(x509.IPAddress)
    usage = server.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_agreement  # OpenVPN's --remote-cert-tls server checks these
    assert ExtendedKeyUsageOID.SERVER_AUTH in server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert (tmp_path / "server.key").stat().st_mode & 0o777 == 0o600


def test_wireguard_keys_are_x25519_pairs(tmp_path):
    out = make(("wireguard",), tmp_path, server_name="p", server_ip="198.19.64.10")
    for side in ("server", "client"):
        raw = base64.b64decode(open(out[f"wg_{side}_key"]).read())
        pub = (
            x25519.X25519PrivateKey.from_private_bytes(raw)
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        assert base64.b64encode(pub).decode() == out[f"wg_{side}_pub"]


def test_ssh_known_hosts_names_the_port_and_tls_crypt_is_a_static_key(tmp_path):
    out = make(("ssh", "tls-crypt", "password", "uuid"), tmp_path, server_name="p", server_ip="198.19.64.12", port=443)
    assert open(out["ssh_known_hosts"]).read().startswith("[198.19.64.12]:443 ssh-ed25519 ")
    assert open(out["ssh_authorized_keys"]).read().startswith("ssh-ed25519 ")
    lines = open(out["tls_crypt_key"]).read().split()
    assert lines[0] == "-----BEGIN" and len([x for x in lines if len(x) == 32]) == 16
    assert len(out["password"]) >= 20 and len(out["uuid"]) == 36
