"""How far ``chokepoint analyze`` agrees with nDPI on nDPI's own test captures.

Runs ``chokepoint analyze CAPTURE --format eve`` on every capture in ``../shared/data/ndpi/pcap``,
matches its flows to nDPI's regression labels (``../shared/data/ndpi/result/<capture>.out``) per
5-tuple and prints: one row per capture and the totals, agreement per protocol, every disagreement
with its reason, and the labels left out of the score. Only nDPI flows with ``Confidence: DPI`` whose
protocol we dissect are scored (see ``chokepoint.compare.ndpi``). The target is >= 95 %.

It is a report: it always exits 0.

    .venv/bin/python bench/ndpi_agreement.py [--json FILE] [--flows] [--keep DIR] [--profile NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from chokepoint.compare.corpus import AnalyzeFailed, CaptureAgreement, agreement_for, chokepoint_command, ndpi_corpus
from chokepoint.compare.ndpi import SCORED_CHECKS, TARGET_PERCENT, AgreementReport

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared/data folder")
    parser.add_argument("--json", type=Path, help="also write the full report here")
    parser.add_argument("--flows", action="store_true", help="print every flow of every capture")
    parser.add_argument("--keep", type=Path, help="keep our EVE outputs in this folder")
    parser.add_argument("--profile", help="passed to analyze --profile (default: analyze's own)")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)

    if not (args.data / "ndpi" / "pcap").is_dir():
        console.print(f"[yellow]../shared/data not found: {args.data / 'ndpi'} - nothing to compare")
        return 0
    entries, unpaired = ndpi_corpus(args.data)
    if unpaired:
        console.print(f"[yellow]without a partner (skipped):[/] {', '.join(unpaired)}")
    try:
        command = chokepoint_command()
    except AnalyzeFailed as exc:
        console.print(f"[red]cannot run analyze:[/] {exc}")
        return 0

    results: list[CaptureAgreement] = []
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ndpi-agreement-") as scratch:
        workdir = args.keep or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        with console.status("") as status:
            for n, entry in enumerate(entries, 1):
                status.update(f"analyze {entry.capture.name} ({n}/{len(entries)})")
                start = time.perf_counter()
                results.append(agreement_for(entry, workdir, profile=args.profile, command=command))
                seconds[entry.capture.name] = time.perf_counter() - start
    total = AgreementReport.combine(r.report for r in results)

    console.print(_captures_table(results, total, seconds))
    if args.flows:
        for result in results:
            console.print(_flows_table(result))
    console.print(_protocols_table(total))
    console.print(_checks_table(total))
    _print_disagreements(console, total)
    _print_exclusions(console, total)
    _print_errors(console, results)

    percent = total.percent
    verdict = (
        "no scored flows"
        if percent is None
        else (
            f"{total.agreed}/{total.scored} = {percent:.1f} % "
            + ("[green]meets[/]" if percent >= TARGET_PERCENT else "[red]misses[/]")
        )
    )
    console.print(
        f"\n[bold]Agreement with nDPI on the protocols we dissect:[/] {verdict} "
        f"the target of >= {TARGET_PERCENT:.0f} %  (analyze: {sum(seconds.values()):.1f} s "
        f"for {len(entries)} captures)"
    )
    if args.json:
        report = total.to_json()
        report["captures"] = [
            {
                **r.report.to_json(),
                "error": r.error,
                "exit_code": r.exit_code,
                "failed": r.failed,
                "seconds": round(seconds[r.name], 3),
            }
            for r in results
        ]
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        console.print(f"JSON report written to {args.json}")
    return 0


def _pct(agreed: int, total: int) -> str:
    return "-" if total == 0 else f"{100.0 * agreed / total:.1f}"


def _captures_table(results: list[CaptureAgreement], total: AgreementReport, seconds: dict[str, float]) -> Table:
    table = Table(title="Agreement with nDPI per capture (DPI-confidence flows of protocols we dissect)")
    for column in (
        "capture",
        "nDPI flows",
        "scored",
        "agreed",
        "%",
        "not dissected",
        "not DPI",
        "only ours",
        "analyze s",
        "note",
    ):
        table.add_column(column, justify="left" if column in ("capture", "note") else "right")
    for r in results:
        rep = r.report
        table.add_row(
            r.name,
            str(len(rep.flows)),
            str(rep.scored),
            str(rep.agreed),
            _pct(rep.agreed, rep.scored),
            str(sum(rep.excluded_labels.values())),
            str(sum(rep.excluded_confidence.values())),
            str(len(rep.unmatched_ours)),
            f"{seconds[r.name]:.2f}",
            r.error.strip().splitlines()[-1][:60] if r.error else "",
            style="red" if r.failed else None,
        )
    table.add_section()
    table.add_row(
        "total",
        str(sum(len(r.report.flows) for r in results)),
        str(total.scored),
        str(total.agreed),
        _pct(total.agreed, total.scored),
        str(sum(total.excluded_labels.values())),
        str(sum(total.excluded_confidence.values())),
        str(len(total.unmatched_ours)),
        f"{sum(seconds.values()):.2f}",
        "",
        style="bold",
    )
    return table


def _flows_table(result: CaptureAgreement) -> Table:
    table = Table(title=f"{result.name}: every nDPI flow")
    for column in ("flow", "nDPI label", "confidence", "expected", "ours", "nDPI name", "our names", "status"):
        table.add_column(column)
    colours = {"agree": "green", "disagree": "red"}
    for f in result.report.flows:
        table.add_row(
            f.flow,
            f.ndpi_label,
            f.confidence,
            f.expected or "",
            f.ours or "-",
            f.ndpi_name or "",
            ", ".join(f.our_names),
            f.status,
            style=colours.get(f.status, "dim"),
        )
    return table


def _protocols_table(total: AgreementReport) -> Table:
    table = Table(title="Per protocol (our app_proto that nDPI's label maps to)")
    for column in ("expected", "agreed", "scored", "%"):
        table.add_column(column, justify="left" if column == "expected" else "right")
    for name, (agreed, scored) in sorted(total.per_protocol.items(), key=lambda kv: -kv[1][1]):
        table.add_row(name, str(agreed), str(scored), _pct(agreed, scored))
    return table


def _checks_table(total: AgreementReport) -> Table:
    table = Table(title="Checks (scored ones decide a flow's agreement; the others are listed only)")
    for column in ("check", "scored", "agreed", "compared", "%"):
        table.add_column(column, justify="left" if column == "check" else "right")
    order = list(SCORED_CHECKS) + sorted(set(total.checks) - set(SCORED_CHECKS))
    for name in order:
        if name in total.checks:
            agreed, compared = total.checks[name]
            table.add_row(
                name, "yes" if name in SCORED_CHECKS else "no", str(agreed), str(compared), _pct(agreed, compared)
            )
    return table


def _print_disagreements(console: Console, total: AgreementReport) -> None:
    scored = [d for d in total.disagreements if d.scored]
    other = [d for d in total.disagreements if not d.scored]
    console.print(f"\n[bold]Disagreements that count ({len(scored)}):[/]")
    for d in scored:
        console.print(f"  {d}", markup=False, highlight=False)
    console.print(f"\n[bold]Field differences, not scored ({len(other)}):[/]")
    for d in other:
        console.print(f"  {d}", markup=False, highlight=False)


def _print_errors(console: Console, results: list[CaptureAgreement]) -> None:
    """Errors grouped by their text (the command line left out), so one broken import prints once."""
    groups: dict[str, list[str]] = {}
    for r in results:
        if r.error:
            first, _, rest = r.error.partition("\n")
            reason = rest.strip() or first
            groups.setdefault(reason, []).append(r.name)
    for reason, names in groups.items():
        console.print(f"\n[red]{len(names)} capture(s) without a full result:[/] {', '.join(names)}", highlight=False)
        console.print(reason, markup=False, highlight=False)


def _print_exclusions(console: Console, total: AgreementReport) -> None:
    labels = ", ".join(f"{k} x{v}" for k, v in sorted(total.excluded_labels.items(), key=lambda kv: (-kv[1], kv[0])))
    confidence = ", ".join(f"{k} x{v}" for k, v in sorted(total.excluded_confidence.items()))
    console.print(f"\n[bold]Not scored, protocols we do not dissect:[/] {labels or 'none'}", highlight=False)
    console.print(f"[bold]Not scored, confidence other than DPI:[/] {confidence or 'none'}", highlight=False)
    console.print(f"[bold]Our flows nDPI does not list:[/] {len(total.unmatched_ours)}", highlight=False)
    for line in total.unmatched_ours:
        console.print(f"  {line}", markup=False, highlight=False)


if __name__ == "__main__":
    raise SystemExit(main())
