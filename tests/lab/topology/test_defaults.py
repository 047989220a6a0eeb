"""chokepoint.lab.topology.defaults: the default lab has the names and addresses docs/lab.md gives."""

from __future__ import annotations

from ipaddress import ip_address, ip_interface

from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX


def test_default_topology_has_the_documented_names_and_addresses():
    lab = topo.default_topology()
    assert lab.namespaces() == [f"{PREFIX}{h}" for h in ("client", "censor", "server", "control", "vps", "prober")]
    client, censor, server, control = (lab.host(n) for n in ("client", "censor", "server", "control"))
    assert client.interface("cl0").addresses == (ip_interface("198.18.0.2/24"), ip_interface("2001:db8:0:1::2/64"))
    assert ip_interface("198.18.9.2/24") in client.interface("ck0").addresses
    assert censor.interface("ce0").addresses == (ip_interface("198.18.0.1/24"), ip_interface("2001:db8:0:1::1/64"))
    assert censor.interface("ce1").addresses == (ip_interface("198.19.0.1/24"), ip_interface("2001:db8:0:2::1/64"))
    assert ip_interface("198.18.9.1/24") in control.interface("ck1").addresses
    server_ips = {a.ip for a in server.addresses()}
    assert {ip_address("198.19.0.2"), ip_address("2001:db8:0:2::2"), ip_address("198.19.0.53")} <= server_ips
    assert {ip_address(f"198.19.0.{n}") for n in range(10, 40)} <= server_ips
    assert {ip_address(f"2001:db8:0:2::{n}") for n in range(10, 40)} <= server_ips
    assert ip_address("198.19.0.40") not in server_ips and ip_address("198.19.0.9") not in server_ips
    assert [str(r) for r in client.routes] == ["default via 198.18.0.1", "default via 2001:db8:0:1::1"]
    assert [str(r) for r in server.routes] == [
        "default via 198.19.0.1",
        "default via 2001:db8:0:2::1",
        "198.19.64.0/24 via 198.19.63.2",  # the VPS (lab/circumvention.py)
        "198.19.65.0/24 via 198.19.63.2",
        "2001:db8:0:64::/64 via 2001:db8:0:63::2",
    ]
    # The test helper's own path to the server side (cs0 -- svc0), never a default route through the client or
    # the censor (this used to be `control.routes == ()`: the control host reached nothing behind the censor).
    assert {str(r.via) for r in control.routes} == {"198.19.62.1", "2001:db8:0:62::1"}
    assert {str(r.to) for r in control.routes} >= {"198.19.0.0/24", "2001:db8:0:2::/64", "198.19.64.0/24"}
    assert all(r.to.prefixlen > 0 for r in control.routes) and not control.forwarding
    assert censor.forwarding and not client.forwarding and server.forwarding  # the server routes for the VPS
    assert client.nameserver == ip_address("198.19.0.53") and client.trust_lab_ca
    assert {(link.a, link.b) for link in lab.links} == {
        (("client", "cl0"), ("censor", "ce0")),
        (("censor", "ce1"), ("server", "sv0")),
        (("client", "ck0"), ("control", "ck1")),
        (("server", "svp0"), ("vps", "vp0")),
        (("censor", "cepr0"), ("prober", "pr0")),
        (("server", "svc0"), ("control", "cs0")),
    }
    for host in lab.hosts:
        for addr in host.addresses():
            assert any(addr.ip in r for r in topo.LAB_RANGES), addr
