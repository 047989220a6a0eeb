"""``chokepoint nodes list``: a deployment's censor nodes as the manager sees them."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from chokepoint.cli._api import DEPLOYMENT, TOKEN, URL, manager, out

nodes_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Censor nodes: health and versions.")


@nodes_app.command("list")
def list_cmd(
    deployment: str = DEPLOYMENT,
    as_json: bool = typer.Option(False, "--json"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Health, version in force, last heartbeat, workers, verdicts and dropped events of every node."""
    with manager(url, token) as client:
        nodes = client.nodes(deployment)
    if as_json:
        typer.echo(json.dumps(nodes, indent=2))
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("node", "health", "in force", "desired", "heartbeat", "workers", "verdicts", "events sent/dropped"):
        table.add_column(column)
    for n in nodes:
        verdicts = n["counters"].get("verdicts_by_action") or {}
        workers = n["workers"]
        running = sum(1 for w in workers if w.get("running"))
        events = n["events"]
        age = n["heartbeat_age_s"]
        table.add_row(
            n["name"],
            n["health"],
            f"v{n['policy_in_force']}" if n["policy_in_force"] is not None else "none",
            f"v{n['desired_policy']}" if n["desired_policy"] else "-",
            "never" if age is None else f"{age:.1f} s ago",
            f"{running}/{len(workers)}",
            " ".join(f"{a}={c}" for a, c in sorted(verdicts.items())),
            f"{events.get('sent', 0)}/{events.get('dropped', 0)}",
        )
    out().print(table)
