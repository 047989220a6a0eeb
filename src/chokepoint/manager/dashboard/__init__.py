"""The dashboard at ``/``: one server-rendered page (``index.html``, Jinja2) with a small script (``app.js``)
and a stylesheet, served from this package — no build step, nothing fetched from elsewhere.

It shows, per deployment: the nodes (health, version in force, last heartbeat, workers, dropped events), a live
chart of verdicts per second by action, the top rules, app protocols and blocked names, the policy history
with diffs and the managed lists, push / canary / promote / rollback buttons, and a live tail of events
(Server-Sent Events). Everything it shows comes from the same API the CLI uses, with the token typed into the
page (kept in the browser's localStorage).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).resolve().parent
router = APIRouter(include_in_schema=False)
_env = Environment(loader=FileSystemLoader(HERE), autoescape=select_autoescape(["html"]))


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    context = request.app.state.ctx
    page = _env.get_template("index.html").render(
        api="/api/v1",
        stale_after=context.settings.stale_after_s,
        max_events=context.settings.max_events,
        retention_h=round(context.settings.retention_s / 3600, 1),
    )
    return HTMLResponse(page)


def mount_static(app) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


__all__ = ["mount_static", "router"]
