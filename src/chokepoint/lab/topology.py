"""The lab's network as data, and the code that builds and removes it in network namespaces.

The default topology (docs/lab.md) puts a censor between a client and a server; a control host hangs
directly off the client, outside the censor's path::

    cpk-control ck1 ── ck0 cpk-client cl0 ── ce0 cpk-censor ce1 ── sv0 cpk-server
    198.18.9.1       198.18.9.2   198.18.0.2   198.18.0.1   198.19.0.1   198.19.0.2 (+ .10-.29, .53)
    cpk-control cs0 ── svc0 cpk-server: the test helper's path around the censor (198.19.62.2 ── 198.19.62.1)
                                                                         (+ "elsewhere" 198.19.128.10-19)
    cpk-censor cepr0 ── pr0 cpk-prober (the active prober)       cpk-server svp0 ── vp0 cpk-vps (198.19.64/24)

(lab/circumvention.py: the VPS and the prober; lab/ranges.py: the "vps" and "elsewhere" ranges.)

Addresses come only from the RFC 2544 benchmarking range 198.18.0.0/15 and the RFC 3849 documentation prefix
2001:db8::/32, so lab traffic can never be mistaken for (or routed to) real hosts. ``--topology FILE`` adds
hosts, links, addresses and routes to the default (``load_topology_file``); it is validated like a profile,
with ``file:line:column`` errors. ``create()`` builds a topology, ``destroy()`` removes every ``cpk-*``
namespace and everything the lab left behind, whatever state it is in.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
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

from chokepoint.lab import circumvention, instance, ranges, system
from chokepoint.policy.errors import PolicyError, SourcePos

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
#: Seconds ``destroy()`` waits after SIGTERM before SIGKILL, and after SIGKILL.
TERM_GRACE = 1.0
KILL_GRACE = 2.0
#: Sysctls of every lab namespace: no IPv6 duplicate address detection (RFC 4862 section 5.4), whose
#: ~1 s of "tentative" addresses (link-local ones included) would make the first IPv6 packets fail.
NO_DAD = {"net.ipv6.conf.all.accept_dad": 0, "net.ipv6.conf.default.accept_dad": 0}
#: Interface index of the first veth end; link i gets FIRST_IFINDEX + 2i and + 2i + 1.
FIRST_IFINDEX = 10
#: Sysctls of a forwarding host (the censor).
FORWARDING = {"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1}
#: Offloads turned off on every lab veth (``ethtool -K IFACE tso off gso off ...``). With them on, TCP (and UDP
#: GSO) hand a veth super-packets of up to 64 KB that cross the censor whole: its engine sees them unsplit, and
#: its tc qdiscs charge a throttled flow's token bucket per super-packet, so the burst overshot the
#: personality's ``burst_bytes`` by up to one of them (measured: ~47 kB through ahead of the rate for a
#: 15 kB bucket; ~16.5 kB with these off). Turning them off only on the censor's interfaces is not enough:
#: a forwarded super-packet is split after the qdisc. A real censor sees wire-sized packets.
OFFLOADS_OFF = ("tso", "gso", "gro", "tx-udp-segmentation")


class TopologyError(PolicyError):
    """A topology file (or a topology built in code) was rejected: ``file:line:column: message``."""


class LinkNotUp(Exception):
    """A lab link did not come up in time."""


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


# ---------------------------------------------------------------------------------------------- the default


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


# ------------------------------------------------------------------------------------------- validation


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


# ---------------------------------------------------------------------------------------- topology files


def _topology_schema() -> dict[str, Any]:
    string = {"type": "string", "minLength": 1}
    address_list = {"type": "array", "items": string, "minItems": 1}
    host_name = {"type": "string", "pattern": HOST_NAME_PATTERN}
    ifname = {"type": "string", "pattern": IFNAME_PATTERN}
    end = {
        "title": "link end key",
        "type": "object",
        "required": ["host", "ifname"],
        "additionalProperties": False,
        "properties": {"host": host_name, "ifname": ifname, "addresses": address_list},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "top-level key",
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "hosts": {
                "title": "host name",
                "type": "object",
                "propertyNames": {"title": "host name", "pattern": HOST_NAME_PATTERN},
                "additionalProperties": {
                    "title": "host key",
                    "type": ["object", "null"],
                    "additionalProperties": False,
                    "properties": {
                        "description": string,
                        "forwarding": {"type": "boolean"},
                        "nameserver": string,
                        "trust_lab_ca": {"type": "boolean"},
                    },
                },
            },
            "links": {
                "type": "array",
                "items": {
                    "title": "link key",
                    "type": "object",
                    "required": ["ends"],
                    "additionalProperties": False,
                    "properties": {"ends": {"type": "array", "items": end, "minItems": 2, "maxItems": 2}},
                },
            },
            "addresses": {
                "type": "array",
                "items": {
                    "title": "addresses key",
                    "type": "object",
                    "required": ["host", "ifname", "addresses"],
                    "additionalProperties": False,
                    "properties": {"host": host_name, "ifname": ifname, "addresses": address_list},
                },
            },
            "routes": {
                "type": "array",
                "items": {
                    "title": "route key",
                    "type": "object",
                    "required": ["host", "to", "via"],
                    "additionalProperties": False,
                    "properties": {"host": host_name, "to": string, "via": string},
                },
            },
        },
    }


def load_topology_file(path: str | Path, base: Topology | None = None) -> Topology:
    """The default topology (or ``base``) extended by the YAML file at ``path``; ``TopologyError`` with
    ``file:line:column`` for anything wrong (syntax, schema, an unknown host, an address outside the lab
    ranges or already taken, a gateway not on a connected subnet, ...)."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TopologyError(shown, 1, 1, f"not UTF-8: {exc.reason}") from None
    except OSError as exc:
        raise TopologyError(shown, 1, 1, f"cannot read: {exc.strerror or exc}") from None
    return load_topology_text(text, shown, base)


def load_topology_text(text: str, file: str = "<topology>", base: Topology | None = None) -> Topology:
    """The same from a string."""
    from chokepoint.policy.schema import validate
    from chokepoint.policy.yamlsrc import load_yaml

    try:
        data, marks = load_yaml(text, file)
        validate(data, marks, _topology_schema())
    except TopologyError:
        raise
    except PolicyError as exc:
        raise TopologyError(exc.file, exc.line, exc.column, exc.message) from None
    base = base or default_topology()
    where: Where = {}

    def parse(kind: str, text_: str, path: tuple[Any, ...]) -> Any:
        try:
            if kind == "interface":
                if "/" not in text_:
                    raise ValueError("needs a prefix length, e.g. 198.18.5.2/24")
                return ip_interface(text_)
            if kind == "network":
                return ip_network("0.0.0.0/0") if text_ == "default" else ip_network(text_)
            return ip_address(text_)
        except ValueError as exc:
            raise TopologyError.at(marks.value(path), f"bad {kind} {text_!r}: {exc}") from None

    hosts = {host.name: host for host in base.hosts}
    extra_ifaces: dict[str, list[Interface]] = {name: [] for name in hosts}
    for name, spec in (data.get("hosts") or {}).items():
        spec = spec or {}
        where[("host", name)] = marks.key(("hosts", name))
        if name in hosts:
            raise TopologyError.at(marks.key(("hosts", name)), f"host {name!r} already exists")
        nameserver = spec.get("nameserver")
        hosts[name] = Host(
            name,
            description=spec.get("description", ""),
            forwarding=spec.get("forwarding", False),
            trust_lab_ca=spec.get("trust_lab_ca", False),
            nameserver=parse("address", nameserver, ("hosts", name, "nameserver")) if nameserver else None,
        )
        extra_ifaces[name] = []
    links = list(base.links)
    for index, raw in enumerate(data.get("links") or []):
        ends = []
        for side, end in enumerate(raw["ends"]):
            path = ("links", index, "ends", side)
            host_name, ifname = end["host"], end["ifname"]
            if host_name not in hosts:
                raise TopologyError.at(
                    marks.value(path + ("host",)), f"unknown host {host_name!r} (hosts: {', '.join(hosts)})"
                )
            addrs = tuple(
                parse("interface", a, path + ("addresses", i)) for i, a in enumerate(end.get("addresses") or [])
            )
            for i, addr in enumerate(addrs):
                where[("addr", host_name, ifname, str(addr))] = marks.value(path + ("addresses", i))
            where[("iface", host_name, ifname)] = marks.value(path + ("ifname",))
            extra_ifaces[host_name].append(Interface(ifname, addrs))
            ends.append((host_name, ifname))
        where[("link", len(links))] = marks.value(("links", index))
        links.append(Link(ends[0], ends[1]))
    more_addrs: dict[tuple[str, str], list[IPInterface]] = {}
    for index, raw in enumerate(data.get("addresses") or []):
        path = ("addresses", index)
        host_name, ifname = raw["host"], raw["ifname"]
        if host_name not in hosts:
            raise TopologyError.at(marks.value(path + ("host",)), f"unknown host {host_name!r}")
        known = [i.name for i in hosts[host_name].interfaces] + [i.name for i in extra_ifaces[host_name]]
        if ifname not in known:
            raise TopologyError.at(
                marks.value(path + ("ifname",)),
                f"host {host_name!r} has no interface {ifname!r} (has: {', '.join(known)})",
            )
        for i, text_ in enumerate(raw["addresses"]):
            addr = parse("interface", text_, path + ("addresses", i))
            where[("addr", host_name, ifname, str(addr))] = marks.value(path + ("addresses", i))
            more_addrs.setdefault((host_name, ifname), []).append(addr)
    more_routes: dict[str, list[Route]] = {}
    for index, raw in enumerate(data.get("routes") or []):
        path = ("routes", index)
        host_name = raw["host"]
        if host_name not in hosts:
            raise TopologyError.at(marks.value(path + ("host",)), f"unknown host {host_name!r}")
        via = parse("address", raw["via"], path + ("via",))
        to = parse("network", raw["to"], path + ("to",))
        if raw["to"] == "default" and via.version == 6:
            to = ip_network("::/0")
        count = len(hosts[host_name].routes) + len(more_routes.get(host_name, []))
        where[("route", host_name, count)] = marks.value(path)
        more_routes.setdefault(host_name, []).append(Route(to, via))
    built = []
    for name, host in hosts.items():
        ifaces = [
            Interface(i.name, i.addresses + tuple(more_addrs.get((name, i.name), ())))
            for i in (*host.interfaces, *extra_ifaces[name])
        ]
        built.append(
            Host(
                host.name,
                tuple(ifaces),
                host.routes + tuple(more_routes.get(name, ())),
                host.forwarding,
                host.nameserver,
                host.trust_lab_ca,
                host.description,
            )
        )
    return check(Topology(tuple(built), tuple(links), source=file), where, file)


# ------------------------------------------------------------------------------------------------ create


def create(topology: Topology) -> None:
    """Build ``topology``: namespaces, veth pairs (created directly inside their namespaces, so no lab
    interface ever appears in the host namespace) with segmentation/receive offloads off
    (:data:`OFFLOADS_OFF`, when ``ethtool`` is installed; ``check_kernel`` reports it missing), addresses
    (IPv6 without DAD), routes, forwarding sysctls and ``/etc/netns`` files. Raises ``system.CommandError``;
    the caller rolls back with ``destroy(topology.namespaces())``."""
    ns = {host.name: host.namespace for host in topology.hosts}
    system.ip_batch([["netns", "add", name] for name in ns.values()])
    for host in topology.hosts:  # before the links exist, so their link-local addresses skip DAD too
        system.sysctl({**NO_DAD, **(FORWARDING if host.forwarding else {})}, host.namespace)
    # Distinct ifindexes for the two ends: the kernel only handles a veth's carrier change at once
    # ("urgent" in net/core/link_watch.c) when ifindex != iflink, i.e. the peer's ifindex; equal ones
    # (likely, each namespace counts from 2) delay it by up to a second, and IPv6 ignores the link till then.
    system.ip_batch(
        [
            [
                "link",
                "add",
                link.a[1],
                "index",
                str(FIRST_IFINDEX + 2 * i),
                "netns",
                ns[link.a[0]],
                "type",
                "veth",
                "peer",
                "name",
                link.b[1],
                "index",
                str(FIRST_IFINDEX + 2 * i + 1),
                "netns",
                ns[link.b[0]],
            ]
            for i, link in enumerate(topology.links)
        ]
    )
    if system.which("ethtool") is not None:
        disable_offloads(topology)
    for host in topology.hosts:
        commands = [["link", "set", "lo", "up"]]
        for iface in host.interfaces:
            for addr in iface.addresses:
                nodad = ["nodad"] if addr.version == 6 else []
                commands.append(["addr", "add", str(addr), "dev", iface.name, *nodad])
            commands.append(["link", "set", iface.name, "up", "alias", LINK_ALIAS])
        system.ip_batch(commands, host.namespace)
    for host in topology.hosts:
        system.ip_batch(
            [["route", "add", "default" if r.to.prefixlen == 0 else str(r.to), "via", str(r.via)] for r in host.routes],
            host.namespace,
        )
    wait_links_up(topology)
    for host in topology.hosts:
        if host.nameserver is not None:
            etc = ETC_NETNS / host.namespace
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(f"# chokepoint lab\nnameserver {host.nameserver}\n")


def disable_offloads(topology: Topology) -> None:
    """``ethtool -K`` every lab interface: :data:`OFFLOADS_OFF` off (``system.CommandError`` if refused)."""
    settings = [word for feature in OFFLOADS_OFF for word in (feature, "off")]
    for host in topology.hosts:
        for iface in host.interfaces:
            system.run(["ethtool", "-K", iface.name, *settings], netns=host.namespace)


def offloads(netns: str, iface: str) -> dict[str, bool]:
    """The :data:`OFFLOADS_OFF` features of one interface as ``ethtool -k`` reports them (True: on)."""
    names = {
        "tso": "tcp-segmentation-offload",
        "gso": "generic-segmentation-offload",
        "gro": "generic-receive-offload",
        "tx-udp-segmentation": "tx-udp-segmentation",
    }
    text = system.run(["ethtool", "-k", iface], netns=netns).stdout.decode()
    shown = dict(line.strip().split(": ", 1) for line in text.splitlines() if ": " in line)
    return {short: shown.get(long, "").split(" ")[0] == "on" for short, long in names.items()}


def wait_links_up(topology: Topology, timeout: float = 3.0) -> None:
    """Return once every lab interface reports operstate UP (carrier on both ends); ``LinkNotUp`` after
    ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        down = [
            f"{host.namespace}/{link['ifname']}"
            for host in topology.hosts
            for link in system.ip_json(["link", "show"], host.namespace)
            if link["ifname"] in {i.name for i in host.interfaces} and link.get("operstate") != "UP"
        ]
        if not down:
            return
        if time.monotonic() >= deadline:
            raise LinkNotUp(f"links not up after {timeout:g} s: {', '.join(down)}")
        time.sleep(0.02)


def install_ca(topology: Topology, ca_pem: bytes, *, ssl_dir: Path = Path("/etc/ssl")) -> list[Path]:
    """Make every ``trust_lab_ca`` host trust the lab CA: ``/etc/netns/cpk-<host>/ssl`` becomes a copy of
    ``/etc/ssl`` with the CA appended to ``certs/ca-certificates.crt`` (curl's and Debian OpenSSL's CA file)
    and added to ``certs/`` as ``chokepoint-lab-ca.pem`` plus its OpenSSL subject-hash link (the CA path
    used by Python's ssl). Returns the directories written."""
    written = []
    for host in topology.hosts:
        if not host.trust_lab_ca:
            continue
        target = ETC_NETNS / host.namespace / "ssl"
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(ssl_dir, target, symlinks=True)
        certs = target / "certs"
        certs.mkdir(exist_ok=True)
        bundle = certs / "ca-certificates.crt"
        if bundle.is_symlink():
            bundle.unlink()
        with open(bundle, "ab") as out:
            out.write(b"\n" + ca_pem.strip() + b"\n")
        (certs / "chokepoint-lab-ca.pem").write_bytes(ca_pem)
        subject_hash = system.run(["openssl", "x509", "-noout", "-subject_hash"], input=ca_pem).stdout
        link_name = subject_hash.decode().strip()
        for n in range(10):
            candidate = certs / f"{link_name}.{n}"
            if not candidate.exists() and not candidate.is_symlink():
                candidate.symlink_to("chokepoint-lab-ca.pem")
                break
        written.append(target)
    return written


# -------------------------------------------------------------------------------------- kernel features

#: Tools ``lab up`` cannot do without.
REQUIRED_TOOLS = ("ip", "nft", "iptables", "ip6tables", "tc", "sysctl", "openssl")


@dataclass(frozen=True, slots=True)
class KernelCheck:
    """``missing``: features the lab needs (``lab up`` refuses); ``degraded``: features only some actions
    need (``lab up`` warns)."""

    missing: tuple[str, ...] = ()
    degraded: tuple[str, ...] = ()


def _probe_nft_ruleset() -> dict[str, Any]:
    """A table like the censor's: a residual set with per-element timeouts and a rule that resets on it."""
    table = {"family": "inet", "table": "cpkprobe"}
    concat = [
        {"payload": {"protocol": "ip", "field": "saddr"}},
        {"payload": {"protocol": "ip", "field": "daddr"}},
        {"payload": {"protocol": "tcp", "field": "dport"}},
    ]
    return {
        "nftables": [
            {"add": {"table": {"family": "inet", "name": "cpkprobe"}}},
            {
                "add": {
                    "set": {
                        **table,
                        "name": "r4",
                        "type": ["ipv4_addr", "ipv4_addr", "inet_service"],
                        "flags": ["timeout"],
                    }
                }
            },
            {
                "add": {
                    "element": {
                        **table,
                        "name": "r4",
                        "elem": [{"elem": {"val": {"concat": ["198.18.0.2", "198.19.0.2", 443]}, "timeout": 2}}],
                    }
                }
            },
            {
                "add": {
                    "chain": {
                        **table,
                        "name": "fwd",
                        "type": "filter",
                        "hook": "forward",
                        "prio": 0,
                        "policy": "accept",
                    }
                }
            },
            {
                "add": {
                    "rule": {
                        **table,
                        "chain": "fwd",
                        "expr": [
                            {"match": {"op": "==", "left": {"concat": concat}, "right": "@r4"}},
                            {"reject": {"type": "tcp reset"}},
                        ],
                    }
                }
            },
        ]
    }


def check_kernel() -> KernelCheck:
    """Try, in a throwaway namespace ``cpk-probe-<pid>`` (always removed), everything the lab needs: root,
    the tools, network namespaces, veth pairs, forwarding, nf_tables sets with timeouts and ``reject with
    tcp reset``, the iptables/ip6tables ``NFQUEUE --queue-bypass`` target with ``connmark``/``CONNMARK``;
    optionally tc ``tbf`` (throttle) and ``netem`` (delay). No modprobe: the kernel loads what it can."""
    if os.geteuid() != 0:
        return KernelCheck(missing=("root (the lab creates network namespaces; run it as root)",))
    missing = [
        f"the `{tool}` command (Debian package {system.TOOL_PACKAGES.get(tool, tool)})"
        for tool in REQUIRED_TOOLS
        if system.which(tool) is None
    ]
    if "ip" in " ".join(missing):
        return KernelCheck(missing=tuple(missing))
    probe = f"{PREFIX}probe-{os.getpid()}"
    degraded: list[str] = []

    def attempt(what: str, into: list[str], fn: Any, *args: Any, **kwargs: Any) -> bool:
        try:
            fn(*args, **kwargs)
            return True
        except system.CommandError as exc:
            lines = [line.strip() for line in exc.stderr.splitlines() if line.strip()]
            into.append(f"{what}: {lines[0] if lines else exc}")
            return False

    if not attempt("network namespaces", missing, system.ip, ["netns", "add", probe]):
        return KernelCheck(missing=tuple(missing))
    try:
        if attempt(
            "veth pairs (CONFIG_VETH)",
            missing,
            system.ip,
            ["link", "add", "cpkp0", "type", "veth", "peer", "name", "cpkp1"],
            probe,
        ):
            attempt(
                "bringing links up",
                missing,
                system.ip_batch,
                [["link", "set", "cpkp0", "up"], ["link", "set", "cpkp1", "up"]],
                probe,
            )
            attempt(
                "tc tbf qdisc (needed by throttle)",
                degraded,
                system.tc,
                ["qdisc", "add", "dev", "cpkp0", "root", "tbf", "rate", "150kbit", "burst", "1600", "latency", "50ms"],
                probe,
            )
            attempt(
                "tc netem qdisc (CONFIG_NET_SCH_NETEM; kernel-side delay)",
                degraded,
                system.tc,
                ["qdisc", "add", "dev", "cpkp1", "root", "netem", "delay", "1ms"],
                probe,
            )
            if system.which("ethtool") is None:
                degraded.append(
                    "the `ethtool` command (Debian package ethtool): segmentation offloads stay on, "
                    "so a throttled flow gets up to ~64 kB more burst than its burst_bytes"
                )
            else:
                attempt(
                    "turning veth offloads off (ethtool -K; throttle burst accuracy)",
                    degraded,
                    system.run,
                    ["ethtool", "-K", "cpkp0", *[w for f in OFFLOADS_OFF for w in (f, "off")]],
                    netns=probe,
                )
        attempt("IPv4/IPv6 forwarding sysctls", missing, system.sysctl, FORWARDING, probe)
        attempt(
            "nf_tables sets with timeouts and reject (CONFIG_NF_TABLES, NFT_SET_HASH, NFT_REJECT)",
            missing,
            system.nft,
            _probe_nft_ruleset(),
            probe,
        )
        for v6 in (False, True):
            name = "ip6tables" if v6 else "iptables"
            attempt(
                f"{name} NFQUEUE target with --queue-bypass and connmark (xt_NFQUEUE, xt_connmark)",
                missing,
                system.iptables,
                [
                    "-t",
                    "mangle",
                    "-A",
                    "FORWARD",
                    "-m",
                    "connmark",
                    "--mark",
                    "0x1/0x3",
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    "0",
                    "--queue-bypass",
                ],
                probe,
                v6,
            )
            attempt(
                f"{name} CONNMARK target",
                missing,
                system.iptables,
                [
                    "-t",
                    "filter",
                    "-A",
                    "FORWARD",
                    "-m",
                    "mark",
                    "--mark",
                    "0x1/0x3",
                    "-j",
                    "CONNMARK",
                    "--save-mark",
                    "--mask",
                    "0x3",
                ],
                probe,
                v6,
            )
    finally:
        system.run(["ip", "netns", "delete", probe], check=False)
    return KernelCheck(missing=tuple(missing), degraded=tuple(degraded))


# ----------------------------------------------------------------------------------------------- destroy


@dataclass(slots=True)
class Teardown:
    """What ``destroy()`` removed, and what it could not remove (``errors``; empty means all gone)."""

    killed: list[int] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return not (self.killed or self.namespaces or self.links or self.files or self.errors)


def lab_namespaces() -> list[str]:
    """Every existing namespace whose name starts with ``cpk-``."""
    try:
        names = system.netns_list()
    except system.CommandError:
        names = []
    dangling = [p.name for p in Path("/run/netns").glob(PREFIX + "*")] if Path("/run/netns").is_dir() else []
    return sorted({n for n in [*names, *dangling] if n.startswith(PREFIX)})


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while pids and time.monotonic() < deadline:
        time.sleep(0.02)
        pids = [pid for pid in pids if _alive(pid)]
    return pids


def destroy(
    namespaces: Iterable[str] | None = None, *, extra_pids: Iterable[int] = (), keep: Iterable[str] = ()
) -> Teardown:
    """Remove the lab, whatever is left of it; never raises for parts already gone.

    ``namespaces``: the ones to remove (default: every ``cpk-*``). Processes inside them (``ip netns pids``)
    and ``extra_pids`` get SIGTERM, then SIGKILL after ``TERM_GRACE`` s; then the namespaces are deleted
    (with them their veths, addresses, routes, nftables/iptables rulesets, tc qdiscs and conntrack
    entries, which live inside the namespace), then host-namespace veths carrying the lab's ifalias and
    ``/etc/netns/<namespace>`` directories. Namespaces in ``keep`` (another tool's ``cpk-*``) are left alone."""
    report = Teardown()
    spared = set(keep)
    selected = sorted(set(namespaces) if namespaces is not None else set(lab_namespaces()) - spared)
    present = set(lab_namespaces())
    targets = [name for name in selected if name in present]
    pids = sorted({pid for name in targets for pid in system.netns_pids(name)} | set(extra_pids))
    pids = [pid for pid in pids if pid != os.getpid() and _alive(pid)]
    if pids:
        _signal_all(pids, signal.SIGTERM)
        left = _wait_gone(pids, TERM_GRACE)
        _signal_all(left, signal.SIGKILL)
        left = _wait_gone(left, KILL_GRACE)
        report.killed = pids
        report.errors += [f"process {pid} survived SIGKILL" for pid in left]
    for name in targets:
        proc = system.run(["ip", "netns", "delete", name], check=False)
        if proc.returncode == 0:
            report.namespaces.append(name)
            continue
        stale = Path("/run/netns") / name
        try:
            stale.unlink()
            report.namespaces.append(name)
        except FileNotFoundError:
            report.namespaces.append(name)
        except OSError as exc:
            report.errors.append(f"namespace {name}: {proc.stderr.decode(errors='replace').strip() or exc}")
    try:
        for link in system.ip_json(["link", "show", "type", "veth"]):
            if str(link.get("ifalias", "")).startswith(LINK_ALIAS):
                gone = system.ip(["link", "delete", link["ifname"]], check=False)
                if gone.returncode == 0:
                    report.links.append(link["ifname"])
                else:
                    report.errors.append(f"veth {link['ifname']}: {gone.stderr.decode(errors='replace').strip()}")
    except system.CommandError as exc:
        report.errors.append(f"cannot list host veths: {exc}")
    etc_dirs = (
        [ETC_NETNS / name for name in selected]
        if namespaces is not None
        else sorted(p for p in ETC_NETNS.glob(PREFIX + "*") if p.name not in spared)
        if ETC_NETNS.is_dir()
        else []
    )
    for path in etc_dirs:
        if path.exists() or path.is_symlink():
            try:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                report.files.append(str(path))
            except OSError as exc:
                report.errors.append(f"{path}: {exc.strerror or exc}")
    try:
        ETC_NETNS.rmdir()  # only if empty (nothing but the lab uses it here)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            report.errors.append(f"{ETC_NETNS}: {exc.strerror}")
    return report


__all__ = [
    "CONTROL_DNS_V4",
    "DNS_V4",
    "DNS_V6",
    "ETC_NETNS",
    "Host",
    "Interface",
    "KernelCheck",
    "LAB_RANGES",
    "LINK_ALIAS",
    "Link",
    "LinkNotUp",
    "OFFLOADS_OFF",
    "PREFIX",
    "Route",
    "SITE_V4",
    "SITE_V6",
    "Teardown",
    "Topology",
    "TopologyError",
    "check",
    "check_kernel",
    "create",
    "default_topology",
    "destroy",
    "disable_offloads",
    "install_ca",
    "lab_namespaces",
    "load_topology_file",
    "load_topology_text",
    "offloads",
    "wait_links_up",
]
