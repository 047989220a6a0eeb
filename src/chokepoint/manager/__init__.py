"""The central manager of a fleet of censor nodes ("censorship as a service").

What the leaked exported gateway calls Central Management ("Bifang": one web UI and API configuring every
gateway node, a central config store synced to the nodes) with its status API (TSG-OAM), the list
distribution the reports describe going through TSG Galaxy, and a small slice of the operators' dashboards
(InterSecLab, "The Internet Coup", 2025, ch. 5-7; see docs/manager.md). The manager never sits on the packet
path: nodes keep enforcing their last policy without it.

- ``schema`` (tables), ``db`` (engines for SQLite/PostgreSQL, Alembic migrations in ``migrations/``),
- ``store`` (deployments, nodes, versioned policies and lists, audit log), ``events`` (the event store),
  ``auth`` (hashed API tokens, roles), ``bundle`` (a policy version as files, validated with the CLI's loader,
  hashes and diffs), ``feeds`` (list import formats),
- ``app`` (the FastAPI application) with its routes in ``api_*`` modules, ``metrics`` (Prometheus),
  ``dashboard/`` (the page at ``/``), ``server`` (``chokepoint manager serve``), ``client`` (the HTTP client the
  CLI and the agent use),
- ``agent`` (the process beside each censor daemon that registers, heartbeats, receives policies and forwards
  events; the daemon side is :mod:`chokepoint.backends.control`).
"""
