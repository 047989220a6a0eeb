"""The lab's network as data: hosts (network namespaces), their interfaces, addresses and routes, and the veth
links between them; the names and address ranges every lab keeps to, and the error a bad topology raises.

``Topology.to_dict`` / ``from_dict`` carry a topology through state.json. Checking one is
:mod:`chokepoint.lab.topology.consistency`; the default one is :mod:`chokepoint.lab.topology.defaults`.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from pathlib import Path
from typing import Any

from chokepoint.lab import instance
from chokepoint.policy.errors import PolicyError

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network

#: Every namespace of this lab is named with this prefix (``CHOKEPOINT_LAB``, lab/instance.py);
#: ``destroy()`` removes all of them and nothing else.
PREFIX = instance.PREFIX
#: The only address ranges a lab may use: RFC 2544 (benchmarking) and RFC 3849 (IPv6 documentation).
LAB_RANGES: tuple[IPNetwork, ...] = (ip_network("198.18.0.0/15"), ip_network("2001:db8::/32"))
#: ifalias set on every lab veth, so a stray one in the host namespace can be recognised and removed.
LINK_ALIAS = instance.LINK_ALIAS
#: ``ip netns exec NS`` bind-mounts ``/etc/netns/NS/<file>`` over ``/etc/<file>`` (ip-netns(8)).
ETC_NETNS = Path("/etc/netns")
#: Host names become ``cpk-<name>``; interface names obey IFNAMSIZ (15 characters).
HOST_NAME_PATTERN = r"^[a-z][a-z0-9]{0,11}$"
IFNAME_PATTERN = r"^[a-z][a-z0-9]{0,14}$"


class TopologyError(PolicyError):
    """A topology file (or a topology built in code) was rejected: ``file:line:column: message``."""


@dataclass(frozen=True, slots=True)
class Interface:
    """One end of a veth link inside a host: its name and addresses (with prefix length)."""

    name: str
    addresses: tuple[IPInterface, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    """``to`` (a network; ``0.0.0.0/0`` / ``::/0`` is the default route) via a gateway on a connected subnet."""

    to: IPNetwork
    via: IPAddress

    def __str__(self) -> str:
        dest = "default" if self.to.prefixlen == 0 else str(self.to)
        return f"{dest} via {self.via}"


@dataclass(frozen=True, slots=True)
class Host:
    """A network namespace ``cpk-<name>``."""

    name: str
    interfaces: tuple[Interface, ...] = ()
    routes: tuple[Route, ...] = ()
    forwarding: bool = False  # IPv4 and IPv6 forwarding (the censor)
    nameserver: IPAddress | None = None  # written to /etc/netns/cpk-<name>/resolv.conf
    trust_lab_ca: bool = False  # /etc/netns/cpk-<name>/ssl = /etc/ssl + the lab CA
    description: str = ""

    @property
    def namespace(self) -> str:
        return PREFIX + self.name

    def interface(self, name: str) -> Interface:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        raise KeyError(f"host {self.name!r} has no interface {name!r}")

    def addresses(self) -> list[IPInterface]:
        return [addr for iface in self.interfaces for addr in iface.addresses]


@dataclass(frozen=True, slots=True)
class Link:
    """A veth pair between ``(host, ifname)`` and ``(host, ifname)``."""

    a: tuple[str, str]
    b: tuple[str, str]


@dataclass(frozen=True, slots=True)
class Topology:
    hosts: tuple[Host, ...]
    links: tuple[Link, ...]
    source: str = "default"

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"no host {name!r} (hosts: {', '.join(self.host_names())})")

    def host_names(self) -> list[str]:
        return [host.name for host in self.hosts]

    def namespaces(self) -> list[str]:
        return [host.namespace for host in self.hosts]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (state.json); ``from_dict`` reads it back."""
        return {
            "source": self.source,
            "hosts": [
                {
                    "name": h.name,
                    "namespace": h.namespace,
                    "description": h.description,
                    "forwarding": h.forwarding,
                    "trust_lab_ca": h.trust_lab_ca,
                    "nameserver": str(h.nameserver) if h.nameserver else None,
                    "interfaces": [{"name": i.name, "addresses": [str(a) for a in i.addresses]} for i in h.interfaces],
                    "routes": [{"to": str(r.to), "via": str(r.via)} for r in h.routes],
                }
                for h in self.hosts
            ],
            "links": [[list(link.a), list(link.b)] for link in self.links],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Topology:
        hosts = tuple(
            Host(
                name=h["name"],
                description=h.get("description", ""),
                forwarding=h["forwarding"],
                trust_lab_ca=h["trust_lab_ca"],
                nameserver=ip_address(h["nameserver"]) if h.get("nameserver") else None,
                interfaces=tuple(
                    Interface(i["name"], tuple(ip_interface(a) for a in i["addresses"])) for i in h["interfaces"]
                ),
                routes=tuple(Route(ip_network(r["to"]), ip_address(r["via"])) for r in h["routes"]),
            )
            for h in data["hosts"]
        )
        links = tuple(Link(tuple(a), tuple(b)) for a, b in data["links"])  # type: ignore[arg-type]
        return cls(hosts, links, data.get("source", "state.json"))
