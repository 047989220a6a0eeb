"""The lab's hosts for circumvention experiments: a VPS behind the server side, and the censor's prober.

::

    censor ce1 ── sv0 server svp0 ── vp0 vps      (transport servers, the private Tor network)
    censor cepr0 ── pr0 prober                    (the censor's active prober, many source addresses)

- ``vps`` (``<lab>-vps``) plays a rented server abroad: every transport server of the matrix gets its own
  address in :data:`VPS_NET` (so an IP block of one never touches another), and the private Tor network's
  directory authorities, relays and bridges (``lab/tornet.py``) get theirs in :data:`TOR_NET`. It sits behind
  the lab server, which routes for it (the server's only change: forwarding on, one link, one route), so its
  traffic to the origin never crosses the censor, while a client's traffic to it does. A host of its own also
  keeps transport daemons that bind wildcard addresses (wireguard-go binds UDP ``*:443``) clear of the lab
  services' sockets.
- ``prober`` (``<lab>-prober``) is where the censor's active prober sends from (Alice et al., IMC 2020: probes
  from thousands of addresses): the censor routes :data:`PROBER_POOL` to it and the prober makes the whole pool
  local (``ip route add local POOL dev lo``, AnyIP) so each probe can leave from another address. The censor
  ignores its own prober's traffic (``backends.censor``).

Addresses are RFC 2544 (198.18.0.0/15) like the rest of the lab. :func:`extend` adds all of this to the
default topology (one call in ``topology.default_topology``).
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, ip_address, ip_interface, ip_network

from chokepoint.lab import ranges

#: The VPS's addresses: the "vps" range of lab/ranges.py (transport servers, one each, in the matrix's column
#: order, at .10-.99; the range's own hosts at .100-.109) and the Tor network.
VPS_NET = ranges.SERVER_RANGES["vps"].v4
VPS_NET6 = ranges.SERVER_RANGES["vps"].v6
TRANSPORT_FIRST = 10  # 198.19.64.10 .. .99: one per transport
TOR_NET = ip_network("198.19.65.0/24")
#: server <-> vps point-to-point link (IPv4 and IPv6)
SERVER_VPS_LINK = ("198.19.63.1/30", "198.19.63.2/30")
SERVER_VPS_LINK6 = ("2001:db8:0:63::1/64", "2001:db8:0:63::2/64")
#: censor <-> prober link, and the prober's pool of source addresses
CENSOR_PROBER_LINK = ("198.18.63.1/30", "198.18.63.2/30")
PROBER_POOL = ip_network("198.18.64.0/20")


def transport_address(index: int) -> IPv4Address:
    """The VPS address of the ``index``-th transport server (0-based)."""
    if not 0 <= index < 90:
        raise ValueError(f"transport index {index} out of range 0..89")
    return VPS_NET.network_address + TRANSPORT_FIRST + index


def tor_address(index: int) -> IPv4Address:
    """The ``index``-th address of the private Tor network (authorities first; ``lab/tornet.py``)."""
    if not 0 <= index < 200:
        raise ValueError(f"tor index {index} out of range")
    return TOR_NET.network_address + 10 + index


def vps_addresses() -> list[str]:
    return [f"{transport_address(i)}/32" for i in range(90)] + [f"{tor_address(i)}/32" for i in range(32)]


def extend(hosts: tuple, links: tuple) -> tuple[tuple, tuple]:
    """``hosts`` and ``links`` of a topology with the VPS and the prober added (see the module docstring)."""
    from chokepoint.lab.topology import Host, Interface, Link, Route

    by_name = {h.name: h for h in hosts}
    server, censor = by_name["server"], by_name["censor"]
    server_gw = ip_interface(SERVER_VPS_LINK[1]).ip
    censor_to_server = next(a.ip for i in server.interfaces for a in i.addresses if a.version == 4)
    server_gw6 = ip_interface(SERVER_VPS_LINK6[1]).ip
    new_server = replace(
        server,
        forwarding=True,
        interfaces=server.interfaces
        + (Interface("svp0", (ip_interface(SERVER_VPS_LINK[0]), ip_interface(SERVER_VPS_LINK6[0]))),),
        routes=server.routes
        + tuple(Route(net, server_gw) for net in (VPS_NET, TOR_NET))
        + (Route(VPS_NET6, server_gw6),),
    )
    new_censor = replace(
        censor,
        interfaces=censor.interfaces + (Interface("cepr0", (ip_interface(CENSOR_PROBER_LINK[0]),)),),
        routes=censor.routes
        + (Route(TOR_NET, censor_to_server),)  # the "vps" range: ranges.censor_routes in the default topology
        + (Route(PROBER_POOL, ip_interface(CENSOR_PROBER_LINK[1]).ip),),
    )
    vps = Host(
        "vps",
        description="a VPS abroad: transport servers and the private Tor network (behind the server)",
        interfaces=(
            Interface(
                "vp0",
                (
                    ip_interface(SERVER_VPS_LINK[1]),
                    ip_interface(SERVER_VPS_LINK6[1]),
                    *map(ip_interface, vps_addresses()),
                    *ranges.host_addresses("vps"),
                ),
            ),
        ),
        routes=(
            Route(ip_network("0.0.0.0/0"), ip_interface(SERVER_VPS_LINK[0]).ip),
            Route(ip_network("::/0"), ip_interface(SERVER_VPS_LINK6[0]).ip),
        ),
    )
    prober = Host(
        "prober",
        description="the censor's active prober (its pool of source addresses is routed here)",
        interfaces=(Interface("pr0", (ip_interface(CENSOR_PROBER_LINK[1]),)),),
        routes=(Route(ip_network("0.0.0.0/0"), ip_interface(CENSOR_PROBER_LINK[0]).ip),),
    )
    replaced = tuple(new_server if h is server else new_censor if h is censor else h for h in hosts)
    return replaced + (vps, prober), links + (
        Link(("server", "svp0"), ("vps", "vp0")),
        Link(("censor", "cepr0"), ("prober", "pr0")),
    )


def in_pool(address: str) -> bool:
    return ip_address(address) in PROBER_POOL


__all__ = [
    "CENSOR_PROBER_LINK",
    "PROBER_POOL",
    "SERVER_VPS_LINK",
    "TOR_NET",
    "VPS_NET",
    "VPS_NET6",
    "extend",
    "in_pool",
    "tor_address",
    "transport_address",
]
