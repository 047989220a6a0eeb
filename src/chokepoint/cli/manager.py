"""``chokepoint manager``: run the central manager, make tokens, upgrade its database, create deployments."""

from __future__ import annotations

import typer

from chokepoint.cli._api import DEPLOYMENT, EXIT_USAGE, TOKEN, URL, fail, manager, out
from chokepoint.manager.db import DEFAULT_DB, DatabaseError

manager_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="The central manager of a fleet of censor nodes (docs/manager.md)."
)
token_app = typer.Typer(add_completion=False, no_args_is_help=True, help="API tokens (stored hashed).")
db_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The manager's database.")
deployment_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Deployments (customer networks).")
manager_app.add_typer(token_app, name="token")
manager_app.add_typer(db_app, name="db")
manager_app.add_typer(deployment_app, name="deployment")

DB = typer.Option(
    DEFAULT_DB, "--db", envvar="CHOKEPOINT_MANAGER_DB", help="sqlite:///FILE or postgresql://USER@HOST/DB"
)


@manager_app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8470, "--port"),
    db: str = DB,
    max_events: int = typer.Option(2_000_000, "--max-events", help="event store bound (oldest removed, counted)"),
    retention_hours: float = typer.Option(168.0, "--retention-hours", help="events older than this are removed"),
    log_level: str = typer.Option("warning", "--log-level"),
) -> None:
    """Serve the API (/api/v1, OpenAPI at /docs), /metrics and the dashboard (/) until Ctrl-C."""
    from chokepoint.manager.app import Settings
    from chokepoint.manager.server import serve

    settings = Settings(db_url=db, max_events=max_events, retention_s=retention_hours * 3600)
    out().print(f"manager on http://{host}:{port}/ (database {db})")
    try:
        serve(settings, host, port, log_level=log_level)
    except DatabaseError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


@token_app.command("create")
def token_create_cmd(
    role: str = typer.Option(..., "--role", help="admin, operator, viewer or node"),
    name: str = typer.Option(None, "--name", help="who holds it (default: the role)"),
    deployment: str = typer.Option(None, "--deployment", "-d", help="operator and node tokens: their deployment"),
    db: str = DB,
) -> None:
    """Make a token straight in the database (the first admin token) and print it; only its hash is kept."""
    from chokepoint.manager.server import create_token
    from chokepoint.manager.store import NotFound

    try:
        secret, _ = create_token(db, role, name or role, deployment)
    except (ValueError, NotFound, DatabaseError) as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    typer.echo(secret)


@db_app.command("upgrade")
def db_upgrade_cmd(db: str = DB) -> None:
    """Bring the database schema to the newest migration (serve does this at start too)."""
    from chokepoint.manager.server import upgrade

    try:
        upgrade(db, say=lambda m: out().print(m))
    except DatabaseError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


@deployment_app.command("create")
def deployment_create_cmd(
    name: str = typer.Argument(..., help="lowercase letters, digits, '.', '_', '-'"),
    description: str = typer.Option("", "--description"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Create a deployment (admin token)."""
    with manager(url, token) as client:
        dep = client.create_deployment(name, description)
    out().print(f"deployment {dep['name']} created")


@deployment_app.command("list")
def deployment_list_cmd(url: str = URL, token: str = TOKEN) -> None:
    from rich.table import Table

    with manager(url, token) as client:
        rows = client.deployments()
    table = Table(show_edge=False, pad_edge=False)
    for column in ("deployment", "desired policy", "newest", "lists", "description"):
        table.add_column(column)
    for d in rows:
        lists = " ".join(f"{n}@{v}" for n, v in sorted(d["desired_lists"].items()))
        table.add_row(d["name"], str(d["desired_policy"] or "-"), str(d["policy_head"]), lists, d["description"])
    out().print(table)


@token_app.command("issue")
def token_issue_cmd(
    role: str = typer.Option(..., "--role"),
    name: str = typer.Option(..., "--name"),
    deployment: str = typer.Option(None, "--deployment", "-d"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Make a token through the API (admin token) and print it."""
    with manager(url, token) as client:
        typer.echo(client.create_token(name, role, deployment)["token"])


__all__ = ["DEPLOYMENT", "manager_app"]
