"""Routes: event queries (time range, deployment, node, rule, action, app_proto, server name), the live event
stream (Server-Sent Events), top values and verdict rates for the dashboard."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from chokepoint.manager.api_admin import deployment_for
from chokepoint.manager.app import Caller, ctx
from chokepoint.manager.auth import AuthError, Principal, bearer

router = APIRouter(tags=["events"])
#: Seconds between SSE comments that keep idle connections open.
KEEPALIVE_S = 15.0


@router.get("/events")
def query_events(
    request: Request,
    deployment: str = Query(..., description="the deployment whose events to read"),
    since: float | None = Query(None, description="epoch seconds (inclusive)"),
    until: float | None = Query(None, description="epoch seconds (exclusive)"),
    node: str | None = None,
    rule: str | None = None,
    action: str | None = None,
    app_proto: str | None = None,
    server_name: str | None = None,
    event_type: str | None = None,
    before_id: int | None = Query(None, description="page: only events with a smaller id"),
    limit: int = Query(100, ge=1, le=1000),
    who: Principal = Caller,
) -> Response:
    """Newest first (``{"events": [...], "next_before_id": N}``); ``next_before_id`` pages on."""
    c = ctx(request)
    dep = deployment_for(request, deployment, who)
    node_id = None
    if node is not None:
        matches = [n["id"] for n in c.store.nodes(dep["id"]) if n["name"] == node]
        if not matches:
            raise HTTPException(404, f"no node {node!r} in {deployment}")
        node_id = matches[0]
    rows = c.events.query(
        [dep["id"]],
        since=since,
        until=until,
        before_id=before_id,
        limit=limit,
        node_id=node_id,
        rule=rule,
        action=action,
        app_proto=app_proto,
        server_name=server_name,
        event_type=event_type,
    )
    names = {n["id"]: n["name"] for n in c.store.nodes(dep["id"])}
    # each stored record is JSON text already: spliced, not decoded and encoded again
    events = ",".join(
        f'{{"id":{r["id"]},"node":{json.dumps(names.get(r["node_id"]))},{r["record"][1:]}'
        if len(r["record"]) > 2
        else f'{{"id":{r["id"]},"node":{json.dumps(names.get(r["node_id"]))}}}'
        for r in rows
    )
    next_before = rows[-1]["id"] if len(rows) == limit else None
    return Response(
        f'{{"events":[{events}],"next_before_id":{json.dumps(next_before)}}}', media_type="application/json"
    )


def _stream_principal(request: Request, token: str | None) -> Principal:
    """Browsers' EventSource cannot send headers: the stream also takes ``?token=``."""
    header = request.headers.get("authorization")
    if header:
        return ctx(request).store.authenticate(bearer(header))
    if token:
        return ctx(request).store.authenticate(token)
    raise AuthError("no token: send Authorization: Bearer <token> or ?token=")


@router.get("/events/stream")
async def stream(
    request: Request,
    deployment: str | None = Query(None, description="only this deployment (default: all you may read)"),
    token: str | None = Query(None, description="the API token, for clients that cannot set headers"),
) -> StreamingResponse:
    """Server-Sent Events: one ``event: eve`` message per stored record (``data``: ``{deployment_id, node,
    record}``), ``: keepalive`` comments when idle; ``event: dropped`` tells a slow client how many it missed."""
    c = ctx(request)
    who = await run_in_threadpool(_stream_principal, request, token)
    if deployment is not None:
        dep = await run_in_threadpool(deployment_for, request, deployment, who)
        allowed: frozenset[int] | None = frozenset({dep["id"]})
    elif who.role in ("admin", "viewer"):
        allowed = None
    else:
        allowed = frozenset({who.deployment_id}) if who.deployment_id else frozenset()
    sub_id, queue, state = c.hub.subscribe(asyncio.get_running_loop(), allowed)

    async def messages():
        reported = 0
        try:
            yield ": connected\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keepalive\n\n"
                    continue
                if state["dropped"] != reported:
                    yield f"event: dropped\ndata: {json.dumps({'dropped': state['dropped']})}\n\n"
                    reported = state["dropped"]
                yield f"event: eve\ndata: {json.dumps(item, separators=(',', ':'))}\n\n"
        finally:
            c.hub.unsubscribe(sub_id)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(messages(), media_type="text/event-stream", headers=headers)


@router.get("/deployments/{name}/top")
def top(
    name: str,
    request: Request,
    by: str = Query("rule", pattern="^(rule|action|app_proto|server_name)$"),
    window: float = Query(300.0, gt=0, le=7 * 86400, description="seconds back from now"),
    action: str | None = Query(None, description="only events of this action (e.g. blocked names: not allow)"),
    event_type: str | None = Query("chokepoint"),
    limit: int = Query(10, ge=1, le=100),
    who: Principal = Caller,
) -> list[dict[str, Any]]:
    """The most frequent rules, actions, app protocols or server names in the last ``window`` seconds."""
    c = ctx(request)
    dep = deployment_for(request, name, who)
    return c.events.top(dep["id"], by, since=c.clock() - window, limit=limit, action=action, event_type=event_type)


@router.get("/deployments/{name}/rates")
def rates(
    name: str,
    request: Request,
    window: float = Query(120.0, gt=0, le=3600),
    who: Principal = Caller,
) -> dict[str, Any]:
    """Verdicts per second by action over the last ``window`` seconds, summed over the nodes' heartbeats."""
    c = ctx(request)
    dep = deployment_for(request, name, who)
    now = c.clock()
    return {"now": now, "series": c.rates.rates(dep["id"], now - window)}
