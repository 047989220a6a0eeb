"""``chokepoint lab up|down|status|exec``: a thin front-end over ``chokepoint.lab`` (docs/lab.md).

Exit codes: 0 success; 1 the profile or topology file was rejected (nothing created); 2 bad usage;
4 a lab is already up (``up``) / no lab is up (``status``, ``exec``); 5 a missing kernel feature or a
failed system command (``up`` rolled everything back; ``down`` could not remove something);
6 ``status``: the lab is up but a lab process is dead. ``exec`` passes the command's own status through.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from chokepoint.lab.instance import NAME, PREFIX

lab_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="The lab: client, censor and server in network namespaces (root)."
)
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_STATE = 4
EXIT_SYSTEM = 5
EXIT_DEGRADED = 6


class Mode(StrEnum):
    inline = "inline"
    mirror = "mirror"


@lab_app.command("up")
def up_cmd(
    profile: str = typer.Option("demo", "--profile", "-p", help="bundled profile name or a profile file"),
    mode: Mode = typer.Option(Mode.inline, "--mode", "-m", help="inline (NFQUEUE) or mirror (on-path copy)"),
    topology: Path | None = typer.Option(None, "--topology", "-t", help="YAML file adding hosts/addresses"),
    fail_closed: bool = typer.Option(False, "--fail-closed", help="drop traffic when the censor is not running"),
    seed: int | None = typer.Option(None, "--seed", help="seed for the censor's RNG (probabilistic rules)"),
    no_services: bool = typer.Option(False, "--no-services", help="do not start the lab services"),
    no_censor: bool = typer.Option(False, "--no-censor", help="do not start the censor (a plain router)"),
    tor: bool = typer.Option(False, "--tor", help="start the private Tor network on the VPS (lab/tornet.py)"),
    fake_time: str | None = typer.Option(
        None,
        "--fake-time",
        metavar="ISO8601",
        help="the censor's clock starts at this instant, e.g. 2026-11-27T02:30:00+06:30 (a UTC offset is required)",
    ),
    clock_offset: str | None = typer.Option(
        None,
        "--clock-offset",
        metavar="SECONDS",
        help="the censor's clock is the wall clock plus this (may be negative)",
    ),
    param: list[str] = typer.Option(
        [],
        "--param",
        metavar="RULE.PARAM=VALUE",
        help="override a rule parameter, e.g. tsg-unknown-high-volume.after_s=5 (repeatable)",
    ),
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        metavar="YYYY-MM-DD",
        help="what the profile had in force that day (default: the last day it covers)",
    ),
    dns_map: Path | None = typer.Option(
        None,
        "--dns-map",
        exists=True,
        dir_okay=False,
        readable=True,
        help="JSON/YAML file of per-name answers for the lab and control resolvers",
    ),
    nodes: int = typer.Option(1, "--nodes", help="censor nodes, each between its own client subnet and the server"),
    workers: int = typer.Option(1, "--workers", help="censor workers per node behind NFQUEUE --queue-balance"),
    manager: str | None = typer.Option(
        None, "--manager", help="join the nodes to a manager: 'start' (one for this lab) or its URL"
    ),
    manager_token: str | None = typer.Option(
        None, "--manager-token", envvar="CHOKEPOINT_TOKEN", help="with --manager URL: an admin or node token"
    ),
    deployment: str | None = typer.Option(None, "--deployment", help="the manager's deployment (default lab-<lab>)"),
    wrap: str | None = typer.Option(
        None, "--wrap", help="put the client side behind a VLAN ('vlan') or a GRE tunnel ('gre'); see docs/lab.md"
    ),
    hops_client: int | None = typer.Option(
        None,
        "--hops-client",
        help="routers between the client and the censor (default 0, or the profile's position with --distance)",
    ),
    hops_server: int | None = typer.Option(
        None,
        "--hops-server",
        help="routers between the censor and the server (default 0, or the profile's position with --distance)",
    ),
    delay_ms: float | None = typer.Option(
        None,
        "--delay-ms",
        help="one-way delay of the far side, censor to server (default: the profile's distance, rtt_ms / 2; 0 with --flat)",
    ),
    icmp_ratelimit_ms: int | None = typer.Option(
        None, "--icmp-ratelimit-ms", help="the routers' net.ipv4.icmp_ratelimit (default Linux's 1000 ms, burst 6)"
    ),
    distance: bool = typer.Option(
        False, "--distance", help="also take unset hops from the profile's position (routers on both sides)"
    ),
    flat: bool = typer.Option(
        False,
        "--flat",
        "--no-distance",
        help="no far-side delay from the profile (the flat lab; --delay-ms still sets one)",
    ),
) -> None:
    """Create the namespaces, links, services and the censor (or a fleet of censor nodes: --nodes, --manager)."""
    from chokepoint import lab
    from chokepoint.lab.state import LabBusy
    from chokepoint.policy import PolicyError

    offset, params = _clock_and_params(fake_time, clock_offset, param)
    if distance and flat:
        err.print("error: --distance and --flat exclude each other")
        raise typer.Exit(EXIT_USAGE)
    try:
        state = lab.up(
            profile,
            mode.value,
            topology,
            fail_closed=fail_closed,
            seed=seed,
            services=not no_services,
            censor=not no_censor,
            tor=tor,
            say=lambda line: err.print(line, markup=False),
            dns_map=dns_map,
            clock_offset_s=offset,
            params=params,
            as_of=as_of,
            nodes=nodes,
            workers=workers,
            manager=manager,
            manager_token=manager_token,
            deployment=deployment,
            wrap=wrap,
            hops_client=hops_client,
            hops_server=hops_server,
            delay_ms=delay_ms,
            icmp_ratelimit_ms=icmp_ratelimit_ms,
            distance=True if distance else (False if flat else None),
        )
    except PolicyError as exc:  # includes TopologyError
        err.print(f"error: {exc}", markup=False)
        err.print("nothing was created")
        raise typer.Exit(EXIT_REJECTED)
    except LabBusy as exc:
        err.print(f"error: {exc}; nothing was changed", markup=False)
        raise typer.Exit(EXIT_STATE)
    except lab.LabError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(exc.exit_code)
    hosts = ", ".join(state.topology.namespaces())
    out.print(
        f"lab up: profile {state.profile}" + (f" as of {state.as_of}" if state.as_of else "") + f", mode {state.mode} "
        f"(fails {'closed' if state.fail_closed else 'open'})"
        + (f", client side wrapped: {state.wrap}" if state.wrap else "")
        + (
            f", {state.geometry['hops_client']}/{state.geometry['hops_server']} hops client/server side, "
            f"far-side delay {state.geometry['delay_ms']:g} ms"
            if state.geometry
            else ""
        )
        + f"; hosts {hosts}",
        markup=False,
    )
    for line in _clock_and_params_lines(state):
        out.print(line, markup=False)
    from chokepoint.lab.fleet import Fleet

    fleet = Fleet.load(state.state_dir)
    if fleet is not None and fleet.manager:
        out.print(f"manager {fleet.manager}, deployment {fleet.deployment}, {fleet.nodes} node(s)", markup=False)


def _clock_and_params(
    fake_time: str | None, clock_offset: str | None, param: list[str]
) -> tuple[float | None, dict[str, str]]:
    """``--fake-time`` / ``--clock-offset`` as an offset in seconds, ``--param`` as a mapping; a usage error
    (exit 2) for anything malformed, before anything is created."""
    from chokepoint.backends.options import clock_offset as parse_offset
    from chokepoint.backends.options import fake_time_offset, param_override

    if fake_time is not None and clock_offset is not None:
        raise typer.BadParameter("give either --fake-time or --clock-offset, not both", param_hint="--fake-time")
    offset = None
    try:
        if fake_time is not None:
            offset = fake_time_offset(fake_time)
        elif clock_offset is not None:
            offset = parse_offset(clock_offset)
    except ValueError as exc:
        raise typer.BadParameter(
            str(exc), param_hint="--fake-time" if fake_time is not None else "--clock-offset"
        ) from None
    params: dict[str, str] = {}
    for text in param:
        try:
            key, value = param_override(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--param") from None
        params[key] = value
    return offset, params


def _clock_and_params_lines(state: Any) -> list[str]:
    """What ``lab up`` and ``lab status`` say about the censor's clock and rule-param overrides."""
    lines = []
    if state.clock_offset_s is not None:
        import datetime as dt

        now = dt.datetime.fromtimestamp(time.time() + state.clock_offset_s, dt.UTC)
        lines.append(f"censor clock: wall clock {state.clock_offset_s:+.0f} s (now {now:%Y-%m-%dT%H:%M:%S}Z)")
    if state.params:
        lines.append("rule params: " + ", ".join(f"{k}={v}" for k, v in state.params.items()))
    return lines


@lab_app.command("down")
def down_cmd(
    keep: list[str] = typer.Option(
        [], "--keep", help="a namespace with the lab's prefix that is not the lab's: leave it alone (repeatable)"
    ),
) -> None:
    """Remove everything the lab created (idempotent; works without state.json)."""
    from chokepoint import lab
    from chokepoint.lab.state import LabBusy

    try:
        report = lab.down(keep=keep)
    except LabBusy as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_STATE)
    if report.nothing_to_do:
        out.print("lab down: nothing to remove")
    else:
        killed = len(report.killed)
        parts = [
            f"killed {killed} process{'' if killed == 1 else 'es'}" if killed else "",
            f"removed namespaces {', '.join(report.namespaces)}" if report.namespaces else "",
            f"removed host veths {', '.join(report.links)}" if report.links else "",
            f"removed files {', '.join(report.files)}" if report.files else "",
        ]
        out.print("lab down: " + "; ".join(p for p in parts if p), markup=False)
    for problem in report.errors:
        err.print(f"error: could not remove: {problem}", markup=False)
    if report.errors:
        raise typer.Exit(EXIT_SYSTEM)


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, dict):
        rows = []
        for key, value in data.items():
            rows += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return rows
    return [(prefix, data)]


@lab_app.command("status")
def status_cmd(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Hosts, profile, mode, processes, and the censor's counters."""
    from chokepoint import lab

    report = lab.status()
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        _print_status(report)
    if not report.up:
        raise typer.Exit(EXIT_STATE)
    if not all(report.processes.values()) or report.problems:
        raise typer.Exit(EXIT_DEGRADED)


def _print_status(report: Any) -> None:
    if not report.up:
        out.print("no lab is up")
        for problem in report.problems:
            out.print(f"problem: {problem}", markup=False)
        if report.stray_namespaces:
            out.print(f"other {PREFIX}* namespaces: {', '.join(report.stray_namespaces)}", markup=False)
        return
    state = report.state
    age = time.time() - state.created_at
    out.print(
        f"lab {NAME} up for {age:.0f} s: profile {state.profile}"
        + (f" as of {state.as_of}" if state.as_of else "")
        + f", mode {state.mode}, "
        f"fails {'closed' if state.fail_closed else 'open'}, seed {state.seed}",
        markup=False,
    )
    if state.geometry:
        g = state.geometry
        out.print(
            f"path: {g['hops_client']} router(s) client side, {g['hops_server']} server side (the censor at hop "
            f"{g['hops_client'] + 1}), far-side delay {g['delay_ms']:g} ms each way",
            markup=False,
        )
    for line in _clock_and_params_lines(state):
        out.print(line, markup=False)
    if report.failure_line:
        out.print(f"[bold red]!!! {report.failure_line} !!![/]")
    out.print("hosts:")
    for host in report.hosts:
        mark = "" if host.present else "  [MISSING]"
        out.print(f"  {host.name:<8} {host.namespace}{mark}", markup=False)
        for ifname, addrs in host.addresses.items():
            shown = addrs if len(addrs) <= 6 else [*addrs[:4], f"... {len(addrs) - 5} more ...", addrs[-1]]
            out.print(f"      {ifname:<6} {', '.join(shown)}", markup=False)
    out.print("processes:")
    if not report.processes:
        out.print("  (none)")
    for name, alive in report.processes.items():
        info = state.processes[name]
        word = "[green]alive[/]" if alive else "[bold red]DEAD[/]"
        out.print(f"  {name:<17} pid {info.pid:<8} {info.netns or 'host ns':<12} {word}  log {info.log}")
    if report.stats is not None:
        out.print(f"censor counters ({report.stats_age:.1f} s old):", markup=False)
        for key, value in _flatten(report.stats):
            out.print(f"  {key} = {value}", markup=False)
    else:
        out.print("censor counters: none (no censor-stats.json)")
    for warning in state.warnings:
        out.print(f"warning: {warning}", markup=False)
    for problem in report.problems:
        out.print(f"[bold red]problem:[/] {problem}")
    if report.stray_namespaces:
        out.print(f"other {PREFIX}* namespaces (not this lab's): {', '.join(report.stray_namespaces)}", markup=False)


@lab_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_cmd(
    host: str = typer.Argument(..., help="client, censor, server, control, or a topology host"),
    command: list[str] = typer.Argument(None, help="after --: the command and its arguments"),
) -> None:
    """Run a command inside the lab's HOST namespace (cpk-HOST; CHOKEPOINT_LAB names the lab): `chokepoint lab exec client -- curl http://blocked.test/`."""
    from chokepoint import lab
    from chokepoint.lab.system import MissingTool

    try:
        code = lab.exec_in(host, list(command or []))
    except lab.LabError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(exc.exit_code if isinstance(exc, lab.LabNotUp) else EXIT_USAGE)
    except MissingTool as exc:
        err.print(f"error: {exc.argv[0]}: command not found", markup=False)
        raise typer.Exit(127)
    raise typer.Exit(code)
