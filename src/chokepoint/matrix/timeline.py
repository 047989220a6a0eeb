"""A matrix at several days, read through time: per profile, a transport x time chart and the change points.

Drawn from ``matrix.json`` alone (a version-2 document: ``config.days`` and each cell's ``as_of``), beside the
grid ``report`` writes:

- ``matrix-timeline-<profile>.png``: the transport x time chart of ``output.timechart`` (one row per
  transport, time along x over the profile's coverage, a square per measured day coloured by the outcome with
  the matrix's colours, the profile's cited events as numbered dashed lines with their sources below, and the
  dated behaviour as bars); a cell that was not run (``reused_from``) is drawn pale;
- in ``matrix.html`` and ``matrix.md``: per profile, a transport x day table, the *change points* (between which
  two measured days each transport stopped or started working, with the profile's events in that interval: the
  candidate causes) and which days were not run but copied from an earlier day with the same loaded profile.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chokepoint.matrix.model import BASELINE

#: outcomes in which a transport carries traffic (a change point is a move into or out of these)
WORKING = ("works", "degraded")


@dataclass(frozen=True, slots=True)
class ChangePoint:
    """``transport`` was ``before`` on ``last_day`` and ``outcome`` on ``day`` (consecutive days of the matrix)."""

    profile: str
    transport: str
    mode: str
    last_day: str
    day: str
    before: str
    outcome: str
    events: tuple[str, ...] = ()  # the profile's events in (last_day, day]: "2021-11-01 rule gfw-fet-drop starts"
    #: the rules that acted in the cell on the not-working side (``day`` when it stopped, ``last_day`` when it
    #: started), and the names of the elements that start or stop in between
    rules: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @property
    def verb(self) -> str:
        if self.before in WORKING and self.outcome not in WORKING:
            return "stopped working"
        if self.before not in WORKING and self.outcome in WORKING:
            return "started working"
        return "changed"

    @property
    def explained(self) -> bool | None:
        """Whether a rule that acted is one that starts or stops in between (None: no rule acted)."""
        return bool(set(self.rules) & set(self.changed)) if self.rules else None

    def text(self) -> str:
        cause = "; events in between: " + "; ".join(self.events) if self.events else "; no cited event in between"
        if self.rules:
            side = self.day if self.outcome not in WORKING else self.last_day
            cause += f"; rules that acted on {side}: {', '.join(self.rules)}"
            if not self.explained:
                cause += (
                    " (not among the events in between: the profile's dates do not explain this change; a random"
                    " element such as the active prober's probes may; repeat with -n)"
                )
        return (
            f"{self.transport} {self.verb} ({self.before} → {self.outcome}) between {self.last_day} and {self.day}"
            + (f" [{self.mode}]" if self.mode != "inline" else "")
            + cause
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "transport": self.transport,
            "mode": self.mode,
            "last_day": self.last_day,
            "day": self.day,
            "before": self.before,
            "outcome": self.outcome,
            "verb": self.verb,
            "events": list(self.events),
            "rules": list(self.rules),
            "explained": self.explained,
        }


def profiles(doc: dict[str, Any]) -> list[str]:
    """The profile names measured at several days, in the order measured."""
    return list(dict.fromkeys(c["profile"] for c in doc["cells"] if c["profile"] != BASELINE and c.get("as_of")))


def days(doc: dict[str, Any], profile: str) -> list[str]:
    return sorted({c["as_of"] for c in doc["cells"] if c["profile"] == profile and c.get("as_of")})


def grid(doc: dict[str, Any], profile: str, mode: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(transport, day) -> cell of one profile and mode."""
    return {
        (c["transport"], c["as_of"]): c
        for c in doc["cells"]
        if c["profile"] == profile and c["mode"] == mode and c.get("as_of")
    }


def _modes(doc: dict[str, Any], profile: str) -> list[str]:
    return list(dict.fromkeys(c["mode"] for c in doc["cells"] if c["profile"] == profile and c.get("as_of")))


def _transports(doc: dict[str, Any], profile: str) -> list[str]:
    return list(dict.fromkeys(c["transport"] for c in doc["cells"] if c["profile"] == profile and c.get("as_of")))


def _profile_source(doc: dict[str, Any], profile: str) -> Any:
    """The dated profile a column was loaded from (by the name a cell carries or as the config gave it);
    None when it cannot be loaded here any more (a profile file since moved)."""
    from chokepoint.policy import PolicyError, load_profile

    for given in (doc.get("config") or {}).get("profiles", ()):
        try:
            loaded = load_profile(given)
        except PolicyError:
            continue
        if profile in (loaded.name, loaded.base):
            return loaded
    try:
        return load_profile(profile)
    except PolicyError:
        return None


def profile_events(doc: dict[str, Any], profile: str) -> list[Any]:
    """``policy.timeline.events`` of the profile (empty if it cannot be loaded)."""
    from chokepoint.policy.timeline import events

    loaded = _profile_source(doc, profile)
    return events(loaded) if loaded is not None else []


def change_points(doc: dict[str, Any], profile: str | None = None) -> list[ChangePoint]:
    """Between consecutive measured days, every transport whose outcome changed, with the events between (one
    profile, or each profile measured at several days)."""
    if profile is None:
        return [p for name in profiles(doc) for p in change_points(doc, name)]
    evs = profile_events(doc, profile)
    out = []
    for mode in _modes(doc, profile):
        cells = grid(doc, profile, mode)
        the_days = days(doc, profile)
        for transport in _transports(doc, profile):
            seen = [(d, cells[(transport, d)]["outcome"]) for d in the_days if (transport, d) in cells]
            for (last, before), (day, outcome) in zip(seen, seen[1:], strict=False):
                if before == outcome:
                    continue
                lo, hi = dt.date.fromisoformat(last), dt.date.fromisoformat(day)
                between = tuple(
                    f"{e.day} {e.kind} {e.name} {'starts' if e.change == 'starts' else 'ends'}"
                    for e in evs
                    if lo < e.day <= hi
                )
                changed = tuple(dict.fromkeys(e.name for e in evs if lo < e.day <= hi))
                blocked_side = cells[(transport, day if outcome not in WORKING else last)]
                rules = tuple((blocked_side.get("evidence") or {}).get("rules") or ())
                out.append(ChangePoint(profile, transport, mode, last, day, before, outcome, between, rules, changed))
    return out


def reused_days(doc: dict[str, Any], profile: str) -> dict[str, str]:
    """day -> the earlier day whose cells it copies (not run), for one profile."""
    return {c["as_of"]: c["reused_from"] for c in doc["cells"] if c["profile"] == profile and c.get("reused_from")}


# -- PNG ----------------------------------------------------------------------------------------------------
def png(doc: dict[str, Any], profile: str, path: Path, *, mode: str = "inline") -> Path | None:
    """The transport x time chart of one profile (``output.timechart``); None if the profile cannot be loaded."""
    from chokepoint.output import timechart

    loaded = _profile_source(doc, profile)
    if loaded is None:
        return None
    return timechart.png(timechart.build(loaded, [doc], mode=mode), path)


def pngs(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    """``matrix-timeline-<profile>.png`` for each profile measured at several days (its first mode; other
    modes get ``matrix-timeline-<profile>-<mode>.png``)."""
    out = []
    for profile in profiles(doc):
        for n, mode in enumerate(_modes(doc, profile)):
            name = f"matrix-timeline-{_slug(profile)}" + (f"-{mode}" if n else "") + ".png"
            path = png(doc, profile, out_dir / name, mode=mode)
            if path is not None:
                out.append(path)
    return out


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


# -- Markdown -----------------------------------------------------------------------------------------------
def markdown(doc: dict[str, Any]) -> str:
    """Per profile: the transport x day table, the change points, the days not run, the events."""
    lines: list[str] = []
    for profile in profiles(doc):
        the_days = days(doc, profile)
        reused = reused_days(doc, profile)
        lines += ["", f"## {profile} through time", ""]
        for mode in _modes(doc, profile):
            cells = grid(doc, profile, mode)
            if len(_modes(doc, profile)) > 1:
                lines += [f"Mode {mode}:", ""]
            lines.append("| transport | " + " | ".join(d + (" ↺" if d in reused else "") for d in the_days) + " |")
            lines.append("|---|" + "---|" * len(the_days))
            for transport in _transports(doc, profile):
                row = []
                for d in the_days:
                    cell = cells.get((transport, d))
                    row.append("" if cell is None else cell["outcome"] + (" ≠" if cell.get("agrees") is False else ""))
                lines.append(f"| {transport} | " + " | ".join(row) + " |")
            lines.append("")
        if reused:
            lines.append(
                "↺ not run: "
                + "; ".join(f"{d} copies {src} (the same loaded profile)" for d, src in sorted(reused.items()))
                + ". `--no-reuse` runs every day."
            )
            lines.append("")
        points = change_points(doc, profile)
        lines += ["Change points:", ""]
        lines += [f"- {p.text()}" for p in points] or ["- none: every transport's outcome is the same on every day"]
        evs = [e for e in profile_events(doc, profile) if the_days and the_days[0] < e.day.isoformat() <= the_days[-1]]
        if evs:
            lines += ["", f"The profile's cited events between {the_days[0]} and {the_days[-1]}:", ""]
            for e in evs:
                change = "in force" if e.change == "starts" else "no longer in force"
                note = f" (uncertain: {e.uncertain})" if e.uncertain else ""
                lines.append(f"- {e.day}: {change}: {e.kind} {e.name} — {e.cite}{note}")
    return "\n".join(lines) + "\n" if lines else ""


# -- HTML ---------------------------------------------------------------------------------------------------
def html_section(doc: dict[str, Any], images: dict[str, Path], colours: dict[str, str], short: dict[str, str]) -> str:
    """Per profile: the chart (embedded PNG), a transport x day table whose cells open their evidence like the
    grid's (``data-key``), the change points and the days not run."""
    e = html.escape
    parts = []
    for profile in profiles(doc):
        the_days = days(doc, profile)
        reused = reused_days(doc, profile)
        parts.append(f"<h2>{e(profile)} through time</h2>")
        image = images.get(profile)
        if image is not None and image.exists():
            data = base64.b64encode(image.read_bytes()).decode()
            parts.append(
                f"<p><img alt='{e(profile)}: transports over time' style='max-width:100%' "
                f"src='data:image/png;base64,{data}'></p>"
            )
        for mode in _modes(doc, profile):
            cells = grid(doc, profile, mode)
            head = "".join(
                f"<th title='{e('not run: copies ' + reused[d]) if d in reused else ''}'>{e(d)}"
                f"{' ↺' if d in reused else ''}</th>"
                for d in the_days
            )
            body = []
            for transport in _transports(doc, profile):
                tds = [f'<th class="t">{e(transport)}</th>']
                for d in the_days:
                    cell = cells.get((transport, d))
                    if cell is None:
                        tds.append('<td class="n">-</td>')
                        continue
                    key = f"{transport}|{profile} {d}|{mode}"
                    mark = (" ≠" if cell.get("agrees") is False else "") + (" ↺" if cell.get("reused_from") else "")
                    tip = f"{cell['outcome']}: {cell['how']}" + (
                        f" (not run: the cell of {cell['reused_from']})" if cell.get("reused_from") else ""
                    )
                    tds.append(
                        f'<td class="c{" x" if cell.get("agrees") is False else ""}" style="background:'
                        f'{colours[cell["outcome"]]}" data-key="{e(key)}" title="{e(tip)}">'
                        f"{short[cell['outcome']]}{mark}</td>"
                    )
                body.append("<tr>" + "".join(tds) + "</tr>")
            caption = f" ({e(mode)})" if len(_modes(doc, profile)) > 1 else ""
            parts.append(
                f"<table class='tl'><caption>{e(profile)}{caption}: transport × day</caption>"
                f"<thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            )
        if reused:
            parts.append(
                "<p>↺ not run: "
                + "; ".join(f"{e(d)} copies {e(src)} (the same loaded profile)" for d, src in sorted(reused.items()))
                + ".</p>"
            )
        points = change_points(doc, profile)
        items = "".join(f"<li>{e(p.text())}</li>" for p in points) or "<li>none</li>"
        parts.append(f"<h3>Change points</h3><ul>{items}</ul>")
    return "".join(parts)


__all__ = ["ChangePoint", "change_points", "days", "grid", "html_section", "markdown", "png", "pngs", "profiles"]
