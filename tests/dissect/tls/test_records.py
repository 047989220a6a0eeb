"""chokepoint.dissect.tls.records: hellos reassembled across TLS records, the error contract of the framing,
SSLv2-compatible hellos and record statistics."""

from __future__ import annotations

import ssl
import struct

import pytest

from chokepoint.dissect import tls
from chokepoint.dissect.errors import NeedMoreData, NotThisProtocol
from tests.dissect._tls_hellos import (
    openssl_fragmented_hello,
    python_client_hello,
    python_handshake,
    split_into_records,
)
from tests.dissect.tls._shared import _malformed, _record_offsets, sslv2_hello_from

# --- multi-record reassembly --------------------------------------------------------------------------


def test_openssl_client_hello_over_three_records():
    stream = openssl_fragmented_hello(512)
    stats = tls.tls_record_stats(stream)
    assert [ct for ct, _ in stats.records] == [22, 22, 22] and stats.records[0][1] == 512
    ch = tls.parse_client_hello_records(stream)
    assert ch.record_count == 3
    assert ch.sni == "frag.example.org"
    assert len(ch.alpn) == 30 and ch.alpn[0].startswith("proto-00-")
    # the same message, given whole, parses to the same hello (record_count aside)
    handshake = b"".join(stream[o + 5 : o + 5 + n] for o, n in _record_offsets(stream))
    assert tls.parse_client_hello_message(handshake, record_count=3) == ch
    for cut in (1, 5, 300, 517, 1000, len(stream) - 1):
        with pytest.raises(NeedMoreData):
            tls.parse_client_hello_records(stream[:cut])


@pytest.mark.parametrize("sizes", [[1], [3, 1, 1], [40, 40, 40], [200]])
def test_reframed_python_hello(sizes):
    single = python_client_hello("split.example")
    stream = split_into_records(single, sizes)
    ch = tls.parse_client_hello_records(stream)
    assert ch.sni == "split.example"
    assert ch.record_count == len(list(_record_offsets(stream)))
    assert ch.extensions == tls.parse_client_hello_records(single).extensions


def test_every_prefix_needs_more_data():
    stream = split_into_records(python_client_hello("prefix.example"), [100, 100])
    for cut in range(len(stream)):
        with pytest.raises(NeedMoreData):
            tls.parse_client_hello_records(stream[:cut])
    assert tls.parse_client_hello_records(stream + b"\x17\x03\x03\x00\x05hello").sni == "prefix.example"


# --- error contract ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        b"GET / HTTP/1.1\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x17\x03\x03\x00\x10",
        b"\x16\x02\x00\x00\x10",
        b"\x16\x03\x07",
        b"\x05\x01\x00",
        b"\r\n",
    ],
)
def test_not_tls(prefix):
    with pytest.raises(NotThisProtocol):
        tls.parse_client_hello_records(prefix)
    # an application-data record is TLS, just not a hello
    assert tls.looks_like_tls_record(prefix) == prefix.startswith(b"\x17\x03")


def test_server_hello_stream_is_not_a_client_hello(tmp_path):
    _, server_flight = python_handshake(str(tmp_path), ssl.TLSVersion.TLSv1_3)
    with pytest.raises(NotThisProtocol):
        tls.parse_client_hello_records(server_flight)


def test_malformed_record_layer():
    single = python_client_hello("bad.example")
    two = split_into_records(single, [100])
    _malformed(two[:105] + b"\x16\x03\x01\x00\x00" + two[105:], "zero-length")  # RFC 8446 §5.1
    _malformed(two[:105] + b"\x14\x03\x03\x00\x01\x01" + two[105:], "content type 20")  # CCS inside
    _malformed(two[:105] + b"\x16\x04\x03" + two[108:], "version 4.3")
    _malformed(two[:105] + b"\x16\x03\x03\x40\x01" + b"\x00" * 0x4001, "exceeds 2\\^14")
    _malformed(two[:105] + b"GET / HTTP/1.1", "content type 71")


def test_looks_like_tls_record():
    hello = python_client_hello()
    for n in range(1, 6):
        assert tls.looks_like_tls_record(hello[:n])
    assert tls.looks_like_tls_record(b"\x17\x03\x03\x00\x20")
    assert tls.looks_like_tls_record(b"\x15\x03\x01\x00\x02")
    assert not tls.looks_like_tls_record(b"")
    assert not tls.looks_like_tls_record(b"\x16\x03\x03\x00\x00")  # empty record
    assert not tls.looks_like_tls_record(b"\x16\x03\x03\x50\x00")  # > 2^14 + 2048
    assert not tls.looks_like_tls_record(b"\x19\x03\x03\x00\x10")  # unknown content type


# --- SSLv2-compatible CLIENT-HELLO (RFC 5246 Appendix E.2) ----------------------------------------------


def test_sslv2_client_hello_detected():
    v2 = sslv2_hello_from(python_client_hello())
    ch = tls.parse_client_hello_records(v2)
    assert ch.is_sslv2 and ch.sni is None and ch.legacy_version == 0x0301
    assert ch.cipher_suites[-1] == 0x0700C0
    assert ch.random.endswith(v2[-16:]) and ch.random[:16] == bytes(16)
    for cut in range(1, len(v2)):
        with pytest.raises(NeedMoreData):
            tls.parse_client_hello_records(v2[:cut])
    with pytest.raises(NotThisProtocol):
        tls.parse_client_hello_records(v2[:2] + b"\x04" + v2[3:])  # msg_type 4 is not CLIENT-HELLO


def test_hello_complete_before_its_record_is():
    """A hello sharing a record with later bytes parses once its own bytes are in (DPI-style)."""
    single = python_client_hello("early.example")
    msg = single[5:]
    padded = single[:3] + struct.pack("!H", len(msg) + 3000) + msg  # record announces 3000 more bytes
    ch = tls.parse_client_hello_records(padded)
    assert ch.sni == "early.example" and ch.record_count == 1
    with pytest.raises(NeedMoreData):
        tls.parse_client_hello_records(padded[:-1])
