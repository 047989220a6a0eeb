"""The validation report: confusion matrix, accuracies, every miss with its cause; terminal, JSON and HTML.

The confusion matrix counts scenarios by (ground-truth technique class, classified technique class): rows
are what the censor did (its event log), columns what the probe concluded. Accuracy = the diagonal over
the total. The OONI and attribution accuracies count only the scenarios where those checks apply.
The HTML is one self-contained page (inline CSS, no script): a heatmap of the matrix, the accuracies and
the scenarios, misses first.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chokepoint.validate.scenarios import TECHNIQUES

__all__ = [
    "ConfusionMatrix",
    "Report",
    "REPORT_VERSION",
    "build_report",
    "load_report",
    "render_terminal",
    "write_html",
    "write_json",
]

REPORT_VERSION = 1
TARGET_ACCURACY = 0.95


def _order(labels: Iterable[str]) -> list[str]:
    known = {name: i for i, name in enumerate(TECHNIQUES)}
    return sorted(set(labels), key=lambda x: (known.get(x, len(known)), x))


@dataclass(frozen=True, slots=True)
class ConfusionMatrix:
    """Counts by (truth, classified); ``labels`` are the classes present on either side, in TECHNIQUES order."""

    labels: tuple[str, ...]
    counts: Mapping[tuple[str, str], int]

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> ConfusionMatrix:
        counts = Counter(pairs)
        labels = _order(x for pair in counts for x in pair)
        return cls(tuple(labels), dict(counts))

    def count(self, truth: str, classified: str) -> int:
        return self.counts.get((truth, classified), 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def correct(self) -> int:
        return sum(n for (t, c), n in self.counts.items() if t == c)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None

    def row_total(self, truth: str) -> int:
        return sum(n for (t, _), n in self.counts.items() if t == truth)

    def column_total(self, classified: str) -> int:
        return sum(n for (_, c), n in self.counts.items() if c == classified)

    def recall(self, label: str) -> float | None:
        total = self.row_total(label)
        return self.count(label, label) / total if total else None

    def precision(self, label: str) -> float | None:
        total = self.column_total(label)
        return self.count(label, label) / total if total else None

    @property
    def max_cell(self) -> int:
        return max(self.counts.values(), default=0)

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "rows": [[self.count(t, c) for c in self.labels] for t in self.labels],
            "total": self.total,
            "correct": self.correct,
            "accuracy": self.accuracy,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConfusionMatrix:
        labels = tuple(data["labels"])
        counts = {(t, c): n for t, row in zip(labels, data["rows"]) for c, n in zip(labels, row) if n}
        return cls(labels, counts)


def _ratio(ok: int, total: int) -> float | None:
    return ok / total if total else None


@dataclass(slots=True)
class Report:
    """Everything the report formats show; ``results`` are ``ScenarioResult.to_json()`` dicts."""

    matrix: ConfusionMatrix
    results: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def _check(self, name: str) -> tuple[int, int]:
        values = [r["checks"].get(name) for r in self.results if r["checks"].get(name) is not None]
        return sum(1 for v in values if v), len(values)

    @property
    def accuracy(self) -> float | None:
        """Technique accuracy: the confusion matrix's diagonal (scenarios that errored count as misses)."""
        return _ratio(self.matrix.correct, self.matrix.total)

    def accuracies(self) -> dict[str, dict[str, Any]]:
        """The probe scenarios' accuracies (technique, ooni, attribution, expectation, whole scenarios), then,
        when trace scenarios ran, theirs: ``trace`` (outcome, hop and path all right), ``trace_outcome``,
        ``trace_hop``, ``trace_path``, ``trace_expectation``."""
        out = {"technique": {"ok": self.matrix.correct, "total": self.matrix.total, "accuracy": self.accuracy}}
        for name in ("ooni", "attribution", "expectation"):
            ok, total = self._check(name)
            out[name] = {"ok": ok, "total": total, "accuracy": _ratio(ok, total)}
        probes = [r for r in self.results if _kind(r) == "probe"]
        passed = sum(1 for r in probes if r["passed"])
        out["scenarios"] = {"ok": passed, "total": len(probes), "accuracy": _ratio(passed, len(probes))}
        traces = self.traces
        if traces:
            right = sum(1 for r in traces if _trace_right(r))
            out["trace"] = {"ok": right, "total": len(traces), "accuracy": _ratio(right, len(traces))}
            for name in ("trace_outcome", "trace_hop", "trace_path", "trace_expectation"):
                ok, total = self._check(name)
                out[name] = {"ok": ok, "total": total, "accuracy": _ratio(ok, total)}
        return out

    @property
    def traces(self) -> list[dict[str, Any]]:
        """The trace scenarios' results."""
        return [r for r in self.results if _kind(r) == "trace"]

    @property
    def trace_accuracy(self) -> float | None:
        """Trace scenarios whose outcome, censor hop and path are all right, over all trace scenarios."""
        traces = self.traces
        return _ratio(sum(1 for r in traces if _trace_right(r)), len(traces))

    def met(self) -> bool:
        """Every accuracy the run has meets the target: technique (probe scenarios), trace (trace scenarios)."""
        values = [a for a in (self.accuracy, self.trace_accuracy) if a is not None]
        return bool(values) and all(a >= TARGET_ACCURACY for a in values)

    @property
    def misses(self) -> list[tuple[str, str]]:
        """(scenario name, cause) for every failed check, in scenario order."""
        return [(r["scenario"]["name"], m) for r in self.results for m in r["misses"]]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION,
            "meta": self.meta,
            "accuracy": self.accuracy,
            "trace_accuracy": self.trace_accuracy,
            "target_accuracy": TARGET_ACCURACY,
            "accuracies": self.accuracies(),
            "confusion_matrix": self.matrix.to_json(),
            "misses": [{"scenario": n, "cause": c} for n, c in self.misses],
            "results": self.results,
        }


def _kind(result: Mapping[str, Any]) -> str:
    return str(result.get("kind") or "probe")


def _trace_right(result: Mapping[str, Any]) -> bool:
    """A trace scenario that ran and got the outcome, the hop and the path right (n/a counts as right)."""
    checks = result["checks"]
    return not result.get("error") and all(
        checks.get(c) is not False for c in ("trace_outcome", "trace_hop", "trace_path")
    )


def build_report(results: Sequence[Any], meta: Mapping[str, Any] | None = None) -> Report:
    """The report of scored ``ScenarioResult``s (or their ``to_json()`` dicts). A scenario that errored
    counts as classified "error" (a miss). Trace scenarios stay out of the technique matrix: they have
    their own accuracies (``Report.trace_accuracy``)."""
    rows = [r if isinstance(r, dict) else r.to_json() for r in results]
    pairs = [
        (r["truth_class"], "error" if r.get("error") else r["classified_class"]) for r in rows if _kind(r) == "probe"
    ]
    return Report(ConfusionMatrix.from_pairs(pairs), rows, dict(meta or {}))


def write_json(report: Report, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(report.to_json(), indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return path


def load_report(path: str | Path) -> Report:
    """Read a report written by :func:`write_json` back (the matrix and results round-trip)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("version") != REPORT_VERSION:
        raise ValueError(f"{path}: not a validation report of version {REPORT_VERSION}")
    return Report(ConfusionMatrix.from_json(data["confusion_matrix"]), list(data["results"]), dict(data["meta"]))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


# ------------------------------------------------------------------------------------------------ terminal


def render_terminal(report: Report, console: Any) -> None:
    """The matrix, the accuracies and every miss, as rich tables on ``console``."""
    from rich.table import Table

    m = report.matrix
    traces = report.traces
    if m.total or not traces:
        _render_matrix(m, console)
    acc = Table(title="accuracy", show_header=True)
    acc.add_column("check")
    acc.add_column("correct", justify="right")
    acc.add_column("accuracy", justify="right")
    for name, value in report.accuracies().items():
        if value["total"] or not traces:  # a run of trace scenarios only: no empty probe rows
            acc.add_row(name, f"{value['ok']}/{value['total']}", _pct(value["accuracy"]))
    console.print(acc)
    _render_traces(report, console)
    _render_rest(report, console)


def _render_matrix(m: ConfusionMatrix, console: Any) -> None:
    from rich.table import Table

    table = Table(title="confusion matrix: ground truth (rows) x classified (columns)", show_lines=False)
    table.add_column("truth \\ classified", style="bold")
    for label in m.labels:
        table.add_column(label, justify="right")
    table.add_column("recall", justify="right")
    for truth in m.labels:
        cells = []
        for classified in m.labels:
            n = m.count(truth, classified)
            style = "green" if truth == classified else "red"
            cells.append(f"[{style}]{n}[/]" if n else "[dim]·[/]")
        table.add_row(truth, *cells, _pct(m.recall(truth)))
    table.add_row("precision", *[_pct(m.precision(c)) for c in m.labels], "", style="dim")
    console.print(table)


def _render_traces(report: Report, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    traces = report.traces
    if traces:
        tt = Table(title="censor location (trace): ground truth from the topology and the censor's event log")
        for column in ("scenario", "mode", "hops c/s", "proto", "truth", "trace", "right"):
            tt.add_column(column)
        for r in traces:
            s = r["scenario"]
            spec = s.get("trace") or {}
            t = r.get("trace") or {}
            right = _trace_right(r)
            tt.add_row(
                escape(s["name"]),
                s["mode"],
                f"{spec.get('hops_client')}/{spec.get('hops_server')}",
                str(spec.get("protocol")),
                escape(_trace_text(t.get("expected"))),
                escape("error" if r.get("error") else _trace_text(t.get("got"))),
                "[green]yes[/]" if right else "[red]no[/]",
            )
        console.print(tt)


def _render_rest(report: Report, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    m = report.matrix
    traces = report.traces
    misses = report.misses
    if misses:
        t = Table(title=f"misses ({len(misses)})", show_lines=True)
        t.add_column("scenario", style="bold", no_wrap=True)
        t.add_column("cause")
        for name, cause in misses:
            t.add_row(escape(name), escape(cause))
        console.print(t)
    if m.total or not traces:
        verdict = report.accuracy is not None and report.accuracy >= TARGET_ACCURACY
        console.print(
            f"technique accuracy {_pct(report.accuracy)} over {m.total} scenario(s) "
            f"(target {_pct(TARGET_ACCURACY)}): " + ("[green]met[/]" if verdict else "[red]not met[/]")
        )
    if traces:
        trace_ok = report.trace_accuracy is not None and report.trace_accuracy >= TARGET_ACCURACY
        console.print(
            f"trace accuracy (outcome, hop and path right) {_pct(report.trace_accuracy)} over {len(traces)} "
            f"trace scenario(s) (target {_pct(TARGET_ACCURACY)}): "
            + ("[green]met[/]" if trace_ok else "[red]not met[/]")
        )


def _trace_text(answer: Mapping[str, Any] | None) -> str:
    """``outcome, hop N (ip), path`` of a trace answer or its ground truth."""
    if not answer:
        return "-"
    censor = answer.get("censor") or None
    hop = f", hop {censor.get('ttl')} ({censor.get('ip')})" if isinstance(censor, Mapping) else ""
    path = f", {answer.get('path')}" if answer.get("outcome") == "censor-identified" else ""
    return f"{answer.get('outcome')}{hop}{path}"


# ------------------------------------------------------------------------------------------------ HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:4px 8px;font-size:.9em}
th{background:#f3f3f3}
table.matrix td{text-align:center;min-width:3.2em;font-variant-numeric:tabular-nums}
table.matrix th.col{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;font-weight:normal}
table.matrix th.row{text-align:left;font-weight:normal;white-space:nowrap}
td.zero{color:#bbb}
td.diag{outline:2px solid #2a7a2a;outline-offset:-2px}
.ok{color:#1b6e1b;font-weight:bold}.bad{color:#b00020;font-weight:bold}.na{color:#888}
td.cause{font-family:ui-monospace,monospace;font-size:.8em;white-space:pre-wrap;max-width:900px}
tr.miss{background:#fff4f4}
"""


def _cell_style(n: int, peak: int, diagonal: bool) -> str:
    if n == 0:
        return ""
    strength = 0.15 + 0.75 * n / peak if peak else 0.0
    rgb = "34,139,34" if diagonal else "200,30,30"
    text = "#fff" if strength > 0.55 else "#111"
    return f' style="background:rgba({rgb},{strength:.2f});color:{text}"'


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _mark(value: bool | None) -> str:
    if value is None:
        return '<span class="na">n/a</span>'
    return '<span class="ok">yes</span>' if value else '<span class="bad">no</span>'


def render_html(report: Report) -> str:
    m = report.matrix
    peak = m.max_cell
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Chokepoint validation report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Chokepoint validation report</h1>",
    ]
    meta = report.meta
    if meta:
        out.append("<p>" + " · ".join(f"{_e(k)}: <b>{_e(v)}</b>" for k, v in meta.items()) + "</p>")
    out.append(
        f"<p>Technique accuracy <b>{_pct(report.accuracy)}</b> ({m.correct}/{m.total}); "
        f"target {_pct(TARGET_ACCURACY)}.</p>"
    )
    out.append(
        "<h2>Confusion matrix</h2><p>Rows: the technique the censor applied (its event log, the ground "
        "truth); columns: the technique the probe classified. Green: agreement; red: a miss.</p>"
    )
    out.append('<table class="matrix" id="confusion-matrix"><thead><tr><th>truth \\ classified</th>')
    out += [f'<th class="col">{_e(c)}</th>' for c in m.labels]
    out.append('<th class="col">total</th><th class="col">recall</th></tr></thead><tbody>')
    for truth in m.labels:
        out.append(f'<tr><th class="row">{_e(truth)}</th>')
        for classified in m.labels:
            n = m.count(truth, classified)
            cls = ["diag"] if truth == classified else []
            if n == 0:
                cls.append("zero")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            out.append(
                f"<td{attr}{_cell_style(n, peak, truth == classified)} "
                f'title="truth {_e(truth)}, classified {_e(classified)}: {n}">{n}</td>'
            )
        out.append(f"<td>{m.row_total(truth)}</td><td>{_pct(m.recall(truth))}</td></tr>")
    out.append(
        '<tr><th class="row">precision</th>'
        + "".join(f"<td>{_pct(m.precision(c))}</td>" for c in m.labels)
        + "<td></td><td></td></tr>"
    )
    out.append("</tbody></table>")
    out.append("<h2>Accuracy</h2><table><tr><th>check</th><th>correct</th><th>accuracy</th></tr>")
    for name, value in report.accuracies().items():
        out.append(
            f"<tr><td>{_e(name)}</td><td>{value['ok']}/{value['total']}</td><td>{_pct(value['accuracy'])}</td></tr>"
        )
    out.append("</table>")
    traces = report.traces
    if traces:
        out.append(
            f'<h2>Censor location (trace)</h2><p id="trace-accuracy">Trace accuracy <b>{_pct(report.trace_accuracy)}</b> '
            f"({sum(1 for r in traces if _trace_right(r))}/{len(traces)}): outcome, hop and path right. Ground "
            "truth from the topology (the censor is hop hops_client + 1) and the censor's event log (the trigger "
            "dropped inline: in-path; mirrored, or forwarded inline: on-path).</p>"
        )
        out.append(
            '<table id="traces"><tr><th>scenario</th><th>profile</th><th>mode</th><th>hops c/s</th><th>protocol</th>'
            "<th>truth</th><th>trace</th><th>outcome</th><th>hop</th><th>path</th><th>time</th></tr>"
        )
        for r in sorted(traces, key=_trace_right):
            s = r["scenario"]
            spec = s.get("trace") or {}
            t = r.get("trace") or {}
            row_class = "" if _trace_right(r) else ' class="miss"'
            got = "error" if r.get("error") else _trace_text(t.get("got"))
            out.append(
                f"<tr{row_class}><td>{_e(s['name'])}</td><td>{_e(s['profile'])}</td><td>{_e(s['mode'])}</td>"
                f"<td>{_e(spec.get('hops_client'))}/{_e(spec.get('hops_server'))}</td><td>{_e(spec.get('protocol'))}</td>"
                f"<td>{_e(_trace_text(t.get('expected')))}</td><td>{_e(got)}</td>"
                f"<td>{_mark(r['checks'].get('trace_outcome'))}</td><td>{_mark(r['checks'].get('trace_hop'))}</td>"
                f"<td>{_mark(r['checks'].get('trace_path'))}</td><td>{r['duration_s']:.1f} s</td></tr>"
            )
        out.append("</table>")
    misses = report.misses
    out.append(f"<h2>Misses ({len(misses)})</h2>")
    if misses:
        out.append('<table id="misses"><tr><th>scenario</th><th>cause</th></tr>')
        out += [f'<tr class="miss"><td>{_e(n)}</td><td class="cause">{_e(c)}</td></tr>' for n, c in misses]
        out.append("</table>")
    else:
        out.append("<p>None.</p>")
    out.append(
        '<h2>Scenarios</h2><table id="scenarios"><tr><th>scenario</th><th>profile</th><th>mode</th>'
        "<th>target</th><th>truth</th><th>classified</th><th>OONI blocking / accessible</th>"
        "<th>attribution</th><th>technique</th><th>OONI</th><th>attr.</th><th>time</th></tr>"
    )
    for r in sorted((r for r in report.results if _kind(r) == "probe"), key=lambda r: r["passed"]):
        s = r["scenario"]
        attribution = ", ".join(f"{f['kind']}: {f['best']}" for f in r.get("attribution") or ()) or "-"
        row_class = "" if r["passed"] else ' class="miss"'
        out.append(
            f"<tr{row_class}><td>{_e(s['name'])}</td><td>{_e(s['profile'] or '-')}</td><td>{_e(s['mode'])}</td>"
            f"<td>{_e(s['target'])}</td><td>{_e(r['truth_class'])}</td>"
            f"<td>{_e('error' if r.get('error') else r['classified_class'])}</td>"
            f"<td>{_e(json.dumps(r['blocking']))} / {_e(json.dumps(r['accessible']))}</td><td>{_e(attribution)}</td>"
            f"<td>{_mark(r['checks'].get('technique'))}</td><td>{_mark(r['checks'].get('ooni'))}</td>"
            f"<td>{_mark(r['checks'].get('attribution'))}</td><td>{r['duration_s']:.1f} s</td></tr>"
        )
    out.append("</table></body></html>")
    return "\n".join(out) + "\n"


def write_html(report: Report, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render_html(report), encoding="utf-8")
    return path
