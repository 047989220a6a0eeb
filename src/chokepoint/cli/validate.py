"""``chokepoint validate``: run the scenario catalogue in the lab and report the confusion matrix.

Exit codes: 0 the technique accuracy (probe scenarios) and the trace accuracy (trace scenarios) met the target
(95%); 1 one did not; 2 bad usage (an unknown profile
or scenario, a catalogue with an error, at file:line:column); 4 the lab is in use (a lab is up, or another
session holds the lab session lock); 5 no root, or the lab did not come up; 130 interrupted.
"""

from __future__ import annotations

import datetime
import platform
from pathlib import Path

import typer
from rich.console import Console

EXIT_BELOW_TARGET = 1
EXIT_USAGE = 2
EXIT_BUSY = 4
EXIT_SYSTEM = 5
EXIT_INTERRUPTED = 130
#: Where the ooni/blocking-fingerprints CSVs are looked for when --fingerprints is not given: a `shared/data`
#: folder beside the checkout (the project's layout), if present.
_SHARED_FINGERPRINTS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "fingerprints"

err = Console(stderr=True, soft_wrap=True, highlight=False)


def _fail(code: int, message: str) -> typer.Exit:
    err.print(f"error: {message}", markup=False)
    return typer.Exit(code)


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def validate_cmd(
    profiles: list[str] | None = typer.Option(
        None, "--profiles", "-p", help="only these profiles (comma list; 'none' = no censor)"
    ),
    scenarios: list[str] | None = typer.Option(
        None, "--scenarios", "-s", help="only these scenarios (comma list; shell patterns)"
    ),
    report_dir: Path | None = typer.Option(
        None, "--report", "-r", help="write report.json, report.html, the measurements and captures here"
    ),
    quick: bool = typer.Option(False, "--quick", help="the reduced CI set (a few minutes)"),
    catalogue: Path | None = typer.Option(None, "--catalogue", help="a scenario catalogue (default: bundled)"),
    fingerprints: Path | None = typer.Option(
        None,
        "--fingerprints",
        help="folder with ooni/blocking-fingerprints CSVs (default: "
        "../shared/data/fingerprints beside the checkout, if any)",
    ),
    seed: int = typer.Option(1, "--seed", help="the censor's seed (probabilistic rules)"),
    list_only: bool = typer.Option(False, "--list", help="list the selected scenarios and exit"),
    wait: float = typer.Option(
        900.0, "--wait", min=0.0, help="seconds to wait for the lab session lock (other lab users)"
    ),
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        metavar="YYYY-MM-DD",
        help="load the profiles as of this day (scenarios with their own as_of keep it; named dates are days)",
    ),
) -> None:
    """Run scenarios in the lab, compare the probe's classification with the censor's ground truth."""
    from rich.table import Table

    from chokepoint.validate.report import build_report, render_terminal, write_html, write_json
    from chokepoint.validate.runner import RunOptions, ValidationError, run_scenarios
    from chokepoint.validate.scenarios import CatalogueError, load_catalogue, select

    out = Console(soft_wrap=False, highlight=False, width=200 if not err.is_terminal else None)
    try:
        catalogue_items = load_catalogue(catalogue)
        chosen = select(catalogue_items, profiles=_split(profiles), names=_split(scenarios), quick=quick)
    except (CatalogueError, ValueError) as exc:
        raise _fail(EXIT_USAGE, str(exc))
    if not chosen:
        raise _fail(EXIT_USAGE, "no scenario selected")
    if as_of is not None:
        problem = _day_problem(as_of, chosen)
        if problem:
            raise _fail(EXIT_USAGE, problem)
    if list_only:
        table = Table(title=f"{len(chosen)} scenario(s)")
        for column in ("name", "profile", "as of", "mode", "target", "tests", "expected"):
            table.add_column(column)
        for s in chosen:
            table.add_row(
                s.name,
                s.profile or "-",
                s.as_of or as_of or "-",
                s.mode,
                s.target,
                ",".join(s.tests)
                if s.trace is None
                else f"trace {s.trace.protocol}, hops {s.trace.hops_client}/{s.trace.hops_server}",
                s.expected.technique if s.trace is None else s.trace.outcome,
            )
        out.print(table)
        return
    if fingerprints is None and _SHARED_FINGERPRINTS.is_dir():
        fingerprints = _SHARED_FINGERPRINTS.resolve()
    if fingerprints is not None and not fingerprints.is_dir():
        raise _fail(EXIT_USAGE, f"{fingerprints}: no such folder")
    workdir = None
    if report_dir is not None:
        workdir = report_dir / "artifacts"
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _fail(EXIT_USAGE, f"cannot create {workdir}: {exc.strerror or exc}")
    options = RunOptions(fingerprints=fingerprints, seed=seed, workdir=workdir, lock_timeout=wait, as_of=as_of)
    started = datetime.datetime.now(datetime.UTC)

    def show(result) -> None:
        mark = "[green]ok[/]" if result.passed else "[red]MISS[/]"
        if result.scenario.kind == "trace":
            got, exp = result.trace_got or {}, result.trace_expected or {}
            err.print(
                f"    {mark} truth {exp.get('outcome')} {exp.get('censor')} {exp.get('path')}, trace "
                f"{'error' if result.error else got.get('outcome')} {got.get('censor')} {got.get('path')} "
                f"({result.duration_s:.1f} s)",
                markup=True,
            )
            return
        err.print(
            f"    {mark} truth {result.truth_class}, classified {result.classified_class}, "
            f"blocking={result.blocking} accessible={result.accessible} ({result.duration_s:.1f} s)",
            markup=True,
        )

    try:
        results = run_scenarios(chosen, options, progress=lambda m: err.print(m, markup=False), on_result=show)
    except ValidationError as exc:
        busy = "already up" in str(exc) or "session lock" in str(exc)
        raise _fail(EXIT_BUSY if busy else EXIT_SYSTEM, str(exc))
    except KeyboardInterrupt:
        raise _fail(EXIT_INTERRUPTED, "interrupted; the lab was taken down")
    meta = {
        "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "scenarios": len(results),
        "quick": quick,
        "seed": seed,
        "fingerprints": str(fingerprints) if fingerprints else "none",
        "as_of": as_of or "each profile's last day (scenarios' own as_of kept)",
        "host": platform.node(),
    }
    report = build_report(results, meta)
    render_terminal(report, out)
    if report_dir is not None:
        json_path = write_json(report, report_dir / "report.json")
        html_path = write_html(report, report_dir / "report.html")
        err.print(f"wrote {json_path} and {html_path}", markup=False)
    if not report.met():
        raise typer.Exit(EXIT_BELOW_TARGET)


def _day_problem(as_of: str, chosen) -> str | None:
    """Why ``--as-of`` cannot apply to the chosen scenarios (malformed, or outside a profile's dates)."""
    from chokepoint.policy import PolicyError, load_profile
    from chokepoint.policy.profile import named_dates

    for s in chosen:
        if s.profile and not s.as_of and s.profile not in named_dates():
            try:
                load_profile(s.profile, as_of=as_of)
            except PolicyError as exc:
                return f"scenario {s.name}: {exc}"
    return None
