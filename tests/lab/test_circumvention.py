"""The VPS and prober hosts the matrix adds to the default topology."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from chokepoint.lab import circumvention as cv
from chokepoint.lab import topology as topo


def test_every_transport_and_tor_node_has_its_own_vps_address_in_the_lab_ranges():
    vps = topo.default_topology().host("vps")
    addresses = {a.ip for a in vps.addresses()}
    transports = [cv.transport_address(i) for i in range(90)]
    assert len(set(transports)) == 90 and set(transports) <= addresses
    assert {cv.tor_address(i) for i in range(7)} <= addresses
    assert all(any(a in r for r in topo.LAB_RANGES) for a in addresses)
    assert cv.transport_address(0) == ip_address("198.19.64.10")


def test_routes_reach_the_vps_through_the_server_and_the_prober_pool_through_the_censor():
    lab = topo.default_topology()
    censor, server = lab.host("censor"), lab.host("server")
    routes = {str(r) for r in censor.routes}
    assert {
        "198.19.64.0/24 via 198.19.0.2",
        "198.19.65.0/24 via 198.19.0.2",
        "198.18.64.0/20 via 198.18.63.2",
    } <= routes
    assert server.forwarding and "198.19.64.0/24 via 198.19.63.2" in {str(r) for r in server.routes}
    assert [str(r) for r in lab.host("prober").routes] == ["default via 198.18.63.1"]
    assert cv.in_pool("198.18.70.1") and not cv.in_pool("198.18.0.2")
    assert cv.PROBER_POOL == ip_network("198.18.64.0/20")
