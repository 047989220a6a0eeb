"""Building a topology in network namespaces: namespaces, veth pairs with their offloads off, addresses,
routes, sysctls and ``/etc/netns`` files (``create``), waiting for the links, and making hosts trust the lab CA
(``install_ca``). Removing it all is :mod:`chokepoint.lab.topology.teardown`."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from chokepoint.lab import system
from chokepoint.lab.topology.model import ETC_NETNS, LINK_ALIAS, Topology

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


class LinkNotUp(Exception):
    """A lab link did not come up in time."""


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
