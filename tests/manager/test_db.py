"""Migrations and the same store code on SQLite (WAL) and on a real PostgreSQL server."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from chokepoint.manager import db
from chokepoint.manager.schema import metadata
from chokepoint.manager.store import Conflict, Store
from tests.manager.conftest import POLICY
from tests.manager.test_api_admin import _event


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:
        base = request.getfixturevalue("postgres_url")
        schema_db = f"t{uuid.uuid4().hex[:12]}"
        admin = db.make_engine(base)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"CREATE DATABASE {schema_db}"))
        admin.dispose()
        url = base.rsplit("/", 1)[0] + "/" + schema_db
    engine = db.make_engine(url)
    db.migrate(engine)
    yield engine
    engine.dispose()


def test_the_migrations_build_exactly_the_schema(engine):
    assert db.current_revision(engine) == db.head_revision()
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    db.migrate(engine)  # a second run is a no-op
    assert set(db.table_names(engine)) >= {"deployments", "nodes", "policy_versions", "list_versions", "events"}


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()


def test_database_urls():
    assert db.normalize_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize_url("x.db").startswith("sqlite:////")
    with pytest.raises(db.DatabaseError, match="unsupported database 'mysql'"):
        db.normalize_url("mysql://u@h/d")


def test_the_same_store_code_on_both_databases(engine):
    from chokepoint.manager.events import EventStore

    store = Store(engine)
    dep = store.create_deployment("a", "", "test")
    v1 = store.push_policy(dep["id"], {"policy.yaml": POLICY}, {}, author="t", message="m", expected=0)
    with pytest.raises(Conflict):
        store.push_policy(dep["id"], {"policy.yaml": POLICY}, {}, author="t", message="m", expected=0)
    store.push_list(dep["id"], "blocked", "x.test\n", count=1, author="t", message="", expected=0)
    desired = store.desired(store.deployment("a"))
    assert desired["policy"]["hash"] == v1["hash"] and desired["lists"]["blocked"]["number"] == 1
    node = store.register_node(dep["id"], "n1", {"mode": "inline"})
    store.heartbeat(
        node["id"], {"in_force": {"policy": 1, "state_hash": desired["state_hash"], "lists": {"blocked": 1}}}
    )
    assert store.node(node["id"])["state_hash"] == desired["state_hash"]
    events = EventStore(engine, store.bump, max_events=10)
    now = time.time()
    assert (
        events.ingest(dep["id"], node["id"], [{**_event(f"n{i}.test"), "timestamp": now + i} for i in range(15)]).stored
        == 15
    )
    events.enforce_bound()
    assert events.count() == 10 and store.counters()["events_evicted_size"] == 5
    rows = events.query([dep["id"]], server_name="n14.test")
    assert len(rows) == 1 and json.loads(rows[0]["record"])["chokepoint"]["rule"] == "block-sni"
    assert events.top(dep["id"], "rule", since=0)[0] == {"value": "block-sni", "count": 10}
