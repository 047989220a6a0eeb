"""What the command groups that talk to the manager share: the ``--url``/``--token`` options, the client, and
turning the manager's errors into one clear line and an exit code.

Exit codes: 0 done; 1 rejected as invalid (a policy error keeps its ``file:line:column``); 2 bad usage;
3 stale write (someone pushed first: look and retry); 4 not found; 5 manager unreachable; 6 token refused or
not allowed; 7 pushed, but nodes did not converge in time (the status table says which node runs what).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from chokepoint.manager.client import ENV_TOKEN, ENV_URL, ManagerClient, ManagerError, Unreachable

EXIT_INVALID, EXIT_USAGE, EXIT_CONFLICT, EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_DENIED, EXIT_NOT_CONVERGED = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
)

URL = typer.Option(None, "--url", envvar=ENV_URL, help="the manager (default http://127.0.0.1:8470)")
TOKEN = typer.Option(None, "--token", envvar=ENV_TOKEN, help="an API token (or set CHOKEPOINT_TOKEN)")
DEPLOYMENT = typer.Option(..., "--deployment", "-d", help="the deployment (one customer network)")


def out() -> Console:
    return Console(soft_wrap=True, highlight=False)


def fail(message: str, code: int) -> typer.Exit:
    Console(stderr=True, soft_wrap=True, highlight=False).print(f"error: {message}", markup=False)
    return typer.Exit(code)


def code_of(exc: ManagerError) -> int:
    if isinstance(exc, Unreachable):
        return EXIT_UNREACHABLE
    return {401: EXIT_DENIED, 403: EXIT_DENIED, 404: EXIT_NOT_FOUND, 409: EXIT_CONFLICT, 413: EXIT_INVALID}.get(
        exc.status, EXIT_INVALID if exc.status == 422 else EXIT_USAGE
    )


@contextmanager
def manager(url: str | None, token: str | None) -> Iterator[ManagerClient]:
    """A client; any manager error ends the command with its message and exit code."""
    client = ManagerClient(url, token)
    try:
        yield client
    except ManagerError as exc:
        hint = ""
        if exc.status == 409:
            hint = " (someone else wrote first: check `chokepoint policy status`, then retry)"
        elif exc.status == 401:
            hint = " (give --token or set CHOKEPOINT_TOKEN)"
        raise fail(f"{exc.detail}{hint}", code_of(exc)) from None
    finally:
        client.close()


def params_of(items: list[str]) -> dict[str, str]:
    from chokepoint.backends.options import param_override

    params = {}
    for item in items:
        try:
            key, value = param_override(item)
        except ValueError as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        params[key] = value
    return params
