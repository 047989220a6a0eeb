"""The censor daemon: one engine, an inline (NFQUEUE) or on-path (AF_PACKET) front, events and counters.

``python -m chokepoint.backends.censord --mode inline|mirror (--profile NAME | --rules FILE) [--fail-closed]
[--seed N] [--queue-num N] [--queue-maxlen N] [--client-iface ce0] [--server-iface ce1] [--intercept-port N]
[--clock-offset SECONDS | --fake-time ISO8601] [--as-of YYYY-MM-DD] [--param RULE.PARAM=VALUE ...] [--control-dir DIR]
[--workers INDEX/COUNT] --state-dir DIR``
runs in the censor's network namespace (``lab up`` starts it through
:func:`launch`). It installs the kernel program (:mod:`chokepoint.backends.kernel`; inline only — mirror
mode removes any left over and never drops), then feeds every packet it sees to the engine. When a flow's
verdict is reached, :func:`chokepoint.enforce.plan` says what to do; the backend injects the plan's packets
(:mod:`chokepoint.backends.inject`), drops or accepts the trigger, adds the residual block and marks the
flow for the kernel. A profile with ``tls-intercept`` rules (inline mode) also gets the TLS-intercepting proxy
(:mod:`chokepoint.backends.intercept`, a child process) and the kernel's redirect of the ports those rules
can match to it; it writes its own events to the same ``events.jsonl`` and its counters under ``intercept``.

Files in ``DIR`` (the lab's ``/run/chokepoint-lab``):

- ``censor-stats.json``, rewritten (atomically) every second, floods included: packets seen/accepted/dropped/held,
  verdicts by action and by rule, injections, residual entries, flows (with the flow table's evictions and
  emergency mode: ``flow/memcap.py``), errors, engine counters, and inline what a full queue did
  (``backend.overload``: fail-open or fail-closed, packets that failed open, packets the kernel dropped);
  ``"running": false`` after a clean stop, when a one-line summary of the same goes to the log.
- ``events.jsonl``: the Suricata-EVE flow record of every flow that ended (``flow_to_eve``) and, per
  enforced verdict, an ``event_type: "chokepoint"`` record with the plan and the fields of every injected
  packet (the probes' ground truth).

**Clock.** Everything the daemon stamps (the engine's packet time, hence ``local_hour``; residual expiry;
event timestamps; the stats) reads ``time.time() + offset``. ``--clock-offset S`` sets the offset;
``--fake-time 2026-11-27T02:30:00+06:30`` (ISO 8601 with a fixed UTC offset, so no DST rules apply) sets it so
that the clock reads that instant at start and runs on from there: a profile's schedule (Myanmar's nightly
shutdown) can be exercised at any hour. The kernel's timers (residual sets, tc) are relative and unaffected.
``--param RULE.PARAM=VALUE`` (repeatable) overrides a rule parameter at load time
(``load_profile(..., params=...)``; an unknown rule or parameter is refused at start). The stats show both
(``"clock"``, ``"params"``).

``--control-dir DIR`` is the node's policy-reload hook (:mod:`chokepoint.backends.control`): a request file
there is applied between two packets (a whole rule file, or only the entries of some lists), the outcome is
written next to it, and the daemon restarts on the policy last applied. The stats then have a ``policy``
section. This is all the daemon knows of a central manager.

SIGTERM/SIGINT stop it cleanly (remaining flows are written, kernel state removed). After ``kill -9`` or a
crash the kernel state stays: with ``--queue-bypass`` (default) the kernel then accepts what it would have
queued (fail-open; flows already blocked stay blocked); with ``--fail-closed`` those packets are dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chokepoint.backends.censor import MODES, STATS_FILE, Censor
from chokepoint.backends.options import clock_offset, fake_time_offset, load_policy, param_override


class _Stop:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        self.requested = True


def _argtype(parse, what: str):
    """An argparse ``type`` from a parser raising ``ValueError``: the reason becomes the usage error."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = what
    return convert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chokepoint.backends.censord",
        description="Chokepoint censor daemon (inline NFQUEUE or mirror AF_PACKET)",
    )
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--profile", help="bundled profile name or profile file")
    parser.add_argument("--rules", help="a rule file (profile block optional) instead of --profile")
    parser.add_argument("--fail-closed", action="store_true", help="no --queue-bypass: drop when the daemon is gone")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--queue-num", type=int, default=0)
    parser.add_argument(
        "--queue-maxlen",
        type=int,
        default=4096,
        help="packets the kernel keeps waiting for a verdict (then: fail open, or drop)",
    )
    parser.add_argument("--client-iface", default="ce0")
    parser.add_argument("--server-iface", default="ce1")
    parser.add_argument(
        "--keep-kernel-state", action="store_true", help="leave the kernel program in place on a clean stop"
    )
    parser.add_argument(
        "--intercept-port",
        type=int,
        default=None,
        help="port of the TLS-intercepting proxy (tls-intercept rules; default 14443)",
    )
    clock = parser.add_mutually_exclusive_group()
    clock.add_argument(
        "--clock-offset",
        type=_argtype(clock_offset, "clock offset"),
        default=None,
        metavar="SECONDS",
        help="the daemon's clock is the wall clock plus this (may be negative)",
    )
    clock.add_argument(
        "--fake-time",
        type=_argtype(fake_time_offset, "ISO 8601 time"),
        default=None,
        dest="fake_time_offset",
        metavar="ISO8601",
        help="start the daemon's clock at this instant, e.g. 2026-11-27T02:30:00+06:30",
    )
    parser.add_argument(
        "--as-of",
        default=None,
        metavar="YYYY-MM-DD",
        help="load what the profile had in force that day (default: the last day it covers)",
    )
    parser.add_argument(
        "--probe-time-scale",
        type=float,
        default=None,
        metavar="FACTOR",
        help="factor on the active prober's documented delays (default: the profile's time_scale)",
    )
    parser.add_argument(
        "--probe-max-delay",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the active prober sends no probe due later than this after its trigger (a lab run's horizon)",
    )
    parser.add_argument(
        "--param",
        type=_argtype(param_override, "RULE.PARAM=VALUE"),
        action="append",
        default=[],
        metavar="RULE.PARAM=VALUE",
        help="override a rule parameter (repeatable)",
    )
    parser.add_argument(
        "--control-dir",
        type=Path,
        default=None,
        help="apply policy reload requests from DIR/request.json (chokepoint.backends.control)",
    )
    parser.add_argument(
        "--workers",
        default=None,
        metavar="INDEX/COUNT",
        help="one of COUNT workers of a node behind NFQUEUE --queue-balance over queues 0..COUNT-1 (this one binds "
        "queue INDEX; worker 0 installs and removes the kernel program)",
    )
    args = parser.parse_args(argv)
    worker = (0, 1)
    if args.workers:
        try:
            index, count = (int(x) for x in args.workers.split("/"))
            if not 0 <= index < count:
                raise ValueError
        except ValueError:
            parser.error(f"--workers {args.workers!r}: expected INDEX/COUNT with 0 <= INDEX < COUNT")
        worker = (index, count)
        args.queue_num = index
    if args.profile and args.rules:
        parser.error("give either --profile or --rules, not both")
    offset = args.clock_offset if args.clock_offset is not None else (args.fake_time_offset or 0.0)
    params = dict(args.param)

    from chokepoint.lab.system import CommandError
    from chokepoint.policy import PolicyError

    control = None
    if args.control_dir is not None:
        from chokepoint.backends.control import PolicyControl

        control = PolicyControl(
            args.control_dir, say=lambda m: print(f"censord: {m}", file=sys.stderr, flush=True), as_of=args.as_of
        )
    try:
        if control is not None:
            described = {"profile": args.profile, "rules": args.rules, "params": params, "as_of": args.as_of}
            profile = control.startup_profile(
                lambda: load_policy(args.profile, args.rules, params, args.as_of), described
            )
        else:
            profile = load_policy(args.profile, args.rules, params, args.as_of)
    except PolicyError as exc:
        print(f"censord: profile rejected: {exc}", file=sys.stderr)
        return 1
    from chokepoint.backends.kernel import KernelProgram

    kernel = KernelProgram(
        None,
        queue_num=args.queue_num,
        fail_closed=args.fail_closed,
        client_iface=args.client_iface,
        server_iface=args.server_iface,
        queue_balance=(0, worker[1] - 1) if worker[1] > 1 else None,
        worker=worker,
    )
    try:
        censor = Censor(
            profile,
            mode=args.mode,
            seed=args.seed,
            state_dir=args.state_dir,
            fail_closed=args.fail_closed,
            clock_offset_s=offset,
            params=params,
        )
    except PolicyError as exc:
        print(f"censord: profile rejected: {exc}", file=sys.stderr)
        return 1
    if control is not None:
        control.swap = censor.swap_profile
        censor.extra_stats["policy"] = control.stats
    try:
        prober = _start_prober(args, profile, censor)
    except (OSError, RuntimeError, CommandError) as exc:
        print(f"censord: cannot start the active prober: {exc}", file=sys.stderr)
        censor.close()
        return 3
    try:
        intercept = _start_intercept(args, profile, kernel, censor)
    except OSError as exc:
        print(f"censord: cannot start the TLS-intercepting proxy: {exc}", file=sys.stderr)
        censor.close()
        return 3
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if args.mode == "inline":
            from chokepoint.backends.nfqueue import InlineBackend

            backend = InlineBackend(censor, kernel, queue_num=args.queue_num, max_len=args.queue_maxlen)
        else:
            from chokepoint.backends.mirror import MirrorBackend

            backend = MirrorBackend(censor, kernel, (args.client_iface, args.server_iface))
        backend.start()
    except (OSError, CommandError) as exc:
        # The backend undid its own half-start; another censor's kernel state is left alone.
        print(f"censord: cannot start the {args.mode} backend: {exc}", file=sys.stderr)
        if prober is not None:
            prober.close()
        if intercept is not None:
            intercept.stop()
        censor.close()
        return 3
    censor.maybe_write_stats(backend.counters(), force=True)
    clock_note = f", clock {censor.clock_stats()['local']} ({offset:+.0f} s)" if offset else ""
    params_note = f", params {' '.join(f'{k}={v}' for k, v in params.items())}" if params else ""
    as_of_note = f" as of {profile.as_of}" if profile.as_of else ""
    print(
        f"censord: {args.mode} censor running, profile {profile.name}{as_of_note}, pid {os.getpid()}"
        f"{clock_note}{params_note}",
        file=sys.stderr,
        flush=True,
    )

    def should_stop() -> bool:
        if control is not None:
            control.poll()  # a policy reload, between two packets
        return stop.requested

    try:
        backend.run(should_stop)
    except BaseException:
        # A crash behaves like kill -9: the kernel program stays, so traffic fails open (--queue-bypass)
        # or closed, as configured; the traceback goes to the log.
        backend.stop()
        if prober is not None:
            prober.close()
        if intercept is not None:
            intercept.stop()
        censor.close(backend.counters())
        raise
    backend.stop()
    if prober is not None:
        prober.close()
    if not args.keep_kernel_state:
        kernel.remove()
    if intercept is not None:
        intercept.stop()
    counters = backend.counters()
    censor.close(counters)
    flows = {"created": censor.engine.table.counters["flows_created"]} | censor.flow_table_stats()
    stats = {"packets": {"seen": censor.counters["seen"]}, "flows": flows, "backend": counters}
    print(f"censord: stopped: {summary(stats)}", file=sys.stderr, flush=True)
    return 0


def summary(stats: Mapping[str, Any]) -> str:
    """One line of what a run's stats (``censor-stats.json``'s layout) say about load: packets, flows and their evictions, and what a full
    queue did (inline: failed open or dropped; None counts are shown as "?")."""
    packets, flows = stats.get("packets", {}), stats.get("flows", {})
    text = (
        f"{packets.get('seen', 0)} packets seen, {flows.get('created', 0)} flows created, "
        f"{flows.get('evicted', 0)} evicted ({flows.get('evicted_unassured', 0)} unassured), "
        f"emergency mode entered {flows.get('emergency_entered', 0)} times"
    )
    overload = stats.get("backend", {}).get("overload")
    if overload:
        shown = lambda v: "?" if v is None else v  # noqa: E731
        text += (
            f"; queue full: {overload['when_full']}, failed open {shown(overload['failed_open'])}, "
            f"kernel dropped {overload['queue_dropped']} (queue full) + {overload['user_dropped']} (netlink)"
        )
    return text


def _start_prober(args: argparse.Namespace, profile, censor: Censor):
    """The profile's active prober, run from the lab's prober namespace (None without an active_probing
    section; without that namespace the daemon says so in its stats and probes nothing)."""
    config = getattr(profile, "active_probing", None)
    if config is None:
        return None
    import ipaddress

    from chokepoint.activeprobe.scheduler import ActiveProber
    from chokepoint.lab import circumvention, instance
    from chokepoint.lab.system import netns_list

    netns = instance.namespace("prober")
    if netns not in netns_list():
        censor.extra_stats["active_probing"] = lambda: {"error": f"no prober namespace {netns}: no probes sent"}
        return None
    prober = ActiveProber(
        config,
        censor,
        netns=netns,
        pool=str(circumvention.PROBER_POOL),
        time_scale=args.probe_time_scale,
        seed=None if args.seed is None else args.seed + 1,
        max_delay_s=args.probe_max_delay,
    )
    prober.start()
    censor.active_prober = prober
    censor.ignore_networks = (ipaddress.ip_network(circumvention.PROBER_POOL),)
    censor.extra_stats["active_probing"] = prober.stats
    return prober


def _start_intercept(args: argparse.Namespace, profile, kernel, censor: Censor):
    """The TLS-intercepting proxy and the kernel's redirect to it, when the profile has ``tls-intercept``
    rules and the censor is inline (a mirror censor cannot terminate connections: those flows pass, noted
    in their events). Returns the proxy's ``InterceptProcess`` or None; ``OSError`` when it cannot start."""
    from chokepoint.backends import intercept

    port = args.intercept_port or intercept.DEFAULT_PORT
    redirect = intercept.redirect_for(profile.policy, port)
    if redirect is None:
        return None
    if args.mode != "inline":
        print("censord: mirror mode cannot intercept TLS: tls-intercept flows pass untouched", file=sys.stderr)
        return None
    try:
        proxy = intercept.InterceptProcess.start(
            args.state_dir,
            profile=args.profile,
            rules=args.rules,
            port=port,
            seed=args.seed,
            clock_offset_s=censor.clock_offset_s,
            params=dict(args.param) or None,
            as_of=args.as_of,
        )
    except intercept.InterceptError as exc:
        raise OSError(str(exc)) from None
    kernel.redirect = redirect

    def section() -> dict[str, Any]:
        return {
            "port": port,
            "pid": proxy.proc.pid,
            "alive": proxy.alive(),
            "redirect": {"ports": [list(p) for p in redirect.ports], "destinations": list(redirect.destinations)},
            "counters": proxy.stats().get("counters", {}),
        }

    censor.extra_stats["intercept"] = section
    return proxy


def launch(
    state,
    mode: str,
    profile: str,
    fail_closed: bool = False,
    seed: int | None = None,
    *,
    rules: str | None = None,
    timeout: float = 10.0,
    clock_offset_s: float | None = None,
    params: Mapping[str, str] | None = None,
    as_of: str | None = None,
    name: str = "censor",
    host: str = "censor",
    state_dir: Path | None = None,
    extra: Sequence[str] = (),
    probe_time_scale: float | None = None,
    probe_max_delay_s: float | None = None,
):
    """Start the daemon detached in the censor namespace (for ``lab up``) and wait until it runs.

    ``state`` is a :class:`chokepoint.lab.state.LabState`. ``clock_offset_s``: ``--clock-offset``;
    ``params``: ``--param`` overrides; ``as_of``: ``--as-of`` (the profile's day). ``name``/``host``/``state_dir``/
    ``extra``: another censor of the lab (a node of a fleet, a worker of a node: :mod:`chokepoint.lab.fleet`) with
    more arguments; ``probe_time_scale``, ``probe_max_delay_s``: ``--probe-time-scale``,
    ``--probe-max-delay`` (the active prober). Returns its ``ProcessInfo``; raises ``chokepoint.lab.state.StateError`` with the daemon's log
    when it does not come up."""
    from chokepoint.lab.state import StateError

    state_dir = Path(state_dir or state.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = ["--mode", mode, "--state-dir", str(state_dir), *extra]
    argv += ["--rules", rules] if rules else ["--profile", profile]
    if fail_closed:
        argv.append("--fail-closed")
    if seed is not None:
        argv += ["--seed", str(seed)]
    if clock_offset_s is not None:
        argv.append(f"--clock-offset={float(clock_offset_s)!r}")
    for key, value in (params or {}).items():
        argv += ["--param", f"{key}={value}"]
    if as_of:
        argv += ["--as-of", str(as_of)]
    if probe_time_scale is not None:
        argv.append(f"--probe-time-scale={float(probe_time_scale)!r}")
    if probe_max_delay_s is not None:
        argv.append(f"--probe-max-delay={float(probe_max_delay_s)!r}")
    stats = state_dir / STATS_FILE
    stats.unlink(missing_ok=True)
    info = state.start(name, host, state.python_argv("chokepoint.backends.censord", *argv))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not info.alive():
            raise StateError(f"the censor daemon exited at start; its log ({info.log}):\n{info.log_tail()}")
        try:
            if json.loads(stats.read_text()).get("running"):
                return info
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise StateError(
        f"the censor daemon did not come up within {timeout:g} s; its log ({info.log}):\n{info.log_tail()}"
    )


__all__ = ["launch", "main", "summary"]


if __name__ == "__main__":
    # Run the canonical module's main, so the backends (which import this module) share its classes.
    from chokepoint.backends.censord import main as _main

    sys.exit(_main())
