"""The server's "vps" and "elsewhere" ranges: their addresses, and that the client reaches them through the
censor in real namespaces."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from chokepoint.lab import ranges
from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX
from tests.lab._lab import lab_guard, ping  # noqa: F401  (fixture)


def test_the_two_ranges_are_lab_addresses_apart_from_the_site_addresses():
    vps, elsewhere = ranges.SERVER_RANGES["vps"], ranges.SERVER_RANGES["elsewhere"]
    assert vps.v4 == ip_network("198.19.64.0/24") and elsewhere.v4 == ip_network("198.19.128.0/24")
    assert vps.address() == ip_address("198.19.64.100") and vps.address(109, 6) == ip_address("2001:db8:0:64::109")
    assert elsewhere.address() == ip_address("198.19.128.10") and elsewhere.address(19, 6) == ip_address(
        "2001:db8:0:128::19"
    )
    assert not vps.v4.overlaps(ip_network("198.19.0.0/24")) and not elsewhere.v4.overlaps(vps.v4)
    for r in ranges.SERVER_RANGES.values():
        assert all(any(a in lab for lab in topo.LAB_RANGES) for a in r.addresses())
    assert ranges.range_of("198.19.64.15") == "vps" and ranges.range_of("2001:db8:0:128::10") == "elsewhere"
    assert ranges.range_of("198.19.0.10") is None
    with pytest.raises(ValueError, match="hosts 100-109"):
        vps.address(20)
    with pytest.raises(ValueError, match="hosts 10-19"):
        elsewhere.address(20)


def test_the_default_topology_puts_them_on_their_hosts_and_routes_them_at_the_censor():
    lab = topo.default_topology()
    for r in ranges.SERVER_RANGES.values():
        assert set(r.addresses()) <= {a.ip for a in lab.host(r.host).addresses()}, r.name
    assert ranges.SERVER_RANGES["vps"].host == "vps" and ranges.SERVER_RANGES["elsewhere"].host == "server"
    others = {ip_network("198.19.65.0/24"), ip_network("198.18.64.0/20")}  # the Tor network, the prober pool
    routes = {str(route) for route in lab.host("censor").routes if route.to not in others}
    assert routes == {
        "198.19.64.0/24 via 198.19.0.2",
        "2001:db8:0:64::/64 via 2001:db8:0:2::2",
        "198.19.128.0/24 via 198.19.0.2",
        "2001:db8:0:128::/64 via 2001:db8:0:2::2",
    }


def test_the_client_reaches_both_ranges_through_the_censor(lab_guard):  # noqa: F811
    topo.create(topo.default_topology())
    for r in ranges.SERVER_RANGES.values():
        for address in (r.address(), r.address(r.first + 9), r.address(None, 6)):
            hops = 2 if r.host == "vps" else 1  # the censor, and the server in front of the VPS
            assert ping(f"{PREFIX}client", str(address)) == (True, [64 - hops]), address
