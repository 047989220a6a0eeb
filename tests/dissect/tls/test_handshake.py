"""chokepoint.dissect.tls.handshake: the hello message grammar, on hellos from Python's ssl, aioquic (a bare
message, as in QUIC CRYPTO frames) and OpenSSL's handshakes, and hellos with broken fields."""

from __future__ import annotations

import ssl
import struct

import pytest

from chokepoint.dissect import tls
from chokepoint.dissect.errors import NeedMoreData, NotThisProtocol
from tests.dissect._tls_hellos import aioquic_client_hello, python_client_hello, python_handshake, walk_client_hello
from tests.dissect.tls._shared import _malformed

# --- ClientHello from Python's ssl ------------------------------------------------------------------


def test_python_client_hello_fields():
    stream = python_client_hello("Example.COM", alpn=("h2", "http/1.1"))
    ch = tls.parse_client_hello_records(stream)
    assert ch.sni == "example.com"  # lowercased
    assert ch.alpn == ("h2", "http/1.1")
    assert ch.record_count == 1
    assert 0x0304 in ch.supported_versions and 0x0303 in ch.supported_versions
    assert ch.key_share_groups and set(ch.key_share_groups) <= set(ch.supported_groups)
    assert ch.signature_algorithms and ch.ec_point_formats
    assert not ch.has_ech and not ch.has_esni and ch.ech_type is None and not ch.is_sslv2
    walked = walk_client_hello(stream[5:])
    assert ch.legacy_version == walked["version"] == 0x0303
    assert list(ch.cipher_suites) == walked["ciphers"]
    assert [(t, bytes(d)) for t, d in walked["extensions"]] == list(ch.extensions)
    assert len(ch.random) == 32


def test_no_sni_for_an_ip_address_and_no_alpn():
    ch = tls.parse_client_hello_records(python_client_hello("192.0.2.7", alpn=()))
    assert ch.sni is None and ch.alpn == ()
    assert 0x0000 not in ch.extension_types and 0x0010 not in ch.extension_types


def test_tls12_only_client_hello_has_no_supported_versions_13():
    ch = tls.parse_client_hello_records(python_client_hello("a.example", max_version=ssl.TLSVersion.TLSv1_2))
    assert 0x0304 not in ch.supported_versions
    assert ch.legacy_version == 0x0303


def test_message_parser_on_aioquic_hello():
    msg = aioquic_client_hello("QUIC.Example.NET")
    ch = tls.parse_client_hello_message(msg)
    assert ch.sni == "quic.example.net"
    assert ch.alpn == ("h3", "h3-29")
    assert ch.record_count == 0
    assert ch.supported_versions == (0x0304,)
    assert 0x39 in ch.extension_types
    # bytes after the message (more CRYPTO data) are ignored
    assert tls.parse_client_hello_message(msg + b"\x00" * 7) == ch


def test_message_parser_contract():
    msg = aioquic_client_hello()
    for cut in range(len(msg)):
        with pytest.raises(NeedMoreData):
            tls.parse_client_hello_message(msg[:cut])
    with pytest.raises(NotThisProtocol):
        tls.parse_client_hello_message(b"\x02" + msg[1:])


# --- malformed hello grammar -----------------------------------------------------------------------------


def _rebuild(single: bytes, body: bytes) -> bytes:
    msg = b"\x01" + len(body).to_bytes(3, "big") + body
    return single[:3] + struct.pack("!H", len(msg)) + msg


def test_malformed_hello_grammar():
    single = python_client_hello("grammar.example")
    body = single[9:]
    cs_off = 35 + body[34]  # version, random, session_id
    cs_len = int.from_bytes(body[cs_off : cs_off + 2], "big")
    ciphers = body[cs_off + 2 : cs_off + 2 + cs_len]
    odd = body[:cs_off] + (cs_len - 1).to_bytes(2, "big") + ciphers[:-1] + body[cs_off + 2 + cs_len :]
    _malformed(_rebuild(single, odd), "cipher_suites length")
    ext_off = cs_off + 2 + cs_len
    ext_off += 1 + body[ext_off]  # compression methods
    ext_len = int.from_bytes(body[ext_off : ext_off + 2], "big")
    _malformed(_rebuild(single, body[:ext_off] + (ext_len + 1).to_bytes(2, "big") + body[ext_off + 2 :]), "overruns")
    _malformed(_rebuild(single, body + b"\x00"), "trailing")
    exts = [(t, bytes(d)) for t, d in walk_client_hello(single[5:])["extensions"]]

    def with_exts(items):
        blob = b"".join(struct.pack("!HH", t, len(d)) + d for t, d in items)
        return _rebuild(single, body[:ext_off] + len(blob).to_bytes(2, "big") + blob)

    _malformed(with_exts(exts + exts[:1]), "duplicate extension")
    no_sni = [(t, d) for t, d in exts if t != 0]
    _malformed(with_exts([(0, b"\x00\x04\x00\x00\x05")] + no_sni), "overruns")  # host_name overruns list
    no_alpn = [(t, d) for t, d in no_sni if t != 0x10]
    _malformed(with_exts([(0x10, b"\x00\x03\x05h2")] + no_alpn), "overruns")  # ALPN name overruns list
    _malformed(with_exts(no_sni + [(0xFE0D, b"\x07")]), "unknown type 7")  # ECHClientHello type
    _malformed(
        with_exts([(0x33, b"\x00\x04\x00\x1d\x00\x20")] + [(t, d) for t, d in no_sni if t != 0x33]), "overruns"
    )  # key_share entry claims 32 bytes it does not have
    # an SNI entry of another name_type is skipped, not taken as the host name
    ch = tls.parse_client_hello_records(with_exts([(0, b"\x00\x06\x07\x00\x03abc")] + no_sni))
    assert ch.sni is None


# --- ServerHello ---------------------------------------------------------------------------------------


def test_server_hello_tls13(tmp_path):
    _, server_flight = python_handshake(str(tmp_path), ssl.TLSVersion.TLSv1_3)
    sh = tls.parse_server_hello_records(server_flight)
    assert sh.selected_version == 0x0304 and sh.version == 0x0304
    assert sh.legacy_version == 0x0303
    assert sh.cipher_suite in (0x1301, 0x1302, 0x1303)
    assert sh.alpn is None  # ALPN is in EncryptedExtensions in TLS 1.3
    assert not sh.is_hello_retry_request
    assert tls.looks_like_tls_record(server_flight)


def test_server_hello_tls12_with_alpn(tmp_path):
    client_flight, server_flight = python_handshake(str(tmp_path), ssl.TLSVersion.TLSv1_2)
    sh = tls.parse_server_hello_records(server_flight)
    assert sh.selected_version is None and sh.version == 0x0303
    assert sh.alpn == "h2"
    ch = tls.parse_client_hello_records(client_flight)
    assert sh.cipher_suite in ch.cipher_suites
    hello_end = 9 + int.from_bytes(server_flight[6:9], "big")  # record header + message header + body
    assert tls.parse_server_hello_records(server_flight[:hello_end]) == sh
    for cut in range(hello_end):
        with pytest.raises(NeedMoreData):
            tls.parse_server_hello_records(server_flight[:cut])
    with pytest.raises(NotThisProtocol):
        tls.parse_server_hello_records(client_flight)
