"""The manager's web application: the REST API under ``/api/v1`` (OpenAPI at ``/docs`` and ``/openapi.json``),
Prometheus at ``/metrics``, the dashboard at ``/``.

:func:`create_app` builds one from :class:`Settings`; everything it needs hangs off ``app.state.ctx``
(:class:`Context`), so two apps never share state and nothing happens at import. Routes live in
``api_admin`` (deployments, tokens, audit), ``api_policy`` (policy and list versions), ``api_nodes`` (what
agents call), ``api_events`` (event queries, the live stream, rates) and ``dashboard``; errors become HTTP
answers here: 401 no/bad token, 403 role or scope, 404 unknown, 409 stale write (with ``current``), 413 too
big, 422 invalid (a policy error carries ``file``, ``line``, ``column``, ``message``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from chokepoint.manager import db
from chokepoint.manager.auth import AuthError, Forbidden, Principal, bearer
from chokepoint.manager.bundle import BundleError
from chokepoint.manager.events import EventStore, Hub
from chokepoint.manager.feeds import FeedError
from chokepoint.manager.status import STALE_AFTER, RateBook
from chokepoint.manager.store import Conflict, NotFound, Store
from chokepoint.policy.errors import PolicyError

#: Largest request body accepted (a bundle or a batch of events); larger ones get 413 before being read whole.
MAX_BODY_BYTES = 48 * 1024 * 1024


@dataclass(slots=True)
class Settings:
    db_url: str = db.DEFAULT_DB
    max_events: int = 2_000_000
    retention_s: float = 7 * 86400.0
    lab_only: bool = True  # refuse events whose addresses are outside the lab's ranges
    stale_after_s: float = STALE_AFTER
    max_body_bytes: int = MAX_BODY_BYTES
    maintenance_s: float = 60.0  # retention sweep and counter flush period
    migrate: bool = True


class Notifier:
    """Wakes long-polling agents when what a deployment's nodes should enforce changes (thread-safe: pushes
    run in worker threads, waiters in the event loop)."""

    def __init__(self) -> None:
        self._waiters: dict[int, list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = {}
        self._lock = threading.Lock()

    def register(self, dep_id: int) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._waiters.setdefault(dep_id, []).append((loop, future))
        return future

    def discard(self, dep_id: int, future: asyncio.Future) -> None:
        with self._lock:
            self._waiters[dep_id] = [(lp, f) for lp, f in self._waiters.get(dep_id, []) if f is not future]

    def notify(self, dep_id: int) -> None:
        with self._lock:
            waiters = self._waiters.pop(dep_id, [])
        for loop, future in waiters:
            loop.call_soon_threadsafe(lambda f=future: f.done() or f.set_result(True))


@dataclass(slots=True)
class Context:
    settings: Settings
    store: Store
    events: EventStore
    hub: Hub
    notifier: Notifier
    rates: RateBook
    metrics: Any = None
    clock: Callable[[], float] = time.time
    started: float = field(default_factory=time.time)


def ctx(request: Request) -> Context:
    return request.app.state.ctx


def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer``; 401 otherwise."""
    return ctx(request).store.authenticate(bearer(request.headers.get("authorization")))


def remote(request: Request) -> str:
    return request.client.host if request.client else ""


Caller = Depends(principal)


def _error(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def _auth(_, exc: AuthError):
        return JSONResponse({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(Forbidden)
    async def _forbidden(_, exc: Forbidden):
        return _error(403, str(exc))

    @app.exception_handler(NotFound)
    async def _missing(_, exc: NotFound):
        return _error(404, str(exc.args[0]) if exc.args else "not found")

    @app.exception_handler(Conflict)
    async def _conflict(_, exc: Conflict):
        return _error(409, str(exc), current=exc.current)

    @app.exception_handler(PolicyError)
    async def _policy(_, exc: PolicyError):
        where = {"file": exc.file, "line": exc.line, "column": exc.column, "message": exc.message}
        return _error(422, f"policy rejected: {exc}", error=where)

    @app.exception_handler(BundleError)
    async def _bundle(_, exc: BundleError):
        too_big = "at most" in str(exc) or "over" in str(exc)
        return _error(413 if too_big else 422, str(exc))

    @app.exception_handler(FeedError)
    async def _feed(_, exc: FeedError):
        return _error(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return _error(422, "bad request: " + "; ".join(problems[:10]), errors=problems[:50])


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, declared (``Content-Length``) or counted while it
    streams in (a body without a length is read up to the limit before the app sees it)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
        if declared is not None:
            if declared < 0 or declared > self.limit:
                return await self._refuse(send)
            return await self.app(scope, receive, send)
        buffered, size = [], 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._refuse(send)
            if not message.get("more_body"):
                break

        async def replay():
            return buffered.pop(0) if buffered else await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        body = f'{{"detail": "request body over {self.limit} bytes"}}'.encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings | None = None, *, clock: Callable[[], float] = time.time) -> FastAPI:
    """A manager app on ``settings.db_url`` (migrated to the newest schema unless ``migrate`` is off)."""
    from chokepoint.manager import api_admin, api_events, api_nodes, api_policy, dashboard
    from chokepoint.manager.metrics import ManagerMetrics

    settings = settings or Settings()
    engine = db.make_engine(settings.db_url)
    if settings.migrate:
        db.migrate(engine)
    store = Store(engine, clock=clock)
    context = Context(
        settings=settings,
        store=store,
        events=EventStore(
            engine,
            store.bump,
            max_events=settings.max_events,
            retention_s=settings.retention_s,
            lab_only=settings.lab_only,
            clock=clock,
        ),
        hub=Hub(),
        notifier=Notifier(),
        rates=RateBook(),
        clock=clock,
    )
    context.metrics = ManagerMetrics(context)

    async def maintenance() -> None:
        while True:
            await asyncio.sleep(settings.maintenance_s)
            await asyncio.to_thread(context.events.expire)
            await asyncio.to_thread(context.hub.flush, store.bump)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await asyncio.to_thread(context.events.expire)
        task = asyncio.create_task(maintenance())
        try:
            yield
        finally:
            task.cancel()
            context.hub.flush(store.bump)
            engine.dispose()

    app = FastAPI(
        title="Chokepoint manager",
        version="1",
        description="Central management of a fleet of Chokepoint censor nodes (docs/manager.md).",
        lifespan=lifespan,
    )
    app.state.ctx = context
    _install_errors(app)
    context.metrics.install(app)
    for module in (api_admin, api_policy, api_nodes, api_events):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(dashboard.router)
    dashboard.mount_static(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        return {"ok": True, "uptime_s": round(time.time() - context.started, 3)}

    return app


__all__ = ["Caller", "Context", "Settings", "create_app", "ctx", "principal", "remote"]
