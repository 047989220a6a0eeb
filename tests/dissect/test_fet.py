"""FET (Wu et al., USENIX Security 2023): exact exemption boundaries, Ex5 variants, a per-byte reference
implementation of Algorithm 1 as an oracle, and nDPI's Fully-Encrypted label on shadowsocks.pcap."""

import http.client
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.dissect.fet import CENSORLAB, OPENGFW, PAPER, VARIANTS, FetResult, classify_first_packet
from tests._corpus import TCP, mutations, ndpi_labels, read_flows

# Non-printable bytes (>= 0x80, or 0x00) with 0..8 bits set; printable bytes with exactly 4 bits set.
NONPRINT = [0x00, 0x80, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC, 0xFE, 0xFF]
FOUR = 0xF0
PRINT4 = b"3UZilq"


def with_popcount(n: int, total: int) -> bytes:
    """n non-printable bytes whose set bits add up to exactly ``total``."""
    base, extra = divmod(total, n)
    return bytes([NONPRINT[base + 1]] * extra + [NONPRINT[base]] * (n - extra))


def printable_spread(n: int, printable: int) -> bytes:
    """n bytes, 4 bits each, ``printable`` of them printable, in runs of at most 5, starting non-printable."""
    out = bytearray([FOUR])
    left = printable
    while left:
        run = min(5, left)
        out += PRINT4[:run] + bytes([FOUR])
        left -= run
    assert len(out) <= n
    return bytes(out) + bytes([FOUR]) * (n - len(out))


def reference(payload: bytes, variant=PAPER) -> tuple:
    """Algorithm 1 written plainly, one byte at a time (the oracle for the fast implementation)."""
    printable = [0x20 <= b <= 0x7E for b in payload]
    ones = sum(bin(b).count("1") for b in payload)
    prefix = 0
    while prefix < len(payload) and printable[prefix]:
        prefix += 1
    run = longest = 0
    for is_printable in printable:
        run = run + 1 if is_printable else 0
        longest = max(longest, run)
    n = len(payload)
    exempt = (
        5 * ones <= 17 * n
        or 5 * ones >= 23 * n
        or prefix >= 6
        or 2 * sum(printable) > n
        or longest > 20
        or variant.ex5.match(payload) is not None
    )
    return not exempt, prefix, longest, ones / n, sum(printable) / n


def _agrees(payload: bytes, variant=PAPER) -> FetResult:
    result = classify_first_packet(payload, variant=variant)
    expected = reference(payload, variant)
    got = (
        result.fully_encrypted,
        result.printable_prefix,
        result.longest_printable_run,
        result.popcount_per_byte,
        result.printable_fraction,
    )
    assert got == expected
    assert result.fully_encrypted == (result.exemption is None) == (not result.exemptions)
    return result


def test_ex1_popcount_bounds_are_inclusive():
    assert _agrees(with_popcount(10, 34)).exemptions == ("ex1",)  # exactly 3.4
    assert _agrees(with_popcount(10, 35)).fully_encrypted  # 3.5
    assert _agrees(with_popcount(100, 341)).fully_encrypted  # 3.41
    assert _agrees(with_popcount(10, 46)).exemptions == ("ex1",)  # exactly 4.6
    assert _agrees(with_popcount(10, 45)).fully_encrypted
    assert _agrees(with_popcount(100, 459)).fully_encrypted  # 4.59
    assert _agrees(with_popcount(5, 17)).exemption == "ex1"  # 3.4 from 17/5, exact (no float rounding)


def test_ex2_six_printable_bytes_at_the_start():
    tail = bytes([FOUR]) * 14
    assert _agrees(PRINT4 + tail).exemptions == ("ex2",)
    assert _agrees(PRINT4[:5] + tail + bytes([FOUR])).fully_encrypted


def test_ex3_more_than_half_printable():
    half = _agrees(printable_spread(40, 20))
    assert half.printable_fraction == 0.5 and half.fully_encrypted
    more = _agrees(printable_spread(40, 21))
    assert more.exemptions == ("ex3",) and more.printable_prefix == 0 and more.longest_printable_run == 5


def test_ex4_more_than_twenty_contiguous_printable():
    run20 = bytes([FOUR]) + (PRINT4 * 4)[:20] + bytes([FOUR]) * 39
    run21 = bytes([FOUR]) + (PRINT4 * 4)[:21] + bytes([FOUR]) * 38
    assert _agrees(run20).fully_encrypted and classify_first_packet(run20).longest_printable_run == 20
    assert _agrees(run21).exemptions == ("ex4",)


@pytest.mark.parametrize(
    "head, paper, opengfw, censorlab",
    [
        (b"\x16\x03\x03", True, True, True),
        (b"\x16\x03\x0f", True, False, True),
        (b"\x16\x03\x10", False, False, False),
        (b"\x17\x03\x03", True, False, True),
        (b"\x15\x03\x03", False, False, True),
        (b"\x16\x02\x03", False, False, False),
        (b"GET ", True, True, True),
        (b"POST ", True, True, True),
        (b"HEAD ", True, True, True),
        (b"HEAD", False, True, False),
        (b"POS\xf0", False, True, False),
        (b"DEL", False, True, False),
        (b"OPTIONS", False, True, False),  # 7 printable: Ex2 exempts it anyway
    ],
)
def test_ex5_fingerprint_variants(head, paper, opengfw, censorlab):
    payload = head + bytes([FOUR]) * 50
    for variant, expected in ((PAPER, paper), (OPENGFW, opengfw), (CENSORLAB, censorlab)):
        result = _agrees(payload, variant)
        assert ("ex5" in result.exemptions) == expected, variant.name
        if len(head) < 6:
            assert result.fully_encrypted == (not expected)
    assert VARIANTS == {"paper": PAPER, "opengfw": OPENGFW, "censorlab": CENSORLAB}


def test_real_tls_client_hello_and_http_request_are_exempt():
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="example.com")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()

    class Sink:
        data = b""

        def sendall(self, chunk):
            self.data += chunk

    conn = http.client.HTTPConnection("example.com")
    conn.sock = Sink()
    conn.request("GET", "/index.html")
    request = conn.sock.data
    for variant in VARIANTS.values():
        assert _agrees(hello, variant).ex5_match == hello[:3]
        assert "ex5" in _agrees(request, variant).exemptions
    # Without its first bytes the ClientHello body is binary: Ex1/Ex3/Ex4 decide, as in the paper.
    _agrees(hello[5:])


def test_empty_payload_is_not_fully_encrypted():
    result = classify_first_packet(b"")
    assert not result.fully_encrypted and result.exemption is None and result.exemptions == ()
    assert result.popcount_per_byte == result.printable_fraction == 0.0


def test_shadowsocks_capture_matches_ndpi():
    labels = ndpi_labels("shadowsocks.pcap")
    flows = [f for f in read_flows("shadowsocks.pcap") if f.proto == TCP]
    assert len(flows) == 2
    for flow in flows:
        first = flow.payloads(True)[0]
        result = _agrees(first)
        if 8388 in (flow.a[1], flow.b[1]):  # the Shadowsocks leg: nDPI flags "Fully Encrypted Flow"
            assert labels[flow.key] == "Unknown" and result.fully_encrypted
            # Its server replies are ciphertext too; its client's later packets are not tested (first only).
            assert classify_first_packet(flow.payloads(False)[0]).fully_encrypted
        else:  # the local SOCKS5 leg: 05 02 00 01 is one bit per byte
            assert labels[flow.key] == "SOCKS"
            assert result.exemptions[0] == "ex1" and not result.fully_encrypted


def _first_packets():
    try:
        flows = read_flows("shadowsocks.pcap") + read_flows("openvpn.pcap")
    except pytest.skip.Exception:
        return [bytes(range(256))]
    return [f.payloads(True)[0] for f in flows if f.payloads(True)]


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(min_size=1, max_size=300), mutations(_first_packets())), st.sampled_from(list(VARIANTS)))
def test_matches_the_per_byte_reference(payload, variant_name):
    if payload:
        _agrees(payload, VARIANTS[variant_name])
    else:
        assert not classify_first_packet(payload).fully_encrypted
