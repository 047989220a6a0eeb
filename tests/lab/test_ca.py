"""The lab CA: certificates checked by two independent verifiers (cryptography's RFC 5280 / CA/B Forum
path validation and ``openssl verify``), persistence, caching and name validation."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
import subprocess
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.lab import ca as lab_ca
from chokepoint.lab.ca import CAFileError, CertNameError, LabCA


@pytest.fixture(scope="module")
def ca() -> LabCA:
    return LabCA.create()


def _verify(ca: LabCA, leaf: x509.Certificate, subject) -> None:
    verifier = PolicyBuilder().store(Store([ca.certificate])).build_server_verifier(subject)
    verifier.verify(leaf, [])


@pytest.mark.parametrize(
    "name", ["example.com", "a.b.c.example", "x" * 63 + ".test", ".".join(["abcdefghi" * 7] * 3) + ".test"]
)
def test_leaf_for_a_hostname_passes_path_validation(ca, name):
    leaf = ca.leaf(name)
    _verify(ca, leaf.certificate, x509.DNSName(name))
    san = leaf.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == [name]
    assert san.critical == (len(name) > 64)  # empty subject -> critical SAN (RFC 5280 4.2.1.6)
    with pytest.raises(VerificationError):
        _verify(ca, leaf.certificate, x509.DNSName("other.example"))


@pytest.mark.parametrize("address", ["198.19.0.10", "127.0.0.1", "2001:db8:0:2::10"])
def test_leaf_for_an_ip_address(ca, address):
    leaf = ca.leaf(address)
    san = leaf.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(address)]
    _verify(ca, leaf.certificate, x509.IPAddress(ipaddress.ip_address(address)))


@pytest.mark.parametrize("name", ["openssl.example", "under_score.example"])  # cryptography refuses "_"
def test_openssl_verify_accepts_the_chain(ca, tmp_path, name):
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    cert_pem, key_pem = ca.issue(name)
    (tmp_path / "leaf.pem").write_bytes(cert_pem)
    out = subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            name,
            "-CAfile",
            str(tmp_path / "ca.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        timeout=10,
    )
    assert out.returncode == 0 and out.stdout.strip().endswith(b": OK"), out
    wrong = subprocess.run(
        [
            "openssl",
            "verify",
            "-verify_hostname",
            "wrong.example",
            "-CAfile",
            str(tmp_path / "ca.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        timeout=10,
    )
    assert wrong.returncode != 0
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_profile(ca):
    root = ca.certificate
    assert isinstance(ca.private_key.curve, ec.SECP256R1)
    basic = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    leaf = ca.leaf("profile.example").certificate
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    now = datetime.datetime.now(datetime.UTC)
    assert root.not_valid_before_utc < now - datetime.timedelta(minutes=59)  # backdated
    assert root.not_valid_after_utc - now <= datetime.timedelta(days=1)
    assert leaf.not_valid_after_utc <= root.not_valid_after_utc


def test_longer_validity_and_leaves_never_outlive_the_root():
    long_ca = LabCA.create(days=30, leaf_days=365)
    root, leaf = long_ca.certificate, long_ca.leaf("long.example").certificate
    assert root.not_valid_after_utc - root.not_valid_before_utc > datetime.timedelta(days=30)
    assert leaf.not_valid_after_utc == root.not_valid_after_utc
    with pytest.raises(ValueError):
        LabCA.create(days=0)


def test_cache_per_normalized_name_and_bounded():
    small = LabCA.create(cache_size=2)
    first = small.leaf("Cache.Example.")
    assert small.leaf("cache.example") is first and small.issue("CACHE.example") == (first.cert_pem, first.key_pem)
    small.leaf("two.example")
    small.leaf("three.example")
    again = small.leaf("cache.example")
    assert again is not first and again.certificate.serial_number != first.certificate.serial_number


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "a..b",
        "-a.example",
        "a-.example",
        "spa ce.example",
        "bücher.example",
        "x" * 64 + ".test",
        "a." * 127 + "toolong",
        "*",
        "a.*.example",
        "1.2.3.4/24",
        "fe80::1%eth0",
        5,
    ],
)
def test_names_that_are_not_hostnames(ca, bad):
    with pytest.raises(CertNameError):
        ca.leaf(bad)


def test_wildcard_names(ca):
    leaf = ca.leaf("*.wild.example").certificate
    _verify(ca, leaf, x509.DNSName("any.wild.example"))


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=100))
def test_normalize_name_raises_only_cert_name_error(name):
    try:
        normalized = lab_ca.normalize_name(name)
    except CertNameError:
        return
    assert str(normalized) == str(normalized).lower()


def test_save_load_round_trip_and_permissions(ca, tmp_path):
    cert_path, key_path = ca.save(tmp_path)
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    loaded = LabCA.load(tmp_path)
    assert loaded.cert_pem == ca.cert_pem
    leaf = loaded.leaf("loaded.example").certificate
    _verify(ca, leaf, x509.DNSName("loaded.example"))


def test_load_errors(ca, tmp_path):
    with pytest.raises(CAFileError, match="cannot read"):
        LabCA.load(tmp_path)
    ca.save(tmp_path)
    LabCA.create().save(tmp_path / "other")
    (tmp_path / "ca.key").write_bytes((tmp_path / "other" / "ca.key").read_bytes())
    with pytest.raises(CAFileError, match="does not match"):
        LabCA.load(tmp_path)
    (tmp_path / "ca.pem").write_text("garbage")
    with pytest.raises(CAFileError, match="not valid PEM"):
        LabCA.load(tmp_path)


def test_load_or_create_is_idempotent_and_safe_under_concurrency(tmp_path):
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(LabCA.load_or_create(tmp_path).cert_pem)) for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 6 and len(set(results)) == 1
    assert (tmp_path / "ca.pem").read_bytes() == results[0]
    assert LabCA.load_or_create(tmp_path).cert_pem == results[0]


def test_an_expired_ca_is_replaced(tmp_path):
    expired = LabCA.create(days=1 / 86400 / 10)  # 0.01 s validity beyond the one-hour backdate
    expired.save(tmp_path)
    while expired.certificate.not_valid_after_utc >= datetime.datetime.now(datetime.UTC):
        time.sleep(0.05)
    fresh = LabCA.load_or_create(tmp_path)
    assert fresh.cert_pem != expired.cert_pem
    assert LabCA.load(tmp_path).cert_pem == fresh.cert_pem
