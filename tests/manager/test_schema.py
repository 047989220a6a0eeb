"""The tables: every one created by the migrations (tests/manager/test_db.py compares them column by column)."""

from __future__ import annotations

from chokepoint.manager import db
from chokepoint.manager.schema import metadata


def test_every_table_comes_from_a_migration(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 's.db'}")
    db.migrate(engine)
    assert set(metadata.tables) | {"alembic_version"} == set(db.table_names(engine))
    engine.dispose()
