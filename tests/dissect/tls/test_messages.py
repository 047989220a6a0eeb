"""``dissect.tls.messages``: the parsed hellos as data — wire-order extension types, fingerprints memoised on
first use and kept out of equality, the ServerHello's negotiated version."""

from __future__ import annotations

import hashlib

from chokepoint.dissect.tls.messages import EXT_ALPN, EXT_SERVER_NAME, EXT_SUPPORTED_VERSIONS, ClientHello, ServerHello


def _client_hello(**changes) -> ClientHello:
    fields = dict(
        legacy_version=0x0303,
        random=b"\0" * 32,
        session_id=b"",
        cipher_suites=(0x0A0A, 0x1301, 0xC02B),  # a GREASE value first, as browsers send
        compression_methods=b"\0",
        extensions=((0x1A1A, b""), (EXT_SERVER_NAME, b"x"), (EXT_ALPN, b"y"), (EXT_SUPPORTED_VERSIONS, b"z")),
        sni="example.org",
        alpn=("h2",),
        supported_versions=(0x0304, 0x0303),
        supported_groups=(0x001D,),
        ec_point_formats=(0,),
        signature_algorithms=(0x0403,),
        key_share_groups=(0x001D,),
        has_ech=False,
        ech_type=None,
        has_esni=False,
    )
    fields.update(changes)
    return ClientHello(**fields)


def test_extension_types_keep_wire_order_and_grease() -> None:
    assert _client_hello().extension_types == (0x1A1A, EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS)


def test_fingerprints_drop_grease_are_memoised_and_stay_out_of_equality() -> None:
    hello, twin = _client_hello(), _client_hello()
    ja3 = hello.ja3
    assert ja3.split(",")[1] == "4865-49195"  # 0x1301, 0xC02B: the GREASE cipher is not in JA3
    assert "6682" not in ja3.split(",")[2].split("-")  # nor the GREASE extension (0x1A1A)
    assert hello.ja3_hash == hashlib.md5(ja3.encode()).hexdigest()
    assert hello.ja3 is ja3  # computed once
    assert hello.ja4.startswith("t13d")  # TLS over TCP, 1.3 offered, an SNI (a domain)
    assert hello == twin  # the memoised fingerprints of one do not make it differ from the other
    no_sni = _client_hello(sni=None, extensions=((EXT_ALPN, b"y"), (EXT_SUPPORTED_VERSIONS, b"z")))
    assert no_sni.ja4.startswith("t13i")  # JA4 reads the server_name extension's presence, not a parsed name


def test_server_hello_version_is_the_selected_one_when_given() -> None:
    common = dict(
        legacy_version=0x0303,
        random=b"\1" * 32,
        session_id=b"",
        cipher_suite=0x1301,
        compression_method=0,
        extensions=((EXT_SUPPORTED_VERSIONS, b"\x03\x04"),),
        alpn=None,
    )
    assert ServerHello(selected_version=0x0304, **common).version == 0x0304
    assert ServerHello(selected_version=None, **common).version == 0x0303
    tls13 = ServerHello(selected_version=0x0304, **common)
    assert tls13.ja3s.startswith("771,4865,43")  # legacy version, cipher, extensions (salesforce/ja3)
    assert tls13.ja3s_hash == hashlib.md5(tls13.ja3s.encode()).hexdigest()
