"""TLS ClientHello / ServerHello dissection on real bytes.

Sources of bytes: Python's ``ssl`` (OpenSSL) through MemoryBIO, the ``openssl s_client`` binary over a
loopback socket (it fragments a large ClientHello into several records), aioquic's TLS 1.3 stack (a bare
handshake message as carried in QUIC CRYPTO frames) and the real nDPI captures in ../shared/data, whose
SNIs are compared with nDPI's own ``result/<pcap>.out``.
"""

from __future__ import annotations

import ssl
import struct
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.dissect import tls
from chokepoint.dissect.errors import DissectError, Malformed, NeedMoreData, NotThisProtocol
from tests._corpus import mutations, ndpi_flows, tcp_flows

from ._tls_hellos import (
    aioquic_client_hello,
    openssl_fragmented_hello,
    python_client_hello,
    python_handshake,
    split_into_records,
    walk_client_hello,
)

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


def _record_offsets(stream: bytes):
    pos = 0
    while pos + 5 <= len(stream):
        n = int.from_bytes(stream[pos + 3 : pos + 5], "big")
        yield pos, n
        pos += 5 + n


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


def _malformed(stream: bytes, match: str = "") -> None:
    with pytest.raises(Malformed, match=match):
        tls.parse_client_hello_records(stream)


def test_malformed_record_layer():
    single = python_client_hello("bad.example")
    two = split_into_records(single, [100])
    _malformed(two[:105] + b"\x16\x03\x01\x00\x00" + two[105:], "zero-length")  # RFC 8446 §5.1
    _malformed(two[:105] + b"\x14\x03\x03\x00\x01\x01" + two[105:], "content type 20")  # CCS inside
    _malformed(two[:105] + b"\x16\x04\x03" + two[108:], "version 4.3")
    _malformed(two[:105] + b"\x16\x03\x03\x40\x01" + b"\x00" * 0x4001, "exceeds 2\\^14")
    _malformed(two[:105] + b"GET / HTTP/1.1", "content type 71")


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


def sslv2_hello_from(tls_hello: bytes) -> bytes:
    """Lay a real hello's cipher suites out as an SSLv2 CLIENT-HELLO (no implementation at hand sends one)."""
    ch = tls.parse_client_hello_records(tls_hello)
    specs = b"".join(b"\x00" + c.to_bytes(2, "big") for c in ch.cipher_suites) + b"\x07\x00\xc0"
    challenge = ch.random[:16]
    body = b"\x01\x03\x01" + struct.pack("!HHH", len(specs), 0, len(challenge)) + specs + challenge
    return struct.pack("!H", 0x8000 | len(body)) + body


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


# --- real captures ---------------------------------------------------------------------------------------

TLS_CAPTURES = [
    "443-chrome.pcap",
    "443-curl.pcap",
    "chrome.pcap",
    "encrypted_sni.pcap",
    "tls_ech.pcapng",
    "tls_2_reasms.pcapng",
    "tls_missing_ch_frag.pcap",
    "tls_port_80.pcapng",
    "tls_unidirectional.pcap",
    "tls_false_positives.pcapng",
    "tls_heur__vmess-tcp-tls.pcapng",
    "tor.pcap",
    "signal.pcap",
    "dns_doh.pcap",
    "dns_dot.pcap",
    "http_connect.pcap",
]


def _client_hello_or_error(stream: bytes):
    try:
        return tls.parse_client_hello_records(stream)
    except DissectError as exc:
        return exc


@pytest.mark.shared_data
@pytest.mark.parametrize("pcap", TLS_CAPTURES)
def test_capture_sni_matches_ndpi(pcap):
    """Every hello we parse carries exactly nDPI's Hostname/SNI (or none when nDPI shows none), and every
    DPI-confident nDPI TLS flow with an SNI is parsed."""
    labels = {lab.key: lab for lab in ndpi_flows(pcap)}
    checked = 0
    for flow in tcp_flows(pcap):
        label = labels.get(flow.key)
        result = _client_hello_or_error(flow.c2s)
        if label is None or label.fields.get("Confidence") != "DPI":
            continue
        expected = label.fields.get("Hostname/SNI")
        if isinstance(result, tls.ClientHello):
            assert result.sni == expected, (flow.a, flow.b, label.label)
            checked += expected is not None
        else:
            assert not (label.label.startswith("TLS") and expected), (flow.a, flow.b, result)
    expected_counts = {
        "443-curl.pcap": 1,
        "chrome.pcap": 6,
        "tls_ech.pcapng": 1,
        "tls_2_reasms.pcapng": 1,
        "tls_heur__vmess-tcp-tls.pcapng": 2,
        "tor.pcap": 7,
        "signal.pcap": 12,
        "dns_doh.pcap": 1,
        "http_connect.pcap": 1,
    }
    if pcap in expected_counts:
        assert checked == expected_counts[pcap]


@pytest.mark.shared_data
def test_ech_outer_hello():
    (flow,) = tcp_flows("tls_ech.pcapng")
    ch = tls.parse_client_hello_records(flow.c2s)
    assert ch.has_ech and ch.ech_type == "outer"
    assert ch.sni == "performance.radar.cloudflare.com"  # the public (outer) name


@pytest.mark.shared_data
def test_esni_hellos_have_no_sni():
    flows = tcp_flows("encrypted_sni.pcap")
    hellos = [tls.parse_client_hello_records(f.c2s) for f in flows]
    assert len(hellos) == 3
    assert all(ch.has_esni and ch.sni is None and not ch.has_ech for ch in hellos)


@pytest.mark.shared_data
def test_missing_client_hello_fragment_waits_and_server_side_parses():
    (flow,) = tcp_flows("tls_missing_ch_frag.pcap")
    with pytest.raises(NeedMoreData):  # the stream stops at the hole inside the 1500-byte record
        tls.parse_client_hello_records(flow.c2s)
    sh = tls.parse_server_hello_records(flow.s2c)
    assert sh.selected_version == 0x0304 and sh.cipher_suite == 0x1302  # nDPI: TLS_AES_256_GCM_SHA384


@pytest.mark.shared_data
def test_false_positives_capture_is_not_tls():
    for flow in tcp_flows("tls_false_positives.pcapng"):
        for stream in (flow.c2s, flow.s2c):
            assert not tls.looks_like_tls_record(stream)
            with pytest.raises(NotThisProtocol):
                tls.parse_client_hello_records(stream)
            with pytest.raises(NotThisProtocol):
                tls.parse_server_hello_records(stream)


@pytest.mark.shared_data
def test_tls_on_port_80_and_unidirectional():
    (flow,) = tcp_flows("tls_port_80.pcapng")
    ch = tls.parse_client_hello_records(flow.c2s)
    assert flow.b[1] == 80 and ch.sni is None and ch.alpn == ()
    (flow,) = tcp_flows("tls_unidirectional.pcap")
    with pytest.raises(NotThisProtocol):  # only "\r\n" was captured from the client
        tls.parse_client_hello_records(flow.c2s)


@pytest.mark.shared_data
def test_record_stats_on_a_real_flow():
    (flow,) = tcp_flows("tls_2_reasms.pcapng")
    stats = tls.tls_record_stats(flow.s2c)
    assert stats.records[:2] == ((22, 128), (20, 1)) and stats.garbage_at is None
    assert {ct for ct, _ in stats.records[2:]} == {23}
    assert tls.tls_record_stats(b"\x16\x03\x01\x00\x10abc").pending == 8
    assert tls.tls_record_stats(b"GET /").garbage_at == 0


# --- fuzzing from real hellos ------------------------------------------------------------------------------


@cache
def fuzz_seeds() -> tuple[bytes, ...]:
    seeds = [
        python_client_hello("fuzz.example"),
        python_client_hello(None, alpn=()),
        split_into_records(python_client_hello("split.example"), [60, 7]),
        sslv2_hello_from(python_client_hello()),
    ]
    try:
        for name in ("chrome.pcap", "tls_ech.pcapng", "tor.pcap", "encrypted_sni.pcap"):
            for flow in tcp_flows(name)[:2]:
                if flow.c2s[:1] == b"\x16":
                    seeds.append(flow.c2s[:2048])
                if flow.s2c[:1] == b"\x16":
                    seeds.append(flow.s2c[:1024])
    except pytest.skip.Exception:
        pass
    return tuple(seeds)


def mutated():
    """The seeds above damaged by the shared strategy (drawn lazily: the seeds are built on first use)."""
    return st.deferred(lambda: mutations(fuzz_seeds()))


def _only_typed_errors(fn, data):
    try:
        return fn(data)
    except DissectError:
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_parsers_raise_only_typed_errors(data):
    ch = _only_typed_errors(tls.parse_client_hello_records, data)
    if ch is not None:
        assert ch.ja3 and ch.ja4 and len(ch.ja3_hash) == 32  # fingerprints work on whatever parsed
    _only_typed_errors(tls.parse_server_hello_records, data)
    if data[5:6] == b"\x01":
        _only_typed_errors(tls.parse_client_hello_message, data[5:])
    sh = _only_typed_errors(tls.parse_server_hello_records, data)
    if sh is not None:
        assert len(sh.ja3s_hash) == 32 and sh.ja3s.count(",") == 2
    stats = tls.tls_record_stats(data)
    assert sum(5 + n for _, n in stats.records) <= len(data)
    assert isinstance(tls.looks_like_tls_record(data), bool)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_prefixes_of_real_hellos_need_more_data(data):
    seed = data.draw(st.sampled_from([s for s in fuzz_seeds() if s[:1] == b"\x16" and s[5:6] == b"\x01"]))
    try:
        tls.parse_client_hello_records(seed)
    except NeedMoreData:  # seeds cut at 2 KiB may be incomplete themselves
        return
    cut = data.draw(st.integers(0, len(seed) - 1))
    end = 0
    for off, n in _record_offsets(seed):  # the hello ends inside the handshake records
        end = off + 5 + n
        try:
            tls.parse_client_hello_records(seed[:end])
            break
        except NeedMoreData:
            continue
    if cut < end:
        with pytest.raises(NeedMoreData):
            tls.parse_client_hello_records(seed[:cut])


def test_hello_complete_before_its_record_is():
    """A hello sharing a record with later bytes parses once its own bytes are in (DPI-style)."""
    single = python_client_hello("early.example")
    msg = single[5:]
    padded = single[:3] + struct.pack("!H", len(msg) + 3000) + msg  # record announces 3000 more bytes
    ch = tls.parse_client_hello_records(padded)
    assert ch.sni == "early.example" and ch.record_count == 1
    with pytest.raises(NeedMoreData):
        tls.parse_client_hello_records(padded[:-1])
