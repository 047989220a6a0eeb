"""``chokepoint matrix``: every selected transport against every selected profile in the lab (root)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

out = Console()
err = Console(stderr=True)

EXIT_BAD_USAGE = 2
EXIT_LAB = 5
EXIT_INTERRUPTED = 130
_STYLE = {"works": "green", "blocked": "red", "degraded": "yellow", "error": "bright_black"}


class Mode(StrEnum):
    inline = "inline"
    mirror = "mirror"


def _split(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def matrix_cmd(
    profiles: list[str] = typer.Option([], "--profiles", "-p", help="profiles (comma-separated; default: all bundled)"),
    transports_: list[str] = typer.Option(
        [], "--transports", "-t", help="transports: bundled names or description files (default: all bundled)"
    ),
    repeat: int = typer.Option(1, "--repeat", "-n", min=1, max=50, help="runs per cell, each with fresh connections"),
    mode: list[Mode] = typer.Option([Mode.inline], "--mode", "-m", help="inline and/or mirror (repeatable)"),
    out_dir: Path = typer.Option(Path("matrix-out"), "-o", "--output", help="directory for matrix.json/html/png"),
    seed: int = typer.Option(1, "--seed", help="seed of the censors' RNG (a matrix can be repeated)"),
    attempts: int = typer.Option(4, "--attempts", min=1, max=20, help="downloads per run"),
    size: int = typer.Option(256 * 1024, "--size", min=1, help="bytes per download"),
    timeout: float = typer.Option(6.0, "--timeout", min=0.5, help="seconds per download"),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="server port (default: each transport's)"),
    as_of: str | None = typer.Option(None, "--as-of", metavar="DATE", help="dated profiles: what was in force then"),
    probe_time_scale: float = typer.Option(
        0.01, "--probe-time-scale", min=0.0001, help="factor on the active prober's documented delays"
    ),
    probe_max_delay: float = typer.Option(
        15.0, "--probe-max-delay", min=0.1, help="the prober sends no probe due later than this after its trigger (s)"
    ),
    json_out: bool = typer.Option(False, "--json", help="print matrix.json to stdout at the end"),
) -> None:
    """Run real circumvention transports against the censors: works / blocked / degraded / error per cell,
    with the censor's evidence and the published outcome beside it. Writes matrix.json (cell by cell),
    matrix.html, matrix.png and matrix.md to -o DIR."""
    from chokepoint import transports
    from chokepoint.matrix import report
    from chokepoint.matrix.model import MatrixConfig
    from chokepoint.matrix.run import Matrix
    from chokepoint.matrix.session import LabSession, SessionError
    from chokepoint.policy import PolicyError, list_profiles, load_profile

    names = _split(profiles) or list_profiles()
    chosen = _split(transports_) or list(transports.BUNDLED)
    try:
        for name in names:
            load_profile(name)
        specs = [transports.get(t) for t in chosen]
    except (PolicyError, KeyError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_USAGE)
    config = MatrixConfig(
        profiles=tuple(names),
        transports=tuple(s.name if "/" not in t else t for s, t in zip(specs, chosen)),
        modes=tuple(dict.fromkeys(m.value for m in mode)),
        repeat=repeat,
        attempts=attempts,
        size=size,
        timeout_s=timeout,
        seed=seed,
        port=port,
        as_of=as_of,
        probe_time_scale=probe_time_scale,
        probe_max_delay_s=probe_max_delay,
        probe_wait_s=probe_max_delay + 15.0,
        out_dir=out_dir,
    )
    session = LabSession(seed=seed, say=lambda line: err.print(line, markup=False))
    matrix = Matrix(config, session, say=lambda line: err.print(line, markup=False))
    code = 0
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    ) as bar:
        task = bar.add_task("lab up", total=matrix.total)
        try:
            session.up(need_tor=matrix.needs_tor())

            def progress(cell, done: int, total: int) -> None:
                bar.update(
                    task, completed=done, description=f"{cell.profile}/{cell.mode} {cell.transport}: {cell.outcome}"
                )

            matrix.run(progress)
        except SessionError as exc:
            err.print(f"error: {exc}", markup=False)
            code = EXIT_LAB
        except KeyboardInterrupt:
            err.print("interrupted: tearing the lab down; the cells measured so far are kept")
            code = EXIT_INTERRUPTED
        finally:
            session.down()
    doc = matrix.document()
    paths = report.render(doc, out_dir)
    _table(doc)
    err.print(
        f"{len(doc['cells'])} cells in {doc['wall_s']:.0f} s; {len(report.disagreements(doc))} disagree with the "
        f"literature; wrote {out_dir / 'matrix.json'}, {paths['html']}, {paths['png']}",
        markup=False,
    )
    if json_out:
        out.print_json(json.dumps(doc))
    if code:
        raise typer.Exit(code)


def _table(doc) -> None:
    from chokepoint.matrix import report

    cols = report.columns(doc)
    index = {(c["transport"], c["profile"], c["mode"]): c for c in doc["cells"]}
    table = Table(title="circumvention matrix", show_lines=False)
    table.add_column("transport")
    modes = len(doc["config"]["modes"])
    for profile, mode in cols:
        table.add_column(profile if modes == 1 or profile == "baseline" else f"{profile}/{mode}")
    for transport in report.rows(doc):
        row = [transport]
        for profile, mode in cols:
            cell = index.get((transport, profile, mode))
            if cell is None:
                row.append("")
                continue
            mark = " ≠" if cell.get("agrees") is False else ""
            row.append(f"[{_STYLE[cell['outcome']]}]{cell['outcome']}{mark}[/]")
        table.add_row(*row)
    out.print(table)
