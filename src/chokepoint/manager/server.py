"""``chokepoint manager serve``: the manager app under uvicorn, and the local administration that needs no
running manager (the first admin token, schema upgrades) straight on the database."""

from __future__ import annotations

from collections.abc import Callable

from chokepoint.manager import db
from chokepoint.manager.app import Settings, create_app
from chokepoint.manager.store import Store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8470


def serve(
    settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, log_level: str = "warning"
) -> None:
    """Run until SIGINT/SIGTERM (uvicorn's graceful shutdown)."""
    import uvicorn

    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=3)


def create_token(db_url: str, role: str, name: str, deployment: str | None = None) -> tuple[str, dict]:
    """A token made directly in the database (how the first admin token comes to exist)."""
    engine = db.make_engine(db_url)
    try:
        db.migrate(engine)
        secret, row = Store(engine).create_token(name, role, deployment)
        Store(engine).audit("local", "token.create", target=f"{name} ({role})", deployment_id=row["deployment_id"])
        return secret, row
    finally:
        engine.dispose()


def upgrade(db_url: str, say: Callable[[str], None] = print) -> str:
    engine = db.make_engine(db_url)
    try:
        before = db.current_revision(engine)
        db.migrate(engine)
        after = db.current_revision(engine)
        say(f"database at revision {after}" + (f" (was {before})" if before != after else " (already)"))
        return after or ""
    finally:
        engine.dispose()


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "create_token", "serve", "upgrade"]
