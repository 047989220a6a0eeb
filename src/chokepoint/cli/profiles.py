"""``chokepoint profiles``: the bundled country profiles, listed and shown (thin: the data comes from
``chokepoint.policy.describe``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from chokepoint.policy import PolicyError, list_profiles, load_profile
from chokepoint.policy.describe import describe

profiles_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Country profiles: what each censor blocks, how it acts, where the facts come from.",
)
EXIT_POLICY = 1
EXIT_USAGE = 2


def _out() -> Console:
    return Console(soft_wrap=True, highlight=False)


def _load(name: str, as_of: str | None = None):
    try:
        return load_profile(name, as_of=as_of)
    except PolicyError as exc:
        Console(stderr=True, soft_wrap=True).print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_POLICY) from None


@profiles_app.command("list")
def list_cmd() -> None:
    """One line per bundled profile: name, country, observed, rules, techniques."""
    table = Table(show_edge=False, pad_edge=False)
    for column in ("name", "country", "observed", "rules", "techniques"):
        table.add_column(column, no_wrap=column != "techniques")
    for name in list_profiles():
        d = describe(_load(name))
        table.add_row(name, d["country"], d["observed"], str(len(d["rules"])), ", ".join(d["techniques"]))
        for alias, day in d["named_dates"].items():
            table.add_row(f"  {alias}", d["country"], f"{name} as of {day}", "", "(a named date)")
    _out().print(table)


@profiles_app.command("show")
def show_cmd(
    name: str = typer.Argument(..., help="a bundled profile name (or named date, e.g. gfw-2023), or a profile file"),
    as_json: bool = typer.Option(False, "--json", help="print the description as JSON"),
    as_of: str | None = typer.Option(
        None, "--as-of", metavar="YYYY-MM-DD", help="what was in force that day (default: the last day covered)"
    ),
    timeline: bool = typer.Option(False, "--timeline", help="the dated behaviours as a table, by start date"),
) -> None:
    """Behaviours, dates, citations, uncertainties and example targets of one profile."""
    d = describe(_load(name, as_of))
    if timeline:
        if as_json:
            keys = ("name", "coverage", "as_of", "named_dates", "timeline")
            typer.echo(json.dumps({k: d[k] for k in keys}, indent=2, ensure_ascii=False))
        else:
            _out().print(render_timeline(d), markup=False)
        return
    if as_json:
        typer.echo(json.dumps(d, indent=2, ensure_ascii=False))
        return
    _out().print(render_text(d), markup=False)


@profiles_app.command("chart")
def chart_cmd(
    name: str = typer.Argument(..., help="a bundled profile name or a profile file"),
    matrices: list[Path] = typer.Argument(
        None, help="matrix.json files (or directories holding them) measured at several days; none: the timeline only"
    ),
    out_dir: Path = typer.Option(Path("."), "-o", "--output", help="directory for timeline-NAME.html and .png"),
    mode: str = typer.Option("inline", "--mode", help="which lab mode's cells to draw"),
) -> None:
    """The transport x time chart of a profile (HTML and PNG): the matrix's cells at each day measured
    (``chokepoint matrix --as-of D1,D2`` / ``--timeline``), the profile's dated behaviour and its cited events."""
    from chokepoint.output import timechart

    profile = _load(name)
    docs = []
    for path in matrices or ():
        files = sorted(path.rglob("matrix.json")) if path.is_dir() else [path]
        if not files:
            _fail(f"{path}: no matrix.json in it")
        for f in files:
            try:
                docs.append(json.loads(f.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                _fail(f"{f}: {exc}")
    try:
        paths = timechart.render(profile, docs, out_dir, mode=mode)
    except ValueError as exc:
        _fail(str(exc))
    _out().print(f"wrote {paths['html']} and {paths['png']}", markup=False)


def _fail(message: str) -> None:
    Console(stderr=True, soft_wrap=True).print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(EXIT_USAGE)


def render_timeline(d: dict[str, Any]) -> str:
    """The dated behaviours of a profile as a plain-text table (``profiles show NAME --timeline``): from, until
    (both inclusive; blank: the edge of the coverage), what, whether in force on the day loaded, source."""
    span = d["coverage"] or ["", ""]
    lines = [f"{d['name']}: {d['title']}", f"  covers {span[0]} to {span[1]} (inclusive); loaded as of {d['as_of']}"]
    if d["named_dates"]:
        lines.append("  named dates: " + ", ".join(f"{n} = {day}" for n, day in d["named_dates"].items()))
    lines.append("")
    if not d["timeline"]:
        lines.append("  nothing is dated: every behaviour holds throughout the coverage")
        return "\n".join(lines)
    rows = [("from", "until", "on", "kind", "name", "what")]
    for item in d["timeline"]:
        on = _in_force(item, d["as_of"])
        rows.append(
            (item.get("from", ""), item.get("until", ""), "*" if on else "", item["kind"], item["name"], item["what"])
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    for row in rows:
        lines.append("  " + "  ".join(str(c).ljust(w) for c, w in zip(row[:5], widths, strict=True)) + "  " + row[5])
    lines += ["", "  * in force on " + str(d["as_of"]), "", "Sources of the dates:"]
    for item in d["timeline"]:
        note = f" (uncertain: {item['uncertain']})" if item.get("uncertain") else ""
        lines.append(f"  {item['kind']} {item['name']}: {item['cite']}{note}")
    return "\n".join(lines)


def _in_force(item: dict[str, Any], day: str | None) -> bool:
    if day is None:
        return True
    return item.get("from", "0000") <= day <= item.get("until", "9999")


def render_text(d: dict[str, Any]) -> str:
    """The description as plain text for a terminal."""
    lines = [
        f"{d['name']}: {d['title']}",
        f"  country {d['country']}" + (f", operator {d['operator']}" if d["operator"] else ""),
        f"  observed {d['observed']}, clock {d['timezone']}",
        f"  as of {d['as_of']}"
        + (f" (covers {d['coverage'][0]} to {d['coverage'][1]})" if d.get("coverage") else "")
        + (f"; {len(d['timeline'])} dated behaviours (--timeline)" if d.get("timeline") else ""),
        "",
        _wrap(d["description"], 2),
        "",
        "Techniques: " + ", ".join(d["techniques"]),
        "",
        "Rules:",
    ]
    for rule in d["rules"]:
        lines.append(
            f"  {rule['id']} [{rule['action']}] {rule['technique']}"
            + (f" (observed {rule['observed']})" if "observed" in rule else "")
            + (f" (active {_span(rule['active'])})" if "active" in rule else "")
        )
        lines.append(f"    when: {rule['when']}")
        if "params" in rule:
            lines.append(
                f"    params: {json.dumps(rule['params'], ensure_ascii=False)}"
                + (f" (overridden: {', '.join(rule['overridden'])})" if "overridden" in rule else "")
            )
        if "deferred" in rule:
            lines.append(f"    deferred: {rule['deferred']}")
        if "mechanism" in rule:
            lines.append(f"    mechanism: {rule['mechanism']} (documented, not enforced)")
        lines.append(f"    cite: {rule['cite']}")
    summary = d["personality"]["summary"]
    lines += [
        "",
        f"Personality: {summary['name']}",
        f"  reset: {summary['reset']['count']}x {summary['reset']['flags']} to {summary['reset']['targets']}, "
        f"TTL {summary['reset']['ttl']}, IP ID {summary['reset']['ip_id']}, DF {summary['reset']['df']}, "
        f"window {summary['reset']['window']}"
        + (f", payload {summary['reset']['payload']}" if summary["reset"]["payload"] else ""),
        f"  dns: flags {summary['dns']['flags']}, TTL {summary['dns']['answer_ttl']}, "
        f"compression {summary['dns']['compression']}, {summary['dns']['mode']}",
        f"  residual: {summary['residual']['seconds']:g} s on {summary['residual']['scope']}"
        + (" (re-armed)" if summary["residual"]["rearm"] else ""),
    ]
    for other in summary["parallel"]:
        if "reset" in other:
            r = other["reset"]
            lines.append(
                f"  parallel injector {other['preset']}: {r['count']}x {r['flags']} to {r['targets']}, "
                f"TTL {r['ttl']}, IP ID {r['ip_id']}, DF {r['df']}, window {r['window']}, "
                f"on {other['probability']:.0%} of resets"
                + (
                    ""
                    if other["max_fragments"] is None
                    else ", not on IP-fragmented triggers"
                    if other["max_fragments"] == 0
                    else f", only on triggers of at most {other['max_fragments']} IP fragments"
                )
            )
        if "dns" in other:
            ds = other["dns"]
            lines.append(
                f"  parallel DNS injector {other['preset']}: flags {ds['flags']}, TTL {ds['answer_ttl']}, "
                f"compression {ds['compression']}, on {other['probability']:.0%} of UDP queries"
            )
    for knob in d["personality"]["knobs"]:
        lines.append(f"  {knob['knob']} = {knob['value']}: {knob['cite']}")
    for also in d["personality"]["also_observed"]:
        lines.append(f"  also observed: {also['preset']}: {also['cite']}")
    lines += ["", "Lists:"]
    lines += [f"  {item['name']} ({item['kind']}, {item['entries']} entries): {item['cite']}" for item in d["lists"]]
    for outcome in ("blocked", "allowed"):
        lines += ["", f"Examples ({outcome}):"]
        for ex in d["examples"][outcome]:
            target = ex.get("target") or f"{ex['protocol']} payload"
            where = f":{ex['port']}" if "port" in ex else ""
            lines.append(
                f"  {ex['id']}: {ex['protocol']} {target}{where} -> {ex['symptom']}"
                + (f" [{ex['rule']}]" if "rule" in ex else "")
                + (f"; {ex['note']}" if "note" in ex else "")
            )
    lines += ["", "Citations:"] + [f"  - {c}" for c in d["cite"]]
    lines += ["", "Uncertain (encoded as knobs, not as fact):"] + [f"  - {u}" for u in d["uncertainties"]]
    if d["provenance_gaps"]:
        lines += ["", "Missing citations:"] + [f"  - {g}" for g in d["provenance_gaps"]]
    return "\n".join(lines)


def _span(active: dict[str, Any]) -> str:
    return f"{active.get('from', '...')}..{active.get('until', '...')}"


def _wrap(text: str, indent: int, width: int = 100) -> str:
    import textwrap

    return textwrap.fill(text, width=width, initial_indent=" " * indent, subsequent_indent=" " * indent)


__all__ = ["profiles_app", "render_text", "render_timeline"]
