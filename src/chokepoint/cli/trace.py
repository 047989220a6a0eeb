"""``chokepoint trace TARGET --domain D`` (run a censorship traceroute) and ``chokepoint trace analyze TEST CONTROL``
(the same analysis for captures in CenTrace's layout). A thin front-end over :mod:`chokepoint.trace`.

Exit codes: 0 done (whatever the outcome); 2 bad usage, an unreadable capture or one without probes; 3 no
raw-socket rights (one line saying so).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["render", "trace_cmd"]

EXIT_USAGE = 2
EXIT_NO_RIGHTS = 3
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


class Format(StrEnum):
    table = "table"
    json = "json"


class Protocol(StrEnum):
    http = "http"
    tls = "tls"
    dns = "dns"


def render(report, title: str) -> None:
    """The hop table and the verdict."""
    table = Table(title=title)
    table.add_column("TTL", justify="right")
    table.add_column("test")
    table.add_column("control")
    for hop in report.hops():
        marker = " ◀" if hop["ttl"] == report.interference_ttl else ""
        table.add_row(f"{hop['ttl']}{marker}", "\n".join(hop["test"]), "\n".join(hop["control"]))
    out.print(table)
    data = report.to_dict()
    censor = data["censor"] or {}
    out.print(
        f"outcome: {data['outcome']}"
        + (f"; censor at hop {censor.get('ttl')} ({censor.get('ip')})" if censor else "")
        + f"; path: {data['path']}"
        + (
            f"; interference: {data['interference']} from TTL {data['interference_ttl']}"
            if data["interference"]
            else ""
        )
        + (
            f"; copies the probe's TTL: {'yes' if data['copies_probe_ttl'] else 'no'}"
            if data["copies_probe_ttl"] is not None
            else ""
        ),
        markup=False,
    )
    if data["detail"]:
        out.print(data["detail"], markup=False)


def trace_cmd(
    target: str = typer.Argument(..., help="the server to trace to (IPv4 address or name), or `analyze`"),
    captures: list[Path] = typer.Argument(None, help="with `analyze`: TEST.pcap CONTROL.pcap"),
    domain: str | None = typer.Option(None, "--domain", "-d", help="the test domain (Host, SNI or DNS name)"),
    control: str = typer.Option("example.com", "--control", "-c", help="the control domain"),
    protocol: Protocol = typer.Option(Protocol.http, "--protocol", "-p", help="http (Host), tls (SNI) or dns"),
    port: int | None = typer.Option(None, "--port", help="server port (default 80, 443 or 53)"),
    max_ttl: int = typer.Option(30, "--max-ttl", help="highest TTL to probe"),
    repeats: int = typer.Option(3, "--repeats", help="probes per TTL and domain"),
    timeout: float = typer.Option(2.0, "--timeout", help="seconds to wait for any answer to one probe"),
    pcap: Path | None = typer.Option(
        None, "--pcap", help="write the two captures here in CenTrace's layout (<ip>_<test>_<sent domain>.pcap)"
    ),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table or json"),
) -> None:
    """Censorship traceroute (CenTrace): TTL-limited requests for a test and a control domain, to find the hop
    where the censor sits and whether it is in-path or on-path. `chokepoint trace analyze TEST CONTROL` analyses
    captures instead."""
    from chokepoint.trace import TraceInputError, analyze_packets, read_capture
    from chokepoint.trace.live import Options, TraceRefused, run

    if target == "analyze":
        if not captures or len(captures) != 2:
            err.print("usage: chokepoint trace analyze TEST.pcap CONTROL.pcap [--format json]")
            raise typer.Exit(EXIT_USAGE)
        try:
            report = analyze_packets(read_capture(captures[0]), read_capture(captures[1]))
        except TraceInputError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(EXIT_USAGE) from None
        title = f"{captures[0].name} vs {captures[1].name}"
    else:
        if captures:
            err.print(f"unexpected arguments: {' '.join(map(str, captures))}", markup=False)
            raise typer.Exit(EXIT_USAGE)
        if not domain:
            err.print("--domain is required: the test domain to put in the Host header, SNI or DNS query")
            raise typer.Exit(EXIT_USAGE)
        opts = Options(target, domain, control, protocol.value, port, max_ttl, repeats, timeout)
        try:
            say = (lambda line: err.print(line, markup=False)) if fmt == Format.table else (lambda _: None)
            report = run(opts, pcap_dir=pcap, say=say)
        except TraceRefused as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(EXIT_NO_RIGHTS if "rights" in str(exc) else EXIT_USAGE) from None
        except TraceInputError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(EXIT_USAGE) from None
        title = f"trace {target}: {domain} vs {control} ({protocol.value})"
    if fmt == Format.json:
        out.print(json.dumps(report.to_dict(), indent=2), markup=False)
    else:
        render(report, title)
