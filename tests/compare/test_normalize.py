"""Normal forms used on both sides of a comparison."""

from __future__ import annotations

import pytest
from aioquic.quic.packet import QuicProtocolVersion
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.compare.normalize import flow_key, format_key, host_name, l4_name, quic_version_number, ssh_banner


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("V-1", QuicProtocolVersion.VERSION_1),
        ("v1", QuicProtocolVersion.VERSION_1),
        ("V-2", QuicProtocolVersion.VERSION_2),
        ("v2", QuicProtocolVersion.VERSION_2),
        (int(QuicProtocolVersion.VERSION_2), QuicProtocolVersion.VERSION_2),
        ("1", 1),
        ("0x00000001", 1),
        ("0X6B3343CF", QuicProtocolVersion.VERSION_2),
        ("Draft-29", 0xFF00001D),
        ("draft-27", 0xFF00001B),
        ("MVFST-27", 0xFACEB002),
        ("mvfst-22", 0xFACEB001),
        ("MVFST-EXP", 0xFACEB00E),
        ("Q046", int.from_bytes(b"Q046", "big")),
        ("T050", int.from_bytes(b"T050", "big")),
        ("Unknown (FACEB003)", 0xFACEB003),
        ("Ver-Negotiation", None),
        ("Draft-300", None),
        ("0x1FFFFFFFF", None),
        ("0xZZ", None),
        ("", None),
        (True, None),
        (None, None),
        (-1, None),
        ("\u0663", None),
        ("Q04\u0666", None),
    ],
)
def test_quic_version_number(text, number):
    assert quic_version_number(text) == number


@settings(max_examples=300)
@given(st.integers(0, 0xFFFFFFFF))
def test_quic_version_number_round_trips_hex_and_decimal(number):
    assert quic_version_number(f"0x{number:08x}") == quic_version_number(str(number)) == number


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("WWW.Example.COM.", "www.example.com"),
        ("a.example:8080", "a.example"),
        ("a.example:", "a.example"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        (" x ", "x"),
        ("", None),
        (".", None),
        (None, None),
        (17, None),
    ],
)
def test_host_name(value, name):
    assert host_name(value) == name


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (17, "UDP"),
        ("6", "TCP"),
        ("tcp", "TCP"),
        ("IPv6-ICMP", "ICMPV6"),
        ("ICMPV6", "ICMPV6"),
        ("50", "ESP"),
        (51, "AH"),
        ("253", "253"),
    ],
)
def test_l4_name(value, name):
    assert l4_name(value) == name


def test_flow_key_is_direction_free_and_canonical():
    forward = flow_key("udp", "2001:db8:0:0::1", 5000, "[2001:db8::53]", 53)
    assert forward == flow_key(17, "2001:db8::53", 53, "2001:db8::1", 5000)
    assert format_key(forward) == "UDP [2001:db8::1]:5000 <-> [2001:db8::53]:53"
    assert flow_key("ICMP", "10.0.0.2", None, "10.0.0.1", None) == ("ICMP", ("10.0.0.1", 0), ("10.0.0.2", 0))
    with pytest.raises(ValueError):
        flow_key("TCP", "10.0.0.256", 1, "10.0.0.1", 2)


def test_ssh_banner_drops_comments_and_line_end():
    assert ssh_banner("SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.11\r\n") == "SSH-2.0-OpenSSH_8.2p1"
    assert ssh_banner("SSH-2.0-APACHE-SSHD-2.5.0") == "SSH-2.0-APACHE-SSHD-2.5.0"
    assert ssh_banner("") is None and ssh_banner(None) is None
