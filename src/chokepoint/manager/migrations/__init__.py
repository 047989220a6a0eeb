"""Alembic migrations of the manager's database (``chokepoint.manager.db.migrate`` runs them)."""
