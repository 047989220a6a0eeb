"""``lab up --wrap vlan|gre``: the client side of the lab behind an operator's wrapping, so the censor works on
wrapped traffic as a gateway in a carrier's core does (docs/lab.md, "Wrapped client side").

The lab kernel has neither the 802.1Q driver nor GRE tunnels, so the wrapping is done by user-space endpoints
(:mod:`chokepoint.lab.wrapper`, on TUN/TAP devices) started as lab processes; what crosses the wire is real
802.1Q frames and real GRE packets, and the censor namespace stays an ordinary router:

- ``vlan``: the client-censor link carries VLAN :data:`VLAN_ID`. The addresses of ``cl0`` and ``ce0`` move to the
  TAP devices ``cl0v`` and ``ce0v`` (routes follow), whose frames a wrapper tags onto the veth and untags from
  it. Inline, the censor's kernel routes the untagged packets and NFQUEUE sees IP packets, as a censor behind a
  VLAN sub-interface does; the mirror's packet socket on ``ce0`` sees the client's frames with their tag (put
  back from packet metadata) and the decoder unwraps it (EVE ``encap: ["vlan:100"]``). Injected packets reach
  the client (they are routed through ``ce0v``).
- ``gre``: the client reaches the server's IPv4 sites (``198.19.0.0/24``) through a GRE tunnel (key
  :data:`GRE_KEY`) from ``198.18.0.2`` to the server's ``198.19.0.2``; inner addresses ``198.18.100.2`` (client,
  in the profiles' ``inside`` range) and ``198.18.100.1`` (server). The censor forwards the GRE packets; inline
  and mirror alike it decodes them through the tunnel (EVE ``encap: ["gre:7"]``), keys flows by the inner
  5-tuple and decides on the inner flows. Injected packets are crafted for the inner addresses and are not put
  back into the tunnel, so they do not reach the client; drops do (inline). IPv6 and the ``vps``/``elsewhere``
  ranges stay outside the tunnel.

PPPoE is not offered: it needs a PPPoE server and pppd, and a censor behind the access concentrator sees the IP
packets the PPP interface delivers, as with the VLAN inline.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from chokepoint.lab import system

if TYPE_CHECKING:
    from chokepoint.lab.state import LabState

__all__ = ["GRE_KEY", "MODES", "VLAN_ID", "apply"]

MODES = ("vlan", "gre")
VLAN_ID = 100
GRE_KEY = 7
GRE_CLIENT_INNER, GRE_SERVER_INNER = "198.18.100.2/30", "198.18.100.1/30"
#: The tunnel's MTU: the veth's 1500 less the outer IPv4 header (20) and GRE with a key (8).
GRE_MTU = 1472
READY_S = 10.0
#: The client-censor link and the server's link, as the default topology names them.
CLIENT_LINK, CENSOR_LINK = ("client", "cl0"), ("censor", "ce0")
SERVER_HOST, SERVER_ADDR, CLIENT_ADDR, CENSOR_GW = "server", "198.19.0.2", "198.18.0.2", "198.18.0.1"
TUNNELLED = "198.19.0.0/24"


class WrapError(ValueError):
    """An unknown mode, or a wrapper that did not come up."""


def apply(state: LabState) -> None:
    """Rewire the built lab for ``state.wrap`` (namespaces and links exist): start the wrappers and wait until
    their devices carry the addresses. Raises ``WrapError`` or ``system.CommandError`` (the caller rolls back)."""
    mode = state.wrap
    if mode not in MODES:
        raise WrapError(f"unknown wrap {mode!r}; expected one of: {', '.join(MODES)}")
    if mode == "vlan":
        for host_name, iface in (CLIENT_LINK, CENSOR_LINK):
            _vlan(state, host_name, iface)
    else:
        _gre(state)


def _vlan(state: LabState, host_name: str, iface_name: str) -> None:
    host = state.topology.host(host_name)
    addresses = host.interface(iface_name).addresses
    system.ip_batch([["addr", "del", str(addr), "dev", iface_name] for addr in addresses], host.namespace)
    routes = [r for r in host.routes if any(r.via in addr.network for addr in addresses)]
    argv = ["vlan", "--link", iface_name, "--vid", str(VLAN_ID), "--device", f"{iface_name}v"]
    argv += [f"--addr={addr}" for addr in addresses]
    argv += [f"--route={r.to} via {r.via}" for r in routes]
    _start(state, f"wrap-{host_name}", host_name, argv)


def _gre(state: LabState) -> None:
    gre = ["gre", "--key", str(GRE_KEY), "--device", "gtun0", f"--mtu={GRE_MTU}"]
    client = [*gre, "--remote", SERVER_ADDR, f"--addr={GRE_CLIENT_INNER}"]
    client += [f"--route={SERVER_ADDR}/32 via {CENSOR_GW} dev {CLIENT_LINK[1]}", f"--route={TUNNELLED} dev gtun0"]
    _start(state, "wrap-client", CLIENT_LINK[0], client)
    _start(state, "wrap-server", SERVER_HOST, [*gre, "--remote", CLIENT_ADDR, f"--addr={GRE_SERVER_INNER}"])


def _start(state: LabState, name: str, host: str, argv: list[str]) -> None:
    info = state.start(name, host, state.python_argv("chokepoint.lab.wrapper", *argv), grace=0.2)
    deadline = time.monotonic() + READY_S
    while "ready" not in info.log_tail():
        if time.monotonic() > deadline or not info.alive():
            raise WrapError(f"{name} did not come up in {state.namespace(host)}: {info.log_tail()}")
        time.sleep(0.05)
