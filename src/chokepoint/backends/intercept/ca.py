"""The censor's root CA and the leaf certificates it forges (subject and subjectAltName copied from the real
server's certificate, as in Kazakhstan 2019: Raman et al., IMC 2020)."""

from __future__ import annotations

import datetime
import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chokepoint.backends.intercept.common import CA_CERT_FILE, CA_KEY_FILE, CACHE_SIZE, InterceptError
from chokepoint.lab.ca import key_usage, self_signed_root, write_atomic

#: The censor root's names: the 2019 root's common name, an organisation that says it is the lab's imitation.
CA_COMMON_NAME = "Qaznet Trust Network"
CA_ORGANIZATION = "Chokepoint lab censor CA (imitation)"
CA_COUNTRY = "KZ"
CA_DAYS = 1.0
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Forged:
    """A leaf issued by the censor CA for a real server certificate."""

    certificate: x509.Certificate
    cert_pem: bytes
    key_pem: bytes
    fingerprint: str  # SHA-256 of the DER, hex


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class CensorCA:
    """The censor's root ("Qaznet Trust Network"-like) and the forgeries it issues (cached per copied names).

    Separate from the lab CA (:mod:`chokepoint.lab.ca`): the lab's client trusts the lab CA, not this one."""

    def __init__(
        self,
        certificate: x509.Certificate,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        leaf_days: float = CA_DAYS,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        if certificate.public_key().public_numbers() != private_key.public_key().public_numbers():
            raise InterceptError("the censor CA certificate does not match its private key")
        self.certificate = certificate
        self.private_key = private_key
        self.leaf_days = leaf_days
        self._ski = x509.SubjectKeyIdentifier.from_public_key(private_key.public_key())
        self._cache: OrderedDict[bytes, Forged] = OrderedDict()
        self._cache_size = cache_size

    @staticmethod
    def names_for(policy: Any) -> dict[str, str]:
        """The root's names a profile asks for: ``issuer_cn`` / ``issuer_country`` of its first ``tls-intercept``
        rule that sets them (the 2019 Kazakh root's otherwise)."""
        for rule in policy.rules:
            params = dict(rule.params)
            if rule.action.value == "tls-intercept" and ("issuer_cn" in params or "issuer_country" in params):
                out = {}
                if "issuer_cn" in params:
                    out["common_name"] = str(params["issuer_cn"])
                if "issuer_country" in params:
                    out["country"] = str(params["issuer_country"])
                return out
        return {}

    @classmethod
    def create(
        cls, *, common_name: str = CA_COMMON_NAME, country: str = CA_COUNTRY, days: float = CA_DAYS, **options: Any
    ) -> CensorCA:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, CA_ORGANIZATION),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        certificate = self_signed_root(key, name, days)
        return cls(certificate, key, **options)

    @classmethod
    def load_or_create(cls, directory: str | os.PathLike, **options: Any) -> CensorCA:
        """``censor-ca.pem`` / ``censor-ca.key`` in ``directory``, created (and saved) if absent, expired or named
        otherwise than ``common_name``/``country`` ask."""
        directory = Path(directory)
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        if cert_path.exists() and key_path.exists():
            try:
                certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
                key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            except (OSError, ValueError) as exc:
                raise InterceptError(f"the censor CA in {directory} is unreadable: {exc}") from exc
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise InterceptError(f"the censor CA key in {directory} is not an EC key")
            names = certificate.subject
            wanted = (options.get("common_name", CA_COMMON_NAME), options.get("country", CA_COUNTRY))
            have = tuple(
                a.value
                for oid in (NameOID.COMMON_NAME, NameOID.COUNTRY_NAME)
                for a in names.get_attributes_for_oid(oid)
            )
            if certificate.not_valid_after_utc > _now() and have == wanted:
                kept = {k: v for k, v in options.items() if k not in ("days", "common_name", "country")}
                return cls(certificate, key, **kept)
        ca = cls.create(**options)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(key_path, ca.key_pem, 0o600)
        write_atomic(cert_path, ca.cert_pem, 0o644)
        return ca

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def forge(self, real: x509.Certificate) -> Forged:
        """A leaf with ``real``'s subject and subjectAltName (copied as they are, criticality included),
        signed by this CA; cached per (subject, SAN) while valid."""
        try:
            san = real.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            san = None
        cache_key = real.subject.public_bytes() + (san.value.public_bytes() if san is not None else b"")
        cached = self._cache.get(cache_key)
        if cached is not None and cached.certificate.not_valid_after_utc > _now():
            self._cache.move_to_end(cache_key)
            return cached
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(real.subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + datetime.timedelta(days=self.leaf_days), self.certificate.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                key_usage(ca=False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski), critical=False)
        )
        if san is not None:
            builder = builder.add_extension(san.value, critical=san.critical)
        certificate = builder.sign(self.private_key, hashes.SHA256())
        der = certificate.public_bytes(serialization.Encoding.DER)
        forged = Forged(
            certificate,
            certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            hashlib.sha256(der).hexdigest(),
        )
        self._cache[cache_key] = forged
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return forged


def cert_names(certificate: x509.Certificate) -> dict[str, Any]:
    """Subject, issuer (RFC 4514 text) and subjectAltName entries of a certificate, for the event log."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n.value) for n in san]
    except x509.ExtensionNotFound:
        names = []
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "san": names,
    }
