"""The default lab (docs/lab.md): client ── censor ── server, a control host beside the client and linked to the
server around the censor, and (lab/circumvention.py) the VPS behind the server and the censor's prober; the
well-known addresses (server sites, lab DNS, control resolver) that scenarios and services name."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_interface, ip_network

from chokepoint.lab import circumvention, ranges
from chokepoint.lab.topology.consistency import check
from chokepoint.lab.topology.model import Host, Interface, IPInterface, IPNetwork, Link, Route, Topology


def _ifaces(*specs: str) -> tuple[IPInterface, ...]:
    return tuple(ip_interface(spec) for spec in specs)


#: Server "site" addresses 198.19.0.10-39 and 2001:db8:0:2::10-39 (the v6 suffix is the v4 octet written
#: as-is, so 198.19.0.15 pairs with 2001:db8:0:2::15); scenarios can block by IP.
SITE_V4 = tuple(ip_address(f"198.19.0.{n}") for n in range(10, 40))
SITE_V6 = tuple(ip_address(f"2001:db8:0:2::{n}") for n in range(10, 40))
#: The lab DNS server (on the server, behind the censor) and the control resolver (outside its path).
DNS_V4 = ip_address("198.19.0.53")
DNS_V6 = ip_address("2001:db8:0:2::53")
CONTROL_DNS_V4 = ip_address("198.18.9.1")
#: control <-> server: the test helper's own path to the server side, around the censor (server end first).
CONTROL_SERVER_LINK = ("198.19.62.1/30", "198.19.62.2/30")
CONTROL_SERVER_LINK6 = ("2001:db8:0:62::1/64", "2001:db8:0:62::2/64")
#: The server's own address on the censor's subnet (the censor's next hop to the server's ranges).
SERVER_V4 = ip_address("198.19.0.2")
SERVER_V6 = ip_address("2001:db8:0:2::2")


def default_topology() -> Topology:
    """client ── censor ── server, and control ── client (docs/lab.md)."""
    client = Host(
        "client",
        description="runs the probes; default route through the censor",
        interfaces=(
            Interface("cl0", _ifaces("198.18.0.2/24", "2001:db8:0:1::2/64")),
            Interface("ck0", _ifaces("198.18.9.2/24", "2001:db8:0:9::2/64")),
        ),
        routes=(
            Route(ip_network("0.0.0.0/0"), ip_address("198.18.0.1")),
            Route(ip_network("::/0"), ip_address("2001:db8:0:1::1")),
        ),
        nameserver=DNS_V4,
        trust_lab_ca=True,
    )
    censor = Host(
        "censor",
        description="forwards client<->server; runs the censor daemon",
        interfaces=(
            Interface("ce0", _ifaces("198.18.0.1/24", "2001:db8:0:1::1/64")),
            Interface("ce1", _ifaces("198.19.0.1/24", "2001:db8:0:2::1/64")),
        ),
        routes=tuple(Route(net, via) for net, via in ranges.censor_routes(SERVER_V4, SERVER_V6)),
        forwarding=True,
    )
    server_addrs = (
        ip_interface("198.19.0.2/24"),
        ip_interface("2001:db8:0:2::2/64"),
        *(ip_interface(f"{a}/32") for a in SITE_V4),
        ip_interface(f"{DNS_V4}/32"),
        *(ip_interface(f"{a}/128") for a in SITE_V6),
        ip_interface(f"{DNS_V6}/128"),
        *ranges.host_addresses("server"),  # the "elsewhere" range (chokepoint.lab.ranges)
    )
    server = Host(
        "server",
        description="lab services: HTTP(S), DNS, QUIC, echo",
        interfaces=(Interface("sv0", server_addrs),),
        routes=(
            Route(ip_network("0.0.0.0/0"), ip_address("198.19.0.1")),
            Route(ip_network("::/0"), ip_address("2001:db8:0:2::1")),
        ),
    )
    control = Host(
        "control",
        description="control resolver and test helper; linked to the client, and to the server around the censor",
        interfaces=(
            Interface("ck1", _ifaces("198.18.9.1/24", "2001:db8:0:9::1/64")),
            Interface("cs0", _ifaces(CONTROL_SERVER_LINK[1], CONTROL_SERVER_LINK6[1])),
        ),
        routes=_control_routes(),
    )
    links = (
        Link(("client", "cl0"), ("censor", "ce0")),
        Link(("censor", "ce1"), ("server", "sv0")),
        Link(("client", "ck0"), ("control", "ck1")),
    )
    # the VPS behind the server (transport servers, private Tor network) and the censor's prober
    hosts, links = circumvention.extend((client, censor, server, control), links)
    # the test helper's uncensored path: control <-> server, added last so every earlier link keeps its ifindex
    hosts = tuple(
        replace(
            h,
            interfaces=h.interfaces + (Interface("svc0", _ifaces(CONTROL_SERVER_LINK[0], CONTROL_SERVER_LINK6[0])),),
        )
        if h.name == "server"
        else h
        for h in hosts
    )
    links = (*links, Link(("server", "svc0"), ("control", "cs0")))
    return check(Topology(hosts, links))


def _control_routes() -> tuple[Route, ...]:
    """The control host reaches the server's sites and DNS (198.19.0.0/24) and every range behind or on the
    server (the "vps" and "elsewhere" ranges, the Tor network) through the server, never through the censor."""
    via4 = ip_interface(CONTROL_SERVER_LINK[0]).ip
    via6 = ip_interface(CONTROL_SERVER_LINK6[0]).ip
    nets: list[IPNetwork] = [ip_network("198.19.0.0/24"), ip_network("2001:db8:0:2::/64"), circumvention.TOR_NET]
    for r in ranges.SERVER_RANGES.values():
        nets += [r.v4, r.v6]
    return tuple(Route(net, via4 if net.version == 4 else via6) for net in nets)
