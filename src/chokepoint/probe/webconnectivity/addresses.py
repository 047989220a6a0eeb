"""Addresses: bogons (ipinfo.io/bogon, as ooni/probe-cli netxlite/bogon.go lists them), loopback, URL host names."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

# ipinfo.io/bogon, as ooni/probe-cli netxlite/bogon.go lists them.
_BOGONS4 = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
    )
)
_BOGONS6 = tuple(
    ipaddress.ip_network(n)
    for n in (
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "::/96",
        "100::/64",
        "2001:10::/28",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
        "2002::/24",
        "2002:a00::/24",
        "2002:7f00::/24",
        "2002:a9fe::/32",
        "2002:ac10::/28",
        "2002:c000::/40",
        "2002:c000:200::/40",
        "2002:c0a8::/32",
        "2002:c612::/31",
        "2002:c633:6400::/40",
        "2002:cb00:7100::/40",
        "2002:e000::/20",
        "2002:f000::/20",
        "2002:ffff:ffff::/48",
        "2001::/40",
        "2001:0:a00::/40",
        "2001:0:7f00::/40",
        "2001:0:a9fe::/48",
        "2001:0:ac10::/44",
        "2001:0:c000::/56",
        "2001:0:c000:200::/56",
        "2001:0:c0a8::/48",
        "2001:0:c612::/47",
        "2001:0:c633:6400::/56",
        "2001:0:cb00:7100::/56",
        "2001:0:e000::/36",
        "2001:0:f000::/36",
        "2001:0:ffff:ffff::/64",
    )
)


def _parse_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def is_bogon(address: str) -> bool:
    """netxlite.IsBogon: private, reserved, loopback, link-local...; a non-address counts as a bogon."""
    ip = _parse_ip(address)
    if ip is None:
        return True
    if ip.is_loopback or ip.is_link_local:
        return True
    return any(ip in net for net in (_BOGONS6 if ip.version == 6 else _BOGONS4))


def _bogon_network(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    return next((net for net in (_BOGONS6 if ip.version == 6 else _BOGONS4) if ip in net), None)


def _telling_bogon(address: str, control_addrs: frozenset[str]) -> bool:
    """A bogon answer that says something: not one the control got too, and not in the private range the
    site itself lives in. When the control's own answers are bogons (a private deployment such as the lab,
    RFC 2544 addresses), a bogon of the same range, or of a family the control has no address in, is how
    that network resolves names, not interference; loopback and unspecified answers always tell."""
    ip = _parse_ip(address)
    if ip is None:
        return True
    if not is_bogon(address) or address in control_addrs:
        return False
    if ip.is_loopback or ip.is_unspecified:
        return True
    control_ips = [c for c in (_parse_ip(a) for a in control_addrs) if c is not None]
    private = {_bogon_network(c) for c in control_ips if is_bogon(str(c))}
    if not private:
        return True
    return _bogon_network(ip) not in private and ip.version in {c.version for c in control_ips}


def _only_loopback(addresses: Iterable[str]) -> bool:
    count = 0
    for address in addresses:
        ip = _parse_ip(address)
        if ip is None:
            continue
        if not ip.is_loopback:
            return False
        count += 1
    return count > 0


def _url_hostname(url: str) -> str:
    """Go's url.URL.Hostname(): the host without port or brackets, case preserved."""
    rest = url.split("://", 1)[1] if "://" in url else url
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
