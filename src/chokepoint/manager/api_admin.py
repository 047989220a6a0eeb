"""Routes: deployments, their status, tokens, the audit log, the caller's identity, manager counters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from chokepoint.manager.app import Caller, ctx, remote
from chokepoint.manager.auth import ROLES, Principal
from chokepoint.manager.status import deployment_status

router = APIRouter(tags=["deployments and access"])


class DeploymentIn(BaseModel):
    name: str = Field(..., max_length=64, description="lowercase letters, digits, '.', '_', '-'")
    description: str = Field("", max_length=4000)


class TokenIn(BaseModel):
    name: str = Field(..., min_length=1, max_length=128)
    role: str = Field(..., description=f"one of {', '.join(ROLES)}")
    deployment: str | None = Field(None, description="operator and node tokens: the one deployment they act in")


def deployment_for(request: Request, name: str, who: Principal, *, write: bool = False) -> dict[str, Any]:
    """The named deployment, if ``who`` may read it (or write it): 404 before 403 would leak nothing more, but
    an operator asking for another deployment gets 403 so the error is clear."""
    dep = ctx(request).store.deployment(name)
    (who.require_write if write else who.require_read)(dep["id"])
    return dep


@router.get("/whoami")
def whoami(request: Request, who: Principal = Caller) -> dict[str, Any]:
    dep = ctx(request).store.deployment_by_id(who.deployment_id)["name"] if who.deployment_id else None
    return {"name": who.name, "role": who.role, "deployment": dep}


@router.post("/deployments", status_code=201)
def create_deployment(body: DeploymentIn, request: Request, who: Principal = Caller) -> dict[str, Any]:
    who.require_admin()
    store = ctx(request).store
    try:
        dep = store.create_deployment(body.name, body.description, who.name)
    except ValueError as exc:
        from fastapi import HTTPException

        raise HTTPException(422, str(exc)) from None
    store.audit(who, "deployment.create", deployment_id=dep["id"], target=dep["name"], remote=remote(request))
    return dep


@router.get("/deployments")
def list_deployments(request: Request, who: Principal = Caller) -> list[dict[str, Any]]:
    return [d for d in ctx(request).store.deployments() if who.can_read(d["id"])]


@router.get("/deployments/{name}")
def deployment(name: str, request: Request, who: Principal = Caller) -> dict[str, Any]:
    """Status: the desired policy and lists, every node's health and version in force."""
    c = ctx(request)
    dep = deployment_for(request, name, who)
    return deployment_status(c.store, dep, c.clock(), c.settings.stale_after_s)


@router.post("/tokens", status_code=201)
def create_token(body: TokenIn, request: Request, who: Principal = Caller) -> dict[str, Any]:
    """A new API token; the secret is in the answer and nowhere else (the store keeps its hash)."""
    who.require_admin()
    store = ctx(request).store
    try:
        secret, row = store.create_token(body.name, body.role, body.deployment)
    except ValueError as exc:
        from fastapi import HTTPException

        raise HTTPException(422, str(exc)) from None
    store.audit(
        who,
        "token.create",
        deployment_id=row["deployment_id"],
        target=f"{row['name']} ({row['role']})",
        remote=remote(request),
    )
    return {"token": secret, **row}


@router.get("/tokens")
def list_tokens(request: Request, who: Principal = Caller) -> list[dict[str, Any]]:
    who.require_admin()
    return ctx(request).store.list_tokens()


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: int, request: Request, who: Principal = Caller) -> dict[str, Any]:
    who.require_admin()
    store = ctx(request).store
    store.revoke_token(token_id)
    store.audit(who, "token.revoke", target=str(token_id), remote=remote(request))
    return {"revoked": token_id}


@router.get("/audit")
def audit_log(
    request: Request,
    deployment: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    who: Principal = Caller,
) -> list[dict[str, Any]]:
    """Every write: who, what, when, from which version to which (operators: their deployment only)."""
    store = ctx(request).store
    if deployment is not None:
        dep_id = deployment_for(request, deployment, who)["id"]
    elif who.role in ("admin", "viewer"):
        dep_id = None
    else:
        dep_id = who.deployment_id
    return store.audit_log(dep_id, limit)


@router.get("/stats")
def stats(request: Request, who: Principal = Caller) -> dict[str, Any]:
    """The manager's counters: events stored, and every event dropped or removed anywhere, by reason."""
    c = ctx(request)
    counters = c.store.counters()
    nodes_dropped = 0
    for dep in c.store.deployments():
        if who.can_read(dep["id"]):
            for node in c.store.nodes(dep["id"]):
                nodes_dropped += int(((node["health"] or {}).get("events") or {}).get("dropped") or 0)
    return {
        "counters": counters,
        "events_in_store": c.events.count(),
        "event_drops": {
            **{
                k: v
                for k, v in counters.items()
                if k.startswith(("events_rejected_", "events_evicted", "events_expired"))
            },
            "sse_dropped": counters.get("sse_dropped", 0) + c.hub.unflushed(),
            "agents_dropped": nodes_dropped,
        },
        "sse_subscribers": len(c.hub),
    }
