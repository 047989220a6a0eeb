"""Where the censor sits: routers between the client and the censor, and between the censor and the server.

``lab up --hops-client N --hops-server M`` (docs/lab.md, "Hops and distance") puts N forwarding namespaces
``near1..nearN`` between ``client`` and ``censor`` and M namespaces ``far1..farM`` between ``censor`` and
``server``. Each is a plain Linux router: it decrements the TTL and answers an expired packet with an ICMP
time-exceeded from its own address (the one on the interface facing the client), quoting the expired packet.
With N = M = 0 (the default) the topology is exactly the default one::

    client cl0 ── rt0 near1 rt1 ── ... ── rt0 nearN rt1 ── ce0 censor ce1 ── rt0 far1 rt1 ── ... ── rt0 farM rt1 ── sv0 server
    198.18.0.2     198.18.0.1  198.18.101.1               198.18.(100+N).2     198.19.201.1     198.19.201.2       198.19.0.1    198.19.0.2

Every existing address keeps working: ``near1`` takes the client's gateway 198.18.0.1 and ``farM`` the
server's gateway 198.19.0.1, so the client, the server (its sites 198.19.0.10-39, the lab resolver
198.19.0.53), the VPS ranges, the prober and the control host keep their addresses and routes; the censor
moves to 198.18.(100+N).2 on ``ce0`` and 198.19.201.1 on ``ce1``, and routes the networks it reached
directly before through its new neighbours. Link j on the client side (after ``nearj``) is
198.18.(100+j).0/24 (``2001:db8:0:1xx::/64``), link j on the server side (before ``farj``) is
198.19.(200+j).0/24 (``2001:db8:0:2xx::/64``).

Between routers the censor is a transparent box, as the exported gateway is deployed: an optical tap in mirror
mode, partial layer-2 forwarding in its transparent inline mode (InterSecLab, The Internet Coup (2025) ch. 6; research/exported-gateway-leak.md), so no address of its
own shows in a traceroute. With any router on the path, the censor namespace adds one to the TTL (hop limit) of
every packet it forwards before its kernel takes one off (``mangle PREROUTING``, ``TTL --ttl-inc 1``/``HL
--hl-inc 1``), so it never answers an expired packet and the path's hop count is that of the routers alone. A
client's packet first gets past the censor at TTL ``hops_client + 1`` and is the one a TTL-limited probe
triggers it with; the hop that answers that TTL is the first one beyond the censor (``far1``, or the server
when ``hops_server`` is 0) — where CenTrace (Sundara Raman et al., CoNEXT 2022) places such a device. The
inline censor inspects in ``FORWARD`` after the kernel's TTL check, the mirror on its interfaces before it; the
transparency puts both at the same TTL. Without routers (the default lab) the censor is the client's and
the server's gateway and decrements the TTL like the router it is.

ICMP rate limits, like real routers: Linux's per-destination token bucket (``net.ipv4.icmp_ratelimit``, ms per
token, burst of 6 tokens; ``net.ipv4.icmp_ratemask``, which ICMP types it applies to; ip-sysctl.rst). The
routers keep Linux's ratemask (6168: destination unreachable, source quench, time exceeded, parameter
problem) and take ``icmp_ratelimit_ms`` (default :data:`ICMP_RATELIMIT_MS`, Linux's own default of 1000 ms:
after a burst of 6, one time-exceeded per second to each destination). Cisco IOS rate-limits ICMP
unreachables to one per 500 ms by default ("ip icmp rate-limit unreachable"); uncertain: no source in
research/ gives a figure for time-exceeded on backbone routers, so Linux's default stands in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from ipaddress import ip_interface, ip_network
from pathlib import Path
from typing import Any

from chokepoint.lab.topology import Host, Interface, Link, Route, Topology, check

#: At most this many routers on each side (link numbers stay below 198.18.117 / 198.19.217).
MAX_HOPS = 16
#: Linux's default ``net.ipv4.icmp_ratelimit`` (ms per token, burst 6 tokens per destination).
ICMP_RATELIMIT_MS = 1000
#: Linux's default ``net.ipv4.icmp_ratemask``: types 3, 4, 11, 12 (ip-sysctl.rst).
ICMP_RATEMASK = 6168
#: The censor's transparency (module docstring): forwarded packets get back the hop its kernel takes.
TRANSPARENT_V4 = ["-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", "TTL", "--ttl-inc", "1"]
TRANSPARENT_V6 = ["-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", "HL", "--hl-inc", "1"]


class GeometryError(ValueError):
    """A hop count or delay is out of range."""


@dataclass(frozen=True, slots=True)
class Geometry:
    """The lab's path: routers on each side of the censor, the far side's one-way delay, the routers' ICMP rate."""

    hops_client: int = 0
    hops_server: int = 0
    delay_ms: float = 0.0
    icmp_ratelimit_ms: int = ICMP_RATELIMIT_MS

    def __post_init__(self) -> None:
        for name in ("hops_client", "hops_server"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= MAX_HOPS:
                raise GeometryError(f"--{name.replace('_', '-')} {value!r}: 0 to {MAX_HOPS}")
        if not 0 <= self.delay_ms <= 5000:
            raise GeometryError(f"--delay-ms {self.delay_ms!r}: 0 to 5000")
        if not 0 <= self.icmp_ratelimit_ms <= 60000:
            raise GeometryError(f"--icmp-ratelimit-ms {self.icmp_ratelimit_ms!r}: 0 to 60000")

    @property
    def plain(self) -> bool:
        return self.hops_client == 0 and self.hops_server == 0 and self.delay_ms == 0

    @property
    def censor_ttl(self) -> int:
        """The TTL at which a packet from the client first gets past the censor (its hop number, CenTrace's
        convention: the hop answering that TTL is the censor's own in the flat lab, the one beyond it with
        routers, see the module docstring)."""
        return self.hops_client + 1

    @property
    def transparent_censor(self) -> bool:
        """Whether the censor forwards without decrementing the TTL (with any router on the path)."""
        return self.hops_client > 0 or self.hops_server > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "hops_client": self.hops_client,
            "hops_server": self.hops_server,
            "delay_ms": self.delay_ms,
            "icmp_ratelimit_ms": self.icmp_ratelimit_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Geometry:
        return cls(**(data or {}))


def from_profile(meta: Any) -> Geometry:
    """A profile's ``position`` (hops) and ``distance`` (far-side delay ``rtt_ms / 2``); 0 where it has none."""
    position = meta.position or {}
    rtt = (meta.distance or {}).get("rtt_ms", 0)
    return Geometry(position.get("hops_client", 0), position.get("hops_server", 0), rtt / 2)


def near(j: int) -> str:
    return f"near{j}"


def far(j: int) -> str:
    return f"far{j}"


def router_names(geometry: Geometry) -> list[str]:
    return [near(j) for j in range(1, geometry.hops_client + 1)] + [far(j) for j in range(1, geometry.hops_server + 1)]


def _near_link(j: int, end: int) -> tuple[Any, Any]:
    return ip_interface(f"198.18.{100 + j}.{end}/24"), ip_interface(f"2001:db8:0:{0x100 + j:x}::{end}/64")


def _far_link(j: int, end: int) -> tuple[Any, Any]:
    return ip_interface(f"198.19.{200 + j}.{end}/24"), ip_interface(f"2001:db8:0:{0x200 + j:x}::{end}/64")


def router_sysctls(geometry: Geometry) -> dict[str, int]:
    return {"net.ipv4.icmp_ratelimit": geometry.icmp_ratelimit_ms, "net.ipv4.icmp_ratemask": ICMP_RATEMASK}


def _side_networks(censor: Host, iface: str) -> list[Any]:
    """Networks the censor reaches through ``iface``: its connected subnets and the routes via them."""
    subnets = [a.network for a in censor.interface(iface).addresses]
    routed = [r.to for r in censor.routes if any(r.via in net for net in subnets)]
    return subnets + routed


def _router(name: str, side: str, a: tuple[Any, Any], b: tuple[Any, Any], routes: list[Route]) -> Host:
    return Host(
        name,
        description=f"a router on the {side} side of the censor (kernel forwarding, ICMP time-exceeded)",
        interfaces=(Interface("rt0", a), Interface("rt1", b)),
        routes=tuple(routes),
        forwarding=True,
    )


def topology(base: Topology, geometry: Geometry) -> Topology:
    """``base`` (the default topology) with the routers of ``geometry`` inserted (see the module docstring)."""
    n, m = geometry.hops_client, geometry.hops_server
    if n == 0 and m == 0:
        return base
    censor = base.host("censor")
    near_nets = _side_networks(censor, "ce0")
    far_nets = _side_networks(censor, "ce1")
    far_routes = [r for r in censor.routes if r.to in far_nets]
    hosts = {h.name: h for h in base.hosts}
    links = [link for link in base.links if link.a != ("client", "cl0") or n == 0]
    links = [link for link in links if link.a != ("censor", "ce1") or m == 0]
    censor_ifaces = list(censor.interfaces)
    censor_routes = [r for r in censor.routes if r.to not in far_nets or m == 0]

    def gateway(addrs: tuple[Any, ...], version: int) -> Any:
        return next(a.ip for a in addrs if a.version == version)

    def via(nets: list[Any], addrs: tuple[Any, ...]) -> list[Route]:
        return [Route(net, gateway(addrs, net.version)) for net in nets]

    defaults = [ip_network("0.0.0.0/0"), ip_network("::/0")]
    client_side = base.host("client").interface("cl0").addresses
    client_gw = tuple(
        ip_interface(f"{r.via}/{a.network.prefixlen}")
        for r in base.host("client").routes
        for a in client_side
        if r.via in a.network
    )
    if n:
        for j in range(1, n + 1):
            a = client_gw if j == 1 else _near_link(j - 1, 2)
            b = _near_link(j, 1)
            routes = via(defaults, _near_link(j, 2))
            if j > 1:
                routes += via([ip_network(x.network) for x in client_gw], _near_link(j - 1, 1))
            hosts[near(j)] = _router(near(j), "client", a, b, routes)
            links.append(Link(("client", "cl0") if j == 1 else (near(j - 1), "rt1"), (near(j), "rt0")))
        links.append(Link((near(n), "rt1"), ("censor", "ce0")))
        censor_ifaces = [Interface("ce0", _near_link(n, 2)) if i.name == "ce0" else i for i in censor_ifaces]
        censor_routes += via(near_nets, _near_link(n, 1))
    if m:
        server_gw = tuple(ip_interface(f"{a.ip}/{a.network.prefixlen}") for a in censor.interface("ce1").addresses)
        for j in range(1, m + 1):
            a = _far_link(j, 2)
            b = server_gw if j == m else _far_link(j + 1, 1)
            routes = via(defaults, _far_link(j, 1))
            routes += far_routes if j == m else via(far_nets, _far_link(j + 1, 2))
            hosts[far(j)] = _router(far(j), "server", a, b, routes)
            links.append(Link(("censor", "ce1") if j == 1 else (far(j - 1), "rt1"), (far(j), "rt0")))
        links.append(Link((far(m), "rt1"), ("server", "sv0")))
        censor_ifaces = [Interface("ce1", _far_link(1, 1)) if i.name == "ce1" else i for i in censor_ifaces]
        censor_routes += via(far_nets, _far_link(1, 2))
    hosts["censor"] = replace(censor, interfaces=tuple(censor_ifaces), routes=tuple(censor_routes))
    return check(Topology(tuple(hosts.values()), tuple(links), f"{base.source} + {n}/{m} hops"))


__all__ = [
    "ICMP_RATELIMIT_MS",
    "ICMP_RATEMASK",
    "MAX_HOPS",
    "Geometry",
    "GeometryError",
    "apply",
    "delay_host",
    "far",
    "from_profile",
    "near",
    "router_names",
    "router_sysctls",
    "topology",
]


def delay_host(geometry: Geometry) -> tuple[str, str]:
    """(host, interface) where the delay stage runs: the far side's first namespace, on its censor-facing end."""
    return (far(1), "rt0") if geometry.hops_server else ("server", "sv0")


def apply(state: Any, geometry: Geometry, say: Any = lambda _: None) -> None:
    """Configure a built lab's routers (ICMP rate limits) and start the far side's delay stage (lab/delay.py)."""
    from chokepoint.lab import delay, system

    for name in router_names(geometry):
        system.sysctl(router_sysctls(geometry), state.namespace(name))
    if geometry.transparent_censor:
        for v6, rule in ((False, TRANSPARENT_V4), (True, TRANSPARENT_V6)):
            system.iptables(["-t", "mangle", "-I", "PREROUTING", "1", *rule], state.namespace("censor"), v6)
    if router_names(geometry):
        say(
            f"routers: {', '.join(router_names(geometry))} (icmp_ratelimit {geometry.icmp_ratelimit_ms} ms); "
            f"the censor, transparent, between hops {geometry.hops_client} and {geometry.censor_ttl}"
        )
    if geometry.delay_ms <= 0:
        return
    host, iface = delay_host(geometry)
    argv = state.python_argv("chokepoint.lab.delay", "--delay-ms", f"{geometry.delay_ms:g}")
    info = state.start("delay", host, argv, grace=0.2)
    deadline = time.monotonic() + 5.0
    while "delay stage:" not in Path(info.log).read_text(errors="replace"):
        if time.monotonic() > deadline or not info.alive():
            raise GeometryError(f"the delay stage did not start; its log ({info.log}):\n{info.log_tail()}")
        time.sleep(0.02)
    delay.install(state.namespace(host), iface)
    say(f"far-side delay: {geometry.delay_ms:g} ms each way ({state.namespace(host)} {iface})")
