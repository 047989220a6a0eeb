"""Local administration on the database: the first token, schema upgrades."""

from __future__ import annotations

from chokepoint.manager import db
from chokepoint.manager.server import create_token, upgrade
from chokepoint.manager.store import Store


def test_the_first_admin_token_is_made_on_a_new_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    secret, row = create_token(url, "admin", "first")
    engine = db.make_engine(url)
    assert Store(engine).authenticate(secret).role == "admin" and row["role"] == "admin"
    assert Store(engine).audit_log()[0]["action"] == "token.create"
    engine.dispose()
    said = []
    assert upgrade(url, say=said.append) == db.head_revision() and "already" in said[0]
