"""``check()``: a topology, from a file or built in code, is consistent (host and interface names, addresses in
the lab ranges and used once, every interface on exactly one link, gateways on a connected subnet), else a
``TopologyError`` at the place in the file that is wrong."""

from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from chokepoint.lab.topology.model import (
    HOST_NAME_PATTERN,
    IFNAME_PATTERN,
    LAB_RANGES,
    IPAddress,
    IPNetwork,
    Topology,
    TopologyError,
)
from chokepoint.policy.errors import SourcePos


def _in_lab_range(addr: IPAddress | IPNetwork) -> bool:
    if isinstance(addr, (IPv4Network, IPv6Network)):
        return any(addr.version == r.version and addr.subnet_of(r) for r in LAB_RANGES)  # type: ignore[arg-type]
    return any(addr in r for r in LAB_RANGES)


Where = dict[tuple[Any, ...], SourcePos]


def check(topology: Topology, where: Where | None = None, file: str = "<topology>") -> Topology:
    """Return ``topology`` if it is consistent, else raise ``TopologyError`` at the offending place.

    ``where`` maps ``("host", name)``, ``("iface", host, ifname)``, ``("addr", host, ifname, address)``,
    ``("route", host, index)`` and ``("link", index)`` to source positions (for topology files)."""
    where = where or {}

    def fail(key: tuple[Any, ...], message: str) -> TopologyError:
        return TopologyError.at(where.get(key, SourcePos(file, 1, 1)), message)  # type: ignore[return-value]

    names: set[str] = set()
    owner: dict[Any, tuple[Any, ...]] = {}
    for host in topology.hosts:
        if not re.match(HOST_NAME_PATTERN, host.name):
            raise fail(("host", host.name), f"bad host name {host.name!r}: expected {HOST_NAME_PATTERN}")
        if host.name in names:
            raise fail(("host", host.name), f"duplicate host {host.name!r}")
        names.add(host.name)
        ifnames: set[str] = set()
        for iface in host.interfaces:
            if not re.match(IFNAME_PATTERN, iface.name):
                raise fail(
                    ("iface", host.name, iface.name), f"bad interface name {iface.name!r}: expected {IFNAME_PATTERN}"
                )
            if iface.name in ifnames:
                raise fail(
                    ("iface", host.name, iface.name), f"host {host.name!r} already has an interface {iface.name!r}"
                )
            ifnames.add(iface.name)
            for addr in iface.addresses:
                key = ("addr", host.name, iface.name, str(addr))
                if not _in_lab_range(addr.ip):
                    raise fail(key, f"address {addr} is outside the lab ranges ({', '.join(map(str, LAB_RANGES))})")
                if (
                    addr.version == 4
                    and addr.network.prefixlen < 31
                    and addr.ip in (addr.network.network_address, addr.network.broadcast_address)
                ):
                    raise fail(key, f"address {addr} is the network or broadcast address of its subnet")
                if addr.ip in owner:
                    other_key = owner[addr.ip]
                    if key not in where and other_key in where:  # report it where the file wrote it
                        raise fail(other_key, f"address {addr.ip} is already used by host {host.name!r}")
                    raise fail(key, f"address {addr.ip} is already used by host {other_key[1]!r}")
                owner[addr.ip] = key
    used_ends: set[tuple[str, str]] = set()
    for index, link in enumerate(topology.links):
        for end in (link.a, link.b):
            host_name, ifname = end
            if host_name not in names:
                raise fail(("link", index), f"link to unknown host {host_name!r} (hosts: {', '.join(sorted(names))})")
            if ifname not in [i.name for i in topology.host(host_name).interfaces]:
                raise fail(("link", index), f"host {host_name!r} has no interface {ifname!r}")
            if end in used_ends:
                raise fail(("link", index), f"interface {ifname!r} of {host_name!r} is already linked")
            used_ends.add(end)
        if link.a[0] == link.b[0]:
            raise fail(("link", index), "a link needs two different hosts")
    for host in topology.hosts:
        for iface in host.interfaces:
            if (host.name, iface.name) not in used_ends:
                raise fail(
                    ("iface", host.name, iface.name), f"interface {iface.name!r} of {host.name!r} is not on any link"
                )
        connected = host.addresses()
        for index, route in enumerate(host.routes):
            key = ("route", host.name, index)
            if route.to.version != route.via.version:
                raise fail(key, f"route {route}: destination and gateway are of different IP versions")
            if route.to.prefixlen and not _in_lab_range(route.to):
                raise fail(key, f"route {route}: destination is outside the lab ranges")
            if not any(
                route.via in a.network and route.via != a.ip for a in connected if a.network.prefixlen < a.max_prefixlen
            ):
                raise fail(key, f"route {route}: gateway {route.via} is not on a subnet of {host.name!r}")
        if host.nameserver is not None and not _in_lab_range(host.nameserver):
            raise fail(("host", host.name), f"nameserver {host.nameserver} is outside the lab ranges")
    return topology
