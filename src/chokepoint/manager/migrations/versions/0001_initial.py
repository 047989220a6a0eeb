"""The first schema: deployments, nodes, policy and list versions, tokens, audit log, events, counters.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("desired_policy", sa.Integer, nullable=True),
        sa.Column("policy_head", sa.Integer, nullable=False),
        sa.Column("desired_lists", sa.Text, nullable=False),
    )
    op.create_table(
        "nodes",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("deployment_id", ID, sa.ForeignKey("deployments.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("registered_at", sa.Float, nullable=False),
        sa.Column("last_heartbeat", sa.Float, nullable=True),
        sa.Column("desired_override", sa.Integer, nullable=True),
        sa.Column("policy_in_force", sa.Integer, nullable=True),
        sa.Column("state_hash", sa.String(64), nullable=True),
        sa.Column("lists_in_force", sa.Text, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("health", sa.Text, nullable=False),
        sa.Column("info", sa.Text, nullable=False),
        sa.UniqueConstraint("deployment_id", "name", name="uq_nodes_deployment_name"),
    )
    op.create_table(
        "policy_versions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("deployment_id", ID, sa.ForeignKey("deployments.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("rollback_of", sa.Integer, nullable=True),
        sa.UniqueConstraint("deployment_id", "number", name="uq_policy_versions_number"),
    )
    op.create_table(
        "list_versions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("deployment_id", ID, sa.ForeignKey("deployments.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("entries", sa.Text, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("source_date", sa.String(64), nullable=False),
        sa.Column("licence", sa.String(128), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("rollback_of", sa.Integer, nullable=True),
        sa.UniqueConstraint("deployment_id", "name", "number", name="uq_list_versions_number"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("deployment_id", ID, sa.ForeignKey("deployments.id"), nullable=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used", sa.Float, nullable=True),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("deployment_id", ID, nullable=True),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("from_version", sa.String(64), nullable=True),
        sa.Column("to_version", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("remote", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_ts", "audit", ["ts"])
    op.create_table(
        "events",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("deployment_id", ID, nullable=False),
        sa.Column("node_id", ID, nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=True),
        sa.Column("rule", sa.String(128), nullable=True),
        sa.Column("app_proto", sa.String(32), nullable=True),
        sa.Column("server_name", sa.String(255), nullable=True),
        sa.Column("src_ip", sa.String(64), nullable=True),
        sa.Column("dest_ip", sa.String(64), nullable=True),
        sa.Column("dest_port", sa.Integer, nullable=True),
        sa.Column("proto", sa.String(16), nullable=True),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("ix_events_dep_ts", "events", ["deployment_id", "ts"])
    op.create_index("ix_events_dep_rule_ts", "events", ["deployment_id", "rule", "ts"])
    op.create_index("ix_events_dep_action_ts", "events", ["deployment_id", "action", "ts"])
    op.create_index("ix_events_dep_proto_ts", "events", ["deployment_id", "app_proto", "ts"])
    op.create_index("ix_events_dep_name_ts", "events", ["deployment_id", "server_name", "ts"])
    op.create_index("ix_events_node_ts", "events", ["node_id", "ts"])
    op.create_table(
        "counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("counters", "events", "audit", "tokens", "list_versions", "policy_versions", "nodes", "deployments"):
        op.drop_table(table)
