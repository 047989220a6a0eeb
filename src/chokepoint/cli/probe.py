"""``chokepoint probe TARGET... [--lab] [--tests LIST] [--timeout S] [-o FILE]``: measure targets and write one
OONI Web Connectivity measurement per target as JSON lines (OONI's report format), with a one-line verdict
per target on stderr.

``--lab`` runs the probe inside the lab's client namespace: the CLI re-executes itself there with
``ip netns exec cpk-client`` (root needed), so the probe resolves through the lab resolver behind the
censor, trusts the lab CA, and uses the control resolver 198.18.9.1 outside the censor's path.

Exit codes: 0 every target was measured (whatever the measurement says); 2 bad usage (a bad target, test
name or address: nothing was measured); 4 ``--lab`` but no lab is up; 5 ``--lab`` without root, the
namespace could not be entered, or the output could not be written; 130 interrupted.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from chokepoint.lab import instance

EXIT_USAGE = 2
EXIT_NO_LAB = 4
EXIT_SYSTEM = 5
EXIT_INTERRUPTED = 130
CLIENT_NAMESPACE = instance.namespace("client")
DEFAULT_STATE_DIR = instance.STATE_DIR

err = Console(stderr=True, soft_wrap=True, highlight=False)


def _fail(code: int, message: str) -> typer.Exit:
    err.print(f"error: {message}", markup=False)
    return typer.Exit(code)


def probe_cmd(
    targets: list[str] = typer.Argument(..., help="http(s) URLs, or bare hosts (measured as https://HOST/)"),
    lab: bool = typer.Option(False, "--lab", help="run inside the lab's client namespace (root; re-executes there)"),
    tests: str = typer.Option(
        "default",
        "--tests",
        "-t",
        help="comma list of dns,tcp,tls,http,quic,fet,throughput,residual; 'all'; 'default' (all but residual)",
    ),
    timeout: float = typer.Option(10.0, "--timeout", help="seconds per network operation"),
    output: Path | None = typer.Option(None, "--output", "-o", help="write the JSON lines here, not to stdout"),
    resolver: str | None = typer.Option(None, "--resolver", help="system resolver IP[:PORT] (default: getaddrinfo)"),
    control_resolver: str | None = typer.Option(
        None, "--control-resolver", help="control resolver IP[:PORT] (default 198.18.9.1:53)"
    ),
    udp_resolver: str | None = typer.Option(None, "--udp-resolver", help="extra DNS-over-UDP lookup IP[:PORT]"),
    tcp_resolver: str | None = typer.Option(None, "--tcp-resolver", help="extra DNS-over-TCP lookup IP[:PORT]"),
    doh_url: str | None = typer.Option(None, "--doh-url", help="extra DNS-over-HTTPS lookup (RFC 8484 URL)"),
    control_host: str | None = typer.Option(None, "--control-host", help="the control Host/SNI"),
    test_helper: str | None = typer.Option(
        None, "--test-helper", help="URL of an OONI Web Connectivity test helper (--lab: http://198.18.9.1:8080/)"
    ),
    in_path_control: bool = typer.Option(
        False,
        "--in-path-control",
        help="the older control from the probe itself through the censored path, not the test helper",
    ),
    cafile: Path | None = typer.Option(None, "--cafile", help="a CA file trusted besides the system store"),
    echo_port: int | None = typer.Option(None, "--echo-port", help="TCP echo port for the fet test (9000)"),
    quic_port: int | None = typer.Option(None, "--quic-port", help="UDP port for the quic test"),
    throughput_bytes: int | None = typer.Option(None, "--throughput-bytes", help="download size (1 MiB)"),
    throughput_seconds: float | None = typer.Option(None, "--throughput-seconds", help="download time cap (10)"),
    residual_interval: float | None = typer.Option(None, "--residual-interval", help="retry interval (1 s)"),
    residual_seconds: float | None = typer.Option(None, "--residual-seconds", help="residual time cap (120 s)"),
    seed: int | None = typer.Option(None, "--seed", help="seed for the fet test's random payloads"),
    fingerprints: Path | None = typer.Option(
        None, "--fingerprints", help="folder with ooni/blocking-fingerprints CSVs"
    ),
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        metavar="YYYY-MM-DD",
        help="with --lab: the day the lab's censor must be as of (lab up --as-of); refused if it is not",
    ),
    lab_state_dir: Path = typer.Option(DEFAULT_STATE_DIR, "--lab-state-dir", hidden=True),
    in_lab: bool = typer.Option(False, "--in-lab", hidden=True),
) -> None:
    """Measure targets like OONI Web Connectivity (plus QUIC, FET, throughput, residual) and classify them."""
    from chokepoint.probe.probes.common import ProbeError, parse_host_port, parse_target
    from chokepoint.probe.runner import ProbeConfig, lab_config, parse_tests

    try:
        for target in targets:
            parse_target(target)
        selected = parse_tests(tests)
        overrides: dict = {"tests": selected, "timeout": timeout}
        for key, text, port in (
            ("system_resolver", resolver, 53),
            ("control_resolver", control_resolver, 53),
            ("udp_resolver", udp_resolver, 53),
            ("tcp_resolver", tcp_resolver, 53),
        ):
            if text is not None:
                overrides[key] = parse_host_port(text, port)
        for key, value in (
            ("doh_url", doh_url),
            ("control_host", control_host),
            ("echo_port", echo_port),
            ("quic_port", quic_port),
            ("throughput_bytes", throughput_bytes),
            ("throughput_seconds", throughput_seconds),
            ("residual_interval", residual_interval),
            ("residual_seconds", residual_seconds),
            ("fet_seed", seed),
        ):
            if value is not None:
                overrides[key] = value
        if test_helper is not None and in_path_control:
            raise ProbeError("--test-helper and --in-path-control exclude each other")
        if test_helper is not None:
            if not test_helper.startswith(("http://", "https://")):
                raise ProbeError(f"--test-helper needs an http(s) URL, not {test_helper!r}")
            overrides["test_helper"] = test_helper
        if in_path_control:
            overrides["test_helper"] = None
        if cafile is not None:
            if not cafile.is_file():
                raise ProbeError(f"{cafile}: no such CA file")
            overrides["cafile"] = str(cafile.resolve())
        if fingerprints is not None:
            overrides["fingerprints"] = _load_fingerprints(fingerprints)
        if as_of is not None and not (lab or in_lab):
            raise ProbeError("--as-of checks the lab censor's day: use it with --lab")
        if in_lab:
            overrides["annotations"] = _lab_annotations(lab_state_dir)
        config = lab_config(**overrides) if in_lab else ProbeConfig(**overrides)
    except ProbeError as exc:
        raise _fail(EXIT_USAGE, f"{exc}; nothing was measured")

    if lab and not in_lab:
        raise typer.Exit(_reexec_in_lab(lab_state_dir, output, as_of))
    _run(targets, config, output)


def _load_fingerprints(directory: Path):
    from chokepoint.probe.fingerprints import FingerprintDB, MalformedFingerprint
    from chokepoint.probe.probes.common import ProbeError

    try:
        return FingerprintDB.load(directory)
    except (OSError, MalformedFingerprint) as exc:
        raise ProbeError(f"cannot load fingerprints from {directory}: {exc}") from None


def _child_argv(output: Path | None) -> list[str]:
    """This invocation's arguments for the child: --lab replaced by --in-lab, -o made absolute."""
    args = list(sys.argv[1:])
    out: list[str] = []
    skip = False
    for index, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == "--lab":
            continue
        if arg in ("-o", "--output") and index + 1 < len(args):
            out += [arg, str(Path(args[index + 1]).resolve())]
            skip = True
            continue
        if arg.startswith("--output="):
            out.append(f"--output={Path(arg.split('=', 1)[1]).resolve()}")
            continue
        out.append(arg)
    if "probe" not in out:  # not started as `chokepoint probe ...`: the arguments cannot be replayed
        raise _fail(EXIT_USAGE, "--lab needs the command line `chokepoint probe ... --lab`")
    return [sys.executable, "-m", "chokepoint.cli", *out, "--in-lab"]


def _lab_annotations(state_dir: Path) -> tuple[tuple[str, str], ...]:
    """The lab censor's profile and day, for the measurement's annotations (empty when unreadable)."""
    from chokepoint.lab.state import LabState, StateError

    try:
        state = LabState.load(state_dir)
    except StateError:
        return ()
    if state is None:
        return ()
    out = [("chokepoint_profile", state.profile or "")]
    if state.as_of:
        out.append(("chokepoint_as_of", state.as_of))
    return tuple(out)


def _reexec_in_lab(state_dir: Path, output: Path | None, as_of: str | None = None) -> int:
    from chokepoint.lab import system
    from chokepoint.lab.state import LabState, StateError

    if os.geteuid() != 0:
        raise _fail(EXIT_SYSTEM, f"--lab runs the probe inside the {CLIENT_NAMESPACE} namespace, which needs root")
    try:
        state = LabState.load(state_dir)
    except StateError as exc:
        raise _fail(EXIT_NO_LAB, f"the lab state is unreadable: {exc}")
    if state is None:
        raise _fail(EXIT_NO_LAB, f"no lab is up ({state_dir} has no state.json); run `chokepoint lab up` first")
    if as_of is not None and state.as_of != as_of:
        raise _fail(
            EXIT_USAGE,
            f"the lab's censor is {state.profile} as of {state.as_of or 'its default day'}, not {as_of}; "
            f"bring it up with `chokepoint lab up --profile {state.profile} --as-of {as_of}`",
        )
    try:
        namespace = state.namespace("client")
    except (KeyError, ValueError):
        namespace = CLIENT_NAMESPACE
    argv = _child_argv(output)
    try:
        return system.run_foreground(argv, netns=namespace)
    except system.CommandError as exc:
        raise _fail(EXIT_SYSTEM, str(exc))


def _summary(measurement) -> str:
    tk = measurement.web_connectivity
    found = [t["technique"] for t in (tk.x_chokepoint.techniques or ())] if tk.x_chokepoint else []
    blocking = tk.blocking if tk.blocking is not None else "null"
    accessible = tk.accessible if tk.accessible is not None else "null"
    return (
        f"{measurement.input}: blocking={blocking} accessible={accessible} "
        f"techniques={','.join(found) or '-'} ({measurement.test_runtime:.1f} s)"
    )


def _run(targets: list[str], config, output: Path | None) -> None:
    from chokepoint.probe.probes.common import ProbeError
    from chokepoint.probe.runner import run

    logging.getLogger("quic").setLevel(logging.CRITICAL)  # aioquic logs every failed handshake as an error
    try:
        stream = open(output, "w", encoding="utf-8") if output else sys.stdout
    except OSError as exc:
        raise _fail(EXIT_USAGE, f"cannot write {output}: {exc.strerror or exc}")
    try:
        for target in targets:
            measurement = run(target, config)
            try:
                stream.write(measurement.dumps() + "\n")
                stream.flush()
            except BrokenPipeError:  # `chokepoint probe ... | head`: the reader left, stop quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return
            except OSError as exc:
                raise _fail(EXIT_SYSTEM, f"cannot write the measurement of {target}: {exc.strerror or exc}")
            err.print(_summary(measurement), markup=False)
    except ProbeError as exc:
        raise _fail(EXIT_USAGE, str(exc))
    except KeyboardInterrupt:
        raise _fail(EXIT_INTERRUPTED, "interrupted; the measurements written so far are complete")
    finally:
        if output:
            stream.close()
