"""``chokepoint detect CAPTURE... [--format table|json]``: injected packets in captures, and which documented
injector they are consistent with. A thin front-end over :mod:`chokepoint.probe.detect`.

Exit codes (as ``chokepoint analyze``): 0 done (with or without findings); 2 a missing file, a file that is not a
capture, or an unreadable fingerprint folder; 3 a capture was truncated or damaged (read up to the damage).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from chokepoint.dissect.errors import Malformed
from chokepoint.packet.pcap import CaptureFormatError
from chokepoint.probe.activeprobes import ProbeReport, find_active_probes
from chokepoint.probe.detect import DetectReport, Finding, detect_captures
from chokepoint.probe.fingerprints import FingerprintDB

__all__ = ["DetectFormat", "detect_cmd", "render_probes", "render_table"]

EXIT_USAGE = 2
EXIT_TRUNCATED = 3


class DetectFormat(StrEnum):
    table = "table"
    json = "json"


def _flow(f: Finding) -> str:
    def end(ip: str, port: int) -> str:
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    return f"{f.proto} {end(f.client, f.client_port)} → {end(f.server, f.server_port)}"


def _candidates(f: Finding, shown: int) -> str:
    lines = []
    for c in f.candidates[:shown]:
        names = "/".join(c.personalities)
        if c.consistent:
            matched = [f"{k.field} {k.observed}" for k in c.checks if k.ok and k.weight]
            lines.append(f"{names}: score {c.score}, consistent ({'; '.join(matched)})")
        else:
            lines.append(
                f"{names}: score {c.score}, {c.mismatches} mismatch{'es' if c.mismatches > 1 else ''} "
                f"({'; '.join(c.mismatched()[:2])})"
            )
    return "\n".join(lines)


def render_table(console: Console, report: DetectReport, *, candidates: int = 3, evidence: int = 4) -> None:
    """The findings as a rich table, then the one-line summary."""
    if report.findings:
        table = Table(title="Injected packets", header_style="bold", show_lines=True)
        table.add_column("#", justify="right")
        table.add_column("kind")
        table.add_column("flow (client → server)", no_wrap=True)
        table.add_column("seen", overflow="fold", ratio=2)
        table.add_column("evidence", overflow="fold", ratio=3)
        table.add_column("consistent with (best first)", overflow="fold", ratio=3)
        for i, f in enumerate(report.findings, 1):
            seen = f.summary + "\n" + "\n".join(f"{k}: {v}" for k, v in f.fingerprint)
            more = len(f.evidence) - evidence
            proof = "\n".join(f.evidence[:evidence]) + (f"\n(+{more} more)" if more > 0 else "")
            table.add_row(str(i), f.kind, _flow(f), seen, proof, _candidates(f, candidates))
        console.print(table)
    console.print(report.message(), highlight=False)


def render_probes(console: Console, probes: ProbeReport) -> None:
    """Active probes (Alice et al., IMC 2020) seen in the captures, with their fingerprint."""
    if not probes.probes:
        return
    summary = probes.summary()
    table = Table(title="Active probes (replays and random probes to a server)", header_style="bold")
    for column in ("type", "prober → server", "length", "TTL", "reaction", "replays"):
        table.add_column(column)
    for p in probes.probes:
        table.add_row(
            p.type,
            f"{p.client}:{p.client_port} → {p.server}:{p.server_port}",
            str(p.length),
            str(p.ttl),
            p.reaction + (f" ({p.bytes_back} B)" if p.bytes_back else ""),
            p.origin,
        )
    console.print(table)
    console.print(
        f"{summary['probes']} active probes from {summary['sources']} addresses: {summary['by_type']}; TTL "
        f"{summary['ttl_range'][0]}-{summary['ttl_range'][1]}; {summary['ports_in_32768_60999']:.0%} of source ports "
        f"in 32768-60999; TCP timestamps: {summary['tsval_clock']}",
        highlight=False,
    )


def detect_cmd(
    captures: list[Path] = typer.Argument(..., help="pcap or pcapng files", exists=False),
    fmt: DetectFormat = typer.Option(DetectFormat.table, "--format", "-f", help="table, or json"),
    fingerprints: Path | None = typer.Option(
        None,
        "--fingerprints",
        help="a folder with ooni/blocking-fingerprints fingerprints_dns.csv and "
        "fingerprints_http.csv (DNS answers and blockpages)",
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="write the report here instead of stdout"),
    candidates: int = typer.Option(3, "--candidates", min=1, help="table: candidates shown per finding"),
) -> None:
    """Find injected RSTs, DNS answers, blockpages and ICMP errors, and the presets each is consistent with; and
    active probes (replays and random probes from a censor's prober, Alice et al. IMC 2020)."""
    err = Console(stderr=True, soft_wrap=True)
    for path in captures:
        if not path.is_file():
            err.print(f"[red]error:[/] {path}: no such file", highlight=False)
            raise typer.Exit(EXIT_USAGE)
    db = None
    if fingerprints is not None:
        try:
            db = FingerprintDB.load(fingerprints)
        except (OSError, Malformed) as exc:
            err.print(f"[red]error:[/] fingerprints: {exc}", highlight=False)
            raise typer.Exit(EXIT_USAGE)
    try:
        report = detect_captures(captures, fingerprints=db)
        probes = find_active_probes(captures)
    except CaptureFormatError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    out_file = open(output, "w", encoding="utf-8") if output else None
    try:
        if fmt is DetectFormat.json:
            stream = out_file or sys.stdout
            stream.write(json.dumps(report.to_json() | {"active_probes": probes.to_json()}, indent=2) + "\n")
        else:
            console = Console(file=out_file, width=200) if out_file else Console(width=None if err.is_terminal else 200)
            render_table(console, report, candidates=candidates)
            render_probes(console, probes)
    finally:
        if out_file:
            out_file.close()
    if fmt is DetectFormat.json or output:
        err.print(report.message(), highlight=False)
    damaged = [c for c in report.captures if c.truncated]
    for capture in damaged:
        err.print(
            f"[yellow]warning:[/] {capture.error} — processed {capture.frames} frames up to the damage", highlight=False
        )
    if damaged:
        raise typer.Exit(EXIT_TRUNCATED)
