"""TCP and UDP echo on both echo ports, with plain sockets."""

from __future__ import annotations

import os
import socket

import pytest

from tests.lab.services._harness import CLIENT_TIMEOUT


def _endpoints(services, transport):
    return [(address, port) for address, port in services.endpoints("echo", transport)]


def test_echo_listens_on_every_address_and_both_ports(services):
    for transport in ("tcp", "udp"):
        ports = {port for _, port in _endpoints(services, transport)}
        assert ports == set(services.echo_ports)


@pytest.mark.parametrize("size", [1, 1500, 1_000_000])
def test_tcp_echo_returns_every_byte(services, size):
    payload = os.urandom(size)  # opaque bytes, like a fully encrypted protocol
    for address, port in _endpoints(services, "tcp"):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(CLIENT_TIMEOUT)
            sock.connect((address, port))
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # half-close: the server echoes the rest, then closes
            received = bytearray()
            while chunk := sock.recv(1 << 16):
                received += chunk
        assert bytes(received) == payload, (address, port)


def test_udp_echo(services):
    for address, port in _endpoints(services, "udp"):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(CLIENT_TIMEOUT)
            for payload in (b"\x00", os.urandom(1200), os.urandom(60000)):
                sock.sendto(payload, (address, port))
                data, source = sock.recvfrom(65535)
                assert data == payload and source[:2] == (address, port)


def test_reset_connections_do_not_hurt(services):
    address, port = _endpoints(services, "tcp")[0]
    for _ in range(5):
        sock = socket.create_connection((address, port), timeout=CLIENT_TIMEOUT)
        sock.sendall(os.urandom(100_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    test_tcp_echo_returns_every_byte(services, 10)
