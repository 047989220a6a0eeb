"""Run scenarios in the lab and score the probe's conclusions against the censor's ground truth.

For each group of scenarios sharing a profile, mode, censor seed and censor clock (``local_time``, see
:func:`pin_clock`): ``lab up`` with the lab DNS map giving every target
host its own site address (198.19.0.11-.29, so a residual block one scenario triggers cannot spill into
the next), the censor started with a fixed seed (probabilistic rules are reproducible); then per scenario:

1. remember the end of the censor's ``events.jsonl`` and start ``tcpdump -w`` on the client's censor-side
   link (``cl0`` in ``cpk-client``);
2. run ``chokepoint probe --in-lab`` in ``cpk-client`` (the probe runner, OONI Web Connectivity plus
   Chokepoint's techniques), with the scenario's tests and timeout;
3. stop the capture; the ``chokepoint`` events appended meanwhile are the ground truth: which rule fired
   on which flow, the action, the injected packets (``chokepoint.backends.censord``);
4. run ``detect`` over the capture when packets were injected (attribution to personality presets);
5. score: technique (the classifier's primary technique class = the ground truth's), OONI (`blocking`
   and `accessible` = the catalogue's expectation, when the censor did what the scenario expected),
   attribution (the expected preset among detect's top-ranked candidates of a finding: fewest mismatching
   fields, then highest score; a profile may tune its preset, so one mismatch can remain), expectation
   (the censor did what the catalogue says; a probabilistic rule may not).

A trace scenario (``kind: trace``) has a lab of its own, with its routers on each side of the censor
(``lab up --hops-client/--hops-server/--delay-ms``) and its censor parameters; it runs ``chokepoint trace`` from
the client instead of the probe and is scored on the outcome, the censor's hop and the path against
:func:`chokepoint.validate.truth.trace_truth` (the topology and the censor's event log during the trace).

The lab is torn down between groups and after the last (also on errors and Ctrl-C). Steps 3 and 5 are
:mod:`chokepoint.validate.truth` and :mod:`chokepoint.validate.scoring` (I/O-free but for reading the capture);
their names are re-exported here.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chokepoint.validate.scenarios import Scenario, TraceSpec
from chokepoint.validate.scoring import TRACE_KEYS, ScenarioResult, score, score_trace
from chokepoint.validate.truth import (
    CLIENT_ADDRESSES,
    LAYER_ORDER,
    TruthAction,
    classified_class,
    primary,
    trace_truth,
    truth_from_events,
)

__all__ = [
    "CLIENT_ADDRESSES",
    "LAYER_ORDER",
    "RunOptions",
    "ScenarioResult",
    "TruthAction",
    "ValidationError",
    "classified_class",
    "pin_clock",
    "plan_groups",
    "primary",
    "run_scenarios",
    "score",
    "truth_from_events",
]


CONTROL_RESOLVER = "198.18.9.1"
SITE_FIRST, SITE_LAST = 11, 29  # 198.19.0.10 stays the default answer (and the control host's)
SITE_DEFAULT = "198.19.0.10"
CAPTURE_IFACE = "cl0"
DEFAULT_SEED = 1


class ValidationError(RuntimeError):
    """The validation could not run (no root, a lab already up, a lab that does not come up)."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    fingerprints: Path | None = None  # ooni/blocking-fingerprints folder for the probe and detect
    seed: int = DEFAULT_SEED
    throughput_bytes: int = 256 * 1024
    throughput_seconds: float = 4.0
    workdir: Path | None = None  # captures, measurements, DNS maps (default: a temporary folder)
    lock: bool = True  # hold the lab session lock (tests that hold it pass False)
    lock_timeout: float = 900.0  # seconds to wait for it
    state_dir: Path | None = None
    as_of: str | None = None  # the day profiles are loaded for, for scenarios without their own ``as_of``


#: The censor's local time for a scenario of a scheduled profile that names none (see ``pin_clock``).
DEFAULT_LOCAL_TIME = "12:00"


def pin_clock(scenario: Scenario) -> Scenario:
    """The scenario with the censor's clock it runs under: its own ``local_time``, else, for a profile with
    rules on ``local_hour`` (Myanmar's nightly shutdown), DEFAULT_LOCAL_TIME, so that a catalogue gives the
    same results at any hour; else the wall clock (None)."""
    if scenario.local_time is not None or not scenario.profile:
        return scenario
    from chokepoint.policy import load_profile

    used = getattr(load_profile(scenario.profile, as_of=scenario.as_of).policy, "fields_used", frozenset())
    return replace(scenario, local_time=DEFAULT_LOCAL_TIME) if "local_hour" in used else scenario


GroupKey = tuple[str, str, int | None, str | None, str | None]


def plan_groups(
    scenarios: Sequence[Scenario],
) -> list[tuple[GroupKey, list[Scenario], dict[str, str]]]:
    """Scenarios grouped by (profile, mode, seed, local time, day; a trace scenario alone) in first-appearance
    order, split so that every distinct target host gets its own site address; each group with its DNS map
    (host -> IPv4 site address)."""
    order: dict[tuple[GroupKey, str], list[Scenario]] = {}
    for s in scenarios:
        order.setdefault((s.group, s.lab_key), []).append(s)
    out = []
    capacity = SITE_LAST - SITE_FIRST + 1
    for (key, _), members in order.items():
        chunk: list[Scenario] = []
        hosts: dict[str, str] = {}
        for s in members:
            host = s.host
            needs = _mappable(host) and host not in hosts
            if needs and len(hosts) >= capacity:
                out.append((key, chunk, hosts))
                chunk, hosts = [], {}
            if _mappable(host) and host not in hosts:
                hosts[host] = f"198.19.0.{SITE_FIRST + len(hosts)}"
            chunk.append(s)
        if chunk:
            out.append((key, chunk, hosts))
    return out


def _mappable(host: str) -> bool:
    """A name the lab DNS map may answer (not an IP literal, not the built-in NXDOMAIN zone)."""
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        return not (host == "nxdomain.test" or host.endswith(".nxdomain.test"))


@contextmanager
def _lab(
    profile: str,
    mode: str,
    dns_map: Path,
    seed: int,
    state_dir: Path | None,
    local_time: str | None = None,
    as_of: str | None = None,
    trace: TraceSpec | None = None,
) -> Iterator[Any]:
    """A lab with the services answering from ``dns_map`` and the censor (none when ``profile`` is ""), whose
    clock reads ``local_time`` in the profile's timezone when it comes up (None: the wall clock), its profile
    loaded as of ``as_of`` (None: its last day); for a trace scenario (``trace``) with its routers on each side
    of the censor, the far side's delay and its censor parameters."""
    from chokepoint import lab
    from chokepoint.backends import censord
    from chokepoint.lab import services
    from chokepoint.lab.clock import clock_offset_for
    from chokepoint.policy import load_profile

    try:
        state = lab.up(
            profile or "demo",
            mode,
            seed=seed,
            services=False,
            censor=False,
            state_dir=state_dir,
            as_of=as_of if profile else None,
            **(
                {}
                if trace is None
                else {"hops_client": trace.hops_client, "hops_server": trace.hops_server, "delay_ms": trace.delay_ms}
            ),
        )
    except lab.LabError as exc:
        raise ValidationError(f"lab up ({profile or 'no censor'}, {mode}) failed: {exc}") from exc
    from chokepoint.lab.state import StateError

    try:
        try:
            services.launch(state, dns_map=dns_map)
            if profile:
                offset = (
                    None
                    if local_time is None
                    else clock_offset_for(load_profile(profile).meta.utc_offset_s, local_time)
                )
                params = dict(trace.params) if trace is not None and trace.params else None
                censord.launch(state, mode, profile, False, seed, clock_offset_s=offset, as_of=as_of, params=params)
        except (services.ServicesLaunchError, StateError, OSError) as exc:
            raise ValidationError(f"the lab services or censor did not start: {exc}") from exc
        finally:
            state.save()
        yield state
    finally:
        lab.down(state_dir)


def _events_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _events_since(path: Path, offset: int) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", "replace")
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]


@contextmanager
def _capture(path: Path, netns: str) -> Iterator[None]:
    """tcpdump -w on the client's censor-side link for the duration of the block."""
    from chokepoint.lab import system

    log = path.with_suffix(".tcpdump.log")
    argv = ["tcpdump", "-i", CAPTURE_IFACE, "--immediate-mode", "-U", "-n", "-Z", "root", "-s", "0", "-w", str(path)]
    pid = system.spawn(argv, netns=netns, log_path=log)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # tcpdump writes the file header once it listens
        if path.exists() and path.stat().st_size >= 24 and "listening" in log.read_text(errors="replace"):
            break
        if _reaped(pid):
            raise ValidationError(f"tcpdump exited at start: {log.read_text(errors='replace').strip()}")
        time.sleep(0.02)
    try:
        yield
    finally:
        time.sleep(0.2)  # the last packets of the probe (FIN/RST) reach the capture
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while not _reaped(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not _reaped(pid):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def _probe_argv(s: Scenario, out: Path, options: RunOptions) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "chokepoint.cli",
        "probe",
        s.target,
        "--in-lab",
        "--tests",
        ",".join(s.tests),
        "--timeout",
        f"{s.timeout:g}",
        "-o",
        str(out),
        "--seed",
        str(options.seed),
        "--throughput-bytes",
        str(options.throughput_bytes),
        "--throughput-seconds",
        f"{options.throughput_seconds:g}",
    ]
    if s.resolver == "control":
        argv += ["--resolver", CONTROL_RESOLVER]
    if options.fingerprints is not None:
        argv += ["--fingerprints", str(options.fingerprints)]
    return argv


def _probe_budget(s: Scenario) -> float:
    """A generous wall-clock bound for one probe run (its tests, each operation bounded by the timeout)."""
    return 60 + 25 * s.timeout * len(s.tests)


def _attribution(capture: Path, fingerprints: Any, expected: str | None) -> list[dict[str, Any]]:
    """detect's findings in the capture: per finding the best candidate, the top-ranked presets (every
    candidate ranked like the best: the evidence cannot tell them apart) and why the expected one is not."""
    from chokepoint.packet.pcap import CaptureFormatError
    from chokepoint.probe.detect import detect_captures

    try:
        report = detect_captures([capture], fingerprints=fingerprints)
    except (CaptureFormatError, OSError) as exc:
        return [
            {
                "kind": "error",
                "summary": f"detect could not read the capture: {exc}",
                "best": None,
                "top": [],
                "candidates": [],
            }
        ]
    out = []
    for finding in report.findings:
        best = finding.best
        rank = None if best is None else (best.mismatches, -best.score)
        top = [name for c in finding.candidates if (c.mismatches, -c.score) == rank for name in c.personalities]
        mine = next((c for c in finding.candidates if expected in c.personalities), None)
        out.append(
            {
                "kind": finding.kind,
                "summary": finding.summary,
                "best": None if best is None else "/".join(best.personalities),
                "top": top,
                "mismatched": [] if best is None else best.mismatched(),
                "expected_mismatched": [] if mine is None or mine is best else mine.mismatched(),
                "candidates": [
                    {
                        "personalities": list(c.personalities),
                        "consistent": c.consistent,
                        "score": c.score,
                        "mismatches": c.mismatches,
                    }
                    for c in finding.candidates
                ],
            }
        )
    return out


#: The lab resolver (on the server's network): a DNS trace's target.
LAB_RESOLVER = "198.19.0.53"


def _trace_argv(s: Scenario, server: str, pcap_dir: Path) -> list[str]:
    assert s.trace is not None
    argv = [sys.executable, "-m", "chokepoint.cli", "trace", server, "--domain", s.target]
    return [*argv, "--protocol", s.trace.protocol, "--format", "json", "--pcap", str(pcap_dir)]


def _run_trace(s: Scenario, state: Any, workdir: Path, hosts: dict[str, str]) -> ScenarioResult:
    """``chokepoint trace`` from the client to the scenario's site (the lab resolver for DNS), scored against
    the censor's position in the topology and what its event log says it did to the trigger."""
    from chokepoint.backends.censor import EVENTS_FILE
    from chokepoint.lab import system

    assert s.trace is not None
    result = ScenarioResult(s)
    started = time.monotonic()
    events = Path(state.state_dir) / EVENTS_FILE
    netns = state.namespace("client")
    server = LAB_RESOLVER if s.trace.protocol == "dns" else hosts.get(s.host, SITE_DEFAULT)
    pcap_dir = workdir / f"{s.name}-trace"
    result.capture, result.measurement = str(pcap_dir), str(workdir / f"{s.name}.trace.json")
    offset = _events_size(events)
    try:
        if not s.trace.tcp_timestamps:
            system.sysctl({"net.ipv4.tcp_timestamps": 0}, netns)
        proc = system.run(_trace_argv(s, server, pcap_dir), netns=netns, check=False, timeout=300)
        time.sleep(0.1)
        if proc.returncode != 0:
            raise ValidationError(
                f"trace exited with {proc.returncode}: {proc.stderr.decode('utf-8', 'replace').strip()[-500:]}"
            )
        Path(result.measurement).write_bytes(proc.stdout)
        report = json.loads(proc.stdout)
    except (system.CommandError, ValidationError, OSError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        result.misses.append(f"error: {result.error}")
        result.duration_s = time.monotonic() - started
        return result
    lines = _events_since(events, offset)
    result.truth = truth_from_events(lines)
    topo = state.topology
    result.trace_expected = trace_truth(
        s.mode,
        s.trace.censor_hop,
        str(topo.host("far1").interface("rt0").addresses[0].ip),
        lines,
    )
    result.trace_got = {k: report.get(k) for k in TRACE_KEYS}
    score_trace(result)
    result.duration_s = time.monotonic() - started
    return result


def _run_one(
    s: Scenario, state: Any, workdir: Path, options: RunOptions, fingerprints: Any, hosts: dict[str, str]
) -> ScenarioResult:
    if s.kind == "trace":
        return _run_trace(s, state, workdir, hosts)
    from chokepoint.backends.censor import EVENTS_FILE
    from chokepoint.lab import system

    result = ScenarioResult(s)
    started = time.monotonic()
    events = Path(state.state_dir) / EVENTS_FILE
    measurement = workdir / f"{s.name}.jsonl"
    capture = workdir / f"{s.name}.pcap"
    result.measurement, result.capture = str(measurement), str(capture)
    netns = state.namespace("client")
    offset = _events_size(events)
    try:
        with _capture(capture, netns):
            proc = system.run(_probe_argv(s, measurement, options), netns=netns, check=False, timeout=_probe_budget(s))
        time.sleep(0.1)
        if proc.returncode != 0:
            raise ValidationError(
                f"the probe exited with {proc.returncode}: {proc.stderr.decode('utf-8', 'replace').strip()[-500:]}"
            )
        record = json.loads(measurement.read_text(encoding="utf-8").splitlines()[0])
    except (system.CommandError, ValidationError, OSError, ValueError, IndexError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        result.misses.append(f"error: {result.error}")
        result.duration_s = time.monotonic() - started
        return result
    tk = record.get("test_keys", {})
    result.blocking, result.accessible = tk.get("blocking"), tk.get("accessible")
    result.techniques = list((tk.get("x_chokepoint") or {}).get("techniques") or ())
    result.truth = truth_from_events(_events_since(events, offset), capture)
    result.truth_class = primary(t.label for t in result.truth)
    result.classified_class = primary(classified_class(result.techniques))
    if any(t.injected for t in result.truth) or s.expected.attribution:
        result.attribution = _attribution(capture, fingerprints, s.expected.attribution)
    score(result)
    result.duration_s = time.monotonic() - started
    return result


def run_scenarios(
    scenarios: Sequence[Scenario],
    options: RunOptions = RunOptions(),
    *,
    progress: Callable[[str], None] = lambda _: None,
    on_result: Callable[[ScenarioResult], None] = lambda _: None,
) -> list[ScenarioResult]:
    """Run every scenario (grouped into labs, see the module docstring) and return the scored results in
    catalogue order. Raises ``ValidationError`` when the lab cannot be used at all."""
    if os.geteuid() != 0:
        raise ValidationError("validate brings the lab up (network namespaces): it needs root")
    from chokepoint.lab import state as st

    fingerprints = None
    if options.fingerprints is not None:
        from chokepoint.probe.fingerprints import FingerprintDB, MalformedFingerprint

        try:
            fingerprints = FingerprintDB.load(options.fingerprints)
        except (OSError, MalformedFingerprint) as exc:
            raise ValidationError(f"cannot load fingerprints from {options.fingerprints}: {exc}") from exc
    own_tmp = None
    workdir = options.workdir
    if workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="chokepoint-validate-")
        workdir = Path(own_tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, ScenarioResult] = {}
    try:
        with st.session_lock(timeout=options.lock_timeout) if options.lock else _nothing():
            for (profile, mode, group_seed, local_time, as_of), members, hosts in plan_groups(
                [pin_clock(replace(s, as_of=s.as_of or _run_day(s, options))) for s in scenarios]
            ):
                seed = options.seed if group_seed is None else group_seed
                dns_map = workdir / f"dns-map-{profile or 'none'}-{mode}-{len(results)}.json"
                dns_map.write_text(json.dumps({"names": {h: [ip] for h, ip in hosts.items()}}), encoding="utf-8")
                clock = f", {local_time} local" if local_time else ""
                day = f", as of {as_of}" if as_of else ""
                trace = members[0].trace if members[0].kind == "trace" else None
                hops = "" if trace is None else f", hops {trace.hops_client}/{trace.hops_server} client/server side"
                progress(
                    f"lab up: {profile or 'no censor'} ({mode}, seed {seed}{clock}{day}{hops}), "
                    f"{len(members)} scenario(s)"
                )
                with _lab(profile, mode, dns_map, seed, options.state_dir, local_time, as_of, trace) as state:
                    for s in members:
                        progress(f"  {s.name}: {s.target}" + (f" (trace, {trace.protocol})" if trace else ""))
                        result = _run_one(s, state, workdir, options, fingerprints, hosts)
                        results[s.name] = result
                        on_result(result)
    except st.LabBusy as exc:
        raise ValidationError(str(exc)) from exc
    finally:
        if own_tmp is not None:
            own_tmp.cleanup()
    return [results[s.name] for s in scenarios if s.name in results]


def _run_day(s: Scenario, options: RunOptions) -> str | None:
    """The run's ``--as-of`` for a scenario without its own day (not for no censor, nor a named date, which
    is a day itself)."""
    from chokepoint.policy.profile import named_dates

    if not s.profile or s.profile in named_dates():
        return None
    return options.as_of


@contextmanager
def _nothing() -> Iterator[None]:
    yield
