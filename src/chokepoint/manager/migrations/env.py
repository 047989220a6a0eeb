"""Alembic's environment for the manager: the engine comes from ``chokepoint.manager.db`` (never from a URL in
an ini file), so ``migrate()`` works the same on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import context

from chokepoint.manager.schema import metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
