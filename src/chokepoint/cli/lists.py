"""``chokepoint lists import|push|rollback``: feed a deployment's managed lists (docs/manager.md).

``import`` reads a published blocklist (``--format citizenlab|plain|rkn-dump``: :mod:`chokepoint.manager.feeds`)
and pushes its entries with their provenance (``--source``, ``--date``, ``--licence``); ``push`` sends a file
already in the policy's list syntax. Nodes swap only that list's matchers. Exit codes: see ``cli/_api.py``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from chokepoint.cli._api import DEPLOYMENT, EXIT_INVALID, EXIT_USAGE, TOKEN, URL, fail, manager, out
from chokepoint.cli.policy import _finish
from chokepoint.manager import feeds

lists_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Managed lists: import published blocklists, push, roll back."
)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from None


def _head(client, deployment: str, name: str) -> int:
    for item in client.lists(deployment):
        if item["name"] == name:
            return item["number"]
    return 0


@lists_app.command("import")
def import_cmd(
    path: Path = typer.Argument(..., help="the published list file"),
    deployment: str = DEPLOYMENT,
    name: str = typer.Option(..., "--list", "-l", help="the list of the policy it feeds"),
    fmt: str = typer.Option(..., "--format", "-f", help=f"one of: {', '.join(feeds.FORMATS)}"),
    kind: str = typer.Option("domain", "--kind", help="domain or cidr: what to take from the file"),
    category: list[str] = typer.Option([], "--category", help="citizenlab: keep these category codes only"),
    source: str = typer.Option("", "--source", help="where it comes from (URL, paper)"),
    date: str = typer.Option("", "--date", help="the source's date (default: what the file states, if it does)"),
    licence: str = typer.Option("", "--licence", help="the source's licence"),
    message: str = typer.Option("", "--message", "-m"),
    expect: int = typer.Option(None, "--expect", help="the list version you saw (default: read it now)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="read and report; push nothing"),
    wait: float = typer.Option(0.0, "--wait", help="seconds to wait until every node enforces it"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Read a published blocklist and push its entries, with provenance, as a new list version."""
    try:
        feed = feeds.read(fmt, _read(path), kind, category)
    except feeds.FeedError as exc:
        raise fail(f"{path}: {exc}", EXIT_INVALID) from None
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(feed.skipped.items())) or "nothing"
    out().print(f"{path}: {feed.rows} rows, {len(feed.entries)} {kind} entries; skipped {skipped}")
    for sample in feed.samples:
        out().print(f"  skipped {sample}", markup=False)
    if not licence:
        out().print("note: no --licence given; the list version records it as unstated")
    if dry_run:
        return
    with manager(url, token) as client:
        expected = _head(client, deployment, name) if expect is None else expect
        version = client.push_list(
            deployment,
            name,
            feed.text(),
            expected=expected,
            message=message or f"import {path.name}",
            source=source or path.name,
            source_date=date or feed.stated_date,
            licence=licence,
            format=fmt,
        )
        out().print(f"{name}@{version['number']} pushed: {version['count']} entries (hash {version['hash'][:12]})")
        _finish(client, deployment, wait, f"{name}@{version['number']}")


@lists_app.command("push")
def push_cmd(
    path: Path = typer.Argument(..., help="entries in the policy's list syntax, one per line"),
    deployment: str = DEPLOYMENT,
    name: str = typer.Option(..., "--list", "-l"),
    source: str = typer.Option("", "--source"),
    date: str = typer.Option("", "--date"),
    licence: str = typer.Option("", "--licence"),
    message: str = typer.Option("", "--message", "-m"),
    expect: int = typer.Option(None, "--expect"),
    wait: float = typer.Option(0.0, "--wait"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Push a list file as the new version of a managed list."""
    try:
        text = _read(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"{path} is not UTF-8: {exc.reason}", EXIT_INVALID) from None
    with manager(url, token) as client:
        expected = _head(client, deployment, name) if expect is None else expect
        version = client.push_list(
            deployment,
            name,
            text,
            expected=expected,
            message=message,
            source=source or path.name,
            source_date=date,
            licence=licence,
            format="list",
        )
        out().print(f"{name}@{version['number']} pushed: {version['count']} entries (hash {version['hash'][:12]})")
        _finish(client, deployment, wait, f"{name}@{version['number']}")


@lists_app.command("rollback")
def rollback_cmd(
    deployment: str = DEPLOYMENT,
    name: str = typer.Option(..., "--list", "-l"),
    to: int = typer.Option(..., "--to"),
    wait: float = typer.Option(0.0, "--wait"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Enforce an earlier version of a list again."""
    with manager(url, token) as client:
        version = client.rollback_list(deployment, name, to, expected=_head(client, deployment, name))
        out().print(f"{name}@{version['number']} = {name}@{to} pushed")
        _finish(client, deployment, wait, f"{name}@{version['number']}")
