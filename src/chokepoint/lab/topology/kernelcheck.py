"""``check_kernel()``: what ``lab up`` checks before building anything. Root, the tools, and each kernel
feature the lab uses, tried in a throwaway namespace."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from chokepoint.lab import system
from chokepoint.lab.topology.build import FORWARDING, OFFLOADS_OFF
from chokepoint.lab.topology.model import PREFIX

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
