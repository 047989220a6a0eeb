"""Address ranges on the lab's server side that stand for kinds of networks censors treat differently.

Several documented blocks depend on *where* a server is, not only on what it speaks: the GFW's
fully-encrypted-traffic block hit servers in certain data-centre ranges only (Wu et al., USENIX Security 2023;
ooni/spec#271 bundles the affected ASNs), Turkmenistan blocked large address ranges including data centres
from 2021 to mid-2024 (Nourin et al., WWW 2023; Bocovich et al., USENIX Security 2024, section on Turkmenistan;
net4people/bbs#378), and Russia's 2025 "16-20 KB freeze" is reported against foreign hosting ranges. A
self-hosted transport on a VPS meets those blocks; the same transport elsewhere does not.

So the lab's server side carries, besides the server's ordinary site addresses (198.19.0.10-39), two more
ranges, routed through the censor like everything else:

=========== ======================= ======================= =========== ================================================
name        IPv4                    IPv6                    held by     plays
=========== ======================= ======================= =========== ================================================
vps         198.19.64.0/24          2001:db8:0:64::/64      ``vps``     a popular VPS provider / data centre
elsewhere   198.19.128.0/24         2001:db8:0:128::/64     ``server``  an ordinary network elsewhere (not a data centre)
=========== ======================= ======================= =========== ================================================

The ``vps`` host (``lab/circumvention.py``, behind the server) holds the whole ``vps`` range: the transport
servers of the matrix live at ``.10``-``.99`` of it, and :meth:`ServerRange.address` gives ten more hosts,
``.100``-``.109`` (``::100``-``::109``), for anything else that must look like it runs in a data centre. The
server holds hosts ``.10``-``.19`` of ``elsewhere``. Profiles name these ranges in their own list files (e.g.
``lists/datacenter-ranges.txt``), with an ``uncertain:`` note that the real ranges are not encoded. Like every
lab address they come from RFC 2544 (198.18.0.0/15) and RFC 3849 (2001:db8::/32).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_interface, ip_network
from typing import Any

#: How many host addresses of each range :meth:`ServerRange.address` hands out.
HOSTS = 10


@dataclass(frozen=True, slots=True)
class ServerRange:
    """A named range of server-side addresses: what it plays, its networks, which lab host holds it, and the
    first of the :data:`HOSTS` host numbers :meth:`address` hands out."""

    name: str
    plays: str
    v4: IPv4Network
    v6: IPv6Network
    host: str
    first: int

    def address(self, n: int | None = None, version: int = 4) -> IPv4Address | IPv6Address:
        """Host ``n`` of the range (default the first; ``.n``, or ``::n`` with the decimal digits written as
        they are)."""
        n = self.first if n is None else n
        if not self.first <= n < self.first + HOSTS:
            raise ValueError(f"the lab holds hosts {self.first}-{self.first + HOSTS - 1} of {self.name}")
        if version == 4:
            return self.v4.network_address + n
        return ip_address(f"{self.v6.network_address}{n}")

    def addresses(self) -> list[IPv4Address | IPv6Address]:
        return [self.address(n, v) for v in (4, 6) for n in range(self.first, self.first + HOSTS)]


SERVER_RANGES: dict[str, ServerRange] = {
    r.name: r
    for r in (
        ServerRange(
            "vps",
            "a popular VPS provider / data centre",
            ip_network("198.19.64.0/24"),
            ip_network("2001:db8:0:64::/64"),
            host="vps",
            first=100,
        ),
        ServerRange(
            "elsewhere",
            "an ordinary network elsewhere (not a data centre)",
            ip_network("198.19.128.0/24"),
            ip_network("2001:db8:0:128::/64"),
            host="server",
            first=10,
        ),
    )
}


def host_addresses(host: str) -> tuple[Any, ...]:
    """The interface addresses (``/32`` and ``/128``) that ``host`` carries for the ranges it holds."""
    out = []
    for r in SERVER_RANGES.values():
        if r.host == host:
            out += [ip_interface(f"{a}/{a.max_prefixlen}") for a in r.addresses()]
    return tuple(out)


def censor_routes(via_v4: IPv4Address, via_v6: IPv6Address) -> tuple[tuple[Any, Any], ...]:
    """(network, gateway) pairs the censor needs to reach every range behind the server (its next hop)."""
    return tuple((net, via_v4 if net.version == 4 else via_v6) for r in SERVER_RANGES.values() for net in (r.v4, r.v6))


def range_of(address: str) -> str | None:
    """The name of the range ``address`` is in, or None."""
    addr = ip_address(address)
    for r in SERVER_RANGES.values():
        if addr in (r.v4 if addr.version == 4 else r.v6):
            return r.name
    return None


__all__ = ["HOSTS", "SERVER_RANGES", "ServerRange", "censor_routes", "host_addresses", "range_of"]
