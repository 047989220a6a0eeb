"""Human output of ``analyze``: a rich table of flows and verdicts, and a summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

_CONTEXT_FIELDS = frozenset({"transport", "direction", "app_proto"})
_STYLE = {"allow": "green", "log": "cyan", "flagged": "magenta", "throttle": "yellow", "delay": "yellow"}


def flow_name(record: dict[str, Any]) -> str:
    """The name a flow is about: SNI, Host, QUIC SNI or DNS query name."""
    for proto, key in (("tls", "sni"), ("quic", "sni"), ("http", "hostname"), ("dns", "rrname")):
        value = record.get(proto, {}).get(key)
        if value:
            return value
    return ""


def _short(value, width: int = 48) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def endpoint(ip: str, port: int | None) -> str:
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _interesting(record: dict[str, Any]) -> bool:
    cp = record["chokepoint"]
    return cp["verdict"] != "allow" or bool(cp.get("logs"))


def _rows_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Flows and verdicts", header_style="bold", expand=False)
    table.add_column("#", justify="right")
    table.add_column("flow (client → server)", no_wrap=True)
    table.add_column("app")
    table.add_column("name", overflow="fold")
    table.add_column("verdict")
    table.add_column("rule")
    table.add_column("why", overflow="fold", ratio=1)
    for i, r in enumerate(rows, 1):
        cp = r["chokepoint"]
        verdict = cp["verdict"]
        rule = cp.get("rule") or ""
        reason = cp.get("reason", "")
        evidence = cp.get("evidence") or []
        if verdict == "allow" and cp.get("logs"):
            log = cp["logs"][0]
            verdict, rule, reason, evidence = (
                log.get("verdict", "log"),
                log["rule"],
                log["reason"],
                log.get("evidence") or [],
            )
        if evidence:
            evidence = sorted(evidence, key=lambda e: e["field"] in _CONTEXT_FIELDS)  # the telling fact first
            reason = "; ".join(f"{e['field']}={_short(e['value'])} ~ {_short(e['matched'])}" for e in evidence[:2])
        style = _STYLE.get(verdict, "bold red")
        flow = f"{r['proto']} {endpoint(r['src_ip'], r.get('src_port'))} → {endpoint(r['dest_ip'], r.get('dest_port'))}"
        table.add_row(str(i), flow, r["app_proto"], flow_name(r), f"[{style}]{verdict}[/]", rule, reason)
    return table


class Tally:
    """The summary's counts, gathered one record at a time (the table never holds every record)."""

    def __init__(self) -> None:
        self.flows = 0
        self.by_app: Counter[str] = Counter()
        self.by_rule: Counter[str] = Counter()
        self.logs: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter()

    def add(self, r: dict[str, Any]) -> None:
        self.flows += 1
        self.by_app[r["app_proto"]] += 1
        cp = r["chokepoint"]
        if cp["verdict"] != "allow":
            self.by_rule[f"{cp['verdict']} by {cp['rule']}"] += 1
        for log in cp.get("logs", []):
            self.logs[log["rule"]] += 1
        self.malformed.update(cp.get("malformed", {}))


def summary_table(results, records: Iterable[dict[str, Any]] | Tally) -> Table:
    tally = records if isinstance(records, Tally) else _tally(records)
    table = Table(title="Summary", show_header=False, expand=False)
    table.add_column("what", style="bold")
    table.add_column("count")
    frames = sum(r.frames for r in results)
    packets = sum(r.packets for r in results)
    table.add_row("captures", str(len(results)))
    table.add_row("frames read", str(frames))
    table.add_row("packets decoded", str(packets))
    table.add_row("flows", str(tally.flows))
    table.add_row("flows by app_proto", ", ".join(f"{k} {v}" for k, v in tally.by_app.most_common()))
    table.add_row("verdicts by rule", ", ".join(f"{k}: {v}" for k, v in tally.by_rule.most_common()) or "none")
    if tally.logs:
        table.add_row("logged by rule", ", ".join(f"{k}: {v}" for k, v in tally.logs.most_common()))
    if tally.malformed:
        table.add_row("malformed, by dissector", ", ".join(f"{k} {v}" for k, v in tally.malformed.most_common()))
    skipped = Counter()
    for r in results:
        skipped.update(r.skipped)
    table.add_row("frames skipped, by reason", ", ".join(f"{k} {v}" for k, v in skipped.most_common()) or "none")
    engine = Counter()
    for r in results:
        engine.update(r.engine)
    flow_counters = {k: v for k, v in engine.items() if k.startswith("flows_") and v}
    if flow_counters:
        table.add_row("flow table", ", ".join(f"{k[6:]} {v}" for k, v in sorted(flow_counters.items())))
    return table


def _tally(records: Iterable[dict[str, Any]]) -> Tally:
    tally = Tally()
    for r in records:
        tally.add(r)
    return tally


def print_report(
    console: Console, results, records: Iterable[dict[str, Any]], *, limit: int | None = 200, show_allowed: bool = True
) -> None:
    """The flows table and the summary, from one pass over ``records`` (kept: at most ``limit`` rows of each
    kind, so that a capture of millions of flows is reported in bounded memory)."""
    tally = Tally()
    shown: list[dict[str, Any]] = []
    allowed: list[dict[str, Any]] = []
    for r in records:
        tally.add(r)
        if _interesting(r):
            if limit is None or len(shown) < limit:
                shown.append(r)
        elif show_allowed and (limit is None or len(allowed) < limit):
            allowed.append(r)
    rows = (shown + allowed)[:limit] if limit is not None else shown + allowed
    table = _rows_table(rows)
    hidden = tally.flows - len(rows)
    console.print(table)
    if hidden:
        console.print(f"[dim]{hidden} more flows not shown (use --format eve for all)[/]")
    console.print(summary_table(results, tally))
