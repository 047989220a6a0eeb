"""Routes the node agents call (register, heartbeat, long-poll for the desired state, fetch a bundle, send
events), and the node list operators read. An agent holds a ``node`` token of its deployment."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from chokepoint.manager.api_admin import deployment_for
from chokepoint.manager.app import Caller, ctx
from chokepoint.manager.auth import Principal
from chokepoint.manager.status import node_view

router = APIRouter(tags=["nodes"])
#: Longest long-poll the manager holds open.
MAX_WAIT_S = 60.0
#: Events in one request at most (a bigger batch: 413).
MAX_BATCH = 10_000


class RegisterIn(BaseModel):
    name: str = Field(..., max_length=64)
    info: dict[str, Any] = Field(default_factory=dict, description="mode, workers, metrics URL, agent version")


class EventsIn(BaseModel):
    events: list[Any] = Field(..., description="EVE-shaped records, as the node's censor wrote them")


def _node(request: Request, node_id: int, who: Principal) -> tuple[dict[str, Any], dict[str, Any]]:
    store = ctx(request).store
    node = store.node(node_id)
    who.require_node(node["deployment_id"])
    return node, store.deployment_by_id(node["deployment_id"])


def _desired(request: Request, node: dict[str, Any], dep: dict[str, Any]) -> dict[str, Any]:
    store = ctx(request).store
    fresh = store.node(node["id"])  # the override may have changed since
    return store.desired(dep, fresh["desired_override"])


@router.post("/deployments/{name}/nodes", status_code=201)
def register(name: str, body: RegisterIn, request: Request, who: Principal = Caller) -> dict[str, Any]:
    """Register (or re-register) a node; the answer has its id and what it should enforce."""
    c = ctx(request)
    dep = c.store.deployment(name)
    who.require_node(dep["id"])
    try:
        node = c.store.register_node(dep["id"], body.name, body.info)
    except ValueError as exc:
        from fastapi import HTTPException

        raise HTTPException(422, str(exc)) from None
    return {"node": {"id": node["id"], "name": node["name"]}, "desired": _desired(request, node, dep)}


@router.get("/deployments/{name}/nodes")
def nodes(name: str, request: Request, who: Principal = Caller) -> list[dict[str, Any]]:
    c = ctx(request)
    dep = deployment_for(request, name, who)
    base = c.store.desired(dep)
    now = c.clock()
    return [
        node_view(n, c.store.desired(dep, n["desired_override"]) if n["desired_override"] else base, now)
        for n in c.store.nodes(dep["id"])
    ]


@router.post("/nodes/{node_id}/heartbeat")
def heartbeat(node_id: int, body: dict[str, Any], request: Request, who: Principal = Caller) -> dict[str, Any]:
    """The node's health document (``in_force``, ``last_error``, ``counters``, ``workers``, ``fail_open``,
    ``events``, ``manager``; see docs/manager.md); the answer is what it should enforce."""
    c = ctx(request)
    node, dep = _node(request, node_id, who)
    c.store.heartbeat(node_id, body)
    by_action = ((body.get("counters") or {}).get("verdicts_by_action")) or {}
    if isinstance(by_action, dict):
        c.rates.add(dep["id"], node_id, c.clock(), {k: v for k, v in by_action.items() if isinstance(v, int)})
    return {"desired": _desired(request, node, dep)}


@router.get("/nodes/{node_id}/desired")
async def desired(
    node_id: int,
    request: Request,
    known: str | None = Query(None, description="the state hash the node enforces"),
    wait: float = Query(0.0, ge=0.0, le=MAX_WAIT_S, description="hold the answer up to this long for a change"),
    who: Principal = Caller,
) -> dict[str, Any]:
    """What the node should enforce; with ``wait``, answered as soon as it differs from ``known`` (a long poll:
    a push reaches a waiting agent at once)."""
    c = ctx(request)
    node, dep = await run_in_threadpool(_node, request, node_id, who)
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        future = c.notifier.register(dep["id"])  # before reading: a push in between still wakes us
        try:
            dep = await run_in_threadpool(c.store.deployment_by_id, dep["id"])
            state = await run_in_threadpool(_desired, request, node, dep)
            remaining = deadline - asyncio.get_running_loop().time()
            if state["state_hash"] != known or remaining <= 0:
                return {"desired": state, "changed": state["state_hash"] != known}
            try:
                await asyncio.wait_for(asyncio.shield(future), remaining)
            except TimeoutError:
                pass
        finally:
            c.notifier.discard(dep["id"], future)


@router.get("/nodes/{node_id}/bundle")
def node_bundle(node_id: int, request: Request, who: Principal = Caller) -> dict[str, Any]:
    """Everything the node needs to enforce its desired state: the policy version's files and params and the
    entries of every managed list it declares."""
    store = ctx(request).store
    node, dep = _node(request, node_id, who)
    state = _desired(request, node, dep)
    if state["policy"] is None:
        return {"desired": state, "policy": None, "lists": {}}
    version = store.policy_version(dep["id"], state["policy"]["number"])
    lists = {
        name: {**ref, "entries": store.list_version(dep["id"], name, ref["number"])["entries"]}
        for name, ref in state["lists"].items()
    }
    return {
        "desired": state,
        "policy": {k: version[k] for k in ("number", "hash", "files", "params")},
        "lists": lists,
    }


@router.post("/nodes/{node_id}/events")
def ingest(node_id: int, body: EventsIn, request: Request, who: Principal = Caller) -> dict[str, Any]:
    """Store a batch of the node's events; the answer counts what was stored and refused (by reason)."""
    c = ctx(request)
    node, dep = _node(request, node_id, who)
    if len(body.events) > MAX_BATCH:
        from fastapi import HTTPException

        raise HTTPException(413, f"{len(body.events)} events in one batch; at most {MAX_BATCH}")
    result = c.events.ingest(dep["id"], node_id, body.events)
    if result.rows:
        c.hub.publish(dep["id"], node["name"], result.rows)
    return {"stored": result.stored, "rejected": dict(result.rejected), "first_error": result.first_error}
