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
err = Console(stderr=True, soft_wrap=True)

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
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        metavar="DATE[,DATE...]",
        help="dated profiles: what was in force that day; several days (comma-separated) or 'eras' (each profile's "
        "era starts) run the matrix through time",
    ),
    timeline: str | None = typer.Option(
        None, "--timeline", metavar="FROM..TO", help="run the matrix at FROM, FROM+STEP, ... up to TO (days, inclusive)"
    ),
    step: str | None = typer.Option(
        None, "--step", metavar="N[dwmy]", help="with --timeline: 10d, 2w, 1m (default), 1y"
    ),
    reuse: bool = typer.Option(
        True,
        "--reuse/--no-reuse",
        help="several days: a day whose loaded profile equals the previous day's copies its cells (marked reused)",
    ),
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
        days = _days(names, as_of, timeline, step)
        if days:
            as_of = None
        for name in names:
            load_profile(name, as_of=as_of)
        for t in chosen:
            transports.get(t)  # a bad name or description file is refused before any lab exists
    except (PolicyError, KeyError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_USAGE)
    config = MatrixConfig(
        profiles=tuple(names),
        transports=tuple(chosen),
        modes=tuple(dict.fromkeys(m.value for m in mode)),
        repeat=repeat,
        attempts=attempts,
        size=size,
        timeout_s=timeout,
        seed=seed,
        port=port,
        as_of=as_of,
        days=days,
        reuse=reuse,
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
    reused = [c for c in doc["cells"] if c.get("reused_from")]
    if reused:
        err.print(
            f"{len(reused)} cells not run: copied from an earlier day with the same loaded profile (reused_from; "
            "--no-reuse runs every day)",
            markup=False,
        )
    for path in paths.get("timelines", ()):
        err.print(f"wrote {path}", markup=False)
    err.print(
        f"{len(doc['cells'])} cells in {doc['wall_s']:.0f} s; {len(report.disagreements(doc))} disagree with the "
        f"literature; wrote {out_dir / 'matrix.json'}, {paths['html']}, {paths['png']}",
        markup=False,
    )
    if json_out:
        out.print_json(json.dumps(doc))
    if code:
        raise typer.Exit(code)


def _days(names: list[str], as_of: str | None, timeline: str | None, step: str | None) -> dict[str, tuple[str, ...]]:
    """The days each profile runs at for several days (``--as-of D1,D2`` / ``eras`` / ``--timeline``); empty for
    one day or none (the single-day matrix). A ``PolicyError`` for a malformed value or a day outside a profile's
    coverage: nothing has run yet."""
    from chokepoint.policy import PolicyError
    from chokepoint.policy.timeline import plan

    if step is not None and timeline is None:
        raise PolicyError(f"--step {step}", 0, 0, "--step needs --timeline FROM..TO")
    if timeline is None and (as_of is None or ("," not in as_of and as_of.strip() != "eras")):
        return {}
    the_plan = plan(names, as_of=as_of, timeline=timeline, step=step or "1m")
    outside = the_plan.skipped()
    if outside:
        what = f"--as-of {as_of}" if as_of else f"--timeline {timeline}"
        raise PolicyError(what, 0, 0, "; ".join(outside))
    return {name: tuple(d.isoformat() for d in the_plan.per_profile[name].days) for name in names}


def _table(doc) -> None:
    from chokepoint.matrix import report

    cols = report.columns(doc)
    index = report.index(doc)
    table = Table(title="circumvention matrix", show_lines=False)
    console = out if out.is_terminal else Console(width=max(120, 14 * (len(cols) + 2)))
    table.add_column("transport")
    modes = len(doc["config"]["modes"])
    for profile, mode in cols:
        table.add_column(profile if modes == 1 or profile == "baseline" else f"{profile}/{mode}")
    if any(c.get("reused_from") for c in doc["cells"]):
        table.caption = "↺ not run: the cell of an earlier day with the same loaded profile"
    for transport in report.rows(doc):
        row = [transport]
        for profile, mode in cols:
            cell = index.get((transport, profile, mode))
            if cell is None:
                row.append("")
                continue
            mark = (" ≠" if cell.get("agrees") is False else "") + (" ↺" if cell.get("reused_from") else "")
            row.append(f"[{_STYLE[cell['outcome']]}]{cell['outcome']}{mark}[/]")
        table.add_row(*row)
    console.print(table)
