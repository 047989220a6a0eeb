"""A small private Tor network in the lab: three directory authorities, two relays and a bridge.

Real ``tor`` processes with ``TestingTorNetwork 1`` run on the lab's VPS (``lab/circumvention.py``), each on
an address of its own in :data:`~chokepoint.lab.circumvention.TOR_NET`, so a real Tor client in the client
namespace bootstraps through the censor, and a profile can block the network by address. Following chutney's
templates (``torproject/chutney``, ``torrc_templates/common.i`` and ``authority.i``): ``AssumeReachable``,
``TestingDirAuthVoteExit/Guard/HSDir *``, short voting intervals; authorities also relay and exit, so three
descriptors are enough to build circuits.

- authorities ``auth0``-``auth2``: ORPort 9001, DirPort 9030, keys from ``tor-gencert`` (v3 identity) and
  ``tor --list-fingerprint`` (relay identity); their ``DirAuthority`` lines are what clients are given;
- relays ``relay0`` (middle) and ``exit0`` (``ExitPolicy accept *:*``, ``ExitPolicyRejectPrivate 0``: the lab
  origin is in a private-looking range);
- bridge ``bridge0``: unpublished (``PublishServerDescriptor 0``), vanilla ORPort 443 on one address and
  ``obfs4`` (obfs4proxy as a managed server transport) on port 443 of a second address.

Start-up (:func:`start`) writes keys and torrc files under ``<state dir>/tornet``, starts the six processes
through ``LabState.start`` (so ``lab down`` ends them), and waits for the first consensus (about 20-40 s with
these intervals). :func:`client_context` gives a transport the template variables ``$tor_client_common``,
``$tor_bridge_vanilla`` and ``$tor_bridge_obfs4``. The addresses a profile can block are in
:func:`relay_list` and written to ``<state dir>/tornet/relays.txt`` and ``bridges.txt`` (``cidr`` lists with
the role, ports and fingerprint in comments); the same addresses, which never change, are bundled as
``profiles/lists/lab-tor-relays.txt`` / ``lab-tor-bridges.txt`` for a profile's ``lists:`` (docs/matrix.md).
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from chokepoint.lab import system
from chokepoint.lab.circumvention import tor_address

HOST = "vps"
OR_PORT = 9001
DIR_PORT = 9030
BRIDGE_PORT = 443
#: chutney's authority.i: intervals that let a fresh network agree on a consensus within ~20-40 s
AUTHORITY_TIMING = (
    "TestingV3AuthInitialVotingInterval 5",
    "TestingV3AuthInitialVoteDelay 2",
    "TestingV3AuthInitialDistDelay 2",
    "V3AuthVotingInterval 10",
    "V3AuthVoteDelay 2",
    "V3AuthDistDelay 2",
)
COMMON = (
    "TestingTorNetwork 1",
    "AssumeReachable 1",
    "PathsNeededToBuildCircuits 0.67",
    "TestingDirAuthVoteExit *",
    "TestingDirAuthVoteGuard *",
    "TestingDirAuthVoteHSDir *",
    "TestingMinExitFlagThreshold 0",
    "V3AuthNIntervalsValid 2",
    "RunAsDaemon 0",
    "ShutdownWaitLength 0",
    "SafeLogging 0",
    "LogTimeGranularity 1",
    "Log notice stdout",
    "SocksPort 0",
)


class TorNetError(Exception):
    """The private Tor network could not be set up or did not reach a consensus."""


@dataclass(frozen=True, slots=True)
class TorNode:
    nickname: str
    role: str  # authority | relay | exit | bridge
    address: str
    or_port: int
    dir_port: int = 0
    pt_address: str = ""  # bridge: where obfs4 listens
    pt_port: int = 0


def plan() -> tuple[TorNode, ...]:
    """The network's nodes and their fixed addresses."""
    nodes = [TorNode(f"auth{i}", "authority", str(tor_address(i)), OR_PORT, DIR_PORT) for i in range(3)]
    nodes.append(TorNode("relay0", "relay", str(tor_address(3)), OR_PORT))
    nodes.append(TorNode("exit0", "exit", str(tor_address(4)), OR_PORT))
    nodes.append(TorNode("bridge0", "bridge", str(tor_address(5)), BRIDGE_PORT, 0, str(tor_address(6)), BRIDGE_PORT))
    return tuple(nodes)


def relay_list(nodes: tuple[TorNode, ...] | None = None, fingerprints: dict[str, str] | None = None) -> str:
    """The public relays' addresses (authorities and relays) as a ``cidr`` list file."""
    return _list([n for n in nodes or plan() if n.role != "bridge"], fingerprints or {})


def bridge_list(nodes: tuple[TorNode, ...] | None = None, fingerprints: dict[str, str] | None = None) -> str:
    """The bridge's addresses (vanilla ORPort and obfs4) as a ``cidr`` list file."""
    return _list([n for n in nodes or plan() if n.role == "bridge"], fingerprints or {}, bridges=True)


def _list(nodes: list[TorNode], fingerprints: dict[str, str], *, bridges: bool = False) -> str:
    lines = [
        "# The lab's private Tor network (chokepoint.lab.tornet): " + ("its bridge" if bridges else "public relays"),
        "# address  # nickname role ports [fingerprint]",
    ]
    for node in nodes:
        fp = fingerprints.get(node.nickname, "")
        ports = f"ORPort {node.or_port}" + (f" DirPort {node.dir_port}" if node.dir_port else "")
        lines.append(f"{node.address}/32  # {node.nickname} {node.role} {ports} {fp}".rstrip())
        if node.pt_address:
            lines.append(f"{node.pt_address}/32  # {node.nickname} obfs4 port {node.pt_port} {fp}".rstrip())
    return "\n".join(lines) + "\n"


@dataclass
class TorNetwork:
    """A started network: where its files are, the authorities' lines and the bridge lines."""

    directory: Path
    nodes: tuple[TorNode, ...]
    dir_authorities: tuple[str, ...]
    fingerprints: dict[str, str]
    obfs4_args: str = ""

    def client_context(self) -> dict[str, str]:
        bridge = next(n for n in self.nodes if n.role == "bridge")
        fp = self.fingerprints[bridge.nickname]
        common = "\n".join(
            ["TestingTorNetwork 1", "SafeLogging 0", "Log notice stdout", "PathsNeededToBuildCircuits 0.67"]
            + [f"DirAuthority {line}" for line in self.dir_authorities]
        )
        return {
            "tor_client_common": common,
            "tor_bridge_vanilla": f"{bridge.address}:{bridge.or_port} {fp}",
            "tor_bridge_obfs4": f"obfs4 {bridge.pt_address}:{bridge.pt_port} {fp} {self.obfs4_args}".strip(),
            "tor_addresses": " ".join(sorted({n.address for n in self.nodes} | {bridge.pt_address})),
        }


def _fingerprint(datadir: Path, nickname: str, or_port: int) -> str:
    proc = system.run(
        [
            "tor",
            "--list-fingerprint",
            "--DataDirectory",
            str(datadir),
            "--ORPort",
            str(or_port),
            "--Nickname",
            nickname,
            "--TestingTorNetwork",
            "1",
            "--DirAuthority",
            "placeholder orport=1 no-v2 v3ident=" + "0" * 40 + " 198.18.0.1:1 " + "0" * 40,
            "--quiet",
        ],
        timeout=60,
    )
    match = re.search(rf"{nickname} ((?:[0-9A-F]{{4}} ?){{10}})", proc.stdout.decode())
    if not match:
        raise TorNetError(f"tor --list-fingerprint printed no fingerprint for {nickname}: {proc.stdout!r}")
    return match.group(1).replace(" ", "")


def _v3ident(keys: Path, node: TorNode) -> str:
    system.run(
        [
            "tor-gencert",
            "--create-identity-key",
            "-m",
            "12",
            "-a",
            f"{node.address}:{node.dir_port}",
            "-i",
            str(keys / "authority_identity_key"),
            "-s",
            str(keys / "authority_signing_key"),
            "-c",
            str(keys / "authority_certificate"),
            "--passphrase-fd",
            "0",
        ],
        input=b"\n",
        timeout=60,
    )
    match = re.search(r"^fingerprint ([0-9A-F]{40})$", (keys / "authority_certificate").read_text(), re.M)
    if not match:
        raise TorNetError(f"tor-gencert wrote no fingerprint for {node.nickname}")
    return match.group(1)


def _torrc(node: TorNode, datadir: Path, authorities: tuple[str, ...]) -> str:
    lines = [
        *COMMON,
        f"DataDirectory {datadir}",
        f"Nickname {node.nickname}",
        f"Address {node.address}",
        f"OutboundBindAddress {node.address}",
        f"ORPort {node.address}:{node.or_port}",
        f"ContactInfo {node.nickname}@lab.test",
        *(f"DirAuthority {line}" for line in authorities),
    ]
    if node.role == "authority":
        lines += [f"DirPort {node.address}:{node.dir_port}", "AuthoritativeDirectory 1", "V3AuthoritativeDirectory 1"]
        lines += AUTHORITY_TIMING
    if node.role in ("authority", "exit"):
        lines += [
            "ExitRelay 1",
            "ExitPolicy accept *:*",
            "ExitPolicyRejectPrivate 0",
            "ExitPolicyRejectLocalInterfaces 0",
        ]
    else:
        lines += ["ExitRelay 0", "ExitPolicy reject *:*"]
    if node.role == "bridge":
        lines += [
            "BridgeRelay 1",
            "PublishServerDescriptor 0",
            "ServerTransportPlugin obfs4 exec /usr/bin/obfs4proxy",
            f"ServerTransportListenAddr obfs4 {node.pt_address}:{node.pt_port}",
            "ExtORPort auto",
        ]
    return "\n".join(lines) + "\n"


def start(state, *, timeout: float = 120.0, say=lambda _: None) -> TorNetwork:
    """Generate keys and configs under ``<state dir>/tornet``, start every node on the VPS and wait for the
    first consensus and the bridge's obfs4 line. ``TorNetError`` when it does not come up in ``timeout``."""
    for program in ("tor", "tor-gencert", "obfs4proxy"):
        if shutil.which(program) is None:
            raise TorNetError(f"{program} is not installed (Debian packages tor, obfs4proxy)")
    nodes = plan()
    directory = state.path("tornet")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    fingerprints, lines = {}, []
    for node in nodes:
        datadir = directory / node.nickname
        (datadir / "keys").mkdir(parents=True)
        datadir.chmod(0o700)
        if node.role == "authority":
            v3 = _v3ident(datadir / "keys", node)
        fingerprints[node.nickname] = _fingerprint(datadir, node.nickname, node.or_port)
        if node.role == "authority":
            lines.append(
                f"{node.nickname} orport={node.or_port} no-v2 v3ident={v3} "
                f"{node.address}:{node.dir_port} {fingerprints[node.nickname]}"
            )
    authorities = tuple(lines)
    started = time.monotonic()
    for node in nodes:
        datadir = directory / node.nickname
        torrc = directory / f"{node.nickname}.torrc"
        torrc.write_text(_torrc(node, datadir, authorities))
        state.start(f"tor-{node.nickname}", HOST, ["tor", "-f", str(torrc)], grace=0.0)
    net = TorNetwork(directory, nodes, authorities, fingerprints)
    (directory / "relays.txt").write_text(relay_list(nodes, fingerprints))
    (directory / "bridges.txt").write_text(bridge_list(nodes, fingerprints))
    bridge = next(n for n in nodes if n.role == "bridge")
    consensus = directory / "auth0" / "cached-microdesc-consensus"
    bridgeline = directory / bridge.nickname / "pt_state" / "obfs4_bridgeline.txt"
    while True:
        dead = [name for name, info in state.processes.items() if name.startswith("tor-") and not info.alive()]
        if dead:
            info = state.processes[dead[0]]
            raise TorNetError(f"{dead[0]} exited; its log ({info.log}):\n{info.log_tail()}")
        if consensus.exists() and bridgeline.exists():
            match = re.search(r"(cert=\S+) (iat-mode=\d)", bridgeline.read_text())
            if match:
                net.obfs4_args = f"{match.group(1)} {match.group(2)}"
                break
        if time.monotonic() - started > timeout:
            raise TorNetError(f"no consensus within {timeout:g} s (see {directory}/*.log in the lab state directory)")
        time.sleep(0.5)
    say(f"private Tor network: {len(nodes)} nodes, first consensus after {time.monotonic() - started:.0f} s")
    return net


__all__ = ["TorNetError", "TorNetwork", "TorNode", "bridge_list", "plan", "relay_list", "start"]
