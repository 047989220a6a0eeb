"""Transports over time under one dated profile: the matrix measured at several days, and the cited events.

``render(profile, docs, out_dir)`` writes ``timeline-<profile>.html`` (self-contained) and
``timeline-<profile>.png`` from the profile and the ``matrix.json`` documents of runs at different days (each
names its day in ``config.as_of``, or is one matrix at several days whose cells name theirs in ``as_of``, as
``chokepoint matrix --as-of D1,D2`` / ``--timeline FROM..TO`` writes). Without documents the chart holds the profile's timeline alone.

Both pictures share one time axis, the profile's coverage:

- the grid: one row per transport, a square at each measured day coloured by the cell's outcome (works,
  blocked, degraded, error), marked ``≠`` where it disagrees with the profile's published outcome for that
  day; in the HTML each square links to the cell's details (how, the expected outcome and its citation, the
  rules that acted and their ``uncertain:`` notes);
- the profile's dated behaviour: one bar per rule, list, personality knob or also-observed element over the
  days it is in force, hatched (PNG) or striped (HTML) where its dates are ``uncertain``;
- the events (``policy.timeline.events``): a numbered line on each day something starts or stops being in
  force, listed below the chart with the citation of each change and its ``uncertain:`` note.
"""

from __future__ import annotations

import datetime as dt
import html
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chokepoint.policy.dates import parse_as_of
from chokepoint.policy.errors import PolicyError
from chokepoint.policy.profile import Dated, Profile, load_profile
from chokepoint.policy.timeline import BEHAVIOUR_KINDS, Event, events

COLOURS = {"works": "#2e7d32", "blocked": "#c62828", "degraded": "#ef6c00", "error": "#757575"}
KIND_COLOURS = {"rule": "#1565c0", "list": "#6a1b9a", "knob": "#00838f", "also_observed": "#8d6e63"}


@dataclass(slots=True)
class Chart:
    """What both pictures draw (:func:`build`)."""

    profile: str
    mode: str
    span: tuple[dt.date, dt.date]
    days: list[dt.date]
    transports: list[str]
    cells: dict[tuple[str, dt.date], dict[str, Any]]
    bars: list[Dated]
    events: list[Event]
    #: (day, rule id) -> the rule's uncertain notes as loaded that day
    rule_notes: dict[tuple[dt.date, str], str] = field(default_factory=dict)

    def event_days(self) -> list[tuple[int, dt.date, list[Event]]]:
        """Events grouped by day, numbered from 1."""
        by_day: dict[dt.date, list[Event]] = {}
        for e in self.events:
            by_day.setdefault(e.day, []).append(e)
        return [(i, d, by_day[d]) for i, d in enumerate(sorted(by_day), 1)]

    def frac(self, day: dt.date) -> float:
        """Where ``day`` sits on the axis, 0..1."""
        lo, hi = self.span
        total = (hi - lo).days + 1
        return min(max((day - lo).days / total, 0.0), 1.0)


def _day(doc: dict[str, Any]) -> dt.date:
    as_of = (doc.get("config") or {}).get("as_of")
    if not as_of:
        raise ValueError("a matrix.json without config.as_of (run the matrix with --as-of or --timeline)")
    return parse_as_of(str(as_of))


def build(profile: Profile, docs: Sequence[dict[str, Any]] = (), *, mode: str = "inline") -> Chart:
    """The chart of ``profile`` (any day of it) over the days of ``docs`` (see the module docstring)."""
    names = {profile.name, profile.base or profile.name}
    cells: dict[tuple[str, dt.date], dict[str, Any]] = {}
    transports: dict[str, None] = {}
    days: set[dt.date] = set()
    for doc in docs:
        several = bool((doc.get("config") or {}).get("days"))  # a matrix at several days: each cell's as_of
        day = None if several else _day(doc)
        for cell in doc.get("cells", ()):
            if cell.get("profile") in names and cell.get("mode", "inline") == mode:
                day = parse_as_of(cell["as_of"]) if several else day
                cells[(cell["transport"], day)] = cell
                transports.setdefault(cell["transport"], None)
                days.add(day)
    span = profile.coverage or (min(days, default=dt.date.today()), max(days, default=dt.date.today()))
    if span[0] == dt.date.min or span[1] == dt.date.max:  # an undated profile: the measured days
        span = (min(days, default=dt.date.today()), max(days, default=dt.date.today()))
    notes: dict[tuple[dt.date, str], str] = {}
    for day in sorted(days):
        try:
            at = load_profile(str(profile.source), as_of=day)
        except PolicyError:  # the day is outside the file's coverage
            continue
        for rule in at.policy.rules:
            if rule.uncertain:
                notes[(day, rule.id)] = "; ".join(f"{k}: {v}" for k, v in rule.uncertain)
    bars = [d for d in profile.timeline if d.kind in BEHAVIOUR_KINDS]
    return Chart(
        profile=profile.base or profile.name,
        mode=mode,
        span=span,
        days=sorted(days),
        transports=list(transports),
        cells=cells,
        bars=bars,
        events=events(profile),
        rule_notes=notes,
    )


def _bar_span(chart: Chart, item: Dated) -> tuple[dt.date, dt.date]:
    lo, hi = chart.span
    return max(item.active.start or lo, lo), min(item.active.end or hi, hi)


def _cell_id(transport: str, day: dt.date) -> str:
    return f"cell-{transport}-{day.isoformat()}"


# -- HTML ---------------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:80em}
.chart{position:relative;margin:1em 0 2em 17em}
.row{position:relative;height:22px;border-bottom:1px solid #eee}
.lbl{position:absolute;right:100%;margin-right:8px;width:17em;text-align:right;font-size:12px;line-height:22px;
  white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.pt{position:absolute;top:3px;width:16px;height:16px;margin-left:-8px;border-radius:2px;color:#fff;font-size:11px;
  text-align:center;line-height:16px;text-decoration:none;z-index:2}
.pt.x{outline:2px solid #111}
.bar{position:absolute;top:5px;height:12px;border-radius:2px;opacity:.85;z-index:1}
.bar.u{background-image:repeating-linear-gradient(45deg,rgba(255,255,255,.55) 0 4px,transparent 4px 8px)}
.ev{position:absolute;top:-1.4em;bottom:0;border-left:1px dashed #888;z-index:0}
.ev span{position:absolute;top:0;left:2px;font-size:11px;color:#444}
.axis{position:relative;height:1.6em;font-size:11px;color:#555}
.axis span{position:absolute;border-left:1px solid #bbb;padding-left:2px}
.sep{height:1.2em}
h2{font-size:15px;margin-top:1.6em}
table{border-collapse:collapse;font-size:12px}
th,td{border:1px solid #ddd;padding:3px 6px;vertical-align:top;text-align:left}
td.d{white-space:nowrap}
tr:target{background:#fff8c4}
.legend span{display:inline-block;padding:1px 8px;margin-right:6px;color:#fff;border-radius:3px;font-size:12px}
.unc{color:#8a5a00}
.dis{color:#b00020;font-weight:600}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _axis(chart: Chart) -> str:
    lo, hi = chart.span
    ticks = [dt.date(y, 1, 1) for y in range(lo.year, hi.year + 1) if lo <= dt.date(y, 1, 1) <= hi]
    if len(ticks) < 2:
        ticks = [dt.date(lo.year, m, 1) for m in range(1, 13) if lo <= dt.date(lo.year, m, 1) <= hi]
    labels = "".join(
        f'<span style="left:{chart.frac(t) * 100:.2f}%">{t.year if t.month == 1 else t.isoformat()[:7]}</span>'
        for t in ticks
    )
    return f'<div class="axis">{labels}</div>'


def _point(chart: Chart, transport: str, day: dt.date, cell: dict[str, Any]) -> str:
    outcome = cell.get("outcome", "error")
    mark = "≠" if cell.get("agrees") is False else ""
    exp = cell.get("expected") or {}
    tip = f"{transport} on {day}: {outcome} ({cell.get('how', '')})"
    if cell.get("reused_from"):
        tip += f"; not run: the cell of {cell['reused_from']} (the same loaded profile)"
    if exp:
        tip += f"; expected {exp.get('outcome')} ({exp.get('cite', '')})"
    return (
        f'<a class="pt{" x" if mark else ""}" href="#{_cell_id(transport, day)}" '
        f'style="left:{chart.frac(day) * 100:.2f}%;background:{COLOURS.get(outcome, "#999")}" '
        f'title="{_e(tip)}">{mark}</a>'
    )


def _events_overlay(chart: Chart) -> str:
    out = []
    for n, day, evs in chart.event_days():
        tip = "; ".join(f"{e.label()}: {e.cite}" for e in evs)
        out.append(
            f'<div class="ev" style="left:{chart.frac(day) * 100:.2f}%" title="{_e(tip)}"><span>{n}</span></div>'
        )
    return "".join(out)


def html_page(chart: Chart) -> str:
    """The chart as one self-contained HTML page (see the module docstring)."""
    lo, hi = chart.span
    rows = []
    for t in chart.transports:
        pts = "".join(_point(chart, t, d, chart.cells[(t, d)]) for d in chart.days if (t, d) in chart.cells)
        rows.append(f'<div class="row"><span class="lbl">{_e(t)}</span>{pts}</div>')
    bars = []
    for item in chart.bars:
        start, end = _bar_span(chart, item)
        if end < start:
            continue
        left, right = chart.frac(start), chart.frac(end + dt.timedelta(days=1)) if end < hi else 1.0
        unc = item.active.uncertain or item.uncertain
        tip = f"{item.kind} {item.name}: {item.what}; {item.active.text()}; {item.active.cite}"
        if unc:
            tip += f" (uncertain: {unc})"
        bars.append(
            f'<div class="row"><span class="lbl">{_e(item.kind)} {_e(item.name)}</span>'
            f'<div class="bar{" u" if unc else ""}" style="left:{left * 100:.2f}%;width:{(right - left) * 100:.2f}%;'
            f'background-color:{KIND_COLOURS.get(item.kind, "#555")}" title="{_e(tip)}"></div></div>'
        )
    legend = "".join(f'<span style="background:{c}">{k}</span>' for k, c in COLOURS.items())
    legend += "".join(f'<span style="background:{c}">{k}</span>' for k, c in KIND_COLOURS.items())
    measured = ", ".join(d.isoformat() for d in chart.days) or "none (the profile's timeline only)"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{_e(chart.profile)}: transports over time</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(chart.profile)}: transports over time ({_e(chart.mode)})</h1>",
        f"<p>The profile covers {lo} to {hi}. Measured on: {_e(measured)}. "
        "Dashed lines: the days its behaviour changes (numbered, listed below with their sources). "
        "Striped bars: dates resting on summaries or community reports (uncertain).</p>",
        f'<p class="legend">{legend}</p>',
        '<div class="chart">',
        _axis(chart),
        _events_overlay(chart),
        "".join(rows),
        '<div class="sep"></div>' if rows else "",
        "".join(bars),
        "</div>",
        _events_table(chart),
        _cells_table(chart),
        "</body></html>",
    ]
    return "".join(parts)


def _events_table(chart: Chart) -> str:
    rows = []
    for n, day, evs in chart.event_days():
        for e in evs:
            unc = f'<br><span class="unc">uncertain: {_e(e.uncertain)}</span>' if e.uncertain else ""
            rows.append(
                f'<tr><td>{n}</td><td class="d">{day}</td>'
                f"<td>{'in force' if e.change == 'starts' else 'no longer in force'}"
                f"</td><td>{_e(e.kind)} <b>{_e(e.name)}</b><br>{_e(e.what)}</td><td>{_e(e.cite)}{unc}</td></tr>"
            )
    if not rows:
        return "<h2>Events</h2><p>No dated behaviour.</p>"
    head = "<tr><th>#</th><th>day</th><th>change</th><th>what</th><th>source</th></tr>"
    return f"<h2>Events</h2><table>{head}{''.join(rows)}</table>"


def _cells_table(chart: Chart) -> str:
    if not chart.cells:
        return ""
    rows = []
    for t in chart.transports:
        for d in chart.days:
            cell = chart.cells.get((t, d))
            if cell is None:
                continue
            exp = cell.get("expected") or {}
            expected = ""
            if exp:
                expected = f"{_e(exp.get('outcome'))}: {_e(exp.get('how', ''))} <i>{_e(exp.get('cite', ''))}</i>"
                if exp.get("uncertain"):
                    expected += f'<br><span class="unc">uncertain: {_e(exp["uncertain"])}</span>'
            agree = cell.get("agrees")
            verdict = {True: "agrees", False: '<span class="dis">disagrees</span>', None: ""}[agree]
            rules = []
            for rule in (cell.get("evidence") or {}).get("rules", ()):
                note = chart.rule_notes.get((d, rule))
                rules.append(_e(rule) + (f' <span class="unc">(uncertain: {_e(note)})</span>' if note else ""))
            rows.append(
                f'<tr id="{_cell_id(t, d)}"><td class="d">{d}</td><td>{_e(t)}</td><td>{_e(cell.get("outcome"))}</td>'
                f"<td>{_e(cell.get('how', ''))}</td><td>{expected} {verdict}</td><td>{'<br>'.join(rules)}</td></tr>"
            )
    head = (
        "<tr><th>day</th><th>transport</th><th>outcome</th><th>how</th><th>expected</th><th>rules that acted</th></tr>"
    )
    return f"<h2>Cells</h2><table>{head}{''.join(rows)}</table>"


# -- PNG ----------------------------------------------------------------------------------------------------
def png(chart: Chart, path: Path) -> Path:
    """The chart as a PNG (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lo, hi = chart.span
    n_t, n_b = len(chart.transports), len(chart.bars)
    groups = chart.event_days()
    notes = []
    for n, day, evs in groups:
        for e in evs:
            change = "in force:" if e.change == "starts" else "no longer in force:"
            line = f"{n}. {day} {change} {e.kind} {e.name}; {e.cite}"
            if e.uncertain:
                line += f" (uncertain: {e.uncertain})"
            notes += textwrap.wrap(line, 150, subsequent_indent="      ")[:3]
    top_h = 0.32 * n_t + 0.6 if n_t else 0
    bottom_h = 0.26 * max(n_b, 1) + 0.6
    note_h = 0.115 * len(notes) + 0.3
    fig_h = top_h + bottom_h + note_h + 1.0
    ratios = [r for r in (top_h, bottom_h) if r]
    fig, axes = plt.subplots(len(ratios), 1, figsize=(13, fig_h), sharex=True, squeeze=False, height_ratios=ratios)
    axes = [a[0] for a in axes]
    bottom_ax = axes[-1]
    if n_t:
        ax = axes[0]
        for y, t in enumerate(chart.transports):
            for d in chart.days:
                cell = chart.cells.get((t, d))
                if cell is None:
                    continue
                outcome = cell.get("outcome", "error")
                disagrees = cell.get("agrees") is False
                ax.scatter(
                    [d], [y], marker="s", s=110, color=COLOURS.get(outcome, "#999"),
                    edgecolors="#111" if disagrees else "none", linewidths=1.5, zorder=3,
                    alpha=0.4 if cell.get("reused_from") else 1.0,
                )  # fmt: skip
                if disagrees:
                    ax.annotate("≠", (mdates.date2num(d), y), xytext=(7, -4), textcoords="offset points", fontsize=9)
        dense = len(chart.days) > 8
        for d in chart.days:  # the measured days under the grid (the shared date axis is on the bottom panel)
            ax.annotate(
                d.isoformat(), (mdates.date2num(d), 0.0), xycoords=("data", "axes fraction"), xytext=(0, -3),
                textcoords="offset points", ha="center", va="top", fontsize=6.5, color="#333",
                rotation=90 if dense else 0,
            )  # fmt: skip
        ax.set_yticks(range(n_t), chart.transports, fontsize=8)
        ax.set_ylim(n_t - 0.5, -0.5)
        handles = [Patch(color=c, label=k) for k, c in COLOURS.items()]
        if any(c.get("reused_from") for c in chart.cells.values()):
            handles.append(
                Patch(color="#2e7d32", alpha=0.4, label="pale: not run, the\nearlier day's cell\n(same profile)")
            )
        ax.legend(
            handles=handles, loc="upper left",
            bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False,
        )  # fmt: skip
        ax.set_title(f"{chart.profile}: transports over time ({chart.mode})", fontsize=11, loc="left")
    for y, item in enumerate(chart.bars):
        start, end = _bar_span(chart, item)
        if end < start:
            continue
        unc = bool(item.active.uncertain or item.uncertain)
        bottom_ax.barh(
            y, (end - start).days + 1, left=mdates.date2num(start), height=0.6,
            color=KIND_COLOURS.get(item.kind, "#555"), alpha=0.85, hatch="///" if unc else None,
            edgecolor="white" if unc else None, linewidth=0,
        )  # fmt: skip
    bottom_ax.set_yticks(range(n_b), [f"{b.kind} {b.name}" for b in chart.bars], fontsize=7)
    bottom_ax.set_ylim(max(n_b, 1) - 0.5, -0.5)
    if not n_t:
        bottom_ax.set_title(f"{chart.profile}: dated behaviour", fontsize=11, loc="left")
    for ax in axes:
        for _n, day, _ in groups:
            ax.axvline(mdates.date2num(day), color="#888", linestyle="--", linewidth=0.7, zorder=1)
        ax.grid(axis="y", color="#eee")
        ax.set_xlim(mdates.date2num(lo), mdates.date2num(hi + dt.timedelta(days=1)))
    for n, day, _ in groups:
        axes[0].annotate(
            str(n), (mdates.date2num(day), 1.0), xycoords=("data", "axes fraction"), xytext=(2, 2),
            textcoords="offset points", fontsize=7, color="#444",
        )  # fmt: skip
    bottom_ax.xaxis.set_major_locator(mdates.AutoDateLocator())
    bottom_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(bottom_ax.xaxis.get_major_locator()))
    if notes:
        fig.text(0.01, 0.01, "\n".join(notes), fontsize=6.5, va="bottom", family="monospace")
    hspace = 0.15 + (0.1 if n_t and len(chart.days) > 8 else 0.0)
    fig.subplots_adjust(left=0.2, right=0.88, top=1 - 0.5 / fig_h, bottom=(note_h + 0.4) / fig_h, hspace=hspace)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(
    profile: Profile, docs: Sequence[dict[str, Any]] = (), out_dir: Path = Path("."), *, mode: str = "inline"
) -> dict[str, Path]:
    """Write ``timeline-<profile>.html`` and ``.png`` to ``out_dir``; their paths."""
    chart = build(profile, docs, mode=mode)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / f"timeline-{chart.profile}.html"
    page.write_text(html_page(chart), encoding="utf-8")
    return {"html": page, "png": png(chart, out_dir / f"timeline-{chart.profile}.png")}


__all__ = ["COLOURS", "Chart", "build", "html_page", "png", "render"]
