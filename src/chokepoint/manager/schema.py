"""The manager's tables (SQLAlchemy Core). The migrations in ``migrations/versions`` create exactly these;
``tests/manager/test_db.py`` checks that the two never drift apart.

Times are epoch seconds (float) everywhere: SQLite and PostgreSQL store them alike and the API returns them
as they are. JSON documents are stored as text (``JSON_TEXT``), so both databases read back the same bytes.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

#: An auto-incrementing id: SQLite's rowid alias needs INTEGER, PostgreSQL gets a BIGINT identity.
ID = BigInteger().with_variant(Integer(), "sqlite")
JSON_TEXT = Text

deployments = Table(
    "deployments",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(128), nullable=False),
    # the policy version every node should enforce (None: nothing pushed yet) and the newest one
    Column("desired_policy", Integer, nullable=True),
    Column("policy_head", Integer, nullable=False, default=0),
    # {"LIST": version number} the nodes should enforce
    Column("desired_lists", JSON_TEXT, nullable=False, default="{}"),
)

nodes = Table(
    "nodes",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("deployment_id", ID, ForeignKey("deployments.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("registered_at", Float, nullable=False),
    Column("last_heartbeat", Float, nullable=True),
    # a canary push pins a node to a version other than the deployment's (None: follow the deployment)
    Column("desired_override", Integer, nullable=True),
    Column("policy_in_force", Integer, nullable=True),
    Column("state_hash", String(64), nullable=True),  # the hash the node acknowledged (policy + lists)
    Column("lists_in_force", JSON_TEXT, nullable=False, default="{}"),
    Column("last_error", Text, nullable=True),
    Column("health", JSON_TEXT, nullable=False, default="{}"),  # the last heartbeat's document
    Column("info", JSON_TEXT, nullable=False, default="{}"),  # what the agent said at registration
    UniqueConstraint("deployment_id", "name", name="uq_nodes_deployment_name"),
)

policy_versions = Table(
    "policy_versions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("deployment_id", ID, ForeignKey("deployments.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("files", JSON_TEXT, nullable=False),  # {"policy.yaml": text, "lists/x.txt": text, ...}
    Column("params", JSON_TEXT, nullable=False, default="{}"),
    Column("hash", String(64), nullable=False),
    Column("author", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("rollback_of", Integer, nullable=True),  # a rollback copies this earlier version
    UniqueConstraint("deployment_id", "number", name="uq_policy_versions_number"),
)

list_versions = Table(
    "list_versions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("deployment_id", ID, ForeignKey("deployments.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("number", Integer, nullable=False),
    Column("entries", Text, nullable=False),  # one entry per line, in list syntax
    Column("count", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("author", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("message", Text, nullable=False, default=""),
    # provenance of an imported feed
    Column("source", Text, nullable=False, default=""),
    Column("source_date", String(64), nullable=False, default=""),
    Column("licence", String(128), nullable=False, default=""),
    Column("format", String(32), nullable=False, default=""),
    Column("rollback_of", Integer, nullable=True),
    UniqueConstraint("deployment_id", "name", "number", name="uq_list_versions_number"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("deployment_id", ID, ForeignKey("deployments.id"), nullable=True),
    Column("hash", String(64), nullable=False, unique=True),  # SHA-256 of the secret; the secret is never stored
    Column("prefix", String(16), nullable=False),  # the first characters, to tell tokens apart
    Column("created_at", Float, nullable=False),
    Column("last_used", Float, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("deployment_id", ID, nullable=True),
    Column("target", Text, nullable=False, default=""),
    Column("from_version", String(64), nullable=True),
    Column("to_version", String(64), nullable=True),
    Column("detail", JSON_TEXT, nullable=False, default="{}"),
    Column("remote", String(64), nullable=False, default=""),
    Index("ix_audit_ts", "ts"),
)

events = Table(
    "events",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("deployment_id", ID, nullable=False),
    Column("node_id", ID, nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("action", String(32), nullable=True),
    Column("rule", String(128), nullable=True),
    Column("app_proto", String(32), nullable=True),
    Column("server_name", String(255), nullable=True),
    Column("src_ip", String(64), nullable=True),
    Column("dest_ip", String(64), nullable=True),
    Column("dest_port", Integer, nullable=True),
    Column("proto", String(16), nullable=True),
    Column("record", Text, nullable=False),  # the EVE-shaped record as the node sent it
    Index("ix_events_dep_ts", "deployment_id", "ts"),
    Index("ix_events_dep_rule_ts", "deployment_id", "rule", "ts"),
    Index("ix_events_dep_action_ts", "deployment_id", "action", "ts"),
    Index("ix_events_dep_proto_ts", "deployment_id", "app_proto", "ts"),
    Index("ix_events_dep_name_ts", "deployment_id", "server_name", "ts"),
    Index("ix_events_node_ts", "node_id", "ts"),
)

#: Counters that must survive a restart: events dropped or removed anywhere in the manager, by reason.
counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False, default=0),
)

__all__ = [
    "audit",
    "counters",
    "deployments",
    "events",
    "list_versions",
    "metadata",
    "nodes",
    "policy_versions",
    "tokens",
]
