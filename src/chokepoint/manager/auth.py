"""API tokens and roles: who may do what in the manager.

A token is ``cpm_`` + 32 random bytes (URL-safe base64), shown once when created; the store keeps only its
SHA-256 (a random 256-bit secret needs no slow password hash: there is nothing to guess) and its first
characters, to tell tokens apart in listings. Clients send it as ``Authorization: Bearer <token>``.

Roles (``ROLES``):

- ``admin``: everything, in every deployment (create deployments and tokens, push, roll back, read).
- ``operator``: scoped to one deployment: push, canary, roll back and read there; nothing elsewhere.
- ``viewer``: read only, every deployment (status, versions, diffs, events, audit log).
- ``node``: scoped to one deployment: what an agent needs (register, heartbeat, fetch the desired policy,
  send events) and reading that deployment; it cannot push.

Unauthenticated requests may read only ``/``, ``/healthz``, ``/metrics`` and the OpenAPI documents.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

ROLES = ("admin", "operator", "viewer", "node")
SCOPED_ROLES = ("operator", "node")
TOKEN_PREFIX = "cpm_"


class AuthError(Exception):
    """No valid token (HTTP 401)."""


class Forbidden(Exception):
    """A valid token whose role or scope does not allow this (HTTP 403)."""


def new_secret() -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's id, name, role and (operator/node) deployment."""

    token_id: int
    name: str
    role: str
    deployment_id: int | None = None

    def can_read(self, deployment_id: int) -> bool:
        if self.role in ("admin", "viewer"):
            return True
        return self.deployment_id == deployment_id

    def can_write(self, deployment_id: int) -> bool:
        """Push, canary, roll back, change lists in ``deployment_id``."""
        return self.role == "admin" or (self.role == "operator" and self.deployment_id == deployment_id)

    def can_act_as_node(self, deployment_id: int) -> bool:
        return self.role == "admin" or (self.role == "node" and self.deployment_id == deployment_id)

    def require_read(self, deployment_id: int) -> None:
        if not self.can_read(deployment_id):
            raise Forbidden(f"token {self.name!r} ({self.role}) may not read this deployment")

    def require_write(self, deployment_id: int) -> None:
        if not self.can_write(deployment_id):
            raise Forbidden(f"token {self.name!r} ({self.role}) may not change this deployment")

    def require_node(self, deployment_id: int) -> None:
        if not self.can_act_as_node(deployment_id):
            raise Forbidden(f"token {self.name!r} ({self.role}) may not act as a node of this deployment")

    def require_admin(self) -> None:
        if self.role != "admin":
            raise Forbidden(f"token {self.name!r} ({self.role}) is not an admin token")


def check_role(role: str, deployment_id: int | None) -> None:
    """``ValueError`` unless ``role`` is known and scoped exactly when it must be."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if role in SCOPED_ROLES and deployment_id is None:
        raise ValueError(f"a {role} token is scoped to one deployment: name it")
    if role not in SCOPED_ROLES and deployment_id is not None:
        raise ValueError(f"a {role} token is not scoped to a deployment")


def bearer(header: str | None) -> str:
    """The token in an ``Authorization`` header value; ``AuthError`` when there is none."""
    if not header:
        raise AuthError("no token: send Authorization: Bearer <token>")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError("the Authorization header must be 'Bearer <token>'")
    return value.strip()


__all__ = [
    "ROLES",
    "AuthError",
    "Forbidden",
    "Principal",
    "bearer",
    "check_role",
    "new_secret",
    "token_hash",
]
