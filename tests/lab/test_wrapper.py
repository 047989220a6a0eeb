"""The user-space wrapper's GRE framing (chokepoint.lab.wrapper): what it sends is what the decoder unwraps, and
it takes back only its own tunnel's packets. Whole wrapped labs are in tests/lab/test_wrap.py."""

from chokepoint.lab.wrapper import gre_inner, gre_packet
from chokepoint.packet import build
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import Frame


def test_the_wrapper_s_gre_is_unwrapped_by_the_decoder_and_back():
    inner = build.ipv4_udp("198.18.100.2", "198.19.0.53", 5353, 53, b"\x12\x34" + bytes(30))
    outer = build.ipv4("198.18.0.2", "198.19.0.2", 47, gre_packet(inner, 7))
    packet = Decoder().decode(Frame(1.0, 101, outer, len(outer), 1))
    assert packet.encap == ("gre:7",) and packet.dport == 53 and packet.src == bytes([198, 18, 100, 2])
    assert gre_inner(outer, 7) == inner
    assert gre_inner(outer, 8) is None  # another tunnel's key
    inner6 = build.ipv6_udp("2001:db8::1", "2001:db8::2", 1, 2, b"x")
    assert gre_packet(inner6, 7)[2:4] == b"\x86\xdd"
