"""``chokepoint policy push|diff|rollback|promote|status``: a deployment's policy through the manager's API.

``push`` sends a profile or rule file with the list files it names (or a bundled profile by name); the
manager validates it with the same loader as ``analyze`` and refuses it whole with ``file:line:column``.
``--wait S`` then watches the nodes until every one acknowledged the new version (exit 7 if not, with the
table of which node runs which version). Exit codes: see ``cli/_api.py``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.table import Table

from chokepoint.cli._api import (
    DEPLOYMENT,
    EXIT_INVALID,
    EXIT_NOT_CONVERGED,
    EXIT_USAGE,
    TOKEN,
    URL,
    fail,
    manager,
    out,
    params_of,
)
from chokepoint.manager import bundle
from chokepoint.policy.errors import PolicyError

policy_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="A deployment's policy: push, diff, roll back, watch its nodes."
)


def _bundle(source: str) -> dict[str, str]:
    try:
        return bundle.from_profile(source)
    except (PolicyError, bundle.BundleError) as exc:
        raise fail(str(exc), EXIT_INVALID) from None


def _head(client, deployment: str) -> int:
    return client.status(deployment)["policy_head"]


def status_table(status: dict[str, Any]) -> Table:
    desired = status["desired"]["policy"] or {}
    table = Table(
        title=f"{status['deployment']}: desired v{desired.get('number', '-')}, newest v{status['policy_head']}",
        show_edge=False,
        pad_edge=False,
    )
    for column in ("node", "health", "in force", "desired", "lists", "heartbeat", "error"):
        table.add_column(column)
    for node in status["nodes"]:
        lists = " ".join(f"{n}@{v}" for n, v in sorted((node["lists_in_force"] or {}).items()))
        age = node["heartbeat_age_s"]
        table.add_row(
            node["name"],
            node["health"],
            f"v{node['policy_in_force']}" if node["policy_in_force"] is not None else "none",
            f"v{node['desired_policy']}" + (" (canary)" if node["canary"] else "") if node["desired_policy"] else "-",
            lists,
            "never" if age is None else f"{age:.1f} s ago",
            node["last_error"] or "",
        )
    return table


def wait_converged(client, deployment: str, seconds: float) -> tuple[bool, dict[str, Any]]:
    """Poll the status until every node is in sync or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        status = client.status(deployment)
        if status["nodes"] and all(n["health"] == "in-sync" for n in status["nodes"]):
            return True, status
        if time.monotonic() >= deadline:
            return False, status
        time.sleep(0.1)


def _finish(client, deployment: str, wait: float, what: str) -> None:
    if wait <= 0:
        return
    started = time.monotonic()
    ok, status = wait_converged(client, deployment, wait)
    out().print(status_table(status))
    if not ok:
        raise fail(f"{what}: not every node enforces it after {wait:g} s (see the table)", EXIT_NOT_CONVERGED)
    out().print(f"{what}: every node enforces it ({time.monotonic() - started:.2f} s)")


@policy_app.command("push")
def push_cmd(
    source: str = typer.Argument(..., help="a profile or rule file (its list files come along), or a bundled name"),
    deployment: str = DEPLOYMENT,
    param: list[str] = typer.Option([], "--param", help="RULE.PARAM=VALUE override (repeatable)"),
    message: str = typer.Option("", "--message", "-m"),
    expect: int = typer.Option(None, "--expect", help="the newest version you saw (default: read it now)"),
    canary: list[str] = typer.Option([], "--canary", help="push to this node only (repeatable); promote later"),
    wait: float = typer.Option(0.0, "--wait", help="seconds to wait until every node enforces it"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Validate and push a new version to every node (or canary nodes)."""
    files = _bundle(source)
    params = params_of(param)
    with manager(url, token) as client:
        expected = _head(client, deployment) if expect is None else expect
        version = client.push_policy(
            deployment, expected=expected, files=files, params=params, message=message, canary=canary
        )
        where = f"canary nodes {', '.join(canary)}" if canary else "every node"
        out().print(f"v{version['number']} pushed to {where} (hash {version['hash'][:12]})")
        for warning in version["warnings"]:
            out().print(f"warning: {warning}")
        if not canary:
            _finish(client, deployment, wait, f"v{version['number']}")


@policy_app.command("diff")
def diff_cmd(
    source: str = typer.Argument(None, help="a local file to compare with the desired version"),
    deployment: str = DEPLOYMENT,
    start: int = typer.Option(None, "--from", help="compare two stored versions: from this one ..."),
    to: int = typer.Option(None, "--to", help="... to this one (default: the newest)"),
    param: list[str] = typer.Option([], "--param"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """A unified diff: a local file against the desired version, or two stored versions."""
    with manager(url, token) as client:
        status = client.status(deployment)
        if source is not None:
            desired = (status["desired"]["policy"] or {}).get("number")
            old = client.policy_version(deployment, desired) if desired else None
            text = bundle.diff(old, {"files": _bundle(source), "params": params_of(param)}, f"v{desired}", "local")
        else:
            target = to or status["policy_head"]
            if not target:
                raise fail("no version pushed yet", EXIT_USAGE)
            text = client.policy_diff(deployment, target, start)["diff"]
    typer.echo(text or "no difference", nl=not text)


@policy_app.command("rollback")
def rollback_cmd(
    deployment: str = DEPLOYMENT,
    to: int = typer.Option(..., "--to", help="the earlier version to enforce again"),
    message: str = typer.Option("", "--message", "-m"),
    expect: int = typer.Option(None, "--expect"),
    wait: float = typer.Option(0.0, "--wait"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Enforce an earlier version again (stored as a new version that copies it)."""
    with manager(url, token) as client:
        expected = _head(client, deployment) if expect is None else expect
        version = client.rollback_policy(deployment, to, expected=expected, message=message)
        out().print(f"v{version['number']} = v{to} pushed to every node")
        _finish(client, deployment, wait, f"v{version['number']}")


@policy_app.command("promote")
def promote_cmd(
    deployment: str = DEPLOYMENT,
    number: int = typer.Option(None, "--version", help="default: the newest (a canary's)"),
    wait: float = typer.Option(0.0, "--wait"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Make a version (a canary's) desired on every node."""
    with manager(url, token) as client:
        head = _head(client, deployment)
        client.promote(deployment, number or head, expected=head)
        out().print(f"v{number or head} promoted to every node")
        _finish(client, deployment, wait, f"v{number or head}")


@policy_app.command("status")
def status_cmd(
    deployment: str = DEPLOYMENT,
    history: int = typer.Option(5, "--history", help="versions of the history to show"),
    as_json: bool = typer.Option(False, "--json"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Which node runs which version, its health and last heartbeat; the newest versions."""
    with manager(url, token) as client:
        status = client.status(deployment)
        versions = client.policy_versions(deployment)[:history]
    if as_json:
        typer.echo(json.dumps({"status": status, "versions": versions}, indent=2))
        return
    out().print(status_table(status))
    table = Table(title="history", show_edge=False, pad_edge=False)
    for column in ("version", "author", "when", "message", "hash"):
        table.add_column(column)
    for v in versions:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v["created_at"]))
        label = f"v{v['number']}" + (f" (= v{v['rollback_of']})" if v["rollback_of"] else "")
        table.add_row(label, v["author"], when, v["message"], v["hash"][:12])
    out().print(table)
