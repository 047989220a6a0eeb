"""``chokepoint analyze`` and ``chokepoint demo``: what a censor would do with captures, and why.

Exit codes: 0 success; 1 a profile or rule file was rejected; 2 bad usage or a file that is not a
capture; 3 a capture was truncated or damaged (processed up to the damage, reported).
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from enum import StrEnum
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from typer.core import TyperCommand

from chokepoint.backends.offline import CaptureFormatError, analyze
from chokepoint.backends.raycluster import AUTO, LOCAL, ProfileSpec
from chokepoint.output.table import print_report
from chokepoint.policy import PolicyError, load_profile, load_rules_file

err = Console(stderr=True, soft_wrap=True)

EXIT_POLICY = 1
EXIT_USAGE = 2
EXIT_TRUNCATED = 3
#: Captures larger than this get a progress bar (when stderr is a terminal).
PROGRESS_MIN_BYTES = 8 * 1024 * 1024


class OutputFormat(StrEnum):
    table = "table"
    eve = "eve"
    parquet = "parquet"


def parse_params(items: list[str]) -> dict[str, str]:
    """``--param RULE_ID.PARAM=VALUE`` options as the loader's overrides (a later one wins); exit 2 when one
    has no ``=``."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            err.print(f"error: --param {item}: expected RULE_ID.PARAM=VALUE", markup=False, highlight=False)
            raise typer.Exit(EXIT_USAGE)
        out[key.strip()] = value
    return out


def _load_policy(
    profile: str | None, rules: Path | None, params: dict[str, str] | None = None, as_of: str | None = None
):
    if profile and rules:
        err.print("[red]error:[/] give either --profile or --rules, not both")
        raise typer.Exit(EXIT_USAGE)
    try:
        if rules:
            return load_rules_file(rules, params=params, as_of=as_of)
        return load_profile(profile or "demo", params=params, as_of=as_of)
    except PolicyError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        err.print("nothing was analysed: the profile was rejected as a whole")
        raise typer.Exit(EXIT_POLICY)


def ray_address_optional(args: list[str]) -> list[str]:
    """``--ray`` not followed by an address becomes ``--ray local`` (Typer has no options with an optional value).
    An address is ``auto``, ``local`` or has a port (``host:port``, ``ray://host:port``); anything else after
    ``--ray`` (a capture, another option, nothing) is left where it is."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg == "--ray":
            following = out[i + 1] if i + 1 < len(out) else None
            if following is None or not (following in (AUTO, LOCAL) or ":" in following):
                out[i] = f"--ray={LOCAL}"
    return out


class AnalyzeCommand(TyperCommand):
    """``analyze``, whose ``--ray`` takes an optional address (:func:`ray_address_optional`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, ray_address_optional(args))


def analyze_cmd(
    captures: list[Path] = typer.Argument(..., help="pcap or pcapng files", exists=False),
    profile: str | None = typer.Option(None, "--profile", "-p", help="bundled profile name or a profile file"),
    rules: Path | None = typer.Option(None, "--rules", "-r", help="a rule file (same format as a profile)"),
    fmt: OutputFormat = typer.Option(
        OutputFormat.table, "--format", "-f", help="table, eve (JSON lines) or parquet (needs -o)"
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="write the report here instead of stdout"),
    workers: int = typer.Option(
        1, "--workers", "-w", min=1, help="processes; flows are sharded by hash (with --ray: shards per capture)"
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray",
        metavar="[ADDRESS]",
        help="run on Ray: alone (or local), a Ray started here for the run with this machine's CPUs; with "
        "host:port of a cluster's head, on that cluster; auto: RAY_ADDRESS or a head on this machine",
    ),
    limit: int = typer.Option(200, "--limit", help="table: at most this many flow rows"),
    stats: bool = typer.Option(
        False, "--stats", help="eve: end each capture's records with an event_type stats record (flow-table counters)"
    ),
    param: list[str] = typer.Option(
        [],
        "--param",
        metavar="RULE.PARAM=VALUE",
        help="override a rule parameter (repeatable), e.g. tsg-unknown-high-volume.after_s=3; the value is YAML",
    ),
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        metavar="YYYY-MM-DD",
        help="what the profile had in force that day (default: the last day it covers)",
    ),
) -> None:
    """What would this censor do with these captures, and why."""
    if fmt is OutputFormat.parquet and output is None:
        err.print("[red]error:[/] --format parquet writes a file: give it with --output/-o")
        raise typer.Exit(EXIT_USAGE)
    for path in captures:
        if not path.is_file():
            err.print(f"[red]error:[/] {path}: no such file")
            raise typer.Exit(EXIT_USAGE)
    params = parse_params(param)
    loaded = _load_policy(profile, rules, params, as_of)
    paths = [str(p) for p in captures]
    total = sum(os.path.getsize(p) for p in paths)
    try:
        if ray_address is not None:
            spec = ProfileSpec.of(profile, str(rules) if rules else None, params, as_of)
            results = _on_ray(paths, spec, ray_address, workers)
        elif total >= PROGRESS_MIN_BYTES and err.is_terminal:
            results = _with_progress(paths, loaded, workers, total)
        else:
            results = analyze(paths, loaded, workers=workers)
    except CaptureFormatError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    if fmt is OutputFormat.parquet:
        _write_parquet(results, output)
    else:
        with open(output, "w", encoding="utf-8") if output else nullcontext(sys.stdout) as stream:
            _write_text(fmt, results, stream, to_file=output is not None, stats=stats, limit=limit)
    damaged = [r for r in results if r.truncated]
    for res in damaged:
        err.print(f"[yellow]warning:[/] {res.error} — processed {res.frames} frames up to the damage", highlight=False)
    if damaged:
        raise typer.Exit(EXIT_TRUNCATED)


def _write_text(fmt: OutputFormat, results, stream, *, to_file: bool, stats: bool, limit: int) -> None:
    """EVE lines (and with ``stats`` each capture's stats record), or the table and summary, to ``stream``."""
    if fmt is OutputFormat.eve:
        for res in results:
            for line in res.iter_lines():
                stream.write(line + "\n")
            if stats:
                stream.write(res.stats_line() + "\n")
        return
    records = (r for res in results for r in res.iter_records())
    console = Console(file=stream, width=180) if to_file else Console(width=None if err.is_terminal else 180)
    print_report(console, results, records, limit=limit)


def _write_parquet(results, output: Path) -> None:
    try:
        from chokepoint.output.parquet import write_parquet

        write_parquet(lambda: (r for res in results for r in res.iter_records()), output)
    except ImportError as exc:
        err.print(f"error: --format parquet needs pyarrow ({exc}): pip install 'chokepoint[scale]'", markup=False)
        raise typer.Exit(EXIT_USAGE)


def _on_ray(paths: list[str], spec: ProfileSpec, address: str, workers: int):
    """``analyze_on_ray``, its missing-Ray and no-cluster errors as one-line errors (exit 2)."""
    try:
        from chokepoint.backends.raycluster import analyze_on_ray

        return analyze_on_ray(paths, spec, address, shards=workers if workers > 1 else None)
    except ImportError as exc:
        err.print(f"error: --ray needs Ray ({exc}): pip install 'chokepoint[scale]'", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE)
    except ConnectionError as exc:
        where = "could not start a local Ray" if address == LOCAL else "no Ray cluster there"
        err.print(f"error: --ray {address}: {where} ({exc})", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE)


def _with_progress(paths, loaded, workers, total):
    done: dict[str, int] = {}
    with Progress(
        TextColumn("[bold]analyzing"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task("analyze", total=total)

        def progress(path: str, position: int) -> None:
            done[path] = position
            bar.update(task, completed=sum(done.values()))

        return analyze(paths, loaded, workers=workers, progress=progress)


def demo_cmd(
    out_dir: Path = typer.Option(Path("out"), "--out", help="where the generated capture is written"),
    profile: str = typer.Option("demo", "--profile", "-p"),
) -> None:
    """Generate the bundled demo capture and analyze it with a profile."""
    from chokepoint.packet.samples import write_demo_capture

    out_dir.mkdir(parents=True, exist_ok=True)
    path = write_demo_capture(out_dir / "demo.pcap")
    err.print(f"generated {path} (real TLS/QUIC/DNS/HTTP bytes from real client libraries)")
    analyze_cmd(
        [path],
        profile=profile,
        rules=None,
        fmt=OutputFormat.table,
        output=None,
        workers=1,
        ray_address=None,
        limit=200,
        stats=False,
        param=[],
        as_of=None,
    )
