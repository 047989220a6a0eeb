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

Modules, in import order:

* ``model``: hosts, interfaces, routes, links and the topology as data; the lab's name and address rules.
* ``consistency``: ``check()``, a topology's names, addresses, links and routes agree with each other.
* ``defaults``: ``default_topology()`` and the well-known addresses (server sites, lab DNS, control resolver).
* ``load``: topology files, YAML on top of the default, schema-checked with ``file:line:column`` errors.
* ``build``: ``create()`` in namespaces (veths, offloads, addresses, routes, sysctls) and ``install_ca()``.
* ``kernelcheck``: ``check_kernel()``, what ``lab up`` needs from the kernel and the tools.
* ``teardown``: ``destroy()`` and ``lab_namespaces()``.
"""

from __future__ import annotations

from chokepoint.lab.topology.build import (
    FIRST_IFINDEX,
    FORWARDING,
    NO_DAD,
    OFFLOADS_OFF,
    LinkNotUp,
    create,
    disable_offloads,
    install_ca,
    offloads,
    wait_links_up,
)
from chokepoint.lab.topology.consistency import Where, check
from chokepoint.lab.topology.defaults import (
    CONTROL_DNS_V4,
    CONTROL_SERVER_LINK,
    CONTROL_SERVER_LINK6,
    DNS_V4,
    DNS_V6,
    SERVER_V4,
    SERVER_V6,
    SITE_V4,
    SITE_V6,
    default_topology,
)
from chokepoint.lab.topology.kernelcheck import REQUIRED_TOOLS, KernelCheck, check_kernel
from chokepoint.lab.topology.load import load_topology_file, load_topology_text
from chokepoint.lab.topology.model import (
    ETC_NETNS,
    HOST_NAME_PATTERN,
    IFNAME_PATTERN,
    LAB_RANGES,
    LINK_ALIAS,
    PREFIX,
    Host,
    Interface,
    IPAddress,
    IPInterface,
    IPNetwork,
    Link,
    Route,
    Topology,
    TopologyError,
)
from chokepoint.lab.topology.teardown import KILL_GRACE, TERM_GRACE, Teardown, destroy, lab_namespaces

__all__ = [
    "CONTROL_DNS_V4",
    "CONTROL_SERVER_LINK",
    "CONTROL_SERVER_LINK6",
    "DNS_V4",
    "DNS_V6",
    "ETC_NETNS",
    "FIRST_IFINDEX",
    "FORWARDING",
    "HOST_NAME_PATTERN",
    "Host",
    "IFNAME_PATTERN",
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "Interface",
    "KILL_GRACE",
    "KernelCheck",
    "LAB_RANGES",
    "LINK_ALIAS",
    "Link",
    "LinkNotUp",
    "NO_DAD",
    "OFFLOADS_OFF",
    "PREFIX",
    "REQUIRED_TOOLS",
    "Route",
    "SERVER_V4",
    "SERVER_V6",
    "SITE_V4",
    "SITE_V6",
    "TERM_GRACE",
    "Teardown",
    "Topology",
    "TopologyError",
    "Where",
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
