"""A fleet in the lab: N censor nodes (one country, several data centres), each with its own client subnet and
its own path to the shared server, optionally K censor workers per node behind NFQUEUE ``--queue-balance``, all
joined to a central manager (:mod:`chokepoint.manager`) through a node agent each.

``lab up --nodes N [--workers K] [--manager start|URL]``. Node 1 is the default topology's ``client`` and
``censor`` (so everything written for one censor keeps working); node i >= 2 adds::

    client<i> cl0 ── ce0 censor<i> ce1 ── sn<i> server
    198.18.(16+i).2/24    .1   198.18.(48+i).1/24  .2        (IPv6 2001:db8:1:<i>::/64 and 2001:db8:2:<i>::/64)

The client's default route is its own censor; the censor's default route is the server (so every server
address, the site addresses and the lab resolver included, is reached through it); the server routes each
client subnet back through that client's censor, so both directions of every flow cross one node.

Workers: ``censord --workers j/K`` binds queue j; worker 0 installs the node's kernel program with
``--queue-balance 0:K-1`` (the kernel hashes each connection, as a packet broker keeps a flow on one node:
InterSecLab, "The Internet Coup", 2025, ch. 5, Ether Fabric). Each worker has its own state directory
(``nodes/node<i>/worker<j>/``: stats, events, control directory).

Manager: ``start`` runs one in the host namespace on loopback (SQLite in the state directory), creates the
deployment ``lab-<lab name>``, an admin and a node token (``fleet.json``, mode 0600) and pushes the lab's profile
as version 1; a URL joins an existing manager with ``--manager-token`` (an admin token: the deployment and a node
token are created if missing; or a node token of ``--deployment``). Each node's agent runs in the host namespace
(it reads the workers' files and talks to the manager on loopback), serving the node's ``/metrics``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path
from typing import Any

from chokepoint.lab.topology import Host, Interface, Link, Route, Topology, check

FLEET_FILE = "fleet.json"
MAX_NODES = 16
MAX_WORKERS = 8


class FleetError(Exception):
    """A fleet option is wrong, or the manager cannot be reached or set up."""


def node_hosts(i: int) -> tuple[str, str]:
    """(client host, censor host) of node ``i`` (1-based)."""
    return ("client", "censor") if i == 1 else (f"client{i}", f"censor{i}")


def client_address(i: int) -> str:
    return "198.18.0.2" if i == 1 else f"198.18.{16 + i}.2"


def topology(base: Topology, nodes: int) -> Topology:
    """``base`` (the default topology) with nodes 2..``nodes`` added (see the module docstring)."""
    if not 1 <= nodes <= MAX_NODES:
        raise FleetError(f"--nodes {nodes}: 1 to {MAX_NODES}")
    if nodes == 1:
        return base
    server = base.host("server")
    hosts = [h for h in base.hosts if h.name != "server"]
    links = list(base.links)
    server_ifaces = list(server.interfaces)
    server_routes = list(server.routes)
    for i in range(2, nodes + 1):
        client_name, censor_name = node_hosts(i)
        c4, c6 = f"198.18.{16 + i}", f"2001:db8:1:{i:x}"
        s4, s6 = f"198.18.{48 + i}", f"2001:db8:2:{i:x}"
        hosts.append(
            Host(
                client_name,
                description=f"the clients of node {i}; default route through censor{i}",
                interfaces=(Interface("cl0", (ip_interface(f"{c4}.2/24"), ip_interface(f"{c6}::2/64"))),),
                routes=(
                    Route(ip_network("0.0.0.0/0"), ip_address(f"{c4}.1")),
                    Route(ip_network("::/0"), ip_address(f"{c6}::1")),
                ),
                nameserver=base.host("client").nameserver,
                trust_lab_ca=True,
            )
        )
        hosts.append(
            Host(
                censor_name,
                description=f"censor node {i}: forwards client{i}<->server",
                interfaces=(
                    Interface("ce0", (ip_interface(f"{c4}.1/24"), ip_interface(f"{c6}::1/64"))),
                    Interface("ce1", (ip_interface(f"{s4}.1/24"), ip_interface(f"{s6}::1/64"))),
                ),
                routes=(
                    Route(ip_network("0.0.0.0/0"), ip_address(f"{s4}.2")),
                    Route(ip_network("::/0"), ip_address(f"{s6}::2")),
                ),
                forwarding=True,
            )
        )
        server_ifaces.append(Interface(f"sn{i}", (ip_interface(f"{s4}.2/24"), ip_interface(f"{s6}::2/64"))))
        server_routes += [
            Route(ip_network(f"{c4}.0/24"), ip_address(f"{s4}.1")),
            Route(ip_network(f"{c6}::/64"), ip_address(f"{s6}::1")),
        ]
        links += [Link((client_name, "cl0"), (censor_name, "ce0")), Link((censor_name, "ce1"), ("server", f"sn{i}"))]
    hosts.append(replace(server, interfaces=tuple(server_ifaces), routes=tuple(server_routes)))
    return check(Topology(tuple(hosts), tuple(links), f"{base.source} + {nodes} nodes"))


@dataclass(slots=True)
class Fleet:
    """What ``lab up`` made of the fleet options (saved as ``fleet.json``)."""

    nodes: int = 1
    workers: int = 1
    manager: str | None = None  # URL
    deployment: str | None = None
    started_manager: bool = False
    admin_token: str | None = None  # only when the lab started the manager
    node_token: str | None = None
    metrics: dict[str, str] = field(default_factory=dict)  # node -> /metrics URL

    @property
    def plain(self) -> bool:
        """No fleet options: the single censor of the default lab, started as before."""
        return self.nodes == 1 and self.workers == 1 and self.manager is None

    def worker_dir(self, state_dir: Path, i: int, j: int) -> Path:
        return Path(state_dir) / "nodes" / f"node{i}" / f"worker{j}"

    def process_name(self, i: int, j: int) -> str:
        return "censor" if (i, j) == (1, 0) else f"censor{i}-w{j}"

    def save(self, state_dir: Path) -> None:
        path = Path(state_dir) / FLEET_FILE
        path.write_text(json.dumps({k: getattr(self, k) for k in self.__slots__}, indent=1))
        os.chmod(path, 0o600)

    @classmethod
    def load(cls, state_dir: Path) -> Fleet | None:
        try:
            return cls(**json.loads((Path(state_dir) / FLEET_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def launch_censors(state, fleet: Fleet, launch: Callable[..., Any]) -> None:
    """Every worker of every node (``launch`` is :func:`chokepoint.backends.censord.launch`)."""
    for i in range(1, fleet.nodes + 1):
        _, censor_host = node_hosts(i)
        for j in range(fleet.workers):
            directory = fleet.worker_dir(state.state_dir, i, j)
            extra = ["--control-dir", str(directory / "control")]
            if fleet.workers > 1:
                extra += ["--workers", f"{j}/{fleet.workers}"]
            launch(
                state,
                state.mode,
                state.profile,
                state.fail_closed,
                state.seed,
                clock_offset_s=state.clock_offset_s,
                params=state.params,
                as_of=state.as_of,
                name=fleet.process_name(i, j),
                host=censor_host,
                state_dir=directory,
                extra=extra,
            )


def start_manager(state, fleet: Fleet, say: Callable[[str], None]) -> None:
    """A manager for this lab on loopback (SQLite in the state directory), with tokens made in its database."""
    from chokepoint.lab.instance import NAME
    from chokepoint.manager.server import create_token

    db_url = f"sqlite:///{Path(state.state_dir) / 'manager.db'}"
    fleet.admin_token, _ = create_token(db_url, "admin", f"lab {NAME} admin")
    port = free_port()
    argv = state.python_argv("chokepoint.cli", "manager", "serve", "--port", str(port), "--db", db_url)
    info = state.start("manager", None, argv)
    fleet.manager = f"http://127.0.0.1:{port}"
    fleet.started_manager = True
    _wait_http(fleet.manager + "/healthz", info, 15.0)
    say(f"manager: {fleet.manager} (admin token in {Path(state.state_dir) / FLEET_FILE})")


def _wait_http(url: str, info, timeout: float) -> None:
    import httpx

    from chokepoint.lab.state import StateError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if info is not None and not info.alive():
            raise StateError(f"{info.name} exited at start; its log ({info.log}):\n{info.log_tail()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise StateError(f"{url} did not answer within {timeout:g} s")


def join_manager(state, fleet: Fleet, token: str | None, say: Callable[[str], None]) -> None:
    """Make sure the deployment exists and there is a node token for it; push the lab's profile as the first
    version when the deployment has none."""
    from chokepoint.lab.instance import NAME
    from chokepoint.manager.client import ManagerClient, ManagerError

    fleet.deployment = fleet.deployment or f"lab-{NAME}"
    token = fleet.admin_token or token
    if not token:
        raise FleetError("--manager URL needs --manager-token (an admin token, or a node token of --deployment)")
    with ManagerClient(fleet.manager, token) as client:
        try:
            me = client.whoami()
            if me["role"] == "node":
                if me["deployment"] != fleet.deployment:
                    raise FleetError(f"the node token is for deployment {me['deployment']!r}, not {fleet.deployment!r}")
                fleet.node_token = token
                return
            if me["role"] != "admin":
                raise FleetError(f"--manager-token is a {me['role']} token: give an admin token or a node token")
            if fleet.deployment not in {d["name"] for d in client.deployments()}:
                client.create_deployment(
                    fleet.deployment, f"lab {NAME}: {fleet.nodes} node(s), profile {state.profile}"
                )
            fleet.node_token = client.create_token(f"lab {NAME} nodes", "node", fleet.deployment)["token"]
            status = client.status(fleet.deployment)
            if status["desired"]["policy"] is None:
                from chokepoint.manager import bundle

                files = bundle.from_profile(state.profile)
                version = client.push_policy(
                    fleet.deployment,
                    expected=status["policy_head"],
                    files=files,
                    params=dict(state.params),
                    message=f"lab up: profile {state.profile}",
                )
                say(f"manager: pushed the lab's profile as v{version['number']} of {fleet.deployment}")
        except ManagerError as exc:
            raise FleetError(f"manager {fleet.manager}: {exc.detail}") from None


def start_agents(state, fleet: Fleet) -> None:
    for i in range(1, fleet.nodes + 1):
        port = free_port()
        node = f"node{i}"
        fleet.metrics[node] = f"http://127.0.0.1:{port}/metrics"
        argv = state.python_argv(
            "chokepoint.manager.agent",
            "--manager",
            fleet.manager,
            "--deployment",
            fleet.deployment,
            "--name",
            node,
            "--state-dir",
            str(Path(state.state_dir) / "nodes" / node / "agent"),
            "--metrics-port",
            str(port),
            "--info",
            f"mode={state.mode}",
            "--info",
            f"namespace={state.namespace(node_hosts(i)[1])}",
            *[a for j in range(fleet.workers) for a in ("--worker", str(fleet.worker_dir(state.state_dir, i, j)))],
        )
        state.start(f"agent{i}", None, argv, env={"CHOKEPOINT_TOKEN": fleet.node_token or ""}, grace=0.0)


def wait_in_sync(fleet: Fleet, timeout: float = 20.0) -> dict[str, Any]:
    """Until every node of the deployment reports the desired version (``FleetError`` with the status if not)."""
    from chokepoint.manager.client import ManagerClient, ManagerError

    deadline = time.monotonic() + timeout
    token = fleet.admin_token or fleet.node_token
    status: dict[str, Any] = {}
    with ManagerClient(fleet.manager, token) as client:
        while time.monotonic() < deadline:
            try:
                status = (
                    client.status(fleet.deployment) if fleet.admin_token else {"nodes": client.nodes(fleet.deployment)}
                )
            except ManagerError:
                time.sleep(0.2)
                continue
            nodes = status.get("nodes") or []
            if len(nodes) >= fleet.nodes and all(n["health"] == "in-sync" for n in nodes):
                return status
            time.sleep(0.1)
    health = {n["name"]: n["health"] for n in status.get("nodes") or []}
    raise FleetError(f"the nodes did not come in sync with the manager within {timeout:g} s: {health}")


__all__ = ["FLEET_FILE", "Fleet", "FleetError", "client_address", "node_hosts", "topology"]
