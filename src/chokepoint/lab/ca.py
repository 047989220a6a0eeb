"""The lab certificate authority: one ECDSA P-256 root, leaf certificates issued per name on the fly.

The lab's HTTPS and QUIC servers answer for ANY hostname, so they ask this CA for a leaf certificate
for whatever SNI a client sends (or for the IP address it connected to when there is no SNI). The
client namespace trusts the root (``lab up`` adds ``ca.pem`` to its CA bundle), so curl, openssl and
Python verify the lab server exactly as they would verify a real site.

Profile (RFC 5280; CA/Browser Forum baseline where it is cheap to follow):
- root: self-signed, basicConstraints critical CA:TRUE pathlen:0, keyUsage critical keyCertSign +
  cRLSign, subjectKeyIdentifier;
- leaf: basicConstraints critical CA:FALSE, keyUsage critical digitalSignature, extendedKeyUsage
  serverAuth, subjectAltName (dNSName, or iPAddress for an IP literal), subject/authority key
  identifiers (OpenSSL 3's strict mode requires the AKI). The commonName repeats the name when it fits
  the 64-character bound (RFC 5280 ub-common-name); otherwise the subject is empty and the SAN critical.
Every certificate is backdated by one hour against clock skew between namespaces and processes.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: File names inside the lab state directory (docs/lab.md).
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
_LOCK_FILE = ".ca.lock"

DEFAULT_DAYS = 1.0
BACKDATE = datetime.timedelta(hours=1)
#: Leaf certificates kept in memory; a client cycling random SNIs must not grow the server unboundedly.
DEFAULT_CACHE_SIZE = 4096

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")


class CertNameError(ValueError):
    """The name is neither a DNS hostname nor an IP address, so no certificate can be issued for it."""


class CAFileError(OSError):
    """The CA files on disk are missing, unreadable or do not belong together."""


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A leaf certificate and its private key, both as objects and as PEM."""

    name: str
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey
    cert_pem: bytes
    key_pem: bytes


def normalize_name(name: str) -> str | ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A hostname lowercased without its trailing dot, or an IP address object.

    Accepts LDH labels plus ``_`` (seen in the wild) and a leading ``*.`` wildcard label; SNI carries
    A-labels only (RFC 6066 section 3), so anything non-ASCII is refused. Raises ``CertNameError``.
    """
    if not isinstance(name, str):
        raise CertNameError(f"certificate name must be str, not {type(name).__name__}")
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        if getattr(address, "scope_id", None):
            raise CertNameError(f"a scoped IPv6 address cannot be in a certificate: {name!r}")
        return address
    host = name.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > 253:
        raise CertNameError(f"not a hostname: {name!r}")
    labels = host.split(".")
    if labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    if not all(_LABEL.match(label) for label in labels):
        raise CertNameError(f"not a hostname: {name!r}")
    return host


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def key_usage(ca: bool) -> x509.KeyUsage:
    """The key usage of the certificates made here: a CA signs certificates and CRLs, a leaf (an ECDSA server
    certificate) only signs handshakes."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def self_signed_root(key: ec.EllipticCurvePrivateKey, subject: x509.Name, days: float) -> x509.Certificate:
    """A self-signed root for ``subject`` (the module's root profile), valid for ``days`` from ``BACKDATE`` ago;
    also the intercept proxy's censor root (``backends/intercept/ca.py``), which differs only in its names."""
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            key_usage(ca=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


class LabCA:
    """A root certificate and key that issue (and cache) leaf certificates per name."""

    def __init__(
        self,
        certificate: x509.Certificate,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        leaf_days: float = DEFAULT_DAYS,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if certificate.public_key().public_numbers() != private_key.public_key().public_numbers():
            raise CAFileError("the CA certificate does not match the CA private key")
        self.certificate = certificate
        self.private_key = private_key
        self.leaf_days = leaf_days
        self._cache_size = cache_size
        self._cache: OrderedDict[str, IssuedCert] = OrderedDict()
        self._ski = x509.SubjectKeyIdentifier.from_public_key(private_key.public_key())

    # ------------------------------------------------------------------ creating and persisting

    @classmethod
    def create(cls, *, days: float = DEFAULT_DAYS, common_name: str = "Chokepoint Lab CA", **options) -> LabCA:
        """A fresh root valid for ``days`` (fractions allowed) from one hour ago."""
        if days <= 0:
            raise ValueError(f"CA validity must be positive, got {days} days")
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Chokepoint lab"),
            ]
        )
        certificate = self_signed_root(key, subject, days)
        return cls(certificate, key, **options)

    @classmethod
    def load(cls, directory: str | os.PathLike, **options) -> LabCA:
        """Load ``ca.pem`` and ``ca.key`` from ``directory``. Raises ``CAFileError``."""
        directory = Path(directory)
        try:
            cert_pem = (directory / CA_CERT_FILE).read_bytes()
            key_pem = (directory / CA_KEY_FILE).read_bytes()
        except OSError as exc:
            raise CAFileError(f"cannot read the lab CA in {directory}: {exc}") from exc
        try:
            certificate = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except ValueError as exc:
            raise CAFileError(f"the lab CA in {directory} is not valid PEM: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CAFileError(f"the lab CA key in {directory} is not an EC key")
        return cls(certificate, key, **options)

    @classmethod
    def load_or_create(cls, directory: str | os.PathLike, *, days: float = DEFAULT_DAYS, **options) -> LabCA:
        """The CA in ``directory``, created (and saved) first if absent or expired.

        Safe against concurrent callers (an advisory lock serialises them): all get the same CA.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / _LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (directory / CA_CERT_FILE).exists() or (directory / CA_KEY_FILE).exists():
                ca = cls.load(directory, **options)
                if ca.certificate.not_valid_after_utc > _now():
                    return ca
            ca = cls.create(days=days, **options)
            ca.save(directory)
            return ca

    def save(self, directory: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``ca.pem`` (0644) and ``ca.key`` (0600) atomically; returns their paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        write_atomic(key_path, _pem_key(self.private_key), 0o600)
        write_atomic(cert_path, self.cert_pem, 0o644)
        return cert_path, key_path

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    # ------------------------------------------------------------------ issuing

    def issue(self, name: str) -> tuple[bytes, bytes]:
        """``(cert_pem, key_pem)`` of a leaf certificate for ``name`` (hostname or IP), cached."""
        leaf = self.leaf(name)
        return leaf.cert_pem, leaf.key_pem

    def leaf(self, name: str) -> IssuedCert:
        """The cached leaf for ``name``, issued now if needed. Raises ``CertNameError``."""
        normalized = normalize_name(name)
        key = str(normalized)
        cached = self._cache.get(key)
        if cached is not None and cached.certificate.not_valid_after_utc > _now():
            self._cache.move_to_end(key)
            return cached
        issued = self._issue(normalized)
        self._cache[key] = issued
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return issued

    def _issue(self, name: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> IssuedCert:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        not_after = min(now + datetime.timedelta(days=self.leaf_days), self.certificate.not_valid_after_utc)
        if isinstance(name, str):
            text, san = name, x509.DNSName(name)
        else:
            text, san = name.compressed, x509.IPAddress(name)
        fits = len(text) <= 64
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)] if fits else [])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                key_usage(ca=False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=not fits)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski), critical=False)
            .sign(self.private_key, hashes.SHA256())
        )
        return IssuedCert(text, certificate, key, certificate.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with exactly ``mode`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
