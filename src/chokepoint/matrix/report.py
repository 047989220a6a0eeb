"""The matrix as a person reads it: a self-contained ``matrix.html``, a ``matrix.png`` and a Markdown table.

All three are drawn from ``matrix.json`` alone (``render(doc, out_dir)``), so a saved matrix can be redrawn.
The grid has one row per transport and one column per profile and mode (the baseline first); a cell is
coloured by its outcome, marked ``≠`` where it disagrees with the profile's published outcome and ``?`` where
the profile records none. In the HTML each cell opens its evidence (also from the address: ``#cell=TRANSPORT|PROFILE|MODE``): how, expected with its citation, the
censor's events naming the rules, the client's symptom, time to first failure, block duration, active probes,
each run's downloads, and the log of an error.

A matrix at several days (version 2: ``config.days``, each cell's ``as_of``) has a column per profile and day
(``gfw 2022-06-01``), a cell not run but copied from an earlier day with the same loaded profile is marked
``↺``, and ``matrix.timeline`` adds each profile through time (chart, transport x day table, change points).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

COLOURS = {"works": "#2e7d32", "blocked": "#c62828", "degraded": "#ef6c00", "error": "#757575"}
SHORT = {"works": "works", "blocked": "blocked", "degraded": "degr.", "error": "error"}


def through_time(doc: dict[str, Any]) -> bool:
    """Whether ``doc`` is a matrix at several days (``--as-of D1,D2`` / ``--timeline``; version 2)."""
    return bool((doc.get("config") or {}).get("days"))


def column_of(doc: dict[str, Any], cell: dict[str, Any]) -> tuple[str, str]:
    """The (profile, mode) column of a cell; in a matrix at several days the profile is ``NAME DAY``."""
    if through_time(doc) and cell.get("as_of"):
        return f"{cell['profile']} {cell['as_of']}", cell["mode"]
    return cell["profile"], cell["mode"]


def columns(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(profile, mode) pairs in the order measured (baseline first)."""
    seen: dict[tuple[str, str], None] = {}
    for cell in doc["cells"]:
        seen.setdefault(column_of(doc, cell), None)
    return list(seen)


def rows(doc: dict[str, Any]) -> list[str]:
    """Transport names, in the order given (a description file stands for the transport it names)."""
    named = [t for t in doc["config"]["transports"] if "/" not in t and not t.endswith((".yaml", ".yml"))]
    return list(dict.fromkeys([*named, *(c["transport"] for c in doc["cells"])]))


def index(doc: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(transport, column profile, mode) -> cell (see :func:`column_of`)."""
    return {(c["transport"], *column_of(doc, c)): c for c in doc["cells"]}


_index = index


def _label(profile: str, mode: str, modes: int) -> str:
    return profile if profile == "baseline" or modes == 1 else f"{profile} ({mode})"


def disagreements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in doc["cells"] if c.get("agrees") is False]


# -- HTML ---------------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 6px;text-align:center}
th.t{text-align:left;font-weight:600}
thead th{background:#f4f4f4;writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;height:9em}
td.c{color:#fff;cursor:pointer;min-width:4.5em}
td.c.x{outline:3px solid #111;outline-offset:-3px}
td.n{background:#fff;color:#999}
table.tl{margin:.6em 0}
table.tl thead th{writing-mode:horizontal-tb;transform:none;height:auto}
caption{text-align:left;font-weight:600;padding:4px 0}
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;color:#fff;border-radius:3px}
dialog{max-width:60em;width:90%}
dialog pre{white-space:pre-wrap;font-size:12px;background:#f7f7f7;padding:6px;max-height:25em;overflow:auto}
.dis{color:#b00020;font-weight:600}
"""

_JS = """
const cells = JSON.parse(document.getElementById('cells').textContent);
const dlg = document.getElementById('dlg');
function esc(s){return String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
function show(key){
  const c = cells[key]; if(!c) return;
  const e = c.evidence || {};
  const tp = (e.throughput_kbps || []).filter(x => x != null);
  let h = '<h3>' + esc(c.transport) + ' &mdash; ' + esc(c.profile) + ' (' + esc(c.mode) + ')</h3>';
  if (c.as_of) h += '<p><b>Profile as of</b> ' + esc(c.as_of) + (c.reused_from ? ' &mdash; <b>not run</b>: the cell of ' +
       esc(c.reused_from) + ', whose loaded profile is the same' : '') + '</p>';
  h += '<p><b>Observed:</b> ' + esc(c.outcome) + ' &mdash; ' + esc(c.how) + '</p>';
  if (c.expected) {
    h += '<p><b>Expected:</b> ' + esc(c.expected.outcome) + (c.expected.how ? ' &mdash; ' + esc(c.expected.how) : '') +
         '<br><i>' + esc(c.expected.cite) + '</i>' + (c.expected.observed ? ' (' + esc(c.expected.observed) + ')' : '') +
         (c.expected.uncertain ? '<br>uncertain: ' + esc(c.expected.uncertain) : '') + '</p>';
    if (c.agrees === false) h += '<p class="dis">Disagrees with the published outcome.</p>';
  } else { h += '<p><b>Expected:</b> no published outcome recorded in the profile.</p>'; }
  h += '<p><b>Rules that acted:</b> ' + esc((e.rules || []).join(', ') || 'none') +
       '<br><b>Client symptom:</b> ' + esc(e.client_symptom || '-') +
       '<br><b>Time to first failure:</b> ' + (e.time_to_first_failure_s == null ? 'none' : esc(e.time_to_first_failure_s) + ' s') +
       '<br><b>Block lasts:</b> ' + (e.block_lasts_s == null ? 'not recorded by the censor' : esc(e.block_lasts_s) + ' s') +
       '<br><b>Throughput:</b> ' + (tp.length ? esc(tp.join(', ')) + ' kbit/s' : 'no download arrived') +
       '<br><b>Active probes:</b> ' + esc(JSON.stringify(e.active_probes || {})) + '</p>';
  h += '<details><summary>Censor events (' + (e.censor_events || []).length + ')</summary><pre>' +
       esc(JSON.stringify(e.censor_events || [], null, 1)) + '</pre></details>';
  h += '<details><summary>Runs</summary><pre>' + esc(JSON.stringify(c.runs, null, 1)) + '</pre></details>';
  if (e.log) h += '<details open><summary>Log</summary><pre>' + esc(e.log) + '</pre></details>';
  h += '<form method="dialog"><button>Close</button></form>';
  dlg.innerHTML = h; dlg.showModal();
}
document.querySelectorAll('td.c').forEach(td => td.addEventListener('click', () => {
  history.replaceState(null, '', '#cell=' + encodeURIComponent(td.dataset.key)); show(td.dataset.key);
}));
if (location.hash.startsWith('#cell=')) show(decodeURIComponent(location.hash.slice(6)));
"""


def html_page(doc: dict[str, Any], timelines: dict[str, Path] | None = None) -> str:
    """The grid (and, for a matrix at several days, each profile through time: ``matrix.timeline``)."""
    from chokepoint.matrix import timeline

    cols, index = columns(doc), _index(doc)
    modes = len(doc["config"]["modes"])
    dis = disagreements(doc)
    cells_json = {}
    head = "".join(f"<th>{html.escape(_label(p, m, modes))}</th>" for p, m in cols)
    body = []
    for transport in rows(doc):
        meta = doc["transports"].get(transport, {})
        version = f" {meta.get('version')}" if meta.get("version") else ""
        tds = [f'<th class="t" title="{html.escape(meta.get("title", ""))}">{html.escape(transport)}{version}</th>']
        for profile, mode in cols:
            cell = index.get((transport, profile, mode))
            if cell is None:
                tds.append('<td class="n">-</td>')
                continue
            key = f"{transport}|{profile}|{mode}"
            cells_json[key] = cell
            mark = (
                " ≠" if cell.get("agrees") is False else ("" if cell.get("expected") or profile == "baseline" else " ?")
            ) + (" ↺" if cell.get("reused_from") else "")
            cls = "c x" if cell.get("agrees") is False else "c"
            reused = (
                f" (not run: the cell of {cell['reused_from']}, same loaded profile)" if cell.get("reused_from") else ""
            )
            tip = html.escape(f"{cell['outcome']}: {cell['how']}{reused}")
            tds.append(
                f'<td class="{cls}" style="background:{COLOURS[cell["outcome"]]}" data-key="{html.escape(key)}"'
                f' title="{tip}">{SHORT[cell["outcome"]]}{mark}</td>'
            )
        body.append("<tr>" + "".join(tds) + "</tr>")
    legend = "".join(f'<span style="background:{c}">{o}</span>' for o, c in COLOURS.items())
    summary = (
        f"{len(doc['cells'])} cells, wall time {doc.get('wall_s', 0):.0f} s"
        + (", interrupted" if doc.get("interrupted") else "")
        + f"; {len(dis)} disagree with the literature"
    )
    dis_items = "".join(
        f"<li>{html.escape(c['transport'])} under {html.escape(c['profile'])} ({c['mode']}): observed "
        f"<b>{c['outcome']}</b>, expected <b>{c['expected']['outcome']}</b> &mdash; "
        f"<i>{html.escape(c['expected']['cite'])}</i></li>"
        for c in dis
    )
    data = json.dumps(cells_json).replace("</", "<\\/")
    through = timeline.html_section(doc, timelines or {}, COLOURS, SHORT) if through_time(doc) else ""
    if any(c.get("reused_from") for c in doc["cells"]):
        summary += f"; {sum(1 for c in doc['cells'] if c.get('reused_from'))} not run (↺: copied from an earlier day)"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Chokepoint circumvention matrix</title>"
        f"<style>{_CSS}</style></head><body><h1>Circumvention matrix</h1><p>{html.escape(summary)}</p>"
        f"<p class='legend'>{legend} &nbsp; ≠ disagrees with the published outcome &nbsp; ? none published"
        " &nbsp; (click a cell for its evidence)</p>"
        f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        + (f"<h2>Disagreements</h2><ul>{dis_items}</ul>" if dis else "")
        + through
        + f"<dialog id='dlg'></dialog><script type='application/json' id='cells'>{data}</script>"
        f"<script>{_JS}</script></body></html>\n"
    )


# -- PNG ----------------------------------------------------------------------------------------------------
def png(doc: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    cols, index, names = columns(doc), _index(doc), rows(doc)
    modes = len(doc["config"]["modes"])
    width = max(6.0, 1.0 + 0.9 * len(cols))
    height = max(3.0, 1.6 + 0.32 * len(names))
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    for y, transport in enumerate(names):
        for x, (profile, mode) in enumerate(cols):
            cell = index.get((transport, profile, mode))
            colour = COLOURS[cell["outcome"]] if cell else "#ffffff"
            ax.add_patch(Rectangle((x, y), 1, 1, facecolor=colour, edgecolor="white", linewidth=1.5))
            if cell is None:
                continue
            text = SHORT[cell["outcome"]] + (" ↺" if cell.get("reused_from") else "")
            if cell.get("agrees") is False:
                ax.add_patch(Rectangle((x + 0.04, y + 0.06), 0.92, 0.88, fill=False, edgecolor="black", linewidth=2))
                text += " ≠"
            ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", color="white", fontsize=7)
    ax.set_xlim(0, len(cols))
    ax.set_ylim(len(names), 0)
    ax.set_xticks([x + 0.5 for x in range(len(cols))])
    ax.set_xticklabels([_label(p, m, modes) for p, m in cols], rotation=45, ha="right", fontsize=8)
    ax.set_yticks([y + 0.5 for y in range(len(names))])
    ax.set_yticklabels(names, fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    handles = [Patch(color=c, label=o) for o, c in COLOURS.items()]
    handles.append(Patch(facecolor="white", edgecolor="black", label="≠ disagrees with literature"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    ax.set_title(
        f"Chokepoint circumvention matrix ({len(doc['cells'])} cells, {doc.get('wall_s', 0):.0f} s)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# -- Markdown -----------------------------------------------------------------------------------------------
def markdown(doc: dict[str, Any]) -> str:
    cols, index = columns(doc), _index(doc)
    modes = len(doc["config"]["modes"])
    lines = [
        "| transport | " + " | ".join(_label(p, m, modes) for p, m in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for transport in rows(doc):
        cells = []
        for profile, mode in cols:
            cell = index.get((transport, profile, mode))
            if cell is None:
                cells.append("")
                continue
            mark = (" ≠" if cell.get("agrees") is False else "") + (" ↺" if cell.get("reused_from") else "")
            cells.append(f"{cell['outcome']}{mark}")
        lines.append(f"| {transport} | " + " | ".join(cells) + " |")
    dis = disagreements(doc)
    if dis:
        lines += ["", "Disagreements with the published record:", ""]
        for c in dis:
            lines.append(
                f"- {c['transport']} under {c['profile']} ({c['mode']}): observed {c['outcome']} ({c['how']}); "
                f"expected {c['expected']['outcome']} — {c['expected']['cite']}"
            )
    if through_time(doc):
        from chokepoint.matrix import timeline

        if any(c.get("reused_from") for c in doc["cells"]):
            lines += ["", "↺ not run: the cell of an earlier day whose loaded profile is the same (see below)."]
        return "\n".join(lines) + "\n" + timeline.markdown(doc)
    return "\n".join(lines) + "\n"


def render(doc: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Write ``matrix.html``, ``matrix.png`` and ``matrix.md`` beside ``matrix.json``; for a matrix at several
    days also ``matrix-timeline-<profile>.png`` per profile (``timelines``: their paths)."""
    from chokepoint.matrix import timeline

    out_dir.mkdir(parents=True, exist_ok=True)
    charts = timeline.pngs(doc, out_dir) if through_time(doc) else []
    by_profile = {}
    for profile in timeline.profiles(doc) if charts else ():
        path = out_dir / f"matrix-timeline-{timeline._slug(profile)}.png"
        if path in charts:
            by_profile[profile] = path
    page = out_dir / "matrix.html"
    page.write_text(html_page(doc, by_profile), encoding="utf-8")
    md = out_dir / "matrix.md"
    md.write_text(markdown(doc), encoding="utf-8")
    return {"html": page, "png": png(doc, out_dir / "matrix.png"), "md": md, "timelines": charts}


__all__ = [
    "COLOURS",
    "column_of",
    "columns",
    "index",
    "through_time",
    "disagreements",
    "html_page",
    "markdown",
    "png",
    "render",
    "rows",
]
