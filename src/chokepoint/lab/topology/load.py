"""Topology files (``--topology FILE``): YAML that adds hosts, links, addresses and routes to the default
topology, validated against a JSON schema like a profile, with ``file:line:column`` errors."""

from __future__ import annotations

from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path
from typing import Any

from chokepoint.lab.topology.consistency import Where, check
from chokepoint.lab.topology.defaults import default_topology
from chokepoint.lab.topology.model import (
    HOST_NAME_PATTERN,
    IFNAME_PATTERN,
    Host,
    Interface,
    IPInterface,
    Link,
    Route,
    Topology,
    TopologyError,
)
from chokepoint.policy.errors import PolicyError


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
