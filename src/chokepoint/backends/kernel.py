"""The censor namespace's kernel program: NFQUEUE fast path, residual-block sets, per-flow throttling.

Everything here runs system commands through :mod:`chokepoint.lab.system` and is idempotent: ``install``
first removes what a previous (crashed) run left, ``remove`` never fails on missing parts. ``netns=None``
means "the namespace this process runs in" (the daemon is started inside ``cpk-censor``).

**Inline fast path** (iptables-nft, IPv4 and IPv6 alike, table ``mangle``: the offload rule at the top of
``FORWARD``, then a jump to the chain ``CHOKEPOINT`` with the rest). The conntrack mark (ctmark) holds the
flow's kernel state in bits 0-1 (1 offloaded, 2 blocked, 3 throttled), the blocked direction in bits 4-5
(0x10 only the conntrack ORIGINAL = client-to-server direction, 0x20 only REPLY) and the throttle class in
bits 8-15::

    -I FORWARD 1 -m connmark --mark 0x1/0x3 -j ACCEPT                  # offloaded: allowed, budget spent
    -I FORWARD 2 -j CHOKEPOINT
    -A CHOKEPOINT -m connmark --mark 0x2/0x33 -j DROP                  # blocked both ways
    -A CHOKEPOINT -m connmark --mark 0x12/0x33 -m conntrack --ctdir ORIGINAL -j DROP
    -A CHOKEPOINT -m connmark --mark 0x22/0x33 -m conntrack --ctdir REPLY -j DROP
    -A CHOKEPOINT -m connmark --mark 0x2/0x3 -j ACCEPT                 # the direction left open
    -A CHOKEPOINT -m connmark --mark 0x3/0x3 -j CONNMARK --restore-mark --nfmask 0xff33 --ctmask 0xff33
    -A CHOKEPOINT -m connmark --mark 0x3/0x3 -j ACCEPT                 # throttled: tc classifies on the mark
    -A CHOKEPOINT -m mark ! --mark 0x0/0x3 -j CONNMARK --save-mark --nfmask 0xff33 --ctmask 0xff33
    -A CHOKEPOINT -m mark --mark 0x2/0x7 -j DROP
    -A CHOKEPOINT -m mark ! --mark 0x0/0x3 -j ACCEPT
    -A CHOKEPOINT -j NFQUEUE --queue-num 0 --queue-bypass             # (no --queue-bypass: fail-closed)

An offloaded flow costs one ctmark comparison per packet (no jump) and no conntrack accounting
(``connbytes`` alone costs ~13 % of throughput here, /work/shared/ENVIRONMENT.md). User space gives its decision as the
packet mark with the verdict ``NF_REPEAT``: the packet re-enters the chain, the three ``-m mark`` rules
copy the mark into the ctmark and drop (state 2) or accept (1, 3) it, so the decision holds from that very
packet on. Bit 0x4 ("pass once", never saved) lets the trigger of a flow that is blocked from then on
through. Deviation from the first design (save the mark in ``filter FORWARD``): a dropped trigger never
reaches ``filter``, so its block could not be remembered, and every fast-path packet would pay for the
extra ``filter`` rules.

**Residual blocks** (nftables table ``inet chokepoint``, base chain ``residual`` at forward priority -160,
i.e. before the mangle fast path, so offloaded flows are caught too). Sets with per-element timeouts,
named ``<action>_<scope>_v<4|6>`` (``_r<seconds>`` for re-arming ones), keyed by::

    3t  = l4proto . client ip . server ip . server port      (scope "3-tuple")
    4t  = l4proto . client ip . client port . server ip . server port    ("4-tuple")
    sv  = l4proto . server ip . server port                  ("server")
    cs  = client ip . server ip                               ("client-server": every protocol)

The base chain is hooked in with the first residual block, and a set and its rules (one per direction:
the key read as client->server and as server->client) with its first element, so a censor without
residual blocks adds nothing to the per-packet path.
``reset`` answers client TCP packets with ``reject with tcp reset`` and drops the rest. Re-adding an
element re-arms it (it is written with ``timeout`` and ``expires``, which the kernel applies to an existing
element). A re-arming residual's rules also ``update`` the element, so every blocked packet restarts its
timer in the kernel (Iran, Bock et al. FOCI 2020).

**Throttling** (tc, installed on the first throttle verdict): an HTB root on both censor interfaces
(``default 0``: unclassified packets bypass shaping), one class per throttled flow (``rate`` = ``ceil``,
``burst`` from the personality) and one classic-BPF ``cls_bpf`` filter that maps the mark
``(class << 8) | 3`` to class ``1:<class>`` (:data:`CLASSIFIER_BYTECODE`); each direction is limited on its
egress interface. The lab kernel has only ``htb``/``tbf``/``pfifo``/``bfifo`` and the ``u32``/``bpf``
classifiers (no ``netem``, no ``fw``, no u32 mark key), so **delay** is done in user space by the inline
backend.

**Interception** (only when the profile has ``tls-intercept`` rules, inline mode): the client side's new TCP
connections to the ports (and destinations) those rules can match are redirected to the intercept proxy
(:mod:`chokepoint.backends.intercept`) listening in the censor namespace, IPv4 and IPv6 alike::

    -t nat -A PREROUTING -i ce0 -j CHOKEPOINT_TLS
    -t nat -A CHOKEPOINT_TLS -p tcp [-d CIDR] --dport 443 -j REDIRECT --to-ports 14443

``nat`` sees only a connection's first packet; a redirected connection is delivered locally (INPUT), so it
never reaches the ``FORWARD`` fast path or the queue, and the proxy's own connection to the server leaves
through ``OUTPUT``. The proxy reads the original destination with ``SO_ORIGINAL_DST``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chokepoint.lab import system

# -- marks ------------------------------------------------------------------------------------------------
STATE_MASK = 0x3
MARK_OFFLOAD = 0x1
MARK_BLOCK = 0x2
MARK_SHAPED = 0x3
PASS_ONCE = 0x4
BLOCK_C2S_ONLY = 0x10  # with MARK_BLOCK: drop only the conntrack ORIGINAL direction (client -> server)
BLOCK_S2C_ONLY = 0x20  # ... only the REPLY direction
DIRECTION_MASK = 0x30
CLASS_SHIFT = 8
CLASS_MASK = 0xFF00
SAVED_MASK = CLASS_MASK | DIRECTION_MASK | STATE_MASK
MAX_CLASSES = 255

#: The one tc classifier of the HTB root, classic BPF for ``cls_bpf`` (``tc filter ... bpf bytecode``): if the
#: packet mark's state bits are 3 (throttled), return the class id ``1:<mark bits 8-15>``, else 0 (no match:
#: the packet bypasses shaping). ``ld mark`` is the ancillary load SKF_AD_OFF + SKF_AD_MARK (-0x1000 + 20).
#: (``u32 match mark`` needs CONFIG_CLS_U32_MARK; without it the key is silently dropped and the filter
#: matches every packet, as on the lab kernel; ``fw`` is absent there.)
_LD_MARK = "32 0 0 4294963220"
CLASSIFIER_BYTECODE = ",".join(
    [
        "9",
        _LD_MARK,  # 0: A = skb->mark
        "84 0 0 3",  # 1: A &= 0x3
        "21 0 5 3",  # 2: if A == 3 goto 3 else goto 8
        _LD_MARK,  # 3: A = skb->mark
        "116 0 0 8",  # 4: A >>= 8
        "84 0 0 255",  # 5: A &= 0xff
        "68 0 0 65536",  # 6: A |= 0x10000 (major 1)
        "22 0 0 0",  # 7: return A (the class id)
        "6 0 0 0",  # 8: return 0 (no match)
    ]
)

CHAIN = "CHOKEPOINT"
#: The offload rule, first in ``mangle FORWARD``: what every packet of an offloaded flow costs.
FAST_PATH = ["-m", "connmark", "--mark", f"{MARK_OFFLOAD:#x}/{STATE_MASK:#x}", "-j", "ACCEPT"]
TABLE = "chokepoint"
RESIDUAL_CHAIN = "residual"
RESIDUAL_PRIORITY = -160  # before iptables' mangle (-150): offloaded flows are caught too

NAT_CHAIN = "CHOKEPOINT_TLS"

SCOPES = {"3-tuple": "3t", "4-tuple": "4t", "server": "sv", "client-server": "cs"}
ACTIONS = ("drop", "reset")


_BLOCK_DIRECTIONS = {"both": 0, "c2s": BLOCK_C2S_ONLY, "s2c": BLOCK_S2C_ONLY}


def mark(state: int, class_index: int = 0, *, pass_once: bool = False, direction: str = "both") -> int:
    """The packet mark for a kernel state (``MARK_*``), throttle class (1..255), the pass-once bit and, for
    a block, the direction dropped (``both``, ``c2s`` = conntrack ORIGINAL, ``s2c`` = REPLY)."""
    if state not in (MARK_OFFLOAD, MARK_BLOCK, MARK_SHAPED):
        raise ValueError(f"unknown kernel state {state}")
    if not 0 <= class_index <= MAX_CLASSES or (state == MARK_SHAPED) != (class_index > 0):
        raise ValueError(f"class {class_index} does not fit state {state}")
    if direction not in _BLOCK_DIRECTIONS or (direction != "both" and state != MARK_BLOCK):
        raise ValueError(f"direction {direction!r} does not fit state {state}")
    return state | (class_index << CLASS_SHIFT) | (PASS_ONCE if pass_once else 0) | _BLOCK_DIRECTIONS[direction]


def iptables_rules(
    queue_num: int = 0, *, fail_closed: bool = False, queue_balance: tuple[int, int] | None = None
) -> list[list[str]]:
    """The fast-path rules in evaluation order (match and target arguments): the first is :data:`FAST_PATH`
    (placed in ``FORWARD`` itself), the others make up the ``CHOKEPOINT`` chain. ``queue_balance``
    ``(first, last)``: spread flows over those queues (one censor worker each) instead of ``queue_num``; the
    kernel hashes each connection's addresses and ports, so a flow stays with one worker."""
    saved = f"0x{SAVED_MASK:x}"
    target = (
        ["--queue-balance", f"{queue_balance[0]}:{queue_balance[1]}"]
        if queue_balance
        else ["--queue-num", str(queue_num)]
    )
    queue = ["-j", "NFQUEUE", *target] + ([] if fail_closed else ["--queue-bypass"])
    state_dir = STATE_MASK | DIRECTION_MASK
    return [
        FAST_PATH,
        ["-m", "connmark", "--mark", f"{MARK_BLOCK:#x}/{state_dir:#x}", "-j", "DROP"],
        [
            "-m",
            "connmark",
            "--mark",
            f"{MARK_BLOCK | BLOCK_C2S_ONLY:#x}/{state_dir:#x}",
            "-m",
            "conntrack",
            "--ctdir",
            "ORIGINAL",
            "-j",
            "DROP",
        ],
        [
            "-m",
            "connmark",
            "--mark",
            f"{MARK_BLOCK | BLOCK_S2C_ONLY:#x}/{state_dir:#x}",
            "-m",
            "conntrack",
            "--ctdir",
            "REPLY",
            "-j",
            "DROP",
        ],
        ["-m", "connmark", "--mark", f"{MARK_BLOCK:#x}/{STATE_MASK:#x}", "-j", "ACCEPT"],
        [
            "-m",
            "connmark",
            "--mark",
            f"{MARK_SHAPED:#x}/{STATE_MASK:#x}",
            "-j",
            "CONNMARK",
            "--restore-mark",
            "--nfmask",
            saved,
            "--ctmask",
            saved,
        ],
        ["-m", "connmark", "--mark", f"{MARK_SHAPED:#x}/{STATE_MASK:#x}", "-j", "ACCEPT"],
        [
            "-m",
            "mark",
            "!",
            "--mark",
            f"0x0/{STATE_MASK:#x}",
            "-j",
            "CONNMARK",
            "--save-mark",
            "--nfmask",
            saved,
            "--ctmask",
            saved,
        ],
        ["-m", "mark", "--mark", f"{MARK_BLOCK:#x}/{STATE_MASK | PASS_ONCE:#x}", "-j", "DROP"],
        ["-m", "mark", "!", "--mark", f"0x0/{STATE_MASK:#x}", "-j", "ACCEPT"],
        queue,
    ]


@dataclass(frozen=True, slots=True)
class Redirect:
    """Which client-side TCP connections go to the intercept proxy: server ``ports`` (inclusive ranges) and
    ``destinations`` (CIDRs; empty: any), redirected to ``listen_port`` in the censor namespace."""

    listen_port: int
    ports: tuple[tuple[int, int], ...] = ((443, 443),)
    destinations: tuple[str, ...] = ()


def redirect_rules(redirect: Redirect, *, v6: bool = False) -> list[list[str]]:
    """The ``CHOKEPOINT_TLS`` rules of one IP version (none when every destination is of the other one)."""
    if redirect.destinations:
        dests: list[str | None] = [d for d in redirect.destinations if (":" in d) == v6]
    else:
        dests = [None]
    return [
        [
            "-p",
            "tcp",
            *(["-d", dest] if dest else []),
            "--dport",
            str(lo) if lo == hi else f"{lo}:{hi}",
            "-j",
            "REDIRECT",
            "--to-ports",
            str(redirect.listen_port),
        ]
        for dest in dests
        for lo, hi in redirect.ports
    ]


# -- residual sets ----------------------------------------------------------------------------------------
_PROTO_NAMES = {6: "tcp", 17: "udp"}


def set_name(action: str, scope: str, version: int, rearm_seconds: int = 0) -> str:
    if action not in ACTIONS:
        raise ValueError(f"residual action must be one of {ACTIONS}, not {action!r}")
    if scope not in SCOPES:
        raise ValueError(f"residual scope must be one of {sorted(SCOPES)}, not {scope!r}")
    if version not in (4, 6):
        raise ValueError(f"IP version must be 4 or 6, not {version}")
    return f"{action}_{SCOPES[scope]}_v{version}" + (f"_r{rearm_seconds}" if rearm_seconds else "")


def _set_type(scope: str, version: int) -> list[str]:
    addr = "ipv4_addr" if version == 4 else "ipv6_addr"
    return {
        "3-tuple": ["inet_proto", addr, addr, "inet_service"],
        "4-tuple": ["inet_proto", addr, "inet_service", addr, "inet_service"],
        "server": ["inet_proto", addr, "inet_service"],
        "client-server": [addr, addr],
    }[scope]


def _key_exprs(scope: str, version: int, client_is_src: bool) -> list[dict[str, Any]]:
    proto = "ip" if version == 4 else "ip6"
    c_addr, s_addr = ("saddr", "daddr") if client_is_src else ("daddr", "saddr")
    c_port, s_port = ("sport", "dport") if client_is_src else ("dport", "sport")

    def addr(field_: str) -> dict[str, Any]:
        return {"payload": {"protocol": proto, "field": field_}}

    def port(field_: str) -> dict[str, Any]:
        return {"payload": {"protocol": "th", "field": field_}}

    l4 = {"meta": {"key": "l4proto"}}
    return {
        "3-tuple": [l4, addr(c_addr), addr(s_addr), port(s_port)],
        "4-tuple": [l4, addr(c_addr), port(c_port), addr(s_addr), port(s_port)],
        "server": [l4, addr(s_addr), port(s_port)],
        "client-server": [addr(c_addr), addr(s_addr)],
    }[scope]


#: A residual rule spares the packet that triggered its block (the censor hands it back with the pass-once bit
#: when its plan forwards it): the block is added before the trigger's verdict, so without this the kernel would
#: drop (or reset) a trigger the event log records as forwarded (``trigger.dropped`` false).
_NOT_PASS_ONCE = {"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, PASS_ONCE]}, "right": 0}}


def residual_rules(action: str, scope: str, version: int, rearm_seconds: int = 0) -> list[list[dict[str, Any]]]:
    """nft JSON expressions of the rules that enforce one residual set (both directions)."""
    name = set_name(action, scope, version, rearm_seconds)
    ported = scope != "client-server"
    l4 = {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ["tcp", "udp"]}}}
    tcp = {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}
    rules: list[list[dict[str, Any]]] = []
    for client_is_src in (True, False):
        key = _key_exprs(scope, version, client_is_src)
        lookup = [{"match": {"op": "==", "left": {"concat": key}, "right": f"@{name}"}}]
        if rearm_seconds:
            lookup.append(
                {
                    "set": {
                        "op": "update",
                        "set": f"@{name}",
                        "elem": {"elem": {"val": {"concat": key}, "timeout": rearm_seconds}},
                    }
                }
            )
        if action == "reset" and client_is_src:
            rules.append([tcp, *lookup, _NOT_PASS_ONCE, {"reject": {"type": "tcp reset"}}])
        rules.append(([l4] if ported else []) + [*lookup, _NOT_PASS_ONCE, {"drop": None}])
    return rules


@dataclass(frozen=True, slots=True)
class ResidualKey:
    """What a residual block matches: the fields its scope uses (text addresses, ports, IP protocol)."""

    scope: str
    client_ip: str
    server_ip: str
    server_port: int = 0
    client_port: int = 0
    proto: int = 6

    @property
    def version(self) -> int:
        return 6 if ":" in (self.server_ip or self.client_ip) else 4

    def value(self) -> list[str | int]:
        proto = _PROTO_NAMES.get(self.proto, self.proto)
        return {
            "3-tuple": [proto, self.client_ip, self.server_ip, self.server_port],
            "4-tuple": [proto, self.client_ip, self.client_port, self.server_ip, self.server_port],
            "server": [proto, self.server_ip, self.server_port],
            "client-server": [self.client_ip, self.server_ip],
        }[self.scope]


# -- the program ------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Shaping:
    free: list[int] = field(default_factory=lambda: list(range(MAX_CLASSES, 0, -1)))
    root_installed: bool = False


class KernelProgram:
    """The kernel side of one censor: install/remove the fast path, add residual entries, shape flows."""

    def __init__(
        self,
        netns: str | None = None,
        *,
        queue_num: int = 0,
        fail_closed: bool = False,
        client_iface: str = "ce0",
        server_iface: str = "ce1",
        redirect: Redirect | None = None,
        queue_balance: tuple[int, int] | None = None,
        worker: tuple[int, int] = (0, 1),
    ) -> None:
        """``queue_balance``: several workers share the node (NFQUEUE ``--queue-balance``); ``worker`` is this
        one's (index, count): it takes the shaping classes ``c % count == index``, and the workers share one
        HTB root on each interface, which worker 0 installs with the rest of the program."""
        self.netns = netns
        self.queue_num = queue_num
        self.queue_balance = queue_balance
        self.worker = worker
        self.fail_closed = fail_closed
        self.ifaces = (client_iface, server_iface)
        self.redirect = redirect  # set before install(): connections for the intercept proxy
        self._residual_sets: set[str] = set()
        self._shaping = self._new_shaping()

    # install / remove
    def install(self, *, inline: bool = True) -> None:
        """(Re)create the fast path (when ``inline``) and the residual table; idempotent. A worker other than
        0 of a node installs nothing (worker 0 does it for all)."""
        if self.worker[0] != 0:
            return
        self.remove()
        if inline:
            for v6 in (False, True):
                self._iptables_restore(v6)
                if self.redirect is not None:
                    self._nat_restore(v6)
        system.nft({"nftables": self._table_commands()}, self.netns)
        if self.worker[1] > 1:
            self.install_shared_shaping()

    def remove(self) -> None:
        """Remove every piece of kernel state this program may have created; never fails on missing parts.
        A worker other than 0 of a node leaves the shared program alone."""
        if self.worker[0] != 0:
            return
        for v6 in (False, True):
            system.iptables(["-t", "mangle", "-D", "FORWARD", *FAST_PATH], self.netns, v6, check=False)
            system.iptables(["-t", "mangle", "-D", "FORWARD", "-j", CHAIN], self.netns, v6, check=False)
            system.iptables(["-t", "mangle", "-F", CHAIN], self.netns, v6, check=False)
            system.iptables(["-t", "mangle", "-X", CHAIN], self.netns, v6, check=False)
            if system.iptables(["-t", "nat", "-S", NAT_CHAIN], self.netns, v6, check=False).returncode == 0:
                system.iptables(
                    ["-t", "nat", "-D", "PREROUTING", "-i", self.ifaces[0], "-j", NAT_CHAIN],
                    self.netns,
                    v6,
                    check=False,
                )
                system.iptables(["-t", "nat", "-F", NAT_CHAIN], self.netns, v6, check=False)
                system.iptables(["-t", "nat", "-X", NAT_CHAIN], self.netns, v6, check=False)
        table = {"family": "inet", "name": TABLE}
        # "add" then "delete" in one transaction: deleting works whether or not the table existed.
        system.nft({"nftables": [{"add": {"table": table}}, {"delete": {"table": table}}]}, self.netns)
        for iface in self.ifaces:
            system.tc(["qdisc", "del", "dev", iface, "root"], self.netns, check=False)
        self._residual_sets.clear()
        self._shaping = self._new_shaping()

    def _new_shaping(self) -> _Shaping:
        index, count = self.worker
        shaping = _Shaping(free=[c for c in range(MAX_CLASSES, 0, -1) if c % count == index])
        shaping.root_installed = count > 1  # shared: installed once, by worker 0's install()
        return shaping

    def install_shared_shaping(self) -> None:
        """The HTB roots the workers of a node share (worker 0, at install)."""
        self._tc_batch([command for iface in self.ifaces for command in self._shaping_root(iface)])

    def _shaping_root(self, iface: str) -> list[list[str]]:
        """Remove whatever root qdisc ``iface`` has (a half-made one included); the ``tc -batch`` commands of
        the HTB root whose BPF classifier sends each shaped mark to its class."""
        system.tc(["qdisc", "del", "dev", iface, "root"], self.netns, check=False)
        return [
            ["qdisc", "add", "dev", iface, "root", "handle", "1:", "htb", "default", "0"],
            [
                "filter",
                "add",
                "dev",
                iface,
                "parent",
                "1:",
                "protocol",
                "all",
                "prio",
                "1",
                "bpf",
                "bytecode",
                CLASSIFIER_BYTECODE,
            ],
        ]

    def _iptables_restore(self, v6: bool) -> None:
        fast, *rest = iptables_rules(self.queue_num, fail_closed=self.fail_closed, queue_balance=self.queue_balance)
        lines = ["*mangle", f":{CHAIN} - [0:0]", " ".join(["-I", "FORWARD", "1", *fast]), f"-I FORWARD 2 -j {CHAIN}"]
        lines += [" ".join(["-A", CHAIN, *rule]) for rule in rest]
        lines.append("COMMIT")
        tool = "ip6tables-restore" if v6 else "iptables-restore"
        system.run([tool, "-w", "--noflush"], netns=self.netns, input=("\n".join(lines) + "\n").encode())

    def _nat_restore(self, v6: bool) -> None:
        lines = ["*nat", f":{NAT_CHAIN} - [0:0]", f"-A PREROUTING -i {self.ifaces[0]} -j {NAT_CHAIN}"]
        lines += [" ".join(["-A", NAT_CHAIN, *rule]) for rule in redirect_rules(self.redirect, v6=v6)]
        lines.append("COMMIT")
        tool = "ip6tables-restore" if v6 else "iptables-restore"
        system.run([tool, "-w", "--noflush"], netns=self.netns, input=("\n".join(lines) + "\n").encode())

    def nat_listing(self, v6: bool = False) -> str:
        """``iptables -t nat -S`` (empty when the table does not exist)."""
        proc = system.iptables(["-t", "nat", "-S"], self.netns, v6, check=False)
        return proc.stdout.decode() if proc.returncode == 0 else ""

    def _table_commands(self) -> list[dict[str, Any]]:
        return [{"add": {"table": {"family": "inet", "name": TABLE}}}]

    @staticmethod
    def _chain_command() -> dict[str, Any]:
        return {
            "add": {
                "chain": {
                    "family": "inet",
                    "table": TABLE,
                    "name": RESIDUAL_CHAIN,
                    "type": "filter",
                    "hook": "forward",
                    "prio": RESIDUAL_PRIORITY,
                    "policy": "accept",
                }
            }
        }

    # residual blocks
    def add_residual(self, key: ResidualKey, seconds: float, action: str = "drop", *, rearm: bool = False) -> str:
        """Add (or re-arm) a residual block for ``seconds``; returns the set's name. ``rearm``: every packet
        the block catches restarts its timer (kernel-side)."""
        timeout = max(1, math.ceil(seconds))  # nft's JSON timeouts are whole seconds
        name = set_name(action, key.scope, key.version, timeout if rearm else 0)
        commands: list[dict[str, Any]] = [] if self._residual_sets else [self._chain_command()]
        if name not in self._residual_sets:
            # (nft 1.0.6's JSON parser knows no "dynamic" flag; nft sets it itself for an ``update`` rule)
            commands.append(
                {
                    "add": {
                        "set": {
                            "family": "inet",
                            "table": TABLE,
                            "name": name,
                            "type": _set_type(key.scope, key.version),
                            "flags": ["timeout"],
                        }
                    }
                }
            )
            for expr in residual_rules(action, key.scope, key.version, timeout if rearm else 0):
                commands.append(
                    {"add": {"rule": {"family": "inet", "table": TABLE, "chain": RESIDUAL_CHAIN, "expr": expr}}}
                )
        commands.append(
            {
                "add": {
                    "element": {
                        "family": "inet",
                        "table": TABLE,
                        "name": name,
                        "elem": [{"elem": {"val": {"concat": key.value()}, "timeout": timeout, "expires": timeout}}],
                    }
                }
            }
        )
        system.nft({"nftables": commands}, self.netns)
        self._residual_sets.add(name)
        return name

    def residual_entries(self) -> list[dict[str, Any]]:
        """The live elements of every residual set: ``{"set", "key", "timeout", "expires"}``."""
        proc = system.run(["nft", "-j", "list", "table", "inet", TABLE], netns=self.netns)
        out = []
        for item in json.loads(proc.stdout)["nftables"]:
            entry = item.get("set")
            if not entry:
                continue
            for elem in entry.get("elem", ()):
                body = elem.get("elem", elem) if isinstance(elem, dict) else {"val": elem}
                val = body.get("val")
                key = val["concat"] if isinstance(val, dict) and "concat" in val else [val]
                out.append(
                    {"set": entry["name"], "key": key, "timeout": body.get("timeout"), "expires": body.get("expires")}
                )
        return out

    # shaping
    def throttle(self, rate_kbps: int, burst_bytes: int | None = None) -> int:
        """Create a rate-limiting class for one flow; returns the packet mark to give it.
        Raises ``RuntimeError`` when all classes are in use."""
        if rate_kbps <= 0:
            raise ValueError(f"throttle rate must be positive, not {rate_kbps}")
        if not self._shaping.free:
            raise RuntimeError(f"all {MAX_CLASSES} shaping classes are in use")
        index = self._shaping.free.pop()
        packet_mark = mark(MARK_SHAPED, index)
        rate = f"{int(rate_kbps)}kbit"
        batch: list[list[str]] = []
        for iface in self.ifaces:
            if not self._shaping.root_installed:
                batch += self._shaping_root(iface)
            burst = ["burst", f"{int(burst_bytes)}b", "cburst", f"{int(burst_bytes)}b"] if burst_bytes else []
            batch.append(
                [
                    "class",
                    "replace",
                    "dev",
                    iface,
                    "parent",
                    "1:",
                    "classid",
                    f"1:{index:x}",
                    "htb",
                    "rate",
                    rate,
                    "ceil",
                    rate,
                    *burst,
                    "quantum",
                    "1514",
                ]
            )
        try:
            self._tc_batch(batch)
        except system.CommandError:
            self._shaping.free.append(index)
            raise
        self._shaping.root_installed = True
        return packet_mark

    def release(self, packet_mark: int) -> None:
        """Give a flow's shaping class back (its tc class stays and is reconfigured on reuse)."""
        index = (packet_mark & CLASS_MASK) >> CLASS_SHIFT
        if index and index not in self._shaping.free:
            self._shaping.free.append(index)

    def _tc_batch(self, commands: Sequence[Sequence[str]]) -> None:
        """One ``tc -batch -`` process; tokens with spaces are double-quoted (tc's batch parser unquotes)."""
        text = "\n".join(" ".join(f'"{t}"' if " " in t else t for t in c) for c in commands) + "\n"
        system.run(["tc", "-batch", "-"], netns=self.netns, input=text.encode())

    # inspection (tests, status)
    def iptables_listing(self, v6: bool = False) -> str:
        """``iptables -t mangle -S`` (empty when the table does not exist)."""
        proc = system.iptables(["-t", "mangle", "-S"], self.netns, v6, check=False)
        return proc.stdout.decode() if proc.returncode == 0 else ""

    def nft_table_exists(self) -> bool:
        return system.run(["nft", "list", "table", "inet", TABLE], netns=self.netns, check=False).returncode == 0

    def tc_listing(self) -> str:
        return "".join(
            system.tc(["qdisc", "show", "dev", iface], self.netns, check=False).stdout.decode() for iface in self.ifaces
        )


__all__ = [
    "ACTIONS",
    "BLOCK_C2S_ONLY",
    "BLOCK_S2C_ONLY",
    "CHAIN",
    "CLASS_MASK",
    "FAST_PATH",
    "CLASS_SHIFT",
    "KernelProgram",
    "MARK_BLOCK",
    "MARK_OFFLOAD",
    "MARK_SHAPED",
    "NAT_CHAIN",
    "PASS_ONCE",
    "Redirect",
    "ResidualKey",
    "SAVED_MASK",
    "SCOPES",
    "STATE_MASK",
    "TABLE",
    "iptables_rules",
    "mark",
    "redirect_rules",
    "residual_rules",
    "set_name",
]
