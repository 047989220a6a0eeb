"""JA3 / JA3S / JA4 checked against independent computations, the published JA4 examples and nDPI.

References: salesforce/ja3 README (JA3/JA3S fields, GREASE ignored); FoxIO-LLC/ja4
technical_details/JA4.md (algorithm, the worked example ``t13d1516h2_8daaf6152771_e5627efa2ab1`` with its
raw strings, the no-signature-algorithms example ``6d807ffa2a79`` and the non-alphanumeric ALPN examples);
nDPI's ``[JA3C: ]``, ``[JA4: ]`` and ``[JA3S: ]`` in ../shared/data/ndpi/result/*.out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct

import pytest

from chokepoint.dissect import tls
from chokepoint.dissect.errors import DissectError
from chokepoint.dissect.fingerprint import ja3_for, ja4_for, ja4_parts, ja4_r_for
from tests._corpus import ndpi_flows, tcp_flows

from ._tls_hellos import aioquic_client_hello, python_client_hello, walk_client_hello

GREASE = {0x0A0A + 0x1010 * i for i in range(16)}


def independent_ja3(msg: bytes) -> str:
    """JA3 from the test's own walk of the message (no dissector code involved)."""
    walked = walk_client_hello(msg)
    ext = dict(walked["extensions"])
    curves = []
    if 10 in ext:
        (n,) = struct.unpack_from("!H", ext[10])
        curves = [c for c in struct.unpack_from(f"!{n // 2}H", ext[10], 2) if c not in GREASE]
    formats = list(ext[11][1 : 1 + ext[11][0]]) if 11 in ext else []
    fields = [
        str(walked["version"]),
        "-".join(str(c) for c in walked["ciphers"] if c not in GREASE),
        "-".join(str(t) for t, _ in walked["extensions"] if t not in GREASE),
        "-".join(map(str, curves)),
        "-".join(map(str, formats)),
    ]
    return hashlib.md5(",".join(fields).encode()).hexdigest()


@pytest.mark.parametrize("host,alpn", [("example.com", ("h2", "http/1.1")), (None, ()), ("x.test", ("h2",))])
def test_ja3_matches_independent_computation(host, alpn):
    stream = python_client_hello(host, alpn=alpn)
    ch = tls.parse_client_hello_records(stream)
    assert ch.ja3_hash == independent_ja3(stream[5:])
    assert ch.ja3.startswith("771,") and ch.ja3.count(",") == 4


@pytest.mark.shared_data
def test_ja3_with_grease_matches_independent_computation():
    flows = tcp_flows("chrome.pcap")
    assert flows
    for flow in flows:
        stream = flow.c2s
        ch = tls.parse_client_hello_records(stream)
        assert any(c in GREASE for c in ch.cipher_suites)  # Chrome sends GREASE (RFC 8701)
        assert ch.ja3_hash == independent_ja3(stream[5 : 5 + int.from_bytes(stream[3:5], "big")])


@pytest.mark.shared_data
def test_ja4_published_example_from_a_real_chrome_hello():
    """chrome.pcap's first hello is exactly JA4.md's worked example (ciphers, extensions, sigalgs)."""
    flow = tcp_flows("chrome.pcap")[0]
    ch = tls.parse_client_hello_records(flow.c2s)
    assert ch.ja4 == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    a, b, c = ja4_parts(ch)
    assert a == "t13d1516h2"
    assert b == "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"
    assert c == (
        "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
    )
    assert ja4_r_for(ch) == f"{a}_{b}_{c}"
    # JA4.md: "If there are no signature algorithms ... the string ends without an underscore" = 6d807ffa2a79
    no_sigalgs = dataclasses.replace(ch, signature_algorithms=())
    assert ja4_for(no_sigalgs).endswith("_6d807ffa2a79")
    assert ja4_for(ch, transport="q") == "q" + ch.ja4[1:]


def test_ja4_alpn_rules_from_the_spec():
    ch = tls.parse_client_hello_records(python_client_hello("alpn.example"))

    def alpn_chars(first: bytes) -> str:
        return ja4_for(dataclasses.replace(ch, alpn=(first.decode("latin-1"),)))[8:10]

    assert alpn_chars(b"h2") == "h2"
    assert alpn_chars(b"http/1.1") == "h1"
    assert alpn_chars(b"h") == "hh"  # a single character is both first and last
    assert alpn_chars(b"") == "00"
    assert alpn_chars(b"\xab") == "ab"
    assert alpn_chars(b"\xab\xcd") == "ad"
    assert alpn_chars(b"\x30\xab") == "3b"
    assert alpn_chars(b"\x30\x31\xab\xcd") == "3d"
    assert alpn_chars(b"\x30\xab\xcd\x31") == "01"
    assert ja4_for(dataclasses.replace(ch, alpn=()))[8:10] == "00"


def test_ja4_counts_versions_and_grease():
    ch = tls.parse_client_hello_records(python_client_hello("count.example", alpn=("http/1.1",)))
    greasy = dataclasses.replace(
        ch,
        cipher_suites=(0x2A2A,) + ch.cipher_suites,
        extensions=((0x3A3A, b""),) + ch.extensions + ((0xFAFA, b"\x00"),),
        supported_versions=(0x7A7A,) + ch.supported_versions,
    )
    assert ja4_for(greasy) == ja4_for(ch)
    assert ja3_for(greasy) == ja3_for(ch)
    a = ja4_parts(ch)[0]
    assert a == f"t13d{len(ch.cipher_suites):02d}{len(ch.extensions):02d}h1"
    many = dataclasses.replace(
        ch, extensions=tuple((0x1000 + i, b"") for i in range(120)), cipher_suites=tuple(range(1, 130))
    )
    assert ja4_parts(many)[0][4:8] == "9999"
    tls12 = dataclasses.replace(ch, supported_versions=())
    assert ja4_for(tls12).startswith("t12d")
    assert ja4_for(dataclasses.replace(ch, supported_versions=(), legacy_version=0x0300)).startswith("ts3")
    assert ja4_for(dataclasses.replace(ch, supported_versions=(), legacy_version=0x7F1C)).startswith("t00")
    empty = dataclasses.replace(ch, cipher_suites=(), extensions=(), signature_algorithms=())
    assert ja4_for(empty).endswith("_000000000000_000000000000")
    with pytest.raises(ValueError):
        ja4_for(ch, transport="x")


def test_ja4_quic_hello_from_aioquic():
    ch = tls.parse_client_hello_message(aioquic_client_hello())
    ja4 = ja4_for(ch, transport="q")
    assert ja4.startswith("q13d") and ja4[8:10] == "h3"
    assert int(ja4[4:6]) == len(ch.cipher_suites) and int(ja4[6:8]) == len(ch.extensions)


def test_ja3s_matches_independent_computation(tmp_path):
    import ssl

    from ._tls_hellos import python_handshake

    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        _, flight = python_handshake(str(tmp_path), version)
        sh = tls.parse_server_hello_records(flight)
        msg = flight[5:]
        off = 4 + 2 + 32
        off += 1 + msg[off]
        (cipher,) = struct.unpack_from("!H", msg, off)
        off += 3
        (total,) = struct.unpack_from("!H", msg, off)
        off += 2
        types = []
        stop = off + total
        while off < stop:
            etype, elen = struct.unpack_from("!HH", msg, off)
            types.append(etype)
            off += 4 + elen
        text = f"771,{cipher},{'-'.join(map(str, types))}"
        assert sh.ja3s == text
        assert sh.ja3s_hash == hashlib.md5(text.encode()).hexdigest()


NDPI_FINGERPRINT_CAPTURES = [
    "443-curl.pcap",
    "chrome.pcap",
    "encrypted_sni.pcap",
    "tls_ech.pcapng",
    "tls_2_reasms.pcapng",
    "tls_missing_ch_frag.pcap",
    "tls_port_80.pcapng",
    "tls_heur__vmess-tcp-tls.pcapng",
    "tor.pcap",
    "signal.pcap",
    "dns_doh.pcap",
    "dns_dot.pcap",
    "http_connect.pcap",
]


@pytest.mark.shared_data
@pytest.mark.parametrize("pcap", NDPI_FINGERPRINT_CAPTURES)
def test_fingerprints_match_ndpi(pcap):
    """JA3C, JA3S and JA4 equal nDPI's for every flow where nDPI printed them.

    One documented difference: nDPI sets JA4's SNI character from its own hostname field, the spec from
    the presence of extension 0x0000; for hellos without that extension only that character may differ.
    """
    labels = {lab.key: lab for lab in ndpi_flows(pcap)}
    compared = 0
    for flow in tcp_flows(pcap):
        label = labels.get(flow.key)
        if label is None:
            continue
        attrs = label.fields
        if "JA3C" in attrs or "JA4" in attrs:
            ch = tls.parse_client_hello_records(flow.c2s)
            if "JA3C" in attrs:
                assert ch.ja3_hash == attrs["JA3C"]
                compared += 1
            if "JA4" in attrs:
                ours, theirs = ch.ja4, attrs["JA4"]
                if 0x0000 not in ch.extension_types:
                    assert ours[3] == "i"
                    ours, theirs = ours[:3] + ours[4:], theirs[:3] + theirs[4:]
                assert ours == theirs
                compared += 1
        if "JA3S" in attrs:
            try:
                sh = tls.parse_server_hello_records(flow.s2c)
            except DissectError as exc:
                raise AssertionError(f"{flow.a}->{flow.b}: {exc!r}") from None
            assert sh.ja3s_hash == attrs["JA3S"]
            compared += 1
    assert compared, f"nDPI printed no fingerprint for {pcap}"
