"""Flow roles without a handshake: the port ranks of flow.py's docstring, and the SYN when there is one."""

import pytest

from chokepoint.flow.flow import Flow
from chokepoint.flow.key import flow_key
from chokepoint.packet.record import ACK, SYN, TCP, UDP, Packet

A, B = bytes([192, 0, 2, 1]), bytes([203, 0, 113, 2])


def first(proto, sport, dport, flags=ACK):
    pkt = Packet(0.0, 4, A, B, proto, sport, dport, b"x", tcp_flags=flags if proto == TCP else 0)
    return Flow.from_first_packet(1, flow_key(pkt), pkt)


@pytest.mark.parametrize(
    ("proto", "sport", "dport", "client_port"),
    [
        (TCP, 443, 51000, 51000),  # a well-known port answers an ephemeral one
        (TCP, 51000, 443, 51000),
        (TCP, 8443, 51000, 51000),  # a registered port is a service's too (TCP)
        (TCP, 1234, 57874, 57874),
        (TCP, 50999, 12345, 50999),
        (TCP, 40000, 50000, 40000),  # two ephemeral ports: the first sender
        (TCP, 2000, 3000, 2000),  # two registered ports: the first sender
        (UDP, 23174, 60723, 23174),  # UDP: only well-known ports count (peer-to-peer picks any)
        (UDP, 443, 50000, 50000),
        (UDP, 53, 53, 53),
    ],
)
def test_without_a_handshake_the_less_service_like_port_is_the_client(proto, sport, dport, client_port):
    assert first(proto, sport, dport).client_port == client_port


def test_a_syn_decides_whatever_the_ports():
    assert first(TCP, 443, 51000, SYN).client_port == 443
    assert first(TCP, 51000, 8443, SYN | ACK).client_port == 8443  # a SYN+ACK seen first: its receiver
