"""Secrets and certificates a transport run needs, made fresh for every run (``TransportSpec.materials``).

Each material writes its files into the run's directory and returns template variables:

- ``password``: ``$password`` (URL-safe random text); ``uuid``: ``$uuid``;
- ``tls``: a private CA for the run and a server certificate for ``$server_name`` and the server's address
  (``$tls_ca``, ``$tls_cert``, ``$tls_key``; keyUsage digitalSignature+keyAgreement, EKU serverAuth, which
  OpenVPN's ``--remote-cert-tls server`` checks); ``client-tls``: a client certificate from the same CA
  (``$client_cert``, ``$client_key``; EKU clientAuth);
- ``wireguard``: X25519 key pairs (``$wg_server_key`` / ``$wg_client_key`` files, ``$wg_server_pub`` /
  ``$wg_client_pub`` base64);
- ``ssh``: an Ed25519 host key and client key (``$ssh_host_key``, ``$ssh_client_key``,
  ``$ssh_authorized_keys``, ``$ssh_known_hosts``);
- ``tls-crypt``: an OpenVPN static key in its ``Static key V1`` format (``$tls_crypt_key``; 2048 random bits,
  as ``openvpn --genkey tls-crypt`` writes);
- ``tor``: nothing here: the lab's private Tor network provides ``$tor_*`` (``lab/tornet.py``).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import secrets
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = dt.timedelta(days=1)


def _write(path: Path, data: bytes, mode: int = 0o600) -> str:
    path.write_bytes(data)
    path.chmod(mode)
    return str(path)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class _CA:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("chokepoint transport CA"))
            .issuer_name(_name("chokepoint transport CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 7 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, cn: str, *, server: bool, names: tuple[str, ...] = (), ips: tuple[str, ...] = ()):
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 7 * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, True, False, False, False, False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make(
    materials: tuple[str, ...], directory: Path, *, server_name: str, server_ip: str, port: int = 22
) -> dict[str, str]:
    """Create ``materials`` in ``directory``; return the template variables they define."""
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    ca: _CA | None = None
    for what in materials:
        if what == "password":
            out["password"] = secrets.token_urlsafe(18)
        elif what == "uuid":
            out["uuid"] = str(uuid.uuid4())
        elif what in ("tls", "client-tls"):
            if ca is None:
                ca = _CA()
                out["tls_ca"] = _write(directory / "ca.pem", _pem(ca.cert), 0o644)
            if what == "tls":
                key, cert = ca.issue(server_name, server=True, names=(server_name,), ips=(server_ip,))
                out["tls_cert"] = _write(directory / "server.pem", _pem(cert), 0o644)
                out["tls_key"] = _write(directory / "server.key", _key_pem(key))
            else:
                key, cert = ca.issue("client", server=False)
                out["client_cert"] = _write(directory / "client.pem", _pem(cert), 0o644)
                out["client_key"] = _write(directory / "client.key", _key_pem(key))
        elif what == "wireguard":
            for side in ("server", "client"):
                key = x25519.X25519PrivateKey.generate()
                raw = key.private_bytes(
                    serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
                )
                pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                out[f"wg_{side}_key"] = _write(directory / f"wg-{side}.key", base64.b64encode(raw) + b"\n")
                out[f"wg_{side}_pub"] = base64.b64encode(pub).decode()
        elif what == "ssh":
            host, client = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
            for name, key in (("ssh_host_key", host), ("ssh_client_key", client)):
                pem = key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
                )
                out[name] = _write(directory / name.replace("_", "-"), pem)
            openssh = serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            client_pub = client.public_key().public_bytes(*openssh).decode()
            host_pub = host.public_key().public_bytes(*openssh).decode()
            out["ssh_authorized_keys"] = _write(directory / "authorized_keys", f"{client_pub}\n".encode(), 0o644)
            out["ssh_known_hosts"] = _write(
                directory / "known_hosts", f"[{server_ip}]:{port} {host_pub}\n".encode(), 0o644
            )
        elif what == "tls-crypt":
            hexed = secrets.token_bytes(256).hex()
            lines = [hexed[i : i + 32] for i in range(0, len(hexed), 32)]
            body = "\n".join(["-----BEGIN OpenVPN Static key V1-----", *lines, "-----END OpenVPN Static key V1-----"])
            out["tls_crypt_key"] = _write(directory / "tls-crypt.key", (body + "\n").encode())
        elif what == "tor":
            continue  # provided by the lab's Tor network
        else:
            raise ValueError(f"unknown material {what!r}")
    return out


__all__ = ["make"]
