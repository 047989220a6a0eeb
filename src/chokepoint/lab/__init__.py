"""The lab: a real inline or on-path censor between network namespaces (docs/lab.md).

``up()`` builds the topology, the lab CA, the services and the censor; ``down()`` removes everything;
``status()`` says what is running. ``chokepoint lab ...`` (``lab/cli.py``) is a thin front-end over these.
Submodules: ``system`` (the one place that runs commands), ``topology`` (namespaces, links, addresses),
``state`` (state.json, detached processes). Imports happen inside the functions, so importing
``chokepoint.lab.system`` stays cheap.
"""

from __future__ import annotations

import importlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chokepoint.lab.state import LabState
    from chokepoint.lab.topology import Teardown, Topology


class LabError(Exception):
    """``lab up`` refused or failed (nothing is left half-created), or ``lab exec`` cannot run."""

    exit_code = 5


class LabAlreadyUp(LabError):
    exit_code = 4


class LabNotUp(LabError):
    exit_code = 4


class KernelFeatureMissing(LabError):
    exit_code = 5


def _optional(module: str) -> Any | None:
    """Import a lab component another engineer provides; None when it does not exist (yet)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None
        raise


def up(
    profile: str = "demo",
    mode: str = "inline",
    topology_file: str | Path | None = None,
    *,
    fail_closed: bool = False,
    seed: int | None = None,
    state_dir: Path | None = None,
    services: bool = True,
    censor: bool = True,
    tor: bool = False,
    say: Callable[[str], None] = lambda _: None,
    dns_map: str | Path | None = None,
    clock_offset_s: float | None = None,
    params: Mapping[str, str] | None = None,
    as_of: str | None = None,
    nodes: int = 1,
    workers: int = 1,
    manager: str | None = None,
    manager_token: str | None = None,
    deployment: str | None = None,
    wrap: str | None = None,
    hops_client: int | None = None,
    hops_server: int | None = None,
    delay_ms: float | None = None,
    icmp_ratelimit_ms: int | None = None,
    distance: bool | None = None,
) -> LabState:
    """Bring the lab up and return its state (also written to ``state.json``).

    Order: the profile is loaded and the topology file validated first (``PolicyError`` /
    ``TopologyError``, nothing created); then, under the lab lock, a lab already up is refused
    (``LabAlreadyUp``) and the kernel features are checked (``KernelFeatureMissing``); then the topology,
    the lab CA (trusted by the client), the services, the control resolver and the censor. Any failure
    after the first namespace exists rolls everything back and raises ``LabError`` from the cause.
    ``services=False`` / ``censor=False`` leave those out (a bare topology, e.g. for a no-censor baseline);
    ``tor=True`` starts the private Tor network on the VPS (``lab/tornet.py``; about 10-40 s more).
    ``dns_map``: per-name answers for the lab and control resolvers (``services.resolver.AnswerTable``).
    ``clock_offset_s``: seconds added to the censor's clock (``censord --clock-offset``; e.g. from
    ``chokepoint.backends.options.fake_time_offset("2026-11-27T02:30:00+06:30")``), so a profile's schedule can be exercised at
    any hour. ``as_of``: the day whose behaviour the profile is loaded with (``YYYY-MM-DD``; default its last
    day; recorded in the state and passed on as ``censord --as-of``). ``params``: rule-param overrides
    ``{"RULE.PARAM": "YAML value"}`` (``censord --param``); a bad
    one is a ``PolicyError`` before anything is created. Both are recorded in ``state.json``.
    ``nodes``/``workers``/``manager`` (``"start"`` or a URL)/``manager_token``/``deployment``: a fleet of censor
    nodes joined to a central manager (:mod:`chokepoint.lab.fleet`; ``fleet.json`` in the state directory).
    ``wrap``: ``"vlan"`` or ``"gre"``, the client side behind an operator's wrapping (:mod:`chokepoint.lab.wrap`).
    ``hops_client``/``hops_server``: routers between client and censor / censor and server; ``delay_ms``: the far
    side's one-way delay; ``icmp_ratelimit_ms``: the routers' ``net.ipv4.icmp_ratelimit``
    (:mod:`chokepoint.lab.geometry`). Unset (None), the hops are 0 and the delay is the profile's ``distance``
    (``rtt_ms / 2`` each way; 0 for a profile without one, and for a fleet of nodes); ``distance=True`` also
    takes the hops from the profile's ``position``, ``distance=False`` is the flat lab (no delay unless
    ``delay_ms`` is given)."""
    from chokepoint.lab import geometry as geo
    from chokepoint.lab import state as st
    from chokepoint.lab import topology as topo
    from chokepoint.policy import load_profile

    if mode not in st.MODES:
        raise LabError(f"unknown mode {mode!r}; expected one of: {', '.join(st.MODES)}")
    from chokepoint.lab import wrap as wrap_module

    if wrap is not None and (wrap not in wrap_module.MODES or nodes > 1):
        raise LabError(f"--wrap {wrap!r}: expected one of {', '.join(wrap_module.MODES)}, with a single censor node")
    if clock_offset_s is not None and not math.isfinite(clock_offset_s):
        raise LabError(f"clock offset {clock_offset_s!r} is not a finite number of seconds")
    params = {str(k): str(v) for k, v in (params or {}).items()}
    state_dir = state_dir or st.STATE_DIR
    # A bad profile, override or day fails here, before anything exists; the censor loads its own copy.
    loaded = load_profile(profile, params=params or None, as_of=as_of)
    topology = topo.load_topology_file(topology_file) if topology_file else topo.default_topology()
    geometry = _geometry(loaded, distance, hops_client, hops_server, delay_ms, icmp_ratelimit_ms, nodes, wrap)
    topology = geo.topology(topology, geometry)
    fleet = _fleet(nodes, workers, manager, deployment, mode, censor)
    if nodes > 1:
        from chokepoint.lab import fleet as fleet_module

        topology = fleet_module.topology(topology, nodes)
    with st.lab_lock():
        _refuse_if_up(topology, state_dir)
        features = topo.check_kernel()
        if features.missing:
            raise KernelFeatureMissing(
                "the lab cannot run here; missing: " + "; ".join(features.missing) + ". Nothing was created."
            )
        state = st.LabState(
            topology=topology,
            state_dir=state_dir,
            profile=profile,
            mode=mode,
            fail_closed=fail_closed,
            seed=seed,
            clock_offset_s=clock_offset_s,
            params=params,
            as_of=loaded.as_of.isoformat() if loaded.as_of else None,
            wrap=wrap,
            geometry={} if geometry.plain else geometry.to_dict(),
            warnings=[f"degraded: {what}" for what in features.degraded],
        )
        started = time.monotonic()
        try:
            _build(
                state, say, services=services, censor=censor, dns_map=dns_map, tor=tor, fleet=fleet, token=manager_token
            )
        except BaseException as exc:
            report = topo.destroy(topology.namespaces(), extra_pids=st.recorded_pids(state_dir))
            st.remove_state_dir(state_dir)
            left = f" (rollback problems: {'; '.join(report.errors)})" if report.errors else ""
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise LabError(f"lab up failed, everything was rolled back{left}: {exc}") from exc
        say(f"lab up in {time.monotonic() - started:.2f} s")
        return state


def _refuse_if_up(topology: Topology, state_dir: Path) -> None:
    from chokepoint.lab import state as st
    from chokepoint.lab import topology as topo

    existing = [ns for ns in topo.lab_namespaces() if ns in topology.namespaces()]
    if existing or (state_dir / st.STATE_FILE).exists():
        what = f"namespaces {', '.join(existing)}" if existing else f"{state_dir / st.STATE_FILE}"
        raise LabAlreadyUp(f"a lab is already up ({what}); nothing was changed. Run `chokepoint lab down` first.")


def _geometry(loaded, distance, hops_client, hops_server, delay_ms, icmp_ratelimit_ms, nodes, wrap):
    """The path's geometry from the options (``LabError``): the profile fills in unset ones, its far-side delay
    by default (``distance`` None), its hops too with ``distance`` True, nothing with ``distance`` False."""
    from chokepoint.lab import geometry as geo

    if distance is None and nodes == 1:  # the fleet's nodes share the server: one delay stage cannot serve them
        defaults = geo.Geometry(delay_ms=geo.from_profile(loaded.meta).delay_ms)
    else:
        defaults = geo.from_profile(loaded.meta) if distance else geo.Geometry()
    hops_client = defaults.hops_client if hops_client is None else hops_client
    hops_server = defaults.hops_server if hops_server is None else hops_server
    delay_ms = defaults.delay_ms if delay_ms is None else delay_ms
    try:
        geometry = geo.Geometry(
            hops_client,
            hops_server,
            float(delay_ms),
            geo.ICMP_RATELIMIT_MS if icmp_ratelimit_ms is None else icmp_ratelimit_ms,
        )
    except geo.GeometryError as exc:
        raise LabError(str(exc)) from None
    if (hops_client or hops_server) and (nodes > 1 or wrap is not None):
        raise LabError("--hops-client/--hops-server work with a single censor node and no --wrap")
    return geometry


def _fleet(nodes: int, workers: int, manager: str | None, deployment: str | None, mode: str, censor: bool):
    """The fleet options checked before anything is created (``LabError``)."""
    from chokepoint.lab import fleet as fleet_module

    if not 1 <= nodes <= fleet_module.MAX_NODES:
        raise LabError(f"--nodes {nodes}: 1 to {fleet_module.MAX_NODES}")
    if not 1 <= workers <= fleet_module.MAX_WORKERS:
        raise LabError(f"--workers {workers}: 1 to {fleet_module.MAX_WORKERS}")
    if workers > 1 and mode != "inline":
        raise LabError("--workers needs --mode inline (NFQUEUE --queue-balance spreads the flows)")
    if manager is not None and not censor:
        raise LabError("--manager needs the censor (not --no-censor)")
    if manager is not None and manager != "start" and not manager.startswith(("http://", "https://")):
        raise LabError(f"--manager {manager!r}: 'start' or the manager's URL")
    return fleet_module.Fleet(
        nodes=nodes, workers=workers, manager=None if manager in (None, "start") else manager, deployment=deployment
    ), manager == "start"


def _build(
    state: LabState,
    say: Callable[[str], None],
    *,
    services: bool,
    censor: bool,
    dns_map: str | Path | None = None,
    tor: bool = False,
    fleet=None,
    token: str | None = None,
) -> None:
    from chokepoint.lab import topology as topo

    state.state_dir.mkdir(parents=True, exist_ok=True)
    topo.create(state.topology)
    say(f"topology: {', '.join(state.topology.namespaces())}")
    if state.geometry:
        from chokepoint.lab import geometry as geo

        geo.apply(state, geo.Geometry.from_dict(state.geometry), say)
    if state.wrap is not None:
        from chokepoint.lab import wrap

        wrap.apply(state)
        say(f"client side wrapped: {state.wrap}")
    ca_module = _optional("chokepoint.lab.ca")
    if ca_module is None:
        state.warnings.append("chokepoint.lab.ca is not available: no lab CA, HTTPS is not trusted")
    else:
        ca = ca_module.LabCA.load_or_create(state.state_dir)
        topo.install_ca(state.topology, ca.cert_pem)
        trusting = ", ".join(h.namespace for h in state.topology.hosts if h.trust_lab_ca)
        say(f"lab CA: {state.path('ca.pem')} (trusted in {trusting})")
    services_module = _optional("chokepoint.lab.services") if services else None
    if services and (services_module is None or not hasattr(services_module, "launch")):
        state.warnings.append("chokepoint.lab.services.launch is not available: no lab services started")
    elif services_module is not None:
        services_module.launch(state, **({"dns_map": dns_map} if dns_map is not None else {}))
    censord = _optional("chokepoint.backends.censord") if censor else None
    if censor and (censord is None or not hasattr(censord, "launch")):
        state.warnings.append(
            "chokepoint.backends.censord.launch is not available: no censor started (traffic passes untouched)"
        )
    elif censord is not None and fleet is not None and not (fleet[0].plain and not fleet[1]):
        _build_fleet(state, say, censord, *fleet, token=token)
    elif censord is not None:
        censord.launch(
            state,
            state.mode,
            state.profile,
            state.fail_closed,
            state.seed,
            clock_offset_s=state.clock_offset_s,
            params=state.params,
            as_of=state.as_of,
        )
    if tor:
        from chokepoint.lab import tornet

        tornet.start(state, say=say)
    for warning in state.warnings:
        say(f"warning: {warning}")
    state.save()


def _build_fleet(state: LabState, say: Callable[[str], None], censord, fleet, start_manager: bool, token=None) -> None:
    from chokepoint.lab import fleet as fm

    fm.launch_censors(state, fleet, censord.launch)
    say(f"censors: {fleet.nodes} node(s) x {fleet.workers} worker(s)")
    try:
        if start_manager:
            fm.start_manager(state, fleet, say)
        if fleet.manager is not None:
            fm.join_manager(state, fleet, token, say)
            fm.start_agents(state, fleet)
            fm.wait_in_sync(fleet)
            say(f"agents: {fleet.nodes} node(s) in sync with {fleet.manager}, deployment {fleet.deployment}")
    except fm.FleetError as exc:
        raise LabError(str(exc)) from None
    finally:
        fleet.save(state.state_dir)


def down(state_dir: Path | None = None, *, keep: Iterable[str] = ()) -> Teardown:
    """Remove every ``cpk-*`` namespace (killing its processes), stray lab veths, ``/etc/netns/cpk-*``
    and the state directory. Idempotent; needs no state.json. ``Teardown.errors`` lists anything that
    could not be removed. ``keep``: ``cpk-*`` namespaces that are not the lab's, to leave alone."""
    from chokepoint.lab import state as st
    from chokepoint.lab import topology as topo

    state_dir = state_dir or st.STATE_DIR
    with st.lab_lock():
        report = topo.destroy(extra_pids=st.recorded_pids(state_dir), keep=keep)
        try:
            if st.remove_state_dir(state_dir):
                report.files.append(str(state_dir))
        except OSError as exc:
            report.errors.append(f"{state_dir}: {exc.strerror or exc}")
    return report


@dataclass(slots=True)
class HostStatus:
    name: str
    namespace: str
    present: bool
    addresses: dict[str, list[str]] = field(default_factory=dict)  # interface -> live addresses


@dataclass(slots=True)
class LabStatus:
    """What ``lab status`` shows. ``up`` is False when there is no state.json."""

    up: bool
    state: LabState | None = None
    hosts: list[HostStatus] = field(default_factory=list)
    processes: dict[str, bool] = field(default_factory=dict)  # name -> alive
    stats: dict[str, Any] | None = None
    stats_age: float | None = None
    stray_namespaces: list[str] = field(default_factory=list)  # cpk-* not in this lab's topology
    problems: list[str] = field(default_factory=list)

    @property
    def censor_alive(self) -> bool:
        return self.processes.get("censor", False)

    @property
    def failure_line(self) -> str | None:
        """The loud line when the censor is not running: which way traffic fails."""
        if not self.up or self.censor_alive:
            return None
        closed = self.state is not None and self.state.fail_closed
        return f"censor not running: traffic fails {'closed' if closed else 'open'}"

    def to_dict(self) -> dict[str, Any]:
        state = self.state
        return {
            "up": self.up,
            "profile": state.profile if state else None,
            "mode": state.mode if state else None,
            "fail_closed": state.fail_closed if state else None,
            "seed": state.seed if state else None,
            "clock_offset_s": state.clock_offset_s if state else None,
            "params": dict(state.params) if state else {},
            "as_of": state.as_of if state else None,
            "hosts": [
                {"name": h.name, "namespace": h.namespace, "present": h.present, "addresses": h.addresses}
                for h in self.hosts
            ],
            "processes": {
                name: {"alive": alive, "pid": state.processes[name].pid if state else None}
                for name, alive in self.processes.items()
            },
            "censor_alive": self.censor_alive,
            "failure": self.failure_line,
            "stats": self.stats,
            "stats_age_s": self.stats_age,
            "stray_namespaces": self.stray_namespaces,
            "problems": self.problems,
            "warnings": list(state.warnings) if state else [],
            "geometry": dict(state.geometry) if state else {},
        }


def status(state_dir: Path | None = None) -> LabStatus:
    """Hosts (with their live addresses), profile, mode, processes alive or dead, the censor's counters."""
    from chokepoint.lab import state as st
    from chokepoint.lab import system
    from chokepoint.lab import topology as topo

    state_dir = state_dir or st.STATE_DIR
    present = set(topo.lab_namespaces())
    try:
        state = st.LabState.load(state_dir)
    except st.StateError as exc:
        return LabStatus(up=False, stray_namespaces=sorted(present), problems=[str(exc)])
    if state is None:
        report = LabStatus(up=False, stray_namespaces=sorted(present))
        lab = [ns for ns in present if ns in topo.default_topology().namespaces()]
        if lab:
            report.problems.append(
                f"namespaces {', '.join(lab)} exist but there is no state.json "
                "(a crashed `lab up`?): run `chokepoint lab down`"
            )
        return report
    report = LabStatus(up=True, state=state)
    for host in state.topology.hosts:
        entry = HostStatus(host.name, host.namespace, host.namespace in present)
        if entry.present:
            try:
                for link in system.ip_json(["addr", "show"], host.namespace):
                    if link.get("ifname") != "lo":
                        entry.addresses[link["ifname"]] = [
                            f"{a['local']}/{a['prefixlen']}"
                            for a in link.get("addr_info", [])
                            if a.get("scope") != "link"
                        ]
            except system.CommandError as exc:
                report.problems.append(f"{host.namespace}: {exc}")
        else:
            report.problems.append(f"namespace {host.namespace} is missing")
        report.hosts.append(entry)
    report.processes = {name: info.alive() for name, info in state.processes.items()}
    report.stats, report.stats_age = state.read_stats()
    report.stray_namespaces = sorted(present - set(state.topology.namespaces()))
    return report


def exec_in(host: str, argv: list[str], state_dir: Path | None = None) -> int:
    """Run ``argv`` in ``cpk-<host>`` with the caller's terminal; return its exit status."""
    from chokepoint.lab import state as st
    from chokepoint.lab import system
    from chokepoint.lab import topology as topo

    if not argv:
        raise LabError("nothing to run: `chokepoint lab exec HOST -- CMD...`")
    state_dir = state_dir or st.STATE_DIR
    try:
        state = st.LabState.load(state_dir)
    except st.StateError as exc:
        raise LabError(str(exc)) from None
    topology = state.topology if state else topo.default_topology()
    try:
        namespace = topology.host(host).namespace
    except KeyError as exc:
        raise LabError(exc.args[0]) from None
    if namespace not in topo.lab_namespaces():
        raise LabNotUp(f"namespace {namespace} does not exist: is the lab up? (`chokepoint lab up`)")
    if "/" not in argv[0] and shutil.which(argv[0]) is None:
        raise system.MissingTool([argv[0]], 127, "")
    return system.run_foreground(argv, netns=namespace)


def is_root() -> bool:
    return os.geteuid() == 0


__all__ = [
    "HostStatus",
    "KernelFeatureMissing",
    "LabAlreadyUp",
    "LabError",
    "LabNotUp",
    "LabStatus",
    "down",
    "exec_in",
    "is_root",
    "status",
    "up",
]
