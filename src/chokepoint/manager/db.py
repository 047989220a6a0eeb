"""Database engines for the manager's store and its schema migrations (Alembic).

One code path for both databases: SQLite by default (one file, write-ahead log, so readers never wait for
the writer) and PostgreSQL when ``--db postgresql://...`` names one (the driver is psycopg 3). The schema is
versioned by Alembic (``migrations/versions``); :func:`migrate` brings a database to the newest version and
is run by ``chokepoint manager serve`` at start (``chokepoint manager db upgrade`` runs it alone).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

#: Where ``alembic`` finds the migration scripts (a package resource path).
SCRIPT_LOCATION = "chokepoint.manager:migrations"
DEFAULT_DB = "sqlite:///chokepoint-manager.db"


class DatabaseError(Exception):
    """The database URL is unusable (a clear message, for the command line)."""


def normalize_url(url: str) -> str:
    """``url`` with the driver the manager uses: ``postgresql://`` becomes ``postgresql+psycopg://``; a bare
    path becomes a SQLite file. ``DatabaseError`` for anything else."""
    if "://" not in url:
        return f"sqlite:///{Path(url).resolve()}"
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"not a database URL: {url!r} ({exc})") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return url
    raise DatabaseError(f"unsupported database {backend!r}: use sqlite:///FILE or postgresql://USER@HOST/DB")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer, nor it them
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; a crash loses at most the last commits
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (see :func:`normalize_url`)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10}, pool_size=8)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)


def alembic_config(engine: Engine):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (the newest by default); a no-op when it is there already."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None: never migrated)."""
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from chokepoint.manager.db import alembic_config as _config

    return ScriptDirectory.from_config(_config(None)).get_current_head()  # type: ignore[arg-type]


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


__all__ = [
    "DEFAULT_DB",
    "DatabaseError",
    "current_revision",
    "head_revision",
    "make_engine",
    "migrate",
    "normalize_url",
]
